//! `weir run distinct-count`: the number of distinct values of a field per event-time window
//! (and per key), exact or approximate (HyperLogLog++), from JSON lines.
//!
//! Values are compared by their JSON text: `1`, `1.0` and `"1"` are three different values, object
//! fields compare in the order they were written, and a record without the value field counts as
//! `null` (like an explicit `null`). Output lines are those of `window-count`:
//! `{"window_start":..,"window_end":..,"key":..,"count":N}`, with `key` `null` when no key field
//! is given (one group per window).

use serde_json::Value;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use weir_operators::hll::{precision_for_rsd, HllError, MAX_PRECISION, MIN_PRECISION};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::json_fields::{self, TimeFormat};
use super::json_input::JsonInput;
use super::json_output::{write_late, write_results, OutputTarget};
use super::window_count::result_line;

/// The operator name used in progress reports and late records.
pub const OPERATOR_NAME: &str = "distinct-count";

/// How distinct values are counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Counting {
    /// Exactly: every distinct value of every open window is kept.
    Exact,
    /// With a HyperLogLog++ sketch of `2^precision` registers per window and key: relative
    /// standard error `1.04 / sqrt(2^precision)`, exact or off by one below 100 values.
    Approximate {
        /// The sketch precision, 4..=18 (9 is Spark's default, rsd 0.05).
        precision: u8,
    },
}

impl Counting {
    /// Approximate counting with the precision Spark picks for `rsd` (0.05 → 9).
    pub fn approximate_rsd(rsd: f64) -> Result<Self, HllError> {
        Ok(Counting::Approximate { precision: precision_for_rsd(rsd)? })
    }
}

/// A distinct-count job.
#[derive(Clone, Debug)]
pub struct DistinctCount {
    /// The records, their event-time field and the watermark settings.
    pub input: JsonInput,
    /// The field holding the key (its JSON text; absent = `null`); `None`: one group per window.
    pub key_field: Option<String>,
    /// The field whose distinct values are counted (its JSON text; absent = `null`).
    pub value_field: String,
    /// The windows.
    pub windowing: Windowing,
    /// Which rows are emitted, when.
    pub output_mode: OutputMode,
    /// Exact or approximate.
    pub counting: Counting,
    /// Where results go (JSON lines; `-` is stdout).
    pub output: OutputTarget,
    /// Where late records go (JSON lines), if anywhere.
    pub late_output: Option<String>,
    /// How times are written.
    pub time_format: TimeFormat,
}

impl DistinctCount {
    /// Checks the job before starting it.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.windowing.validate()?;
        self.output_mode.validate(&self.windowing)?;
        if let Counting::Approximate { precision } = self.counting {
            if !(MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
                return Err(HllError::PrecisionOutOfRange { precision }.into());
            }
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
        let events = self.input.events(scope, ctx)?;
        let key_field = self.key_field.clone();
        let key_of = move |record: &Value| match &key_field {
            Some(field) => json_fields::key_of(record, field),
            None => "null".to_string(),
        };
        let value_field = self.value_field.clone();
        let value_of = move |record: &Value| json_fields::key_of(record, &value_field);
        let (windowing, mode) = (self.windowing, self.output_mode);
        let counted = match self.counting {
            Counting::Exact => {
                events.window_aggregate(ctx, OPERATOR_NAME, windowing, mode, key_of, CountDistinct::new(value_of))?
            }
            Counting::Approximate { precision } => {
                let approx = ApproxCountDistinct::new(value_of).precision(precision)?;
                events.window_aggregate(ctx, OPERATOR_NAME, windowing, mode, key_of, approx)?
            }
        };
        self.write(counted, ctx)
    }

    fn write<'scope>(
        &self,
        counted: Aggregated<'scope, String, u64, Value>,
        ctx: &QueryContext,
    ) -> Result<(), BuildError> {
        let format = self.time_format;
        let lines: StreamVec<'scope, EventTime, String> =
            counted.results.map(move |row| result_line(&row, format).to_string());
        write_results(lines, &self.output, ctx)?;
        write_late(counted.late, self.late_output.as_deref(), ctx, Value::clone, format)
    }
}
