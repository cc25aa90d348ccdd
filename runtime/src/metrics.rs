//! Live counters shared by the workers of one process, read by the progress reporter.
//!
//! Operators update them once per batch (never per record); the reporter turns their deltas into
//! Spark-style progress reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::time::EventTime;

/// All counters of one query in this process.
#[derive(Default, Debug)]
pub struct QueryMetrics {
    sources: Mutex<Vec<Arc<SourceMetrics>>>,
    operators: Mutex<Vec<Arc<OperatorMetrics>>>,
    sinks: Mutex<Vec<Arc<SinkMetrics>>>,
}

impl QueryMetrics {
    /// The counters of the source called `name`, created on first use (every worker shares them).
    pub fn source(&self, name: &str) -> Arc<SourceMetrics> {
        get_or_insert(&self.sources, name, |n| SourceMetrics { description: n.to_string(), ..Default::default() })
    }

    /// The counters of the stateful operator called `name`, created on first use.
    pub fn operator(&self, name: &str) -> Arc<OperatorMetrics> {
        get_or_insert(&self.operators, name, |n| OperatorMetrics { name: n.to_string(), ..Default::default() })
    }

    /// The counters of the sink called `name`, created on first use.
    pub fn sink(&self, name: &str) -> Arc<SinkMetrics> {
        get_or_insert(&self.sinks, name, |n| SinkMetrics { description: n.to_string(), ..Default::default() })
    }

    /// Every registered source, in registration order.
    pub fn sources(&self) -> Vec<Arc<SourceMetrics>> {
        self.sources.lock().unwrap().clone()
    }

    /// Every registered stateful operator, in registration order.
    pub fn operators(&self) -> Vec<Arc<OperatorMetrics>> {
        self.operators.lock().unwrap().clone()
    }

    /// Every registered sink, in registration order.
    pub fn sinks(&self) -> Vec<Arc<SinkMetrics>> {
        self.sinks.lock().unwrap().clone()
    }
}

trait Named {
    fn name(&self) -> &str;
}
impl Named for SourceMetrics {
    fn name(&self) -> &str {
        &self.description
    }
}
impl Named for OperatorMetrics {
    fn name(&self) -> &str {
        &self.name
    }
}
impl Named for SinkMetrics {
    fn name(&self) -> &str {
        &self.description
    }
}

fn get_or_insert<M: Named>(list: &Mutex<Vec<Arc<M>>>, name: &str, make: impl FnOnce(&str) -> M) -> Arc<M> {
    let mut list = list.lock().unwrap();
    if let Some(found) = list.iter().find(|m| m.name() == name) {
        return found.clone();
    }
    let created = Arc::new(make(name));
    list.push(created.clone());
    created
}

/// Min, max and sum of the event times of a set of records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTimeStats {
    /// Number of records.
    pub count: u64,
    /// Smallest event time.
    pub min: Option<EventTime>,
    /// Largest event time.
    pub max: Option<EventTime>,
    /// Sum of event times in milliseconds (for the average).
    pub sum: u128,
}

impl EventTimeStats {
    /// Adds a run of event times (one merge per run, not per time).
    #[inline]
    pub fn add_all(&mut self, times: impl Iterator<Item = EventTime>) {
        let (mut count, mut sum, mut min, mut max) = (0u64, 0u128, u64::MAX, 0u64);
        for time in times {
            let t = time.as_millis();
            count += 1;
            sum += t as u128;
            min = min.min(t);
            max = max.max(t);
        }
        if count > 0 {
            self.merge(&EventTimeStats {
                count,
                sum,
                min: Some(EventTime::from_millis(min)),
                max: Some(EventTime::from_millis(max)),
            });
        }
    }

    /// Adds all of `other`.
    pub fn merge(&mut self, other: &EventTimeStats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The average event time, if any record was seen.
    pub fn avg(&self) -> Option<EventTime> {
        (self.count > 0).then(|| EventTime::from_millis((self.sum / self.count as u128) as u64))
    }
}

/// Counters of one source (summed over the workers of this process).
#[derive(Default, Debug)]
pub struct SourceMetrics {
    /// What the source reads, e.g. `RateSource[rowsPerSecond=1000, numPartitions=2]`.
    pub description: String,
    /// Records read (on-time and late).
    pub input_rows: AtomicU64,
    /// Records late at their partition (event time below the partition watermark).
    pub late_rows: AtomicU64,
    /// Records dropped because their event time could not be read.
    pub invalid_time_rows: AtomicU64,
    /// Event times of the records read since the last report.
    pub event_times: Mutex<EventTimeStats>,
    /// Per worker: the time this worker's source instance stamps batches at; `None` once finished.
    pub watermarks: Mutex<BTreeMap<usize, Option<EventTime>>>,
    /// Per partition: the position reached (source-specific JSON, e.g. the next row or line).
    pub offsets: Mutex<BTreeMap<usize, serde_json::Value>>,
    /// Partitions currently idle (not holding the watermark back).
    pub idle_partitions: Mutex<Vec<usize>>,
    /// Per live partition: its own watermark (max event time seen − delay; the epoch before any
    /// data), so a diagnosis can name the partition that holds the source's watermark back.
    pub partition_watermarks: Mutex<BTreeMap<usize, EventTime>>,
    /// Per partition: the latest position known to exist (e.g. a Kafka high watermark), for
    /// partitions whose reader knows it.
    pub latest: Mutex<BTreeMap<usize, serde_json::Value>>,
    /// Whether positions are JSON objects merged into one in reports (see
    /// [`crate::source::Source::nested_offsets`]).
    pub nested_offsets: std::sync::atomic::AtomicBool,
    /// Per partition opened in this process: its position when it was opened (where it starts).
    pub start_offsets: Mutex<BTreeMap<usize, serde_json::Value>>,
    /// The source's own sentence for a diagnosis when it has read nothing since the start (see
    /// [`crate::source::Source::no_input_hint`]).
    pub no_input_hint: Mutex<Option<String>>,
}

impl SourceMetrics {
    /// The source's watermark in this process: the minimum over its live worker instances;
    /// `None` when every instance has finished or none has started.
    pub fn watermark(&self) -> Option<EventTime> {
        self.watermarks.lock().unwrap().values().flatten().min().copied()
    }

    /// Whether every instance of the source in this process has finished.
    pub fn finished(&self) -> bool {
        let marks = self.watermarks.lock().unwrap();
        !marks.is_empty() && marks.values().all(|w| w.is_none())
    }
}

/// Counters of one stateful operator (summed over the workers of this process).
#[derive(Default, Debug)]
pub struct OperatorMetrics {
    /// The operator's name, as shown in `stateOperators[].operatorName`.
    pub name: String,
    /// Groups (rows) currently held in state.
    pub rows_total: AtomicI64,
    /// Groups created or changed (cumulative).
    pub rows_updated: AtomicU64,
    /// Groups evicted (cumulative).
    pub rows_removed: AtomicU64,
    /// Records dropped because they were late (cumulative), also routed to the late output.
    pub late_rows: AtomicU64,
    /// Estimated bytes of state held.
    pub memory_bytes: AtomicI64,
    /// Records received (cumulative).
    pub rows_in: AtomicU64,
    /// Records emitted (cumulative).
    pub rows_out: AtomicU64,
    /// Records dropped as duplicates by a deduplication (cumulative; Spark's `numDroppedDuplicateRows`).
    pub duplicates_dropped: AtomicU64,
}

impl OperatorMetrics {
    /// Adds `n` to a cumulative counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adjusts the held-state gauges by `rows` groups and `bytes` bytes.
    #[inline]
    pub fn adjust_state(&self, rows: i64, bytes: i64) {
        if rows != 0 {
            self.rows_total.fetch_add(rows, Ordering::Relaxed);
        }
        if bytes != 0 {
            self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// Counters of one sink (summed over the workers of this process).
#[derive(Default, Debug)]
pub struct SinkMetrics {
    /// What the sink writes to.
    pub description: String,
    /// Records written (cumulative).
    pub output_rows: AtomicU64,
    /// Write errors seen (cumulative).
    pub errors: AtomicU64,
    /// Epochs the sink has made durable (cumulative): committed transactions for a transactional
    /// sink, acknowledged flushes for an at-least-once one.
    pub committed_epochs: AtomicU64,
    /// Time spent making those epochs durable (cumulative, microseconds): from the start of an
    /// epoch's transaction (or flush) to its acknowledged commit.
    pub commit_micros_total: AtomicU64,
    /// The latest epoch commit's duration, microseconds.
    pub last_commit_micros: AtomicU64,
}

impl SinkMetrics {
    /// Records one durable epoch that took `latency` to commit.
    pub fn epoch_committed(&self, latency: std::time::Duration) {
        let micros = latency.as_micros().min(u64::MAX as u128) as u64;
        self.committed_epochs.fetch_add(1, Ordering::Relaxed);
        self.commit_micros_total.fetch_add(micros, Ordering::Relaxed);
        self.last_commit_micros.store(micros, Ordering::Relaxed);
    }
}
