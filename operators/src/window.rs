//! Event-time windows: tumbling, sliding and the single global group, aligned to the epoch like
//! Spark (start inclusive, end exclusive, optional offset).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_runtime::error::BuildError;
use weir_runtime::time::EventTime;

/// One window: `[start, end)` in milliseconds since the epoch. Sliding windows that begin before
/// the epoch have a negative start, as in Spark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive start, ms since the epoch.
    pub start: i64,
    /// Exclusive end, ms since the epoch.
    pub end: i64,
}

/// How records are grouped in event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Windowing {
    /// Fixed, non-overlapping windows of `size`, starting at multiples of `size` (+ `offset`).
    Tumbling {
        /// Window length.
        size: Duration,
        /// Shift of the window starts from the epoch-aligned grid.
        offset: Duration,
    },
    /// Overlapping windows of `size`, one starting every `slide` (+ `offset`).
    Sliding {
        /// Window length.
        size: Duration,
        /// Distance between window starts.
        slide: Duration,
        /// Shift of the window starts from the epoch-aligned grid.
        offset: Duration,
    },
    /// No event-time window: one group per key for the whole stream (update/complete only).
    Global,
}

impl Windowing {
    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Self {
        Windowing::Tumbling { size, offset: Duration::ZERO }
    }

    /// Sliding windows of `size` every `slide`.
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        Windowing::Sliding { size, slide, offset: Duration::ZERO }
    }

    /// No window: one group per key (the state is unbounded; append mode is not allowed).
    pub fn global() -> Self {
        Windowing::Global
    }

    /// Shifts window starts by `offset` from the epoch-aligned grid (Spark's `startTime`).
    pub fn with_offset(self, offset: Duration) -> Self {
        match self {
            Windowing::Tumbling { size, .. } => Windowing::Tumbling { size, offset },
            Windowing::Sliding { size, slide, .. } => Windowing::Sliding { size, slide, offset },
            Windowing::Global => Windowing::Global,
        }
    }

    /// Whether this is an event-time window (closes when the watermark passes its end).
    pub fn is_event_time(&self) -> bool {
        !matches!(self, Windowing::Global)
    }

    /// Checks the parameters, with a message that says what to change.
    pub fn validate(&self) -> Result<(), BuildError> {
        match *self {
            Windowing::Tumbling { size, offset } => {
                if size.as_millis() == 0 {
                    return Err(BuildError::invalid(
                        "window size",
                        "a window of zero milliseconds holds no records",
                        "use a positive size such as 10s",
                    ));
                }
                if offset >= size {
                    return Err(BuildError::invalid(
                        "window offset",
                        format!("offset {offset:?} is not smaller than the window size {size:?}"),
                        "use an offset in [0, size)",
                    ));
                }
            }
            Windowing::Sliding { size, slide, offset } => {
                if size.as_millis() == 0 {
                    return Err(BuildError::invalid(
                        "window size",
                        "a window of zero milliseconds holds no records",
                        "use a positive size such as 10s",
                    ));
                }
                if slide.as_millis() == 0 {
                    return Err(BuildError::invalid(
                        "window slide",
                        "a slide of zero milliseconds would open infinitely many windows",
                        "use a positive slide no longer than the size, e.g. --slide 5s for a 10s window",
                    ));
                }
                if slide > size {
                    return Err(BuildError::invalid(
                        "window slide",
                        format!(
                            "the slide ({} ms) is longer than the window size ({} ms), so records between windows would belong to none",
                            slide.as_millis(),
                            size.as_millis()
                        ),
                        "use a slide no longer than the size (slide = size is a tumbling window)",
                    ));
                }
                if offset >= slide {
                    return Err(BuildError::invalid(
                        "window offset",
                        format!("offset {offset:?} is not smaller than the slide {slide:?}"),
                        "use an offset in [0, slide)",
                    ));
                }
            }
            Windowing::Global => {}
        }
        Ok(())
    }

    /// Calls `each` with the start of every window that contains `time`, latest first.
    /// For [`Windowing::Global`] it calls once with [`GLOBAL_WINDOW_START`].
    #[inline]
    pub fn for_each_window_start(&self, time: EventTime, each: impl FnMut(i64)) {
        WindowAssigner::new(*self).for_each_window_start(time, each)
    }

    /// The window that starts at `start`.
    #[inline]
    pub fn window(&self, start: i64) -> Window {
        match *self {
            Windowing::Tumbling { size, .. } | Windowing::Sliding { size, .. } => {
                Window { start, end: start + size.as_millis() as i64 }
            }
            Windowing::Global => Window { start: GLOBAL_WINDOW_START, end: GLOBAL_WINDOW_END },
        }
    }

    /// A short description for operator names, e.g. `tumbling(10s)`.
    pub fn describe(&self) -> String {
        match self {
            Windowing::Tumbling { size, offset } if offset.is_zero() => format!("tumbling({size:?})"),
            Windowing::Tumbling { size, offset } => format!("tumbling({size:?}, offset {offset:?})"),
            Windowing::Sliding { size, slide, offset } if offset.is_zero() => format!("sliding({size:?}, {slide:?})"),
            Windowing::Sliding { size, slide, offset } => format!("sliding({size:?}, {slide:?}, offset {offset:?})"),
            Windowing::Global => "global".to_string(),
        }
    }
}

/// Assigns records to windows, remembering the last slide bucket so that the records of a batch,
/// which mostly fall in the same bucket, cost a comparison instead of a division each.
#[derive(Clone, Debug)]
pub struct WindowAssigner {
    windowing: Windowing,
    bucket_start: i64,
    bucket_end: i64,
}

impl WindowAssigner {
    /// An assigner for `windowing`.
    pub fn new(windowing: Windowing) -> Self {
        WindowAssigner { windowing, bucket_start: 0, bucket_end: 0 }
    }

    /// Calls `each` with the start of every window that contains `time`, latest first.
    #[inline]
    pub fn for_each_window_start(&mut self, time: EventTime, mut each: impl FnMut(i64)) {
        let t = time.as_millis() as i64;
        let (size, slide, offset) = match self.windowing {
            Windowing::Tumbling { size, offset } => (size, size, offset),
            Windowing::Sliding { size, slide, offset } => (size, slide, offset),
            Windowing::Global => return each(GLOBAL_WINDOW_START),
        };
        if !(self.bucket_start <= t && t < self.bucket_end) {
            let slide = slide.as_millis() as i64;
            self.bucket_start = t - (t - offset.as_millis() as i64).rem_euclid(slide);
            self.bucket_end = self.bucket_start + slide;
        }
        let (size, slide) = (size.as_millis() as i64, self.bucket_end - self.bucket_start);
        let mut start = self.bucket_start;
        while start > t - size {
            each(start);
            start -= slide;
        }
    }
}

/// The start reported for the single group of [`Windowing::Global`].
pub const GLOBAL_WINDOW_START: i64 = i64::MIN;
/// The end reported for the single group of [`Windowing::Global`].
pub const GLOBAL_WINDOW_END: i64 = i64::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(w: Windowing, t: u64) -> Vec<i64> {
        let mut v = Vec::new();
        w.for_each_window_start(EventTime::from_millis(t), |s| v.push(s));
        v
    }

    #[test]
    fn tumbling_aligned_like_spark() {
        let w = Windowing::tumbling(Duration::from_secs(10));
        assert_eq!(starts(w, 0), vec![0]);
        assert_eq!(starts(w, 9_999), vec![0]);
        assert_eq!(starts(w, 10_000), vec![10_000]);
        let w = w.with_offset(Duration::from_secs(3));
        assert_eq!(starts(w, 2_999), vec![-7_000]);
        assert_eq!(starts(w, 3_000), vec![3_000]);
    }

    #[test]
    fn sliding_windows_cover_each_time() {
        let w = Windowing::sliding(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(starts(w, 12_000), vec![10_000, 5_000]);
        assert_eq!(starts(w, 10_000), vec![10_000, 5_000]);
        assert_eq!(starts(w, 1_000), vec![0, -5_000]);
        let w = Windowing::sliding(Duration::from_secs(10), Duration::from_secs(3));
        for t in [0u64, 1, 2_999, 3_000, 17_777] {
            for s in starts(w, t) {
                assert!(s <= t as i64 && (t as i64) < s + 10_000);
            }
            assert!(!starts(w, t).is_empty());
        }
    }

    #[test]
    fn assigner_agrees_with_windowing() {
        let cases = [
            Windowing::tumbling(Duration::from_secs(10)),
            Windowing::tumbling(Duration::from_secs(10)).with_offset(Duration::from_secs(3)),
            Windowing::sliding(Duration::from_secs(10), Duration::from_secs(3)),
            Windowing::sliding(Duration::from_secs(10), Duration::from_secs(5)).with_offset(Duration::from_secs(1)),
            Windowing::global(),
        ];
        for w in cases {
            let mut assigner = WindowAssigner::new(w);
            let mut t: u64 = 1_000;
            for step in [0u64, 1, 999, 1, 7_000, 3, 12_345, 2, 1, 30_000, 9_999, 10_000] {
                t += step;
                for time in [t, t.saturating_sub(4_321)] {
                    let mut got = Vec::new();
                    assigner.for_each_window_start(EventTime::from_millis(time), |s| got.push(s));
                    assert_eq!(got, starts(w, time), "{w:?} at {time}");
                }
            }
        }
    }

    #[test]
    fn invalid_windows_are_rejected() {
        assert!(Windowing::tumbling(Duration::ZERO).validate().is_err());
        let err = Windowing::sliding(Duration::from_secs(5), Duration::from_secs(10)).validate().unwrap_err();
        assert!(err.to_string().contains("longer than the window size"), "{err}");
        assert!(Windowing::sliding(Duration::from_secs(5), Duration::ZERO).validate().is_err());
        assert!(Windowing::sliding(Duration::from_secs(10), Duration::from_secs(5)).validate().is_ok());
    }
}
