//! Per-partition watermarks: the largest event time seen minus the allowed lateness.

use std::time::{Duration, Instant};

use crate::checkpoint::WatermarkState;
use crate::time::EventTime;

/// How a source turns event times into watermarks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkOptions {
    /// The allowed lateness (Spark's `withWatermark` delay): watermark = max event time − delay.
    pub delay: Duration,
    /// A partition with no data for this long stops holding the watermark back (Flink's
    /// `withIdleness`); it rejoins when data arrives. `None` means partitions never go idle.
    pub idle_timeout: Option<Duration>,
    /// Batches are stamped with the watermark rounded down to a multiple of this tick, which
    /// bounds the number of distinct timestamps. Zero stamps with the exact watermark.
    pub tick: Duration,
    /// What to do with a record whose event time cannot be read.
    pub invalid_time: InvalidTimePolicy,
}

impl Default for WatermarkOptions {
    fn default() -> Self {
        WatermarkOptions {
            delay: Duration::ZERO,
            idle_timeout: None,
            tick: Duration::ZERO,
            invalid_time: InvalidTimePolicy::Fail,
        }
    }
}

impl WatermarkOptions {
    /// Watermarks that trail the largest event time seen by `delay`.
    pub fn with_delay(delay: Duration) -> Self {
        WatermarkOptions { delay, ..Default::default() }
    }

    /// Sets the idle timeout (see [`WatermarkOptions::idle_timeout`]).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets the stamping tick (see [`WatermarkOptions::tick`]).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Sets the policy for records whose event time cannot be read.
    pub fn invalid_time(mut self, policy: InvalidTimePolicy) -> Self {
        self.invalid_time = policy;
        self
    }
}

/// What a source does with a record whose event time is missing or unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InvalidTimePolicy {
    /// Fail the query with an error naming the record (the default: nothing is lost quietly).
    #[default]
    Fail,
    /// Drop the record and count it in the source's `numInvalidEventTimeRows`.
    DropAndCount,
}

/// Whether a record arrived in time, judged against its partition's watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// At or after the watermark.
    OnTime,
    /// Before the watermark that was in force when it arrived.
    Late {
        /// The watermark it was compared with.
        watermark: EventTime,
    },
}

/// The watermark of one source partition, with its idleness clock.
#[derive(Clone, Debug)]
pub struct PartitionWatermark {
    delay: Duration,
    max_event_time: Option<EventTime>,
    /// `max_event_time - delay`, kept up to date so that judging a record costs one comparison.
    watermark: EventTime,
    last_data: Instant,
    idle: bool,
}

impl PartitionWatermark {
    /// A partition that has seen nothing yet.
    pub fn new(delay: Duration) -> Self {
        PartitionWatermark {
            delay,
            max_event_time: None,
            watermark: EventTime::MIN,
            last_data: Instant::now(),
            idle: false,
        }
    }

    /// The current watermark: max event time seen − delay (the epoch before any data).
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// The largest event time seen so far.
    pub fn max_event_time(&self) -> Option<EventTime> {
        self.max_event_time
    }

    /// Judges one record against `max(watermark, floor)` and then advances the watermark.
    /// `floor` is the time the source's batches are already stamped at: a partition that rejoins
    /// after being idle is judged against it too, so no on-time record is stamped after its time.
    #[inline]
    pub fn observe(&mut self, time: EventTime, floor: EventTime) -> Arrival {
        let watermark = std::cmp::max(self.watermark, floor);
        match self.max_event_time {
            Some(max) if time <= max => {}
            _ => {
                self.max_event_time = Some(time);
                self.watermark = time.saturating_sub(self.delay);
            }
        }
        if time < watermark {
            Arrival::Late { watermark }
        } else {
            Arrival::OnTime
        }
    }

    /// Notes that the partition delivered data now (it is not idle).
    pub fn touch(&mut self, now: Instant) {
        self.last_data = now;
        self.idle = false;
    }

    /// Re-evaluates idleness: true if the partition had no data for `timeout`.
    pub fn check_idle(&mut self, now: Instant, timeout: Option<Duration>) -> bool {
        if let Some(timeout) = timeout {
            if now.duration_since(self.last_data) >= timeout {
                self.idle = true;
            }
        }
        self.idle
    }

    /// Whether the partition is idle (and so does not hold the watermark back).
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// The state a checkpoint records for this partition: the largest event time seen, the
    /// watermark and whether the partition is idle.
    pub fn state(&self) -> WatermarkState {
        WatermarkState { max_event_time: self.max_event_time, watermark: self.watermark, idle: self.idle }
    }

    /// Restores a state recorded by [`PartitionWatermark::state`] (recovery from a checkpoint):
    /// from then on records are judged exactly as the original partition would have judged them.
    ///
    /// The recorded watermark is kept as it is (not recomputed from the delay), so a partition
    /// restored under a changed delay still never moves its watermark back. The idleness clock
    /// restarts now: a partition restored idle stays idle until data arrives or, if it was not
    /// idle, becomes idle after the idle timeout from now.
    pub fn restore(&mut self, state: WatermarkState) {
        self.max_event_time = state.max_event_time;
        self.watermark = state.watermark;
        self.idle = state.idle;
        self.last_data = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_follows_the_definition() {
        // watermark after record i = max(ts[0..=i]) - delay; record i late if ts[i] < watermark after i-1.
        let ts = [10_000u64, 12_000, 6_000, 7_000, 20_000, 15_000, 14_999, 15_000];
        let mut wm = PartitionWatermark::new(Duration::from_secs(5));
        let late: Vec<bool> = ts
            .iter()
            .map(|t| matches!(wm.observe(EventTime::from_millis(*t), EventTime::MIN), Arrival::Late { .. }))
            .collect();
        assert_eq!(late, vec![false, false, true, false, false, false, true, false]);
        assert_eq!(wm.watermark(), EventTime::from_millis(15_000));
    }

    #[test]
    fn floor_makes_rejoining_partitions_late() {
        let mut wm = PartitionWatermark::new(Duration::ZERO);
        assert_eq!(
            wm.observe(EventTime::from_millis(5), EventTime::from_millis(10)),
            Arrival::Late { watermark: EventTime::from_millis(10) }
        );
        assert_eq!(wm.observe(EventTime::from_millis(10), EventTime::from_millis(10)), Arrival::OnTime);
    }

    /// A small deterministic generator (the runtime has no `rand` dependency).
    struct XorShift(u64);
    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Random out-of-order event times, cut at a random record: the partition restored from the
    /// state at the cut judges every later record (and reaches every later watermark) exactly as
    /// the partition that never stopped; a fresh partition would not (the test can fail).
    #[test]
    fn a_restored_partition_judges_lateness_as_the_original() {
        let mut fresh_differs = 0;
        for seed in 0..200u64 {
            let mut rng = XorShift(seed * 2 + 1);
            let delay = Duration::from_millis(rng.below(50));
            let times: Vec<EventTime> =
                (0..300u64).map(|i| EventTime::from_millis((i * 10 + 1000).saturating_sub(rng.below(120)))).collect();
            // Floors as the source would pass them: non-decreasing, at or below the watermark.
            let mut original = PartitionWatermark::new(delay);
            let cut = rng.below(times.len() as u64) as usize;
            let mut floors = Vec::new();
            let mut floor = EventTime::MIN;
            for &time in &times[..cut] {
                original.observe(time, floor);
                if rng.below(4) == 0 {
                    floor = floor.max(original.watermark());
                }
            }
            let state = original.state();
            assert_eq!(state.max_event_time, original.max_event_time());
            assert_eq!(state.watermark, original.watermark());
            assert!(!state.idle);
            let mut restored = PartitionWatermark::new(delay);
            restored.restore(state);
            assert_eq!(restored.state(), state);
            let mut fresh = PartitionWatermark::new(delay);
            let mut fresh_verdicts = Vec::new();
            for &time in &times[cut..] {
                if rng.below(4) == 0 {
                    floor = floor.max(original.watermark());
                }
                floors.push(floor);
                let expected = original.observe(time, floor);
                assert_eq!(restored.observe(time, floor), expected, "seed {seed}, cut {cut}, time {time:?}");
                assert_eq!(restored.watermark(), original.watermark());
                fresh_verdicts.push(fresh.observe(time, EventTime::MIN) == expected);
            }
            if fresh_verdicts.contains(&false) {
                fresh_differs += 1;
            }
        }
        assert!(fresh_differs > 50, "a fresh partition should judge differently in many runs ({fresh_differs})");
    }

    #[test]
    fn state_round_trips_the_idle_flag_and_an_empty_partition() {
        let empty = PartitionWatermark::new(Duration::from_secs(1));
        assert_eq!(empty.state(), WatermarkState { max_event_time: None, watermark: EventTime::MIN, idle: false });
        let mut idle = PartitionWatermark::new(Duration::ZERO);
        idle.observe(EventTime::from_millis(50), EventTime::MIN);
        let start = Instant::now();
        assert!(idle.check_idle(start + Duration::from_secs(1), Some(Duration::from_millis(1))));
        let state = idle.state();
        assert!(state.idle);
        let mut restored = PartitionWatermark::new(Duration::ZERO);
        restored.restore(state);
        assert!(restored.is_idle());
        assert_eq!(restored.watermark(), EventTime::from_millis(50));
        assert_eq!(
            restored.observe(EventTime::from_millis(49), EventTime::MIN),
            Arrival::Late { watermark: EventTime::from_millis(50) }
        );
        restored.touch(Instant::now());
        assert!(!restored.is_idle());
    }

    #[test]
    fn idleness() {
        let mut wm = PartitionWatermark::new(Duration::ZERO);
        let start = Instant::now();
        wm.touch(start);
        assert!(!wm.check_idle(start, Some(Duration::from_millis(10))));
        assert!(wm.check_idle(start + Duration::from_millis(11), Some(Duration::from_millis(10))));
        assert!(!wm.check_idle(start + Duration::from_secs(100), None) || wm.is_idle());
        wm.touch(start + Duration::from_millis(12));
        assert!(!wm.is_idle());
    }
}
