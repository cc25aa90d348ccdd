//! `weir run interval-join`: joins two JSON-lines inputs on a key field within event-time bounds
//! (see [`weir_operators::interval_join`]).
//!
//! A left record `l` and a right record `r` match when their key fields are equal and
//! `l.time + lower <= r.time <= l.time + upper`. Keys are compared by their JSON text, so `1` and
//! `"1"` differ; a missing or `null` key field is null, and null keys never match anything (as in
//! SQL): such a record only shows up padded, in the outer (or anti) joins that keep its side.
//!
//! Each output line is `{"left": <record>|null, "right": <record>|null}` with the records as read
//! (re-serialized compactly, fields in input order); semi and anti joins write `"right": null`.
//! Lines are written in event-time order (a pair's time is the later of its two records' times, a
//! padded or semi/anti row's time is its record's), ties in text order, so the file does not
//! depend on the number of workers (not with `--checkpoint`: lines then stay at the time the join
//! emitted them, so that each belongs to the checkpoint epoch of the input that produced it).
//! Late records are written to `--late-output` as [`late_line`]s with a `"side": "left"|"right"`
//! field, ordered by the watermark they missed.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Operator};
use timely::dataflow::StreamVec;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::json_fields::{self, late_line, TimeFormat};
use super::json_input::JsonInput;
use super::json_output::{write_late_lines, write_results, OutputTarget};

/// The operator name used in progress reports and late records.
pub const OPERATOR_NAME: &str = "interval-join";

/// An interval-join job.
#[derive(Clone, Debug)]
pub struct IntervalJoinJob {
    /// The left records, their event-time field and watermark settings.
    pub left: JsonInput,
    /// The right records, their event-time field and watermark settings.
    pub right: JsonInput,
    /// The key field of the left records (`a.b` for nested).
    pub left_key_field: String,
    /// The key field of the right records.
    pub right_key_field: String,
    /// `(lower, upper)`: a pair matches if `left.time + lower <= right.time <= left.time + upper`;
    /// `None` joins on the key alone, with unbounded state (an explicit opt-in).
    pub bounds: Option<(TimeOffset, TimeOffset)>,
    /// Which rows are emitted.
    pub join_type: JoinType,
    /// Where joined rows go (JSON lines; `-` is stdout).
    pub output: OutputTarget,
    /// Where late records go (JSON lines), if anywhere.
    pub late_output: Option<String>,
    /// How times are written in late-record lines.
    pub time_format: TimeFormat,
}

/// The join key of a JSON record: the key field's JSON text, or a null that equals no other key
/// (each null-keyed record gets its own, so it never matches and is only ever padded).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JoinKey {
    /// The JSON text of a non-null key (`"a"`, `7`, `{"x":1}`).
    Json(String),
    /// A missing or null key: unique per record (side, worker that read it, sequence number).
    Null {
        /// 0 for left, 1 for right.
        side: u8,
        /// The worker that read the record.
        worker: usize,
        /// The record's number among that worker's null-keyed records of this side.
        seq: u64,
    },
}

/// A JSON record as the join carries it: its key and its compact JSON text (text, rather than a
/// `serde_json::Value`, so that it serializes with bincode across processes and into RocksDB).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JsonRow {
    /// The join key.
    pub key: JoinKey,
    /// The record, re-serialized compactly.
    pub json: String,
}

impl IntervalJoinJob {
    /// Checks the job before starting it.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.left.validate("--left")?;
        self.right.validate("--right")?;
        let stdin = |input: &JsonInput| input.kafka.is_none() && input.path == "-";
        if stdin(&self.left) && stdin(&self.right) {
            return Err(BuildError::invalid(
                "--left and --right",
                "both read standard input, which can only be read once",
                "give a file for at least one of them",
            ));
        }
        if let Some((lower, upper)) = self.bounds {
            if lower > upper {
                return Err(BuildError::invalid(
                    "--lower and --upper",
                    format!(
                        "--lower ({lower}) is after --upper ({upper}), so no pair could ever match \
                         (a pair needs left.time + lower <= right.time <= left.time + upper)"
                    ),
                    "give --lower <= --upper, e.g. --lower -5s --upper 10s",
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

    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, EventTime>,
        ctx: &QueryContext,
    ) -> Result<(), BuildError> {
        let worker = scope.index();
        let lefts = self.left.events(scope, ctx)?.map(keyed(self.left_key_field.clone(), 0, worker));
        let rights = self.right.events(scope, ctx)?.map(keyed(self.right_key_field.clone(), 1, worker));
        let key = |row: &JsonRow| row.key.clone();
        let joined = match self.bounds {
            Some((lower, upper)) => {
                lefts.join_interval(ctx, OPERATOR_NAME, rights, key, key, lower, upper, self.join_type)?
            }
            None => lefts.join_unbounded(ctx, OPERATOR_NAME, rights, key, key, self.join_type)?,
        };

        let lines = joined.rows.records.map(|event| {
            let JoinedRow { left, right } = event.data;
            let text = |row: Option<JsonRow>| row.map_or_else(|| "null".to_string(), |r| r.json);
            (event.time, format!("{{\"left\":{},\"right\":{}}}", text(left), text(right)))
        });
        // In a query that checkpoints, lines stay at the time the join emitted them: moving a line
        // to its (later) event time could carry output of one epoch's input into a later epoch,
        // which a restart from the first epoch's checkpoint would neither have committed nor
        // compute again (docs/checkpoints.md §2). The output order then follows emission.
        let retime = ctx.checkpoint().is_none();
        write_results(at_own_time(lines, retime), &self.output, ctx)?;

        if let Some(target) = &self.late_output {
            let format = self.time_format;
            let left_late = joined.late_left.map(move |late| late_json_line(late, "left", format));
            let right_late = joined.late_right.map(move |late| late_json_line(late, "right", format));
            write_late_lines(at_own_time(left_late.concat(right_late), retime), Some(target), ctx)?;
        }
        Ok(())
    }
}

/// Turns JSON records of one side into [`JsonRow`]s keyed by `field`.
fn keyed(field: String, side: u8, worker: usize) -> impl Fn(Value) -> JsonRow + 'static {
    let nulls = Cell::new(0u64);
    move |record: Value| {
        let key = match json_fields::lookup(&record, &field) {
            None | Some(Value::Null) => {
                let seq = nulls.get();
                nulls.set(seq + 1);
                JoinKey::Null { side, worker, seq }
            }
            Some(_) => JoinKey::Json(json_fields::key_of(&record, &field)),
        };
        JsonRow { key, json: record.to_string() }
    }
}

/// A late record as a [`late_line`] with the side it came from; paired with the watermark it
/// missed, the time it is written at.
fn late_json_line(late: LateRecord<JsonRow>, side: &str, format: TimeFormat) -> (EventTime, String) {
    let watermark = late.watermark;
    let line = late_line(
        late,
        |row| serde_json::from_str(&row.json).unwrap_or_else(|_| Value::from(row.json.as_str())),
        format,
    );
    // `late_line` writes one JSON object: add the side before its closing brace.
    let body = line.strip_suffix('}').unwrap_or(&line);
    (watermark, format!("{body},\"side\":\"{side}\"}}"))
}

/// Emits each line at its own time (never before the time of the batch that carries it), so the
/// JSON-lines sink, which writes epoch by epoch and sorts within an epoch, writes lines in
/// (time, text) order whatever the number of workers. Unless `retime` is false: then each line
/// stays at the time of its batch.
fn at_own_time<'scope>(
    lines: StreamVec<'scope, EventTime, (EventTime, String)>,
    retime: bool,
) -> StreamVec<'scope, EventTime, String> {
    if !retime {
        return lines.map(|(_, line)| line);
    }
    lines.unary(Pipeline, "AtOwnTime", |_, _| {
        let mut buffer: Vec<(EventTime, String)> = Vec::new();
        let mut run: Vec<String> = Vec::new();
        move |input, output| {
            input.for_each_time(|cap, data| {
                for batch in data {
                    buffer.append(batch);
                }
                buffer.sort_unstable_by_key(|(time, _)| *time);
                let mut lines = buffer.drain(..).peekable();
                while let Some((time, line)) = lines.next() {
                    run.push(line);
                    while let Some((_, line)) = lines.next_if(|(next, _)| *next == time) {
                        run.push(line);
                    }
                    let time = time.max(*cap.time());
                    output.session(&cap.delayed(&time, 0)).give_container(&mut run);
                    run.clear();
                }
            })
        }
    })
}
