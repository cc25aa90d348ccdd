//! `weir run session-count`: records per session window per key, from JSON lines.
//!
//! A session of a key is a run of its records in which each follows the previous one by less
//! than the gap; it spans `[first, last + gap)` (see [`weir_operators::session_window`]).
//! Output lines are those of `window-count`:
//! `{"window_start":..,"window_end":..,"key":..,"count":N}`.

use std::time::Duration;

use serde_json::Value;
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_operators::session_window::validate_session;
use weir_runtime::prelude::*;

use super::json_fields::{self, TimeFormat};
use super::json_input::JsonInput;
use super::json_output::{write_late, write_results, OutputTarget};
use super::window_count::result_line;

/// The operator name used in progress reports and late records.
pub const OPERATOR_NAME: &str = "session-count";

/// A session-window count job.
#[derive(Clone, Debug)]
pub struct SessionCount {
    /// The records, their event-time field and the watermark settings.
    pub input: JsonInput,
    /// The field holding the key (its JSON text is the key: `1` and `"1"` differ, absent = `null`).
    pub key_field: String,
    /// The session gap: a record less than this after the previous one of its key joins its session.
    pub gap: Duration,
    /// Append (each session once, final) or update (changed sessions per epoch).
    pub output_mode: OutputMode,
    /// Where results go (JSON lines; `-` is stdout).
    pub output: OutputTarget,
    /// Where late records go (JSON lines), if anywhere.
    pub late_output: Option<String>,
    /// How times are written.
    pub time_format: TimeFormat,
}

impl SessionCount {
    /// Checks the job before starting it.
    pub fn validate(&self) -> Result<(), BuildError> {
        validate_session(self.gap, self.output_mode)?;
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
        let events = self.input.events(scope, ctx)?;
        let sessions =
            events.session_count(ctx, OPERATOR_NAME, self.gap, self.output_mode, move |record: &Value| {
                json_fields::key_of(record, &key_field)
            })?;
        let lines = sessions.results.map(move |row| result_line(&row, format).to_string());
        write_results(lines, &self.output, ctx)?;
        write_late(sessions.late, self.late_output.as_deref(), ctx, Value::clone, format)
    }
}
