//! `weir run dedup`: drops duplicate JSON records (same key field) within an event-time bound.
//!
//! The first record per key passes (earliest event time; records of one key at the same event
//! time are ordered by their JSON text and the least passes); later records of the key less than
//! `within` after the last passed one are dropped; the first one at or after that bound passes
//! and starts a new bound (see [`weir_operators::dedup`]). A record without the key field has the
//! key `null`, and all such records deduplicate together, like any other key (as Spark's
//! `dropDuplicates` treats null). Output lines are the passed input lines themselves, byte for
//! byte (without surrounding whitespace).

use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::value::RawValue;
use serde_json::Value;
use timely::dataflow::operators::vec::Map;
use weir_connectors::files::JsonLinesSource;
use weir_operators::dedup::validate_within;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::json_fields::{self, TimeFormat};
use super::json_input::JsonInput;
use super::json_output::{write_late, write_results, OutputTarget};

/// The operator name used in progress reports and late records.
pub const OPERATOR_NAME: &str = "dedup";

/// How long a key's duplicates are dropped for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Duplicates less than this after the last passed record of the key (state is evicted).
    Within(Duration),
    /// Forever: only the first record per key ever passes (state grows with the keys).
    Unbounded,
}

/// A deduplication job.
#[derive(Clone, Debug)]
pub struct DedupJob {
    /// The records, their event-time field and the watermark settings.
    pub input: JsonInput,
    /// The field holding the key (its JSON text is the key: `1` and `"1"` differ, absent = `null`).
    pub key_field: String,
    /// How long duplicates are dropped for.
    pub bound: Bound,
    /// Where passed records go (JSON lines; `-` is stdout).
    pub output: OutputTarget,
    /// Where late records go (JSON lines), if anywhere.
    pub late_output: Option<String>,
    /// How times are written in late-record lines.
    pub time_format: TimeFormat,
}

/// A JSON record as the dedup operator carries it: (key text, line text). Ordered by key and
/// then by text, which breaks ties between records of one key at the same event time.
type Keyed = (String, String);

/// One input line: its text exactly as read (to write it out unchanged) and its parsed value
/// (to read the event time and the key from).
#[derive(Clone)]
pub struct JsonLine {
    /// The line's JSON text, as read.
    pub text: String,
    /// The parsed value.
    pub value: Value,
}

impl std::fmt::Debug for JsonLine {
    /// The line's text (as shown in error messages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for JsonLine {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let value = serde_json::from_str(raw.get()).map_err(De::Error::custom)?;
        Ok(JsonLine { text: raw.get().to_string(), value })
    }
}

impl DedupJob {
    /// Checks the job before starting it.
    pub fn validate(&self) -> Result<(), BuildError> {
        if let Bound::Within(within) = self.bound {
            validate_within(within)?;
        }
        self.input.validate("--input")
    }

    /// Starts the job as `query` (name, workers, progress settings) and returns its handle.
    pub fn start(self, query: Query) -> Result<QueryHandle, BuildError> {
        self.validate()?;
        query.start(move |scope, ctx| self.build(scope, ctx))
    }

    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, EventTime>,
        ctx: &QueryContext,
    ) -> Result<(), BuildError> {
        let format = self.time_format;
        let key_field = self.key_field.clone();
        let time_field = self.input.time_field.clone();
        // Passed records are written as they were read: the line's own text for files, the
        // value re-rendered as JSON for Kafka.
        let events = match &self.input.kafka {
            Some(_) => self
                .input
                .events(scope, ctx)?
                .map(move |value| (json_fields::key_of(&value, &key_field), value.to_string())),
            None => JsonLinesSource::<JsonLine>::from_arg(&self.input.path)
                .events(
                    scope,
                    ctx,
                    move |line: &JsonLine| json_fields::time_of(&line.value, &time_field),
                    self.input.watermark_options(),
                )
                .map(move |line| (json_fields::key_of(&line.value, &key_field), line.text)),
        };
        let key_of = |record: &Keyed| record.0.clone();
        let unique = match self.bound {
            Bound::Within(within) => events.dedup(ctx, OPERATOR_NAME, key_of, within)?,
            Bound::Unbounded => events.dedup_unbounded(ctx, OPERATOR_NAME, key_of)?,
        };
        let lines = unique.records.map(|event| event.data.1);
        write_results(lines, &self.output, ctx)?;
        let record = |(_, text): &Keyed| serde_json::from_str(text).unwrap_or_else(|_| Value::from(text.as_str()));
        write_late(unique.late, self.late_output.as_deref(), ctx, record, format)
    }
}
