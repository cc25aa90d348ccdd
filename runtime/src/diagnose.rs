//! Why a query produces no output: the `diagnose` section of progress reports.
//!
//! After [`QUIET_INTERVALS`] reporting intervals in a row in which the sinks wrote nothing, each
//! report names the likely reasons, from the live counters: no input at all since the start
//! (with the offsets it started from), no new input, a watermark that does not move (with the
//! partition holding it back), records that all arrive late (with how late), or operators
//! waiting for the watermark to close their windows. Sink errors and a failed query are named at
//! once, whatever the output. In a cluster, only the process hosting worker 0 (where the ordered
//! sinks write) diagnoses missing output; every process reports its sink errors.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::context::QueryContext;
use crate::error::QueryError;
use crate::time::EventTime;

/// How many reporting intervals in a row without output rows make a report carry a diagnosis.
pub const QUIET_INTERVALS: u32 = 2;

/// Why nothing was emitted, as it appears in a progress report's `diagnose` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// Reporting intervals in a row (including this one) in which the sinks wrote no row.
    pub intervals_without_output: u32,
    /// The likely reasons, most specific first.
    pub causes: Vec<Cause>,
}

/// One reason a query emits nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    /// What kind of reason.
    pub reason: Reason,
    /// A sentence saying what is wrong and what to do about it.
    pub message: String,
    /// The source it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// The partition it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition: Option<usize>,
    /// The sink or operator it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operator: Option<String>,
    /// Figures behind the diagnosis (offsets, watermarks, counts).
    #[serde(skip_serializing_if = "serde_json::Value::is_null", default)]
    pub details: serde_json::Value,
}

/// The kinds of reasons a query emits nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// The sources have read nothing since the query started.
    NoInputSinceStart,
    /// The sources read data before, but nothing during the quiet intervals.
    NoNewInput,
    /// Records arrive but the watermark does not move, so no window can close.
    WatermarkStuck,
    /// Every record read during the quiet intervals was late, so none was aggregated.
    AllRecordsLate,
    /// The watermark moves, but has not yet passed the end of any window held in state.
    WaitingForWatermark,
    /// A sink failed to write.
    SinkErrors,
    /// The query failed.
    QueryFailed,
}

#[derive(Default)]
struct Streak {
    intervals: u32,
    input_rows: u64,
    late_rows: u64,
    max_event_time: Option<EventTime>,
    watermark_at_start: Option<Option<EventTime>>,
}

/// Keeps what a diagnosis needs across reports (used by the progress tracker).
#[derive(Default)]
pub struct Diagnoser {
    streak: Streak,
    total_input: u64,
    start_offsets: BTreeMap<String, serde_json::Value>,
    sink_errors: BTreeMap<String, u64>,
}

/// The per-interval figures the diagnoser reads from a report.
pub struct Interval<'a> {
    /// Rows written by the sinks during the interval.
    pub output_rows: u64,
    /// Rows read by the sources during the interval.
    pub input_rows: u64,
    /// Rows dropped as late during the interval (at sources and in operators).
    pub late_rows: u64,
    /// The newest event time read during the interval.
    pub max_event_time: Option<EventTime>,
    /// The query's watermark at the end of the interval.
    pub watermark: Option<EventTime>,
    /// Per source, its position at the end of the interval.
    pub offsets: &'a [(String, serde_json::Value)],
}

impl Diagnoser {
    /// The diagnosis for this interval, or `None` when output flows and nothing failed.
    pub fn diagnose(&mut self, ctx: &QueryContext, interval: &Interval<'_>) -> Option<Diagnosis> {
        for (source, offsets) in interval.offsets {
            let entry = self.start_offsets.entry(source.clone()).or_insert_with(|| offsets.clone());
            if self.total_input == 0 && interval.input_rows == 0 {
                // Until the first record, the position reached is still the starting position.
                *entry = offsets.clone();
            }
        }
        self.total_input += interval.input_rows;
        let mut causes = Vec::new();
        self.sink_causes(ctx, &mut causes);
        if let Some(failure) = ctx.failure() {
            if !matches!(failure, QueryError::Sink { .. }) {
                causes.push(Cause::new(Reason::QueryFailed, format!("the query failed: {failure}")));
            }
        }

        // Ordered sinks write on worker 0 only: a process without it writes nothing by design.
        if interval.output_rows > 0 || !ctx.hosts_worker_zero() {
            self.streak = Streak::default();
            return (!causes.is_empty()).then_some(Diagnosis { intervals_without_output: 0, causes });
        }
        let streak = &mut self.streak;
        streak.intervals += 1;
        streak.input_rows += interval.input_rows;
        streak.late_rows += interval.late_rows;
        streak.max_event_time = streak.max_event_time.max(interval.max_event_time);
        let watermark_at_start = *streak.watermark_at_start.get_or_insert(interval.watermark);
        if streak.intervals < QUIET_INTERVALS {
            return (!causes.is_empty()).then_some(Diagnosis { intervals_without_output: streak.intervals, causes });
        }

        let metrics = ctx.metrics();
        if self.total_input == 0 {
            for source in metrics.sources() {
                // Where the partitions opened in this process started (recorded when opened), or
                // else the position the reports showed before the first record.
                let nested = source.nested_offsets.load(Ordering::Relaxed);
                let opened = source.start_offsets.lock().unwrap().clone();
                let started = if opened.is_empty() {
                    self.start_offsets.get(&source.description).cloned().unwrap_or_default()
                } else {
                    crate::progress::offsets_value(&opened, nested)
                };
                let latest = source.latest.lock().unwrap().clone();
                let latest = (!latest.is_empty()).then(|| crate::progress::offsets_value(&latest, nested));
                let hint = source.no_input_hint.lock().unwrap().clone();
                let why = match (&hint, &latest) {
                    (Some(hint), _) => hint.clone(),
                    (None, Some(latest)) if *latest == started => "nothing has been written to it since (its \
                         latest offsets are still the starting ones): check the producer, or whether it reads \
                         the right place"
                        .to_string(),
                    _ => "nothing was written to it after those positions (a source starting at the latest \
                          offsets only sees new data), or it reads the wrong place"
                        .to_string(),
                };
                let mut details = serde_json::json!({ "startOffsets": started });
                if let Some(latest) = latest {
                    details["latestOffsets"] = latest;
                }
                if let Some(hint) = hint {
                    details["hint"] = hint.into();
                }
                causes.push(
                    Cause::new(
                        Reason::NoInputSinceStart,
                        format!(
                            "source {} has read no record since the query started, from offsets {}: {why}",
                            source.description, started
                        ),
                    )
                    .source(&source.description)
                    .details(details),
                );
            }
        } else if streak.input_rows == 0 {
            let offsets: serde_json::Map<String, serde_json::Value> = interval.offsets.iter().cloned().collect();
            causes.push(
                Cause::new(
                    Reason::NoNewInput,
                    format!(
                        "no new input for {} intervals; the sources are at offsets {}",
                        streak.intervals,
                        serde_json::Value::Object(offsets.clone())
                    ),
                )
                .details(serde_json::json!({ "offsets": offsets })),
            );
            self.watermark_causes(ctx, watermark_at_start, interval.watermark, &mut causes);
        } else if streak.late_rows >= streak.input_rows
            || (interval.input_rows > 0 && interval.late_rows >= interval.input_rows)
        {
            // The newest record of this interval (of the streak when this one read nothing).
            let newest = if interval.input_rows > 0 { interval.max_event_time } else { streak.max_event_time };
            let lateness = match (interval.watermark, newest) {
                (Some(w), Some(max)) if w > max => Some(max.until(w).as_millis() as u64),
                _ => None,
            };
            let per_operator: BTreeMap<String, u64> = metrics
                .operators()
                .iter()
                .map(|op| (op.name.clone(), op.late_rows.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let behind = lateness.map_or(String::new(), |ms| {
                format!(", the newest of them is {ms} ms behind the watermark {}", interval.watermark.unwrap())
            });
            causes.push(
                Cause::new(
                    Reason::AllRecordsLate,
                    format!(
                        "all {} records read in the last {} intervals were late ({} late drops){behind}: the input is \
                         older than the watermark. Raise the watermark delay (allowed lateness), or check the event \
                         times",
                        streak.input_rows, streak.intervals, streak.late_rows
                    ),
                )
                .details(serde_json::json!({
                    "inputRows": streak.input_rows,
                    "lateRows": streak.late_rows,
                    "minLatenessMs": lateness,
                    "watermark": interval.watermark.map(|w| w.to_string()),
                    "maxEventTime": newest.map(|t| t.to_string()),
                    "lateRowsByOperator": per_operator,
                })),
            );
        } else {
            let before = causes.len();
            self.watermark_causes(ctx, watermark_at_start, interval.watermark, &mut causes);
            if causes.len() == before {
                let held: Vec<String> = metrics
                    .operators()
                    .iter()
                    .filter(|op| op.rows_total.load(Ordering::Relaxed) > 0)
                    .map(|op| format!("{} ({} rows)", op.name, op.rows_total.load(Ordering::Relaxed)))
                    .collect();
                let watermark = interval.watermark.map_or("none".to_string(), |w| w.to_string());
                causes.push(Cause::new(
                    Reason::WaitingForWatermark,
                    format!(
                        "records arrive and the watermark moves (now {watermark}), but it has not passed the end of \
                         any window held in state yet{}: output follows once it does (append mode emits a window \
                         only when it closes)",
                        if held.is_empty() { String::new() } else { format!(" ({})", held.join(", ")) }
                    ),
                ));
            }
        }
        Some(Diagnosis { intervals_without_output: self.streak.intervals, causes })
    }

    fn sink_causes(&mut self, ctx: &QueryContext, causes: &mut Vec<Cause>) {
        let failure = ctx.failure();
        for sink in ctx.metrics().sinks() {
            let errors = sink.errors.load(Ordering::Relaxed);
            let before = self.sink_errors.insert(sink.description.clone(), errors).unwrap_or(0);
            let failed_here =
                matches!(&failure, Some(QueryError::Sink { sink: name, .. }) if *name == sink.description);
            if errors > before || failed_here {
                let message = match &failure {
                    Some(QueryError::Sink { sink: name, message }) if *name == sink.description => message.clone(),
                    _ => "see the log".to_string(),
                };
                causes.push(
                    Cause::new(
                        Reason::SinkErrors,
                        format!("sink {} failed to write ({} errors): {message}", sink.description, errors.max(1)),
                    )
                    .operator(&sink.description)
                    .details(serde_json::json!({ "errors": errors, "message": message })),
                );
            }
        }
        if let Some(QueryError::Sink { sink, message }) = failure {
            if !causes.iter().any(|c| c.reason == Reason::SinkErrors) {
                causes.push(
                    Cause::new(Reason::SinkErrors, format!("sink {sink} failed: {message}"))
                        .operator(&sink)
                        .details(serde_json::json!({ "message": message })),
                );
            }
        }
    }

    /// A watermark that did not move during the streak: names the partition holding it back.
    fn watermark_causes(
        &self,
        ctx: &QueryContext,
        at_start: Option<EventTime>,
        now: Option<EventTime>,
        causes: &mut Vec<Cause>,
    ) {
        if now.is_some() && now != at_start {
            return;
        }
        for source in ctx.metrics().sources() {
            if source.finished() {
                continue;
            }
            let idle = source.idle_partitions.lock().unwrap().clone();
            let marks = source.partition_watermarks.lock().unwrap().clone();
            let holding = marks.iter().filter(|(p, _)| !idle.contains(p)).min_by_key(|(_, w)| **w);
            let (message, partition) = match holding {
                Some((&partition, &mark)) if mark == EventTime::MIN => (
                    format!(
                        "the watermark of source {} has not moved for {} intervals: partition {partition} has \
                         received no data, so it holds the watermark at its start. Give the source an idle timeout \
                         (e.g. --idle-timeout 30s) so that empty partitions stop holding it back",
                        source.description, self.streak.intervals
                    ),
                    Some(partition),
                ),
                Some((&partition, &mark)) => (
                    format!(
                        "the watermark of source {} has not moved for {} intervals: partition {partition} holds it \
                         at {mark} (its newest event time minus the watermark delay){}",
                        source.description,
                        self.streak.intervals,
                        if idle.is_empty() {
                            "; if that partition gets data rarely, give the source an idle timeout".to_string()
                        } else {
                            format!("; idle partitions {idle:?} do not hold it back")
                        }
                    ),
                    Some(partition),
                ),
                None => (
                    format!(
                        "the watermark of source {} has not moved for {} intervals",
                        source.description, self.streak.intervals
                    ),
                    None,
                ),
            };
            let partitions: BTreeMap<String, String> =
                marks.iter().map(|(p, w)| (p.to_string(), w.to_string())).collect();
            let mut cause =
                Cause::new(Reason::WatermarkStuck, message).source(&source.description).details(serde_json::json!({
                    "watermark": now.map(|w| w.to_string()),
                    "partitionWatermarks": partitions,
                    "idlePartitions": idle,
                }));
            cause.partition = partition;
            causes.push(cause);
        }
    }
}

impl Cause {
    fn new(reason: Reason, message: String) -> Self {
        Cause { reason, message, source: None, partition: None, operator: None, details: serde_json::Value::Null }
    }

    fn source(mut self, source: &str) -> Self {
        self.source = Some(source.to_string());
        self
    }

    fn operator(mut self, operator: &str) -> Self {
        self.operator = Some(operator.to_string());
        self
    }

    fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

impl<'a> Interval<'a> {
    /// The figures of one progress report (`offsets` must hold its sources' end offsets).
    pub fn of(report: &crate::progress::StreamingQueryProgress, offsets: &'a [(String, serde_json::Value)]) -> Self {
        let source_late: u64 = report.sources.iter().map(|s| s.num_late_rows).sum();
        let operator_late: u64 = report.state_operators.iter().map(|o| o.num_rows_dropped_by_watermark).sum();
        let time = |key: &str| report.event_time.get(key).and_then(|t| EventTime::parse(t).ok());
        Interval {
            output_rows: report.sink.num_output_rows,
            input_rows: report.num_input_rows,
            // A record late at its source is counted there and again by the operator that routes
            // it to its late output: the larger count is the number of records lost to lateness.
            late_rows: source_late.max(operator_late),
            max_event_time: time("max"),
            watermark: time("watermark"),
            offsets,
        }
    }
}

/// One operator's figures for the status line and the `operators` field of a progress report
/// (Weir's addition to Spark's fields): records in, out and late during the interval, the state
/// it holds now, and its frontier (the minimum watermark of the sources upstream of it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorStatus {
    /// The operator's name.
    pub operator_name: String,
    /// Records received during the interval.
    pub num_rows_in: u64,
    /// Records emitted during the interval.
    pub num_rows_out: u64,
    /// Records dropped as late during the interval.
    pub num_late_rows: u64,
    /// Groups held in state now.
    pub num_rows_total: i64,
    /// Estimated bytes of state held now.
    pub memory_used_bytes: i64,
    /// The operator's frontier (its watermark), if known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub watermark: Option<String>,
}

/// Computes [`OperatorStatus`]es from the live counters, interval by interval.
#[derive(Default)]
pub struct StatusTracker {
    last: BTreeMap<String, (u64, u64, u64)>,
    plan: Option<crate::plan::Plan>,
}

impl StatusTracker {
    /// The status of every operator with counters, for the interval since the last call.
    pub fn operators(&mut self, ctx: &QueryContext) -> Vec<OperatorStatus> {
        if self.plan.is_none() {
            self.plan = crate::plan::Plan::of(ctx);
        }
        let metrics = ctx.metrics();
        let global = metrics.sources().iter().filter_map(|s| s.watermark()).min();
        let mut statuses = Vec::new();
        for op in metrics.operators() {
            let now = (
                op.rows_in.load(Ordering::Relaxed),
                op.rows_out.load(Ordering::Relaxed),
                op.late_rows.load(Ordering::Relaxed),
            );
            let before = self.last.insert(op.name.clone(), now).unwrap_or_default();
            let watermark = match self.plan.as_ref().and_then(|plan| plan.node(&op.name).map(|n| (plan, n))) {
                Some((plan, node)) if !node.watermark_from.is_empty() => node
                    .watermark_from
                    .iter()
                    .filter_map(|&id| plan.nodes[id - 1].name.strip_prefix("Source[")?.strip_suffix(']'))
                    .filter_map(|source| metrics.source(source).watermark())
                    .min(),
                _ => global,
            };
            statuses.push(OperatorStatus {
                operator_name: op.name.clone(),
                num_rows_in: now.0.saturating_sub(before.0),
                num_rows_out: now.1.saturating_sub(before.1),
                num_late_rows: now.2.saturating_sub(before.2),
                num_rows_total: op.rows_total.load(Ordering::Relaxed),
                memory_used_bytes: op.memory_bytes.load(Ordering::Relaxed),
                watermark: watermark.map(|w| w.to_string()),
            });
        }
        statuses
    }
}

/// One line summing up a progress report, for a terminal: input and output rows, the watermark,
/// each operator's rows in/out, late drops, state and frontier, and the first diagnosed cause.
///
/// `[name] #3 in 1000 (1000/s) out 20 wm 2026-11-21T06:00:10.000Z | counts in 1000 out 20 late 0 state 12 rows 1.1 KiB wm ...`
pub fn status_line(report: &crate::progress::StreamingQueryProgress) -> String {
    let mut line = format!(
        "[{}] #{} in {} ({:.0}/s) out {} wm {}",
        report.name,
        report.batch_id,
        report.num_input_rows,
        report.input_rows_per_second,
        report.sink.num_output_rows,
        report.event_time.get("watermark").map_or("-", String::as_str)
    );
    for op in &report.operators {
        line.push_str(&format!(
            " | {} in {} out {} late {} state {} rows {} wm {}",
            op.operator_name,
            op.num_rows_in,
            op.num_rows_out,
            op.num_late_rows,
            op.num_rows_total,
            human_bytes(op.memory_used_bytes),
            op.watermark.as_deref().unwrap_or("-")
        ));
    }
    if let Some(diagnosis) = &report.diagnose {
        if let Some(cause) = diagnosis.causes.first() {
            line.push_str(&format!(" | NO OUTPUT: {}", cause.message));
        }
    }
    line
}

fn human_bytes(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(ctx: &QueryContext, diagnoser: &mut Diagnoser) -> Option<Diagnosis> {
        let offsets = vec![("src".to_string(), serde_json::json!({"0": 5}))];
        let interval = Interval {
            output_rows: 0,
            input_rows: 0,
            late_rows: 0,
            max_event_time: None,
            watermark: None,
            offsets: &offsets,
        };
        diagnoser.diagnose(ctx, &interval)
    }

    #[test]
    fn only_the_process_with_worker_zero_diagnoses_missing_output() {
        let first = QueryContext::ephemeral("first");
        first.metrics().source("src");
        let mut diagnoser = Diagnoser::default();
        assert_eq!(quiet(&first, &mut diagnoser), None);
        let diagnosis = quiet(&first, &mut diagnoser).expect("diagnosed after two quiet intervals");
        assert_eq!(diagnosis.causes[0].reason, Reason::NoInputSinceStart);
        assert_eq!(diagnosis.causes[0].details["startOffsets"], serde_json::json!({"0": 5}));

        let other = QueryContext::ephemeral("other");
        other.metrics().source("src");
        other.set_other_process();
        let mut diagnoser = Diagnoser::default();
        for _ in 0..4 {
            assert_eq!(quiet(&other, &mut diagnoser), None, "its sinks write on another process");
        }
        other.metrics().sink("out").errors.fetch_add(1, Ordering::Relaxed);
        let errors = quiet(&other, &mut diagnoser).expect("sink errors are named in every process");
        assert_eq!(errors.causes[0].reason, Reason::SinkErrors);
    }
}
