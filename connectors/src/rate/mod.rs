//! The `rate` source (like Spark's): rows `{timestamp, value}` generated on a schedule, for
//! demos, tests and benchmarks.
//!
//! Values count up from 0 over the whole source; partition `p` of `n` produces `p, p+n, p+2n, …`.
//! Row `v` is *scheduled* at `start_time + offset(v)`, where `offset` follows `rows_per_second`
//! after a linear ramp-up. With `R` rows per second and a ramp-up of `T` ms, the rate grows
//! linearly from 0 to `R` over `T` ms, so row `v` is due at `⌊√(2000·T·v/R)⌋` ms while
//! `2000·v < R·T`, and at `⌊(2000·v + R·T)/(2R)⌋` ms afterwards (without ramp-up:
//! `⌊v·1000/R⌋` ms). See [`RateSource::scheduled_time`]. Its `timestamp` is the scheduled time moved back by a
//! deterministic pseudo-random amount in `[0, max_skew]` (splitmix64 of `(seed, v)`), which makes
//! the stream out of order in a reproducible way.

mod reader;
mod schedule;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::EventStream;
use weir_runtime::source::{event_source, Source};
use weir_runtime::time::EventTime;
use weir_runtime::watermark::WatermarkOptions;

pub use reader::RateReader;
pub use schedule::MAX_ROWS_PER_SECOND;

use reader::RateReaderConfig;
use schedule::{skew_ms, Schedule};

/// One generated row: its (possibly skewed) event time and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RateRow {
    /// The row's event time: its scheduled time minus its skew.
    pub timestamp: EventTime,
    /// The row's number, counting from 0 over the whole source.
    pub value: u64,
}

/// A source that generates [`RateRow`]s at a fixed rate (optionally ramping up, bounded, skewed).
/// Build it with [`RateSource::new`] and the builder methods; all fields are public for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSource {
    /// Rows generated per second over all partitions, once ramped up.
    pub rows_per_second: u64,
    /// How long the rate takes to grow linearly from 0 to `rows_per_second`.
    pub ramp_up_time: Duration,
    /// Number of partitions (each read by one worker).
    pub num_partitions: usize,
    /// Total rows to generate before every partition finishes; `None` runs forever.
    pub row_limit: Option<u64>,
    /// Whether rows are released only when due by wall-clock time (false: as fast as possible).
    pub throttled: bool,
    /// The largest amount a row's timestamp is moved back from its scheduled time.
    pub max_skew: Duration,
    /// Seed of the skew hash.
    pub seed: u64,
    /// The event time of row 0 (before skew).
    pub start_time: EventTime,
    /// Whether `start_time` was set explicitly; if not, [`RateSource::events`] anchors it at the
    /// query's start, which every worker of the process shares.
    explicit_start: bool,
}

impl RateSource {
    /// A throttled, unbounded source of `rows_per_second` rows per second in one partition,
    /// starting now, without ramp-up or skew.
    pub fn new(rows_per_second: u64) -> Self {
        RateSource {
            rows_per_second,
            ramp_up_time: Duration::ZERO,
            num_partitions: 1,
            row_limit: None,
            throttled: true,
            max_skew: Duration::ZERO,
            seed: 0,
            start_time: EventTime::now(),
            explicit_start: false,
        }
    }

    /// Grows the rate linearly from 0 to `rows_per_second` over `ramp_up_time` (Spark's `rampUpTime`).
    pub fn ramp_up_time(mut self, ramp_up_time: Duration) -> Self {
        self.ramp_up_time = ramp_up_time;
        self
    }

    /// Splits the rows over `n` partitions (default 1); partition `p` produces values `p, p+n, …`.
    pub fn num_partitions(mut self, n: usize) -> Self {
        self.num_partitions = n;
        self
    }

    /// Stops after `rows` rows in total (values `0..rows`); the partitions then finish.
    pub fn row_limit(mut self, rows: u64) -> Self {
        self.row_limit = Some(rows);
        self
    }

    /// Generates as fast as possible; event times still follow the schedule.
    pub fn unthrottled(mut self) -> Self {
        self.throttled = false;
        self
    }

    /// Moves each row's timestamp back by a deterministic pseudo-random amount in `[0, skew]`,
    /// making the stream out of order (millisecond resolution).
    pub fn max_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// Sets the seed of the skew hash (the same seed gives the same timestamps).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the event time of row 0 (default: the time of construction). Set it for reproducible runs.
    pub fn start_time(mut self, start: EventTime) -> Self {
        self.start_time = start;
        self.explicit_start = true;
        self
    }

    /// Checks the settings; the same checks make [`Source::open`] fail at run time.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.rows_per_second == 0 || self.rows_per_second > MAX_ROWS_PER_SECOND {
            return Err(BuildError::invalid(
                "rate source rowsPerSecond",
                format!("{} is out of range", self.rows_per_second),
                format!("use a rate from 1 to {MAX_ROWS_PER_SECOND} rows per second"),
            ));
        }
        if self.num_partitions == 0 {
            return Err(BuildError::invalid(
                "rate source numPartitions",
                "0 partitions cannot produce rows",
                "use at least 1 partition",
            ));
        }
        Ok(())
    }

    /// The scheduled (unskewed) event time of row `value`: `start_time + offset(value)`.
    pub fn scheduled_time(&self, value: u64) -> EventTime {
        let offset = self.schedule().offset_ms(value);
        EventTime::from_millis(self.start_time.as_millis().saturating_add(offset))
    }

    /// The timestamp row `value` carries: its scheduled time minus its skew.
    pub fn timestamp_of(&self, value: u64) -> EventTime {
        let scheduled = self.scheduled_time(value).as_millis();
        EventTime::from_millis(scheduled.saturating_sub(skew_ms(self.seed, value, self.skew_span())))
    }

    /// Runs this source through [`event_source`], with each row's `timestamp` as its event time.
    /// Without an explicit start time, row 0 is scheduled at the query's start (the same instant
    /// on every worker of this process, so all partitions share one schedule).
    pub fn events<'scope>(
        mut self,
        scope: Scope<'scope, EventTime>,
        ctx: &QueryContext,
        options: WatermarkOptions,
    ) -> EventStream<'scope, RateRow> {
        if !self.explicit_start {
            self.start_time = ctx.started_at();
        }
        event_source(scope, ctx, self, |row: &RateRow| Some(row.timestamp), options)
    }

    fn schedule(&self) -> Schedule {
        Schedule::new(self.rows_per_second, duration_ms(self.ramp_up_time))
    }

    fn skew_span(&self) -> u64 {
        match duration_ms(self.max_skew) {
            0 => 0,
            skew => skew.saturating_add(1),
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    duration.as_millis().min(u64::MAX as u128) as u64
}

impl Source for RateSource {
    type Record = RateRow;
    type Reader = RateReader;

    fn description(&self) -> String {
        let mut text = format!(
            "RateSource[rowsPerSecond={}, rampUpTime={}ms, numPartitions={}",
            self.rows_per_second,
            duration_ms(self.ramp_up_time),
            self.num_partitions
        );
        if let Some(limit) = self.row_limit {
            text.push_str(&format!(", rowLimit={limit}"));
        }
        if !self.throttled {
            text.push_str(", unthrottled");
        }
        if !self.max_skew.is_zero() {
            text.push_str(&format!(", maxSkew={}ms", duration_ms(self.max_skew)));
        }
        text.push(']');
        text
    }

    fn partitions(&self) -> usize {
        // At least one, so that an invalid setting is reported by `open` rather than ignored.
        self.num_partitions.max(1)
    }

    fn open(&self, partition: usize) -> Result<RateReader, QueryError> {
        self.validate()
            .map_err(|error| QueryError::Source { source_name: self.description(), message: error.to_string() })?;
        Ok(RateReader::new(self.reader_config(partition)))
    }

    /// Resumes at the value [`weir_runtime::source::PartitionReader::position`] reported (the
    /// next value of the partition). Timestamps continue only if row 0's time is the same as in the
    /// interrupted run, so the source must have an explicit [`RateSource::start_time`]: without
    /// one it is anchored at each run's start, and resuming is refused rather than producing rows
    /// whose timestamps jump back.
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<RateReader, QueryError> {
        self.validate()
            .map_err(|error| QueryError::Source { source_name: self.description(), message: error.to_string() })?;
        let fail = |message: String| QueryError::Source { source_name: self.description(), message };
        let step = self.num_partitions as u64;
        let value = position.as_u64().ok_or_else(|| {
            fail(format!(
                "partition {partition} cannot resume at {position}: a rate source's position is a value (a number)"
            ))
        })?;
        if value % step != partition as u64 % step {
            return Err(fail(format!(
                "partition {partition} cannot resume at value {value}: partition {partition} of {step} produces the values {partition}, {}, {}, … (the checkpoint belongs to a source with other settings)",
                partition as u64 + step,
                partition as u64 + 2 * step
            )));
        }
        if !self.explicit_start {
            return Err(fail(format!(
                "partition {partition} cannot resume at value {value}: without an explicit start time, row timestamps are anchored at the start of each run and would jump back. Set the rate source's start time (RateSource::start_time) to resume from a checkpoint"
            )));
        }
        Ok(RateReader::resumed(self.reader_config(partition), value))
    }
}

impl RateSource {
    fn reader_config(&self, partition: usize) -> RateReaderConfig {
        RateReaderConfig {
            partition: partition as u64,
            partitions: self.num_partitions as u64,
            limit: self.row_limit.unwrap_or(u64::MAX),
            schedule: self.schedule(),
            start_ms: self.start_time.as_millis(),
            skew_span: self.skew_span(),
            seed: self.seed,
            throttled: self.throttled,
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::source::{PartitionReader, ReadStatus};

    use super::*;

    fn read_all(reader: &mut RateReader, batch: usize) -> Vec<RateRow> {
        let mut rows = Vec::new();
        loop {
            match reader.read(&mut rows, batch).unwrap() {
                ReadStatus::Finished => return rows,
                ReadStatus::Ready => {}
                ReadStatus::Wait(d) => panic!("unthrottled reader asked to wait {d:?}"),
            }
        }
    }

    #[test]
    fn partitions_interleave_values_and_finish_at_the_limit() {
        let source =
            RateSource::new(1000).unthrottled().num_partitions(3).row_limit(10).start_time(EventTime::from_millis(5));
        let values: Vec<Vec<u64>> =
            (0..3).map(|p| read_all(&mut source.open(p).unwrap(), 2).iter().map(|r| r.value).collect()).collect();
        assert_eq!(values, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
        let rows = read_all(&mut source.open(1).unwrap(), 100);
        assert_eq!(rows[1], RateRow { timestamp: EventTime::from_millis(9), value: 4 });
        let mut reader = source.open(0).unwrap();
        let mut out = Vec::new();
        assert_eq!(reader.read(&mut out, 1).unwrap(), ReadStatus::Ready);
        assert_eq!(reader.position(), serde_json::json!(3));
    }

    #[test]
    fn rows_match_the_published_schedule_with_ramp_up_and_skew() {
        let source = RateSource::new(700)
            .unthrottled()
            .num_partitions(2)
            .ramp_up_time(Duration::from_millis(1500))
            .max_skew(Duration::from_millis(40))
            .seed(9)
            .row_limit(5_000)
            .start_time(EventTime::from_millis(1_000_000));
        for p in 0..2 {
            for row in read_all(&mut source.open(p).unwrap(), 333) {
                assert_eq!(row.timestamp, source.timestamp_of(row.value));
                let scheduled = source.scheduled_time(row.value);
                assert!(
                    row.timestamp <= scheduled && row.timestamp >= scheduled.saturating_sub(Duration::from_millis(40))
                );
            }
        }
    }

    /// Read part of every partition in uneven batches, take its position, resume a fresh
    /// source there: the rest equals what the uninterrupted reader produced (values and
    /// timestamps, with ramp-up and skew), for cuts inside the ramp-up, after it and at the end.
    #[test]
    fn resuming_at_a_position_continues_the_uninterrupted_rows() {
        let source = RateSource::new(900)
            .unthrottled()
            .num_partitions(3)
            .ramp_up_time(Duration::from_millis(800))
            .max_skew(Duration::from_millis(25))
            .seed(4)
            .row_limit(2_000)
            .start_time(EventTime::from_millis(1_700_000_000_000));
        for p in 0..3 {
            let all = read_all(&mut source.open(p).unwrap(), 1000);
            for cut in [0usize, 1, 7, 100, 240, 241, 500, all.len() - 1, all.len()] {
                let mut reader = source.open(p).unwrap();
                let mut head = Vec::new();
                while head.len() < cut {
                    let max = (cut - head.len()).min(13);
                    reader.read(&mut head, max).unwrap();
                }
                assert_eq!(head[..], all[..cut]);
                let position = reader.position();
                let mut resumed = source.clone().open_at(p, &position).unwrap();
                assert_eq!(resumed.position(), position);
                let rest = read_all(&mut resumed, 37);
                assert_eq!(rest[..], all[cut..], "partition {p}, cut after {cut} rows");
            }
        }
    }

    #[test]
    fn a_throttled_resume_continues_at_once_and_then_at_the_rate() {
        // 10 rows/s: value 50 is due 5 s after the start; resumed there it is due at once.
        let source = RateSource::new(10).start_time(EventTime::from_millis(0));
        let mut reader = source.open_at(0, &serde_json::json!(50)).unwrap();
        let mut out = Vec::new();
        let status = reader.read(&mut out, 10).unwrap();
        assert_eq!(out, vec![RateRow { timestamp: EventTime::from_millis(5000), value: 50 }]);
        assert!(matches!(status, ReadStatus::Wait(d) if d <= Duration::from_millis(100)), "{status:?}");
    }

    #[test]
    fn resuming_needs_an_explicit_start_and_a_value_of_the_partition() {
        let anchored = RateSource::new(10).num_partitions(2);
        let error = anchored.open_at(0, &serde_json::json!(4)).err().unwrap().to_string();
        assert!(error.contains("explicit start time"), "{error}");
        let source = anchored.start_time(EventTime::from_millis(0));
        assert!(source.open_at(0, &serde_json::json!(4)).is_ok());
        let error = source.open_at(1, &serde_json::json!(4)).err().unwrap().to_string();
        assert!(error.contains("produces the values 1, 3, 5"), "{error}");
        let error = source.open_at(1, &serde_json::json!({"file": "x"})).err().unwrap().to_string();
        assert!(error.contains("a value (a number)"), "{error}");
    }

    #[test]
    fn invalid_settings_fail_at_open() {
        assert!(RateSource::new(0).open(0).is_err());
        assert!(RateSource::new(10).num_partitions(0).open(0).is_err());
        assert!(RateSource::new(10).validate().is_ok());
    }
}
