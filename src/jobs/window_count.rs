//! `weir run window-count`: a windowed count per key from JSON lines or the rate source, with
//! watermarks, output modes and a late-record output.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use weir_connectors::console::ConsoleSink;
use weir_connectors::files::JsonLinesSource;
use weir_connectors::rate::{RateRow, RateSource};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::json_fields::{self, TimeFormat};
use super::json_output::{write_late, write_results, KafkaOutput, OutputTarget};
use super::kafka_input::KafkaInput;

/// Where the records come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// JSON lines from a file, or stdin for `-`.
    JsonLines {
        /// The file (`-` is stdin).
        path: String,
        /// The field holding the event time (ms integer or ISO-8601 string).
        time_field: String,
        /// The field holding the key (string or number).
        key_field: String,
    },
    /// JSON (or Avro, as JSON) values of Kafka records.
    Kafka {
        /// The topics and how to read and decode them.
        kafka: KafkaInput,
        /// The field holding the event time (ms integer or ISO-8601 string).
        time_field: String,
        /// The field holding the key (string or number).
        key_field: String,
    },
    /// The rate source: rows `(timestamp, value)`, keyed by `value % keys`.
    Rate {
        /// Rows per second (per source, over all partitions).
        rows_per_second: u64,
        /// Number of distinct keys.
        keys: u64,
        /// Partitions of the source.
        partitions: usize,
        /// Stop after this many rows (a bounded run).
        rows: Option<u64>,
        /// Generate as fast as possible (event times still follow the schedule).
        unthrottled: bool,
        /// Out-of-orderness: each row's timestamp moves back by up to this much.
        max_skew: Duration,
    },
}

/// Where results go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// JSON lines to a file, or stdout for `-`.
    JsonLines(String),
    /// One Kafka record per result row (its value the JSON line, its key the row's key).
    Kafka(KafkaOutput),
    /// Exactly-once files in a directory, one per checkpoint epoch and worker (the query must
    /// checkpoint).
    Files(String),
    /// Spark-style tables on stdout, one per epoch.
    Console {
        /// Rows shown per epoch.
        num_rows: usize,
        /// Whether long cells are cut.
        truncate: bool,
    },
}

/// A windowed count job.
#[derive(Clone, Debug)]
pub struct WindowCount {
    /// The records.
    pub input: Input,
    /// The windows.
    pub windowing: Windowing,
    /// The allowed lateness.
    pub watermark_delay: Duration,
    /// When an input partition with no data stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    /// Which rows are emitted, when.
    pub output_mode: OutputMode,
    /// Where results go.
    pub output: Output,
    /// Where late records go (JSON lines), if anywhere.
    pub late_output: Option<String>,
    /// How times are written.
    pub time_format: TimeFormat,
    /// Whether records with an unreadable event time are dropped and counted instead of failing.
    pub drop_invalid_time: bool,
}

/// The operator name used in progress reports and late records.
pub const OPERATOR_NAME: &str = "window-count";

impl WindowCount {
    /// Checks the job before starting it.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.windowing.validate()?;
        self.output_mode.validate(&self.windowing)?;
        if let Input::Rate { rows_per_second: 0, unthrottled: false, .. } = self.input {
            return Err(BuildError::invalid(
                "--rows-per-second",
                "a rate of 0 rows per second produces nothing",
                "use a positive rate",
            ));
        }
        if let Input::Rate { keys: 0, .. } = self.input {
            return Err(BuildError::invalid("--keys", "zero keys leaves no group to count into", "use at least 1 key"));
        }
        if let Input::JsonLines { path, .. } = &self.input {
            if path != "-" && !PathBuf::from(path).is_file() {
                return Err(BuildError::invalid(
                    "--input",
                    format!("{path} is not a readable file"),
                    "give a JSON-lines file, or - for stdin",
                ));
            }
        }
        Ok(())
    }

    /// Starts the job as `query` (name, workers, progress settings) and returns its handle.
    pub fn start(self, query: Query) -> Result<QueryHandle, BuildError> {
        self.validate()?;
        query.start(move |scope, ctx| self.build(scope, ctx))
    }

    fn watermark_options(&self) -> WatermarkOptions {
        super::json_input::watermark_options(self.watermark_delay, self.idle_timeout, self.drop_invalid_time)
    }

    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, EventTime>,
        ctx: &QueryContext,
    ) -> Result<(), BuildError> {
        let format = self.time_format;
        match &self.input {
            Input::JsonLines { time_field, key_field, .. } | Input::Kafka { time_field, key_field, .. } => {
                let events = match &self.input {
                    Input::Kafka { kafka, .. } => kafka.events(scope, ctx, time_field, self.watermark_options())?,
                    Input::JsonLines { path, .. } => {
                        let time_field = time_field.clone();
                        JsonLinesSource::<Value>::from_arg(path).events(
                            scope,
                            ctx,
                            move |record| json_fields::time_of(record, &time_field),
                            self.watermark_options(),
                        )
                    }
                    Input::Rate { .. } => unreachable!("matched above"),
                };
                let key_field = key_field.clone();
                let counts =
                    events.window_count(ctx, OPERATOR_NAME, self.windowing, self.output_mode, move |record| {
                        json_fields::key_of(record, &key_field)
                    })?;
                self.write(counts.results, ctx)?;
                write_late(counts.late, self.late_output.as_deref(), ctx, Value::clone, format)
            }
            Input::Rate { rows_per_second, keys, partitions, rows, unthrottled, max_skew } => {
                let mut source = RateSource::new(*rows_per_second).num_partitions(*partitions).max_skew(*max_skew);
                if let Some(rows) = rows {
                    source = source.row_limit(*rows);
                }
                if *unthrottled {
                    source = source.unthrottled();
                }
                let keys = *keys;
                let events = source.events(scope, ctx, self.watermark_options());
                let counts = events.window_count(
                    ctx,
                    OPERATOR_NAME,
                    self.windowing,
                    self.output_mode,
                    move |row: &RateRow| (row.value % keys).to_string(),
                )?;
                self.write(counts.results, ctx)?;
                let record = |r: &RateRow| json!({"timestamp": r.timestamp.as_millis(), "value": r.value});
                write_late(counts.late, self.late_output.as_deref(), ctx, record, format)
            }
        }
    }

    fn write<'scope>(
        &self,
        results: StreamVec<'scope, EventTime, WindowResult<String, u64>>,
        ctx: &QueryContext,
    ) -> Result<(), BuildError> {
        let format = self.time_format;
        match &self.output {
            Output::JsonLines(path) => {
                let lines = results.map(move |row| result_line(&row, format).to_string());
                write_results(lines, &OutputTarget::JsonLines(path.clone()), ctx)
            }
            Output::Kafka(kafka) => {
                let lines = results.map(move |row| result_line(&row, format).to_string());
                write_results(lines, &OutputTarget::Kafka(kafka.clone()), ctx)
            }
            Output::Files(dir) => {
                let lines = results.map(move |row| result_line(&row, format).to_string());
                write_results(lines, &OutputTarget::Files(dir.clone()), ctx)
            }
            Output::Console { num_rows, truncate } => {
                let rows = results.map(move |row| TableRow {
                    window_start: format.json(row.window_start).to_string().trim_matches('"').to_string(),
                    window_end: format.json(row.window_end).to_string().trim_matches('"').to_string(),
                    key: row.key,
                    count: row.value,
                });
                ConsoleSink::new().num_rows(*num_rows).truncate(*truncate).write(rows, ctx, "console")
            }
        }
    }
}

/// A result row as shown in console tables (times already formatted).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct TableRow {
    window_start: String,
    window_end: String,
    key: String,
    count: u64,
}

/// One result as the JSON object written per line: `window_start`, `window_end`, `key`, `count`.
pub fn result_line(row: &WindowResult<String, u64>, format: TimeFormat) -> Value {
    let key: Value = serde_json::from_str(&row.key).unwrap_or(Value::String(row.key.clone()));
    json!({
        "window_start": format.json(row.window_start),
        "window_end": format.json(row.window_end),
        "key": key,
        "count": row.value,
    })
}
