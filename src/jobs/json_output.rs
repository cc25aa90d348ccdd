//! The outputs of the JSON-lines jobs: result lines to a file or stdout, and late records, as
//! [`late_line`]s, to an optional second file.

use serde_json::Value;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use weir_connectors::jsonl::JsonLinesSink;
use weir_runtime::prelude::*;

use super::json_fields::{late_line, TimeFormat};

/// Writes result `lines` as JSON lines to `target` (`-` is stdout), as the sink `jsonl:<target>`.
pub fn write_results<'scope>(
    lines: StreamVec<'scope, EventTime, String>,
    target: &str,
    ctx: &QueryContext,
) -> Result<(), BuildError> {
    JsonLinesSink::new(target).write_lines(lines, ctx, &format!("jsonl:{target}"))
}

/// Writes late-record `lines` to `target`, as the sink `late:<target>`; without a target they are
/// not written (the operator has counted them already).
pub fn write_late_lines<'scope>(
    lines: StreamVec<'scope, EventTime, String>,
    target: Option<&str>,
    ctx: &QueryContext,
) -> Result<(), BuildError> {
    match target {
        Some(target) => JsonLinesSink::new(target).write_lines(lines, ctx, &format!("late:{target}")),
        None => Ok(()),
    }
}

/// Writes the `late` records, each as a [`late_line`] showing the record as `record` says, to
/// `target` if there is one (see [`write_late_lines`]); without a target nothing is built.
pub fn write_late<'scope, D: 'static>(
    late: StreamVec<'scope, EventTime, LateRecord<D>>,
    target: Option<&str>,
    ctx: &QueryContext,
    record: impl Fn(&D) -> Value + 'static,
    format: TimeFormat,
) -> Result<(), BuildError> {
    if target.is_none() {
        return Ok(());
    }
    write_late_lines(late.map(move |late| late_line(late, &record, format)), target, ctx)
}
