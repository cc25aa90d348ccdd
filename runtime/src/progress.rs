//! Progress reports with Spark's field names (`StreamingQueryProgress`), built from the live
//! counters once per reporting interval, and the listeners they are pushed to.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::context::QueryContext;
use crate::metrics::EventTimeStats;
use crate::time::EventTime;

/// One progress report, serialized as Spark's `StreamingQueryProgress` JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamingQueryProgress {
    /// The query id (stable across restarts from the same checkpoint).
    pub id: String,
    /// The id of this run.
    pub run_id: String,
    /// The query's name.
    pub name: String,
    /// When the report was made (ISO-8601 UTC).
    pub timestamp: String,
    /// The report's sequence number, from 0.
    pub batch_id: u64,
    /// Records read by all sources during the interval.
    pub num_input_rows: u64,
    /// Records read per second of the interval.
    pub input_rows_per_second: f64,
    /// Records processed per second of the interval.
    pub processed_rows_per_second: f64,
    /// Durations in milliseconds (`triggerExecution` is the interval's length).
    pub duration_ms: BTreeMap<String, u64>,
    /// Event-time statistics of the records read, and the watermark.
    pub event_time: BTreeMap<String, String>,
    /// One entry per stateful operator.
    pub state_operators: Vec<StateOperatorProgress>,
    /// One entry per source.
    pub sources: Vec<SourceProgress>,
    /// The sink(s).
    pub sink: SinkProgress,
    /// Weir's addition: per operator, records in/out/late during the interval, state, frontier.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub operators: Vec<crate::diagnose::OperatorStatus>,
    /// Weir's addition: why nothing was written, after a few intervals without output or at once
    /// after a sink error (see [`crate::diagnose`]); absent while output flows.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub diagnose: Option<crate::diagnose::Diagnosis>,
}

impl StreamingQueryProgress {
    /// One line for a terminal (see [`crate::diagnose::status_line`]).
    pub fn status_line(&self) -> String {
        crate::diagnose::status_line(self)
    }
}

/// Progress of one stateful operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOperatorProgress {
    /// The operator's name.
    pub operator_name: String,
    /// Groups held in state now.
    pub num_rows_total: i64,
    /// Groups created or changed during the interval.
    pub num_rows_updated: u64,
    /// Groups evicted during the interval.
    pub num_rows_removed: u64,
    /// Records dropped as late during the interval (and routed to the late output).
    pub num_rows_dropped_by_watermark: u64,
    /// Estimated bytes of state held now.
    pub memory_used_bytes: i64,
    /// Operator-specific counts for the interval, as Spark's `customMetrics` (e.g. a dedup's
    /// `numDroppedDuplicateRows`); absent when the operator has none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_metrics: std::collections::BTreeMap<String, u64>,
}

/// Progress of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// What the source reads.
    pub description: String,
    /// Per partition, the position at the start of the interval.
    pub start_offset: serde_json::Value,
    /// Per partition, the position at the end of the interval.
    pub end_offset: serde_json::Value,
    /// Per partition, the latest position known to exist.
    pub latest_offset: serde_json::Value,
    /// Records read during the interval.
    pub num_input_rows: u64,
    /// Records read per second.
    pub input_rows_per_second: f64,
    /// Records processed per second.
    pub processed_rows_per_second: f64,
    /// Of those, records late at their partition during the interval.
    pub num_late_rows: u64,
    /// Records dropped because their event time could not be read, during the interval.
    pub num_invalid_event_time_rows: u64,
    /// The source's watermark (ISO-8601), once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Partitions that are idle and do not hold the watermark back.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub idle_partitions: Vec<usize>,
    /// Source-specific metrics with Spark's names and string values, e.g. a Kafka source's
    /// consumer lag `minOffsetsBehindLatest`, `maxOffsetsBehindLatest`, `avgOffsetsBehindLatest`
    /// (over its partitions, at the end of the interval); absent when the source has none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub metrics: BTreeMap<String, String>,
}

/// Progress of the sinks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    /// What the sink(s) write to.
    pub description: String,
    /// Records written during the interval.
    pub num_output_rows: u64,
    /// Sink-specific metrics (like Spark's `SinkProgress.metrics`): `numCommittedEpochs`, the
    /// transactions committed (or at-least-once flushes acknowledged) during the interval, for
    /// sinks that commit epochs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub metrics: BTreeMap<String, String>,
}

impl StreamingQueryProgress {
    /// The report as pretty JSON, like Spark's `prettyJson`.
    pub fn pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The report as one line of JSON.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Receives every progress report as it is made (push-based, like Spark's `StreamingQueryListener`).
pub trait ProgressListener: Send + Sync + 'static {
    /// Called once per report, on the reporter thread.
    fn on_progress(&self, progress: &StreamingQueryProgress);
}

impl<F: Fn(&StreamingQueryProgress) + Send + Sync + 'static> ProgressListener for F {
    fn on_progress(&self, progress: &StreamingQueryProgress) {
        self(progress)
    }
}

/// Turns the cumulative counters into per-interval reports.
pub struct ProgressTracker {
    ctx: QueryContext,
    batch_id: u64,
    last_at: Instant,
    last: BTreeMap<String, u64>,
    last_offsets: BTreeMap<String, serde_json::Value>,
    diagnoser: crate::diagnose::Diagnoser,
    status: crate::diagnose::StatusTracker,
}

impl ProgressTracker {
    /// A tracker whose first interval starts now.
    pub fn new(ctx: QueryContext) -> Self {
        ProgressTracker {
            ctx,
            batch_id: 0,
            last_at: Instant::now(),
            last: BTreeMap::new(),
            last_offsets: BTreeMap::new(),
            diagnoser: Default::default(),
            status: Default::default(),
        }
    }

    fn delta(&mut self, key: String, now: u64) -> u64 {
        let before = self.last.insert(key, now).unwrap_or(0);
        now.saturating_sub(before)
    }

    /// Spark's `customMetrics` of one operator for the interval: `numDroppedDuplicateRows` for an
    /// operator that has dropped duplicates.
    fn custom_metrics(&mut self, op: &crate::metrics::OperatorMetrics) -> std::collections::BTreeMap<String, u64> {
        let mut custom = std::collections::BTreeMap::new();
        let duplicates = op.duplicates_dropped.load(Ordering::Relaxed);
        if duplicates > 0 {
            custom.insert("numDroppedDuplicateRows".to_string(), self.delta(format!("op-dup/{}", op.name), duplicates));
        }
        custom
    }

    /// Makes the report for the interval since the previous one.
    pub fn report(&mut self) -> StreamingQueryProgress {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_at).max(Duration::from_millis(1));
        self.last_at = now;
        let seconds = elapsed.as_secs_f64();
        let ctx = self.ctx.clone();
        let metrics = ctx.metrics();

        let mut total_input = 0;
        let mut stats = EventTimeStats::default();
        let mut watermark: Option<EventTime> = None;
        let mut sources = Vec::new();
        for source in metrics.sources() {
            let rows = self.delta(format!("src-in/{}", source.description), source.input_rows.load(Ordering::Relaxed));
            let late = self.delta(format!("src-late/{}", source.description), source.late_rows.load(Ordering::Relaxed));
            let invalid = self
                .delta(format!("src-invalid/{}", source.description), source.invalid_time_rows.load(Ordering::Relaxed));
            total_input += rows;
            stats.merge(&std::mem::take(&mut *source.event_times.lock().unwrap()));
            let source_watermark = source.watermark();
            if let Some(w) = source_watermark {
                watermark = Some(watermark.map_or(w, |m: EventTime| m.min(w)));
            }
            let nested = source.nested_offsets.load(Ordering::Relaxed);
            let positions = source.offsets.lock().unwrap().clone();
            let mut latest_positions = source.latest.lock().unwrap().clone();
            let lag = offsets_behind_latest(&positions, &latest_positions);
            for (partition, position) in &positions {
                latest_positions.entry(*partition).or_insert_with(|| position.clone());
            }
            let end = offsets_value(&positions, nested);
            let latest = offsets_value(&latest_positions, nested);
            let start =
                self.last_offsets.insert(source.description.clone(), end.clone()).unwrap_or(serde_json::Value::Null);
            sources.push(SourceProgress {
                description: source.description.clone(),
                start_offset: start,
                end_offset: end,
                latest_offset: latest,
                num_input_rows: rows,
                input_rows_per_second: rows as f64 / seconds,
                processed_rows_per_second: rows as f64 / seconds,
                num_late_rows: late,
                num_invalid_event_time_rows: invalid,
                watermark: source_watermark.map(|w| w.to_string()),
                idle_partitions: source.idle_partitions.lock().unwrap().clone(),
                metrics: lag,
            });
        }

        let mut state_operators = Vec::new();
        for op in metrics.operators() {
            state_operators.push(StateOperatorProgress {
                operator_name: op.name.clone(),
                num_rows_total: op.rows_total.load(Ordering::Relaxed),
                num_rows_updated: self.delta(format!("op-upd/{}", op.name), op.rows_updated.load(Ordering::Relaxed)),
                num_rows_removed: self.delta(format!("op-rem/{}", op.name), op.rows_removed.load(Ordering::Relaxed)),
                num_rows_dropped_by_watermark: self
                    .delta(format!("op-late/{}", op.name), op.late_rows.load(Ordering::Relaxed)),
                memory_used_bytes: op.memory_bytes.load(Ordering::Relaxed),
                custom_metrics: self.custom_metrics(&op),
            });
        }

        let mut sink_names = Vec::new();
        let mut output_rows = 0;
        let (mut committed_epochs, mut commits_epochs) = (0, false);
        for sink in metrics.sinks() {
            output_rows += self.delta(format!("sink/{}", sink.description), sink.output_rows.load(Ordering::Relaxed));
            let epochs = sink.committed_epochs.load(Ordering::Relaxed);
            committed_epochs += self.delta(format!("sink-epochs/{}", sink.description), epochs);
            commits_epochs |= epochs > 0;
            sink_names.push(sink.description.clone());
        }

        let mut event_time = BTreeMap::new();
        if let (Some(min), Some(max), Some(avg)) = (stats.min, stats.max, stats.avg()) {
            event_time.insert("min".to_string(), min.to_string());
            event_time.insert("max".to_string(), max.to_string());
            event_time.insert("avg".to_string(), avg.to_string());
        }
        if let Some(w) = watermark {
            event_time.insert("watermark".to_string(), w.to_string());
        }

        let report = StreamingQueryProgress {
            id: self.ctx.id().to_string(),
            run_id: self.ctx.run_id().to_string(),
            name: self.ctx.name().to_string(),
            timestamp: EventTime::now().to_string(),
            batch_id: self.batch_id,
            num_input_rows: total_input,
            input_rows_per_second: total_input as f64 / seconds,
            processed_rows_per_second: total_input as f64 / seconds,
            duration_ms: BTreeMap::from([("triggerExecution".to_string(), elapsed.as_millis() as u64)]),
            event_time,
            state_operators,
            sources,
            sink: SinkProgress {
                description: sink_names.join(", "),
                num_output_rows: output_rows,
                metrics: if commits_epochs {
                    BTreeMap::from([("numCommittedEpochs".to_string(), committed_epochs.to_string())])
                } else {
                    BTreeMap::new()
                },
            },
            operators: Vec::new(),
            diagnose: None,
        };
        let mut report = report;
        report.operators = self.status.operators(&self.ctx);
        let offsets: Vec<(String, serde_json::Value)> =
            report.sources.iter().map(|s| (s.description.clone(), s.end_offset.clone())).collect();
        report.diagnose = self.diagnoser.diagnose(&self.ctx, &crate::diagnose::Interval::of(&report, &offsets));
        self.batch_id += 1;
        report
    }
}

/// Per-partition positions as one JSON value: merged into one object when the source's positions
/// are nested objects (Kafka's `{"topic":{"partition":offset}}`), else keyed by partition index.
pub(crate) fn offsets_value(positions: &BTreeMap<usize, serde_json::Value>, nested: bool) -> serde_json::Value {
    let mut merged = serde_json::Value::Object(Default::default());
    for (partition, position) in positions {
        if nested {
            merge_json(&mut merged, position);
        } else if let serde_json::Value::Object(map) = &mut merged {
            map.insert(partition.to_string(), position.clone());
        }
    }
    merged
}

fn merge_json(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(key) {
                    Some(existing) => merge_json(existing, value),
                    None => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// The numeric leaves of a position (path → value), e.g. `topic/0 → 23`.
fn numeric_leaves(value: &serde_json::Value, path: &mut String, out: &mut Vec<(String, i64)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let len = path.len();
                path.push('/');
                path.push_str(key);
                numeric_leaves(value, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(n) = n.as_i64() {
                out.push((path.clone(), n));
            }
        }
        _ => {}
    }
}

/// Spark's Kafka lag metrics (`min/max/avgOffsetsBehindLatest`) over the partitions whose latest
/// position is known: latest − position for each numeric offset in both.
fn offsets_behind_latest(
    positions: &BTreeMap<usize, serde_json::Value>,
    latest: &BTreeMap<usize, serde_json::Value>,
) -> BTreeMap<String, String> {
    let mut behind = Vec::new();
    for (partition, latest) in latest {
        let Some(position) = positions.get(partition) else { continue };
        let (mut at, mut end) = (Vec::new(), Vec::new());
        numeric_leaves(position, &mut String::new(), &mut at);
        numeric_leaves(latest, &mut String::new(), &mut end);
        for (path, latest) in end {
            if let Some((_, position)) = at.iter().find(|(p, _)| *p == path) {
                behind.push((latest - position).max(0));
            }
        }
    }
    let mut metrics = BTreeMap::new();
    if let (Some(min), Some(max)) = (behind.iter().min(), behind.iter().max()) {
        let avg = behind.iter().map(|b| *b as f64).sum::<f64>() / behind.len() as f64;
        metrics.insert("minOffsetsBehindLatest".to_string(), min.to_string());
        metrics.insert("maxOffsetsBehindLatest".to_string(), max.to_string());
        metrics.insert("avgOffsetsBehindLatest".to_string(), format!("{avg:?}"));
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::OperatorMetrics;

    #[test]
    fn dropped_duplicates_appear_as_spark_custom_metrics_per_interval() {
        let ctx = QueryContext::ephemeral("progress");
        let dedup = ctx.metrics().operator("dedup");
        ctx.metrics().operator("window");
        let mut tracker = ProgressTracker::new(ctx.clone());
        OperatorMetrics::add(&dedup.duplicates_dropped, 7);
        let first = tracker.report();
        OperatorMetrics::add(&dedup.duplicates_dropped, 2);
        let second = tracker.report();
        let custom = |p: &StreamingQueryProgress, name: &str| {
            p.state_operators.iter().find(|op| op.operator_name == name).unwrap().custom_metrics.clone()
        };
        assert_eq!(custom(&first, "dedup").get("numDroppedDuplicateRows"), Some(&7));
        assert_eq!(custom(&second, "dedup").get("numDroppedDuplicateRows"), Some(&2));
        assert!(custom(&first, "window").is_empty(), "operators without duplicates have no customMetrics");
        assert!(first.json().contains("\"customMetrics\":{\"numDroppedDuplicateRows\":7}"), "{}", first.json());
    }

    #[test]
    fn nested_offsets_merge_and_lag_is_latest_minus_position() {
        let ctx = QueryContext::ephemeral("lag");
        let source = ctx.metrics().source("kafka");
        source.nested_offsets.store(true, Ordering::Relaxed);
        source.offsets.lock().unwrap().insert(0, serde_json::json!({"t": {"0": 5}}));
        source.offsets.lock().unwrap().insert(1, serde_json::json!({"t": {"1": 7}}));
        source.latest.lock().unwrap().insert(0, serde_json::json!({"t": {"0": 9}}));
        source.latest.lock().unwrap().insert(1, serde_json::json!({"t": {"1": 7}}));
        let report = ProgressTracker::new(ctx.clone()).report();
        let kafka = &report.sources[0];
        assert_eq!(kafka.end_offset, serde_json::json!({"t": {"0": 5, "1": 7}}));
        assert_eq!(kafka.latest_offset, serde_json::json!({"t": {"0": 9, "1": 7}}));
        assert_eq!(kafka.metrics.get("minOffsetsBehindLatest").map(String::as_str), Some("0"));
        assert_eq!(kafka.metrics.get("maxOffsetsBehindLatest").map(String::as_str), Some("4"));
        assert_eq!(kafka.metrics.get("avgOffsetsBehindLatest").map(String::as_str), Some("2.0"));

        let rate = ctx.metrics().source("rate");
        rate.offsets.lock().unwrap().insert(0, serde_json::json!(3));
        let report = ProgressTracker::new(ctx).report();
        assert_eq!(report.sources[1].end_offset, serde_json::json!({"0": 3}));
        assert!(report.sources[1].metrics.is_empty());
    }
}
