//! Reading event time and keys out of JSON records, and writing times back out.

use serde_json::{json, Value};
use weir_runtime::event::LateRecord;
use weir_runtime::time::EventTime;

/// The key of a JSON record: the JSON text of the field (`"a"` for a string, `7` for a number,
/// `null` when absent), so that `1` and `"1"` stay distinct and the output keeps the input's type.
pub fn key_of(record: &Value, field: &str) -> String {
    match lookup(record, field) {
        Some(Value::String(s)) => serde_json::to_string(s).unwrap_or_default(),
        Some(other) => other.to_string(),
        None => "null".to_string(),
    }
}

/// The event time of a JSON record: an integer of milliseconds or an ISO-8601 string.
pub fn time_of(record: &Value, field: &str) -> Option<EventTime> {
    lookup(record, field).and_then(|v| EventTime::from_json(v).ok())
}

/// A field by name; a dotted name (`a.b`) looks into nested objects.
pub fn lookup<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    if let Some(v) = record.get(field) {
        return Some(v);
    }
    field.split('.').try_fold(record, |v, part| v.get(part))
}

/// How times are written in output lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TimeFormat {
    /// Milliseconds since the epoch, as integers.
    #[default]
    Ms,
    /// ISO-8601 UTC strings.
    Iso,
}

impl TimeFormat {
    /// Writes a time (ms since the epoch, possibly negative) as JSON in this format.
    pub fn json(self, millis: i64) -> Value {
        match self {
            TimeFormat::Ms => Value::from(millis),
            TimeFormat::Iso => match chrono_iso(millis) {
                Some(text) => Value::from(text),
                None => Value::from(millis),
            },
        }
    }
}

fn chrono_iso(millis: i64) -> Option<String> {
    if millis >= 0 {
        Some(EventTime::from_millis(millis as u64).to_iso8601())
    } else {
        None
    }
}

/// One late record as a JSON line: the record, its event time, the watermark it missed, by how
/// much, and which operator dropped it.
pub fn late_line<D>(late: LateRecord<D>, record: impl Fn(&D) -> Value, format: TimeFormat) -> String {
    json!({
        "record": record(&late.record),
        "event_time": format.json(late.event_time.as_millis() as i64),
        "watermark": format.json(late.watermark.as_millis() as i64),
        "lateness_ms": late.lateness_ms,
        "operator": late.operator,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_keep_their_json_type() {
        assert_eq!(key_of(&json!({"k": "a"}), "k"), "\"a\"");
        assert_eq!(key_of(&json!({"k": 1}), "k"), "1");
        assert_eq!(key_of(&json!({"k": "1"}), "k"), "\"1\"");
        assert_eq!(key_of(&json!({}), "k"), "null");
        assert_eq!(key_of(&json!({"a": {"b": 2}}), "a.b"), "2");
    }

    #[test]
    fn times_from_integers_and_strings() {
        assert_eq!(time_of(&json!({"ts": 5}), "ts"), Some(EventTime::from_millis(5)));
        assert_eq!(time_of(&json!({"ts": "1970-01-01T00:00:01Z"}), "ts"), Some(EventTime::from_millis(1000)));
        assert_eq!(time_of(&json!({"ts": "soon"}), "ts"), None);
        assert_eq!(TimeFormat::Iso.json(1000), json!("1970-01-01T00:00:01.000Z"));
    }
}
