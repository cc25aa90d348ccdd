//! A keyed, timestamped, out-of-order test stream with some late records: what
//! `weir kafka produce-test-data` writes, and what tests compare the jobs' output against.
//!
//! Deterministic for a seed: the same settings give the same records in the same order, so the
//! stream can be regenerated (or written to a JSON-lines copy) to compute the expected answer.

use std::time::Duration;

use apache_avro::AvroSchema;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One record of the test stream: `{"key": "k7", "ts": 1700000000123, "value": 42}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "weir.test")]
pub struct TestEvent {
    /// The key, `k0` .. `k{keys-1}`.
    pub key: String,
    /// Event time, ms since the Unix epoch.
    pub ts: i64,
    /// The record's sequence number in the stream.
    pub value: i64,
}

/// The shape of a test stream.
#[derive(Clone, Debug, PartialEq)]
pub struct TestStream {
    /// How many records.
    pub records: u64,
    /// How many distinct keys.
    pub keys: u64,
    /// Event time of the first record, ms since the Unix epoch.
    pub start_ms: i64,
    /// Event time advances by this much per record, on average.
    pub step: Duration,
    /// Each record's time is moved back by up to this much (out of order, but within a watermark
    /// delay of the same size).
    pub disorder: Duration,
    /// The fraction of records moved back much further, by `late_by`: late for a watermark delay
    /// of `disorder`.
    pub late_fraction: f64,
    /// How far back a late record is moved.
    pub late_by: Duration,
    /// The seed.
    pub seed: u64,
}

impl Default for TestStream {
    fn default() -> Self {
        TestStream {
            records: 10_000,
            keys: 100,
            start_ms: 1_700_000_000_000,
            step: Duration::from_millis(10),
            disorder: Duration::from_secs(2),
            late_fraction: 0.01,
            late_by: Duration::from_secs(60),
            seed: 1,
        }
    }
}

impl TestStream {
    /// The records, in production order.
    pub fn events(&self) -> impl Iterator<Item = TestEvent> + '_ {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let step = self.step.as_millis() as i64;
        let disorder = self.disorder.as_millis() as i64;
        let late_by = self.late_by.as_millis() as i64;
        (0..self.records).map(move |i| {
            let key = format!("k{}", rng.random_range(0..self.keys.max(1)));
            let mut ts = self.start_ms + i as i64 * step;
            if disorder > 0 {
                ts -= rng.random_range(0..=disorder);
            }
            if self.late_fraction > 0.0 && rng.random_bool(self.late_fraction.min(1.0)) {
                ts -= late_by;
            }
            TestEvent { key, ts, value: i as i64 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_out_of_order_and_late() {
        let stream = TestStream { records: 5_000, late_fraction: 0.05, ..Default::default() };
        let a: Vec<_> = stream.events().collect();
        assert_eq!(a, stream.events().collect::<Vec<_>>());
        let other: Vec<_> = TestStream { seed: 2, ..stream.clone() }.events().collect();
        assert_ne!(a, other);
        let out_of_order = a.windows(2).filter(|w| w[1].ts < w[0].ts).count();
        assert!(out_of_order > 1_000, "{out_of_order}");
        let mut max = i64::MIN;
        let late = a.iter().filter(|e| {
            let late = e.ts < max.saturating_sub(2_000);
            max = max.max(e.ts);
            late
        });
        assert!(late.count() > 100);
        assert_eq!(a.iter().map(|e| &e.key).collect::<std::collections::BTreeSet<_>>().len(), 100);
    }
}
