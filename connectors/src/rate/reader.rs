//! Reading one partition of a rate source: values `p, p+n, p+2n, …` with synthesized timestamps.

use std::time::{Duration, Instant};

use weir_runtime::error::QueryError;
use weir_runtime::source::{PartitionReader, ReadStatus};
use weir_runtime::time::EventTime;

use super::schedule::{skew_ms, Schedule, SteadyCursor};
use super::RateRow;

/// Reads one partition of a [`super::RateSource`]. In throttled mode it returns only rows already
/// due (the schedule starts when the reader is opened); unthrottled, it fills each read at once.
#[derive(Debug)]
pub struct RateReader {
    /// The next value this partition produces.
    next_value: u64,
    /// The distance between consecutive values of this partition (the number of partitions).
    step: u64,
    /// Values are below this (`u64::MAX` when unbounded).
    limit: u64,
    schedule: Schedule,
    steady_from: u64,
    /// The steady-phase offset of `next_value`, once `next_value >= steady_from`.
    steady: Option<SteadyCursor>,
    start_ms: u64,
    /// `max_skew_ms + 1`, or 0 without skew.
    skew_span: u64,
    seed: u64,
    /// When reading started, in throttled mode.
    opened: Option<Instant>,
    /// The schedule offset (ms) at which a resumed reader started: throttling continues from
    /// there instead of waiting for the whole schedule up to the resumed value again.
    resumed_at_ms: u64,
}

/// How a rate reader is set up (derived from the source's settings).
pub(crate) struct RateReaderConfig {
    pub(crate) partition: u64,
    pub(crate) partitions: u64,
    pub(crate) limit: u64,
    pub(crate) schedule: Schedule,
    pub(crate) start_ms: u64,
    pub(crate) skew_span: u64,
    pub(crate) seed: u64,
    pub(crate) throttled: bool,
}

impl RateReader {
    pub(crate) fn new(config: RateReaderConfig) -> Self {
        let mut reader = RateReader {
            next_value: config.partition,
            step: config.partitions.max(1),
            limit: config.limit,
            schedule: config.schedule,
            steady_from: config.schedule.steady_from(),
            steady: None,
            start_ms: config.start_ms,
            skew_span: config.skew_span,
            seed: config.seed,
            opened: config.throttled.then(Instant::now),
            resumed_at_ms: 0,
        };
        reader.enter_steady_phase();
        reader
    }

    /// A reader that continues at `next_value` (a value of this partition, as
    /// [`PartitionReader::position`] reported it): the rows and timestamps are those an
    /// uninterrupted reader would produce from there. Throttled, the row at `next_value` is due
    /// at once and the following ones at the configured rate.
    pub(crate) fn resumed(config: RateReaderConfig, next_value: u64) -> Self {
        let mut reader = RateReader::new(config);
        reader.next_value = next_value;
        reader.steady = None;
        reader.enter_steady_phase();
        reader.resumed_at_ms = reader.next_offset();
        reader
    }

    fn enter_steady_phase(&mut self) {
        if self.steady.is_none() && self.next_value >= self.steady_from {
            self.steady = Some(SteadyCursor::new(&self.schedule, self.next_value, self.step));
        }
    }

    /// Rows this partition still has to produce.
    fn remaining(&self) -> u64 {
        if self.next_value >= self.limit {
            0
        } else {
            (self.limit - self.next_value - 1) / self.step + 1
        }
    }

    fn next_offset(&self) -> u64 {
        match &self.steady {
            Some(cursor) => cursor.offset,
            None => self.schedule.offset_ms(self.next_value),
        }
    }

    #[inline]
    fn row(&self, value: u64, offset: u64) -> RateRow {
        let scheduled = self.start_ms.saturating_add(offset);
        let skew = if self.skew_span == 0 { 0 } else { skew_ms(self.seed, value, self.skew_span) };
        RateRow { timestamp: EventTime::from_millis(scheduled.saturating_sub(skew)), value }
    }

    /// Emits the next row and moves on (the general, per-row path).
    fn push_one(&mut self, out: &mut Vec<RateRow>) {
        out.push(self.row(self.next_value, self.next_offset()));
        self.next_value = self.next_value.wrapping_add(self.step);
        match self.steady.as_mut() {
            Some(cursor) => cursor.advance(),
            None => self.enter_steady_phase(),
        }
    }

    /// Appends the next `count` rows. The steady phase runs as a tight loop: no allocation beyond
    /// one reserve, no clock reads, no division, and the skew hash only when a skew is set.
    fn fill(&mut self, out: &mut Vec<RateRow>, count: u64) {
        out.reserve(count.min(usize::MAX as u64) as usize);
        let mut left = count;
        while left > 0 && self.steady.is_none() {
            self.push_one(out);
            left -= 1;
        }
        let Some(mut cursor) = self.steady else { return };
        if left == 0 {
            return;
        }
        let (start, step, span, seed) = (self.start_ms, self.step, self.skew_span, self.seed);
        let mut value = self.next_value;
        if span == 0 {
            out.extend((0..left).map(|_| {
                let row = RateRow { timestamp: EventTime::from_millis(start.saturating_add(cursor.offset)), value };
                value = value.wrapping_add(step);
                cursor.advance();
                row
            }));
        } else {
            out.extend((0..left).map(|_| {
                let scheduled = start.saturating_add(cursor.offset);
                let timestamp = EventTime::from_millis(scheduled.saturating_sub(skew_ms(seed, value, span)));
                let row = RateRow { timestamp, value };
                value = value.wrapping_add(step);
                cursor.advance();
                row
            }));
        }
        self.next_value = value;
        self.steady = Some(cursor);
    }
}

impl PartitionReader for RateReader {
    type Record = RateRow;

    fn read(&mut self, out: &mut Vec<RateRow>, max: usize) -> Result<ReadStatus, QueryError> {
        let Some(opened) = self.opened else {
            self.fill(out, self.remaining().min(max as u64));
            return Ok(if self.next_value >= self.limit { ReadStatus::Finished } else { ReadStatus::Ready });
        };
        let elapsed = (opened.elapsed().as_millis().min(u64::MAX as u128) as u64).saturating_add(self.resumed_at_ms);
        let mut produced = 0;
        while produced < max && self.next_value < self.limit {
            let due = self.next_offset();
            if due > elapsed {
                return Ok(ReadStatus::Wait(Duration::from_millis(due - elapsed)));
            }
            self.push_one(out);
            produced += 1;
        }
        Ok(if self.next_value >= self.limit { ReadStatus::Finished } else { ReadStatus::Ready })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::Value::from(self.next_value)
    }
}
