//! `weir run attribution`: click attribution, the classic streaming pipeline of an ad platform.
//! One stream of JSON events (a file, stdin or Kafka topics) holds impressions and clicks, told
//! apart by a type field; the job
//!
//! 1. **joins** every click with the impressions of the same key (ad, campaign, ...) at most
//!    `within` before it: an interval join, `impression.time <= click.time <= impression.time +
//!    within` (operator `attribution-join`);
//! 2. keeps, per impression, only its **first click** (the earliest; among clicks at the same
//!    instant, the one whose JSON text sorts first): keyed state per impression with an
//!    event-time timer at `impression.time + within` that clears the key once no later click can
//!    match (`process_with_state`, operator `first-click`);
//! 3. **counts** the clicked impressions per key in tumbling windows of the click's event time
//!    (`window_count` in append mode, operator `attributed-clicks`).
//!
//! Output lines have the shape of `window-count`:
//! `{"window_start":..,"window_end":..,"key":..,"count":N}`, one per window and key with at
//! least one clicked impression, written once the watermark has passed the window's end: `N`
//! impressions of `key` got their first click (within `within`) in `[window_start, window_end)`.
//!
//! Records whose type is neither the impression nor the click type, and records without a key
//! (missing or `null` key field), are ignored. An impression is identified by its whole record
//! (compact JSON text): two identical impression records count as one impression. Records late
//! at their source partition (below its watermark) take no part; they are counted by the join
//! and written to the late output, if one is given (as [`late_line`]s naming the join). The
//! operators after the join never see late records: their inputs are stamped at or before their
//! event times.
//!
//! Every stage is deterministic in event time (no processing-time timeouts), so the output does
//! not depend on the number of workers, batch boundaries or restarts from a checkpoint.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Concat;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::json_fields::{self, late_line, TimeFormat};
use super::json_input::JsonInput;
use super::json_output::{write_late_lines, write_results, OutputTarget};
use super::window_count::result_line;

/// The name of the interval join (progress reports, late records).
pub const JOIN_NAME: &str = "attribution-join";
/// The name of the keyed-state operator that keeps each impression's first click.
pub const FIRST_CLICK_NAME: &str = "first-click";
/// The name of the window count.
pub const WINDOW_NAME: &str = "attributed-clicks";

/// A click-attribution job.
#[derive(Clone, Debug)]
pub struct Attribution {
    /// The impressions and clicks, their event-time field and the watermark settings.
    pub input: JsonInput,
    /// The field holding the key impressions and clicks are matched on (its JSON text: `1` and
    /// `"1"` differ).
    pub key_field: String,
    /// The field telling impressions from clicks.
    pub type_field: String,
    /// The value of `type_field` that makes a record an impression.
    pub impression_type: String,
    /// The value of `type_field` that makes a record a click.
    pub click_type: String,
    /// A click is attributed to impressions of its key at most this long before it (and not after it).
    pub within: Duration,
    /// The tumbling window (of click time) the clicked impressions are counted in.
    pub window: Duration,
    /// Where result lines go.
    pub output: OutputTarget,
    /// Where late records go (JSON lines), if anywhere.
    pub late_output: Option<String>,
    /// How times are written.
    pub time_format: TimeFormat,
}

/// An impression or a click as the pipeline carries it: the key's JSON text, the event time and
/// the record's compact JSON text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AdEvent {
    /// The key field's JSON text.
    pub key: String,
    /// The event time, ms since the epoch.
    pub time_ms: u64,
    /// The record, re-serialized compactly.
    pub json: String,
}

impl AdEvent {
    fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or_else(|_| Value::from(self.json.as_str()))
    }
}

impl Attribution {
    /// Checks the job before starting it.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.input.validate("--input")?;
        if self.within.is_zero() {
            return Err(BuildError::invalid(
                "--within",
                "a zero attribution interval only matches clicks at exactly the impression's millisecond",
                "give the longest time from an impression to a click that still counts, e.g. --within 30s",
            ));
        }
        if self.window.as_millis() == 0 {
            return Err(BuildError::invalid("--window", "the window is empty", "give a window size, e.g. --window 1m"));
        }
        if self.impression_type == self.click_type {
            return Err(BuildError::invalid(
                "--impression-type and --click-type",
                format!("both are {:?}, so impressions and clicks cannot be told apart", self.click_type),
                "give two different values of --type-field",
            ));
        }
        Ok(())
    }

    /// Starts the job as `query` (name, workers, progress and checkpoint settings) and returns its
    /// handle.
    pub fn start(self, query: Query) -> Result<QueryHandle, BuildError> {
        self.validate()?;
        query.start(move |scope, ctx| self.build(scope, ctx))
    }

    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, EventTime>,
        ctx: &QueryContext,
    ) -> Result<(), BuildError> {
        let (key_field, time_field, type_field) =
            (self.key_field.clone(), self.input.time_field.clone(), self.type_field.clone());
        // Impressions and clicks with a key, as `AdEvent`s; anything else is left out.
        let typed = self.input.events(scope, ctx)?.flat_map(move |record: Value| {
            let kind = match json_fields::lookup(&record, &type_field) {
                Some(Value::String(kind)) => kind.clone(),
                Some(Value::Null) | None => return None,
                Some(other) => other.to_string(),
            };
            match json_fields::lookup(&record, &key_field) {
                None | Some(Value::Null) => return None,
                Some(_) => {}
            }
            let time_ms = json_fields::time_of(&record, &time_field)?.as_millis();
            let key = json_fields::key_of(&record, &key_field);
            Some((kind, AdEvent { key, time_ms, json: record.to_string() }))
        });
        let (impression_type, click_type) = (self.impression_type.clone(), self.click_type.clone());
        let impressions = typed.clone().flat_map(move |(kind, event)| (kind == impression_type).then_some(event));
        let clicks = typed.flat_map(move |(kind, event)| (kind == click_type).then_some(event));

        // 1. Every (impression, click) pair of a key with the click at most `within` after it.
        let key = |event: &AdEvent| event.key.clone();
        let joined = impressions.join_interval(
            ctx,
            JOIN_NAME,
            clicks,
            key,
            key,
            TimeOffset::ZERO,
            self.within,
            JoinType::Inner,
        )?;
        // A pair's event time is its click's time (the later of the two).
        let pairs = joined.rows.flat_map(|row| Some((row.left?, row.right?)));

        // 2. Per impression, its first click only; the key is cleared once no click can match it.
        let within_ms = self.within.as_millis() as u64;
        let first_clicks =
            pairs.key_by(|(impression, _): &(AdEvent, AdEvent)| impression.json.clone()).process_with_state(
                ctx,
                FIRST_CLICK_NAME,
                move |_, mut pairs, state: &mut KeyedState<bool>, out: &mut Vec<String>| {
                    if state.has_timed_out() {
                        state.remove();
                        return;
                    }
                    if state.exists() {
                        return; // an earlier click of this impression was attributed already
                    }
                    // The pairs of one call share the click's time; they come sorted, so the first
                    // is the click whose text sorts first.
                    if let Some((impression, _click)) = pairs.next() {
                        out.push(impression.key);
                        state.update(true);
                        state.set_timer(EventTime::from_millis(impression.time_ms.saturating_add(within_ms)));
                    }
                },
            )?;

        // 3. Clicked impressions per key and tumbling window of the click's time.
        let counts = first_clicks.output.window_count(
            ctx,
            WINDOW_NAME,
            Windowing::tumbling(self.window),
            OutputMode::Append,
            String::clone,
        )?;
        let format = self.time_format;
        write_results(counts.results.map(move |row| result_line(&row, format).to_string()), &self.output, ctx)?;

        let late = joined
            .late_left
            .concat(joined.late_right)
            .map(move |late: LateRecord<AdEvent>| late_line(late, AdEvent::value, format));
        write_late_lines(late, self.late_output.as_deref(), ctx)
    }
}
