//! Event time: milliseconds since the Unix epoch, used both as record time and as timely's timestamp.
//!
//! Because every dataflow in Weir is timestamped with [`EventTime`], an operator's input frontier is a
//! lower bound on the event times it can still receive: **the frontier is the watermark**.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::order::{PartialOrder, TotalOrder};
use timely::progress::timestamp::{PathSummary, Refines, Timestamp};

/// A point in event time: milliseconds since the Unix epoch (UTC). Prints as ISO-8601.
///
/// ```
/// use weir_runtime::time::EventTime;
/// let t = EventTime::from_millis(1_700_000_000_000);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.000Z");
/// assert_eq!(EventTime::parse("2023-11-14T22:13:20Z").unwrap(), t);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventTime(u64);

impl EventTime {
    /// The earliest representable time (the epoch itself).
    pub const MIN: EventTime = EventTime(0);
    /// The latest representable time.
    pub const MAX: EventTime = EventTime(u64::MAX);

    /// Builds a time from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        EventTime(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The current wall-clock time (processing time), as an event time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        EventTime(since.as_millis() as u64)
    }

    /// This time moved back by `delay`, stopping at the epoch.
    pub fn saturating_sub(self, delay: Duration) -> Self {
        EventTime(self.0.saturating_sub(delay.as_millis() as u64))
    }

    /// This time moved forward by `delay`, stopping at [`EventTime::MAX`].
    pub fn saturating_add(self, delay: Duration) -> Self {
        EventTime(self.0.saturating_add(delay.as_millis() as u64))
    }

    /// How far this time lies before `later` (zero if it does not).
    pub fn until(self, later: EventTime) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// The largest multiple of `tick` (counted from the epoch) that is not after this time.
    /// A zero tick leaves the time as it is.
    pub fn floor_to(self, tick: Duration) -> Self {
        let tick = tick.as_millis() as u64;
        if tick <= 1 {
            self
        } else {
            EventTime(self.0 - self.0 % tick)
        }
    }

    /// Parses an ISO-8601 / RFC 3339 timestamp (`2024-01-01T00:00:00Z`, with optional fraction and
    /// offset; a missing offset means UTC) or a plain integer of milliseconds.
    pub fn parse(text: &str) -> Result<Self, TimeParseError> {
        let text = text.trim();
        if let Ok(millis) = text.parse::<u64>() {
            return Ok(EventTime(millis));
        }
        let parsed = chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                    .map(|t| t.and_utc().timestamp_millis())
            })
            .map_err(|_| {
                TimeParseError::new(
                    text,
                    "an ISO-8601 timestamp such as 2024-01-01T00:00:00Z or an integer of milliseconds",
                )
            })?;
        u64::try_from(parsed).map(EventTime).map_err(|_| TimeParseError::new(text, "a time after 1970-01-01T00:00:00Z"))
    }

    /// Reads an event time from a JSON value: an integer (milliseconds since the epoch) or an
    /// ISO-8601 string.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, TimeParseError> {
        match value {
            serde_json::Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
                .map(EventTime)
                .ok_or_else(|| TimeParseError::new(&n.to_string(), "a non-negative integer of milliseconds")),
            serde_json::Value::String(s) => EventTime::parse(s),
            other => Err(TimeParseError::new(&other.to_string(), "an integer of milliseconds or an ISO-8601 string")),
        }
    }

    /// Formats as ISO-8601 UTC with milliseconds, e.g. `2024-01-01T00:00:10.000Z`.
    pub fn to_iso8601(self) -> String {
        match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0 as i64) {
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            None => format!("{}ms", self.0),
        }
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

impl fmt::Debug for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.0, self.to_iso8601())
    }
}

/// A time that could not be parsed, with what was seen and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read event time from {seen:?}: expected {expected}")]
pub struct TimeParseError {
    /// The text that was seen.
    pub seen: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl TimeParseError {
    fn new(seen: &str, expected: &'static str) -> Self {
        let mut seen = seen.to_string();
        if seen.len() > 80 {
            seen.truncate(80);
            seen.push('…');
        }
        TimeParseError { seen, expected }
    }
}

/// How an event time advances along a dataflow path (timely's path summary for [`EventTime`]).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventTimeAdvance(pub u64);

impl PartialOrder for EventTime {
    #[inline]
    fn less_equal(&self, other: &Self) -> bool {
        self.0 <= other.0
    }
}
impl TotalOrder for EventTime {}

impl PartialOrder for EventTimeAdvance {
    #[inline]
    fn less_equal(&self, other: &Self) -> bool {
        self.0 <= other.0
    }
}
impl TotalOrder for EventTimeAdvance {}

impl PathSummary<EventTime> for EventTimeAdvance {
    #[inline]
    fn results_in(&self, src: &EventTime) -> Option<EventTime> {
        src.0.checked_add(self.0).map(EventTime)
    }
    #[inline]
    fn followed_by(&self, other: &Self) -> Option<Self> {
        self.0.checked_add(other.0).map(EventTimeAdvance)
    }
}

impl Timestamp for EventTime {
    type Summary = EventTimeAdvance;
    fn minimum() -> Self {
        EventTime::MIN
    }
}

impl Refines<()> for EventTime {
    fn to_inner(_: ()) -> Self {
        EventTime::MIN
    }
    fn to_outer(self) {}
    fn summarize(_: EventTimeAdvance) {}
}

impl differential_dataflow::lattice::Lattice for EventTime {
    #[inline]
    fn join(&self, other: &Self) -> Self {
        std::cmp::max(*self, *other)
    }
    #[inline]
    fn meet(&self, other: &Self) -> Self {
        std::cmp::min(*self, *other)
    }
}

/// Parses a human duration such as `10s`, `500ms`, `1m`, `2h`, `1d` or `1m30s`.
/// A bare number is milliseconds. Used by the CLI and configuration files.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(weir_runtime::time::parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(weir_runtime::time::parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationParseError> {
    parse_signed_duration(text).and_then(|(negative, d)| {
        if negative {
            Err(DurationParseError { seen: text.to_string(), reason: "a negative duration is not allowed here" })
        } else {
            Ok(d)
        }
    })
}

/// Parses a duration that may be negative (`-5s`), returning the sign separately.
pub fn parse_signed_duration(text: &str) -> Result<(bool, Duration), DurationParseError> {
    let err = |reason| DurationParseError { seen: text.to_string(), reason };
    let trimmed = text.trim();
    let (negative, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if body.is_empty() {
        return Err(err("expected a number with a unit such as 10s, 500ms, 5m, 2h or 1d"));
    }
    if let Ok(millis) = body.parse::<u64>() {
        return Ok((negative, Duration::from_millis(millis)));
    }
    let mut total_ms: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number before each unit"));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| err("not a number"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: f64 = match unit.trim() {
            "ms" => 1.0,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
            "h" | "hour" | "hours" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            "" => return Err(err("missing unit: use ms, s, m, h or d")),
            _ => return Err(err("unknown unit: use ms, s, m, h or d")),
        };
        total_ms += (number * scale).round() as u128;
    }
    Ok((negative, Duration::from_millis(total_ms as u64)))
}

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read duration {seen:?}: {reason}")]
pub struct DurationParseError {
    /// The text that was seen.
    pub seen: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip_and_integers() {
        let t = EventTime::parse("2024-01-01T00:00:10.5Z").unwrap();
        assert_eq!(t.as_millis(), 1_704_067_210_500);
        assert_eq!(t.to_string(), "2024-01-01T00:00:10.500Z");
        assert_eq!(EventTime::parse("2024-01-01T01:00:10.5+01:00").unwrap(), t);
        assert_eq!(EventTime::parse("2024-01-01T00:00:10.5").unwrap(), t);
        assert_eq!(EventTime::from_json(&serde_json::json!(12)).unwrap(), EventTime::from_millis(12));
        assert!(EventTime::from_json(&serde_json::json!(-3)).is_err());
        assert!(EventTime::from_json(&serde_json::json!(null)).is_err());
        assert!(EventTime::parse("yesterday").is_err());
    }

    #[test]
    fn floor_and_durations() {
        assert_eq!(EventTime::from_millis(12_345).floor_to(Duration::from_secs(1)).as_millis(), 12_000);
        assert_eq!(EventTime::from_millis(5).saturating_sub(Duration::from_secs(1)), EventTime::MIN);
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1h2m").unwrap(), Duration::from_secs(3720));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_signed_duration("-5s").unwrap(), (true, Duration::from_secs(5)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
