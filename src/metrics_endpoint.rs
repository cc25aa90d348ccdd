//! A Prometheus endpoint for a running query (`weir run <job> --metrics-addr 127.0.0.1:9464`).
//!
//! Every scrape of `/metrics` reads the query's live counters ([`QueryContext::metrics`]) and the
//! latest progress report, and encodes them with `prometheus-client` in the OpenMetrics text
//! format (which Prometheus scrapes natively). Counters are cumulative since the query started;
//! gauges are read at scrape time.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `weir_query_info` | `id`, `run_id`, `name` | always 1 |
//! | `weir_input_rows_per_second`, `weir_processed_rows_per_second` | | from the last progress report |
//! | `weir_query_intervals_without_output` | | from the last report's `diagnose` (0 while output flows) |
//! | `weir_source_input_rows_total`, `weir_source_late_rows_total`, `weir_source_invalid_time_rows_total` | `source` | records read, late at their partition, with no readable event time |
//! | `weir_source_watermark_seconds`, `weir_source_watermark_lag_seconds` | `source` | the watermark (Unix seconds) and now − watermark |
//! | `weir_source_partition_offset`, `weir_source_partition_latest_offset`, `weir_source_partition_lag` | `source`, `partition` | when the source reports numeric positions (lag when it knows the latest) |
//! | `weir_source_partition_watermark_lag_seconds`, `weir_source_partition_idle` | `source`, `partition` | per partition |
//! | `weir_operator_rows_in_total`, `weir_operator_rows_out_total`, `weir_operator_late_rows_total`, `weir_operator_rows_updated_total`, `weir_operator_rows_removed_total`, `weir_operator_duplicates_dropped_total` | `operator` | per operator |
//! | `weir_operator_state_rows`, `weir_operator_state_bytes` | `operator` | state held now |
//! | `weir_sink_output_rows_total`, `weir_sink_errors_total`, `weir_sink_epoch_commits_total`, `weir_sink_epoch_commit_seconds_total`, `weir_sink_last_epoch_commit_seconds` | `sink` | per sink; commit latency of epochs |

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use weir_runtime::context::QueryContext;
use weir_runtime::progress::StreamingQueryProgress;
use weir_runtime::time::EventTime;

/// The latest progress report, shared between a progress listener and the endpoint.
pub type LastProgress = Arc<Mutex<Option<StreamingQueryProgress>>>;

/// A running `/metrics` endpoint; it stops when dropped.
pub struct MetricsEndpoint {
    address: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Serves the metrics of the query `ctx` on `address` (`host:port`; port 0 picks a free one).
    /// `last` holds the latest progress report, for rates and the diagnosis.
    pub fn serve(address: &str, ctx: QueryContext, last: LastProgress) -> std::io::Result<MetricsEndpoint> {
        let server = tiny_http::Server::http(address).map_err(|e| std::io::Error::other(e.to_string()))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other(format!("{address} is not an IP address")))?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new().name("weir-metrics".into()).spawn(move || {
            for request in serving.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("");
                let response = if path == "/metrics" || path == "/" {
                    let body = render(&ctx, &last);
                    let content_type = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(body).with_header(content_type)
                } else {
                    tiny_http::Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
        Ok(MetricsEndpoint { address: bound, server, thread: Some(thread) })
    }

    /// The address it listens on (with the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The metrics of query `ctx` now, in the OpenMetrics text format.
pub fn render(ctx: &QueryContext, last: &LastProgress) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(QueryCollector { ctx: ctx.clone(), last: last.clone() }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoding to a String cannot fail");
    text
}

#[derive(Debug)]
struct QueryCollector {
    ctx: QueryContext,
    last: LastProgress,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One metric family: its samples are added, then it is written out.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Self {
        Family { name, help, kind, samples: Vec::new() }
    }

    fn add(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, value));
    }

    fn encode(self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        let encode = |sample: prometheus_client::encoding::MetricEncoder, value: f64| match self.kind {
            // Whole counts print as integers; a counter of seconds keeps its fraction.
            MetricType::Counter if value.fract() == 0.0 => ConstCounter::new(value.max(0.0) as u64).encode(sample),
            MetricType::Counter => ConstCounter::new(value.max(0.0)).encode(sample),
            _ => ConstGauge::new(value).encode(sample),
        };
        if let [(labels, value)] = self.samples.as_slice() {
            if labels.is_empty() {
                // A metric without labels is written as `name value`, not `name{} value`.
                return encode(family, *value);
            }
        }
        for (labels, value) in &self.samples {
            encode(family.encode_family(labels)?, *value)?;
        }
        Ok(())
    }
}

impl Collector for QueryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ctx = &self.ctx;
        let metrics = ctx.metrics();
        let last = self.last.lock().unwrap().clone();
        let now = EventTime::now();
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;

        let mut info = Family::new("weir_query_info", "The query's identity (always 1).", MetricType::Gauge);
        info.add(labels(&[("id", ctx.id()), ("run_id", ctx.run_id()), ("name", ctx.name())]), 1.0);
        let mut input_rate = Family::new(
            "weir_input_rows_per_second",
            "Rows read per second in the last progress interval.",
            MetricType::Gauge,
        );
        let mut processed_rate = Family::new(
            "weir_processed_rows_per_second",
            "Rows processed per second in the last progress interval.",
            MetricType::Gauge,
        );
        let mut quiet = Family::new(
            "weir_query_intervals_without_output",
            "Progress intervals in a row in which the sinks wrote nothing (see the progress report's diagnose).",
            MetricType::Gauge,
        );
        if let Some(report) = &last {
            input_rate.add(Vec::new(), report.input_rows_per_second);
            processed_rate.add(Vec::new(), report.processed_rows_per_second);
            quiet.add(Vec::new(), report.diagnose.as_ref().map_or(0.0, |d| d.intervals_without_output as f64));
        }
        for family in [info, input_rate, processed_rate, quiet] {
            family.encode(&mut encoder)?;
        }

        let mut input = Family::new("weir_source_input_rows", "Records read by the source.", MetricType::Counter);
        let mut late = Family::new("weir_source_late_rows", "Records late at their partition.", MetricType::Counter);
        let mut invalid = Family::new(
            "weir_source_invalid_time_rows",
            "Records dropped because their event time could not be read.",
            MetricType::Counter,
        );
        let mut watermark =
            Family::new("weir_source_watermark_seconds", "The source's watermark, in Unix seconds.", MetricType::Gauge);
        let mut watermark_lag = Family::new(
            "weir_source_watermark_lag_seconds",
            "Wall-clock time minus the source's watermark, in seconds.",
            MetricType::Gauge,
        );
        let mut offset = Family::new(
            "weir_source_partition_offset",
            "The position a partition has reached (sources with numeric positions).",
            MetricType::Gauge,
        );
        let mut latest = Family::new(
            "weir_source_partition_latest_offset",
            "The latest position known to exist in a partition (sources that know it).",
            MetricType::Gauge,
        );
        let mut lag = Family::new(
            "weir_source_partition_lag",
            "Latest position minus the position reached: records not yet read.",
            MetricType::Gauge,
        );
        let mut partition_lag = Family::new(
            "weir_source_partition_watermark_lag_seconds",
            "Wall-clock time minus a partition's own watermark, in seconds.",
            MetricType::Gauge,
        );
        let mut idle = Family::new(
            "weir_source_partition_idle",
            "1 if the partition is idle and does not hold the watermark back.",
            MetricType::Gauge,
        );
        for source in metrics.sources() {
            let name = source.description.as_str();
            let by_source = labels(&[("source", name)]);
            input.add(by_source.clone(), load(&source.input_rows));
            late.add(by_source.clone(), load(&source.late_rows));
            invalid.add(by_source.clone(), load(&source.invalid_time_rows));
            if let Some(mark) = source.watermark() {
                watermark.add(by_source.clone(), mark.as_millis() as f64 / 1000.0);
                watermark_lag.add(by_source.clone(), seconds_behind(now, mark));
            }
            let positions = source.offsets.lock().unwrap().clone();
            let latest_positions = source.latest.lock().unwrap().clone();
            for (partition, position) in &positions {
                let partition_text = partition.to_string();
                let by_partition = labels(&[("source", name), ("partition", &partition_text)]);
                let reached = numeric_leaf(position);
                if let Some(reached) = reached {
                    offset.add(by_partition.clone(), reached);
                }
                if let Some(end) = latest_positions.get(partition).and_then(numeric_leaf) {
                    latest.add(by_partition.clone(), end);
                    if let Some(reached) = reached {
                        lag.add(by_partition.clone(), (end - reached).max(0.0));
                    }
                }
            }
            let idle_partitions = source.idle_partitions.lock().unwrap().clone();
            for (partition, mark) in source.partition_watermarks.lock().unwrap().iter() {
                let partition_text = partition.to_string();
                let by_partition = labels(&[("source", name), ("partition", &partition_text)]);
                partition_lag.add(by_partition.clone(), seconds_behind(now, *mark));
                idle.add(by_partition, if idle_partitions.contains(partition) { 1.0 } else { 0.0 });
            }
        }
        for family in [input, late, invalid, watermark, watermark_lag, offset, latest, lag, partition_lag, idle] {
            family.encode(&mut encoder)?;
        }

        let mut rows_in = Family::new("weir_operator_rows_in", "Records the operator received.", MetricType::Counter);
        let mut rows_out = Family::new("weir_operator_rows_out", "Records the operator emitted.", MetricType::Counter);
        let mut op_late = Family::new(
            "weir_operator_late_rows",
            "Records the operator dropped as late (and routed to its late output).",
            MetricType::Counter,
        );
        let mut updated =
            Family::new("weir_operator_rows_updated", "State rows created or changed.", MetricType::Counter);
        let mut removed = Family::new("weir_operator_rows_removed", "State rows evicted.", MetricType::Counter);
        let mut duplicates =
            Family::new("weir_operator_duplicates_dropped", "Records dropped as duplicates.", MetricType::Counter);
        let mut state_rows = Family::new("weir_operator_state_rows", "State rows held now.", MetricType::Gauge);
        let mut state_bytes =
            Family::new("weir_operator_state_bytes", "Estimated bytes of state held now.", MetricType::Gauge);
        for op in metrics.operators() {
            let by_operator = labels(&[("operator", &op.name)]);
            rows_in.add(by_operator.clone(), load(&op.rows_in));
            rows_out.add(by_operator.clone(), load(&op.rows_out));
            op_late.add(by_operator.clone(), load(&op.late_rows));
            updated.add(by_operator.clone(), load(&op.rows_updated));
            removed.add(by_operator.clone(), load(&op.rows_removed));
            duplicates.add(by_operator.clone(), load(&op.duplicates_dropped));
            state_rows.add(by_operator.clone(), op.rows_total.load(Ordering::Relaxed) as f64);
            state_bytes.add(by_operator, op.memory_bytes.load(Ordering::Relaxed) as f64);
        }
        for family in [rows_in, rows_out, op_late, updated, removed, duplicates, state_rows, state_bytes] {
            family.encode(&mut encoder)?;
        }

        let mut output = Family::new("weir_sink_output_rows", "Records the sink wrote.", MetricType::Counter);
        let mut errors = Family::new("weir_sink_errors", "Write errors of the sink.", MetricType::Counter);
        let mut epochs = Family::new(
            "weir_sink_epoch_commits",
            "Epochs the sink made durable (committed transactions, or acknowledged flushes).",
            MetricType::Counter,
        );
        let mut commit_seconds = Family::new(
            "weir_sink_epoch_commit_seconds",
            "Time spent committing epochs; divide its rate by weir_sink_epoch_commits' for the mean latency.",
            MetricType::Counter,
        );
        let mut last_commit = Family::new(
            "weir_sink_last_epoch_commit_seconds",
            "How long the latest epoch commit took.",
            MetricType::Gauge,
        );
        for sink in metrics.sinks() {
            let by_sink = labels(&[("sink", &sink.description)]);
            output.add(by_sink.clone(), load(&sink.output_rows));
            errors.add(by_sink.clone(), load(&sink.errors));
            epochs.add(by_sink.clone(), load(&sink.committed_epochs));
            commit_seconds.add(by_sink.clone(), load(&sink.commit_micros_total) / 1e6);
            last_commit.add(by_sink, load(&sink.last_commit_micros) / 1e6);
        }
        for family in [output, errors, epochs, commit_seconds, last_commit] {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

fn seconds_behind(now: EventTime, mark: EventTime) -> f64 {
    (now.as_millis() as f64 - mark.as_millis() as f64) / 1000.0
}

/// A position as a number: the number itself, or the one number inside a nested object (Kafka's
/// `{"topic":{"partition":offset}}`).
fn numeric_leaf(position: &serde_json::Value) -> Option<f64> {
    match position {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Object(map) if map.len() == 1 => map.values().next().and_then(numeric_leaf),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_labels() {
        let ctx = QueryContext::ephemeral("render");
        let source = ctx.metrics().source("rate");
        source.input_rows.fetch_add(5, Ordering::Relaxed);
        source.offsets.lock().unwrap().insert(0, serde_json::json!({"topic": {"0": 17}}));
        source.latest.lock().unwrap().insert(0, serde_json::json!({"topic": {"0": 20}}));
        ctx.metrics().operator("counts").adjust_state(3, 300);
        let text = render(&ctx, &LastProgress::default());
        assert!(text.contains("weir_source_input_rows_total{source=\"rate\"} 5"), "{text}");
        assert!(text.contains("weir_source_partition_lag{source=\"rate\",partition=\"0\"} 3.0"), "{text}");
        assert!(text.contains("weir_operator_state_bytes{operator=\"counts\"} 300.0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn renders_the_epoch_commit_latency_of_sinks() {
        let ctx = QueryContext::ephemeral("commits");
        let sink = ctx.metrics().sink("kafka:out");
        sink.epoch_committed(std::time::Duration::from_millis(30));
        sink.epoch_committed(std::time::Duration::from_millis(10));
        let text = render(&ctx, &LastProgress::default());
        assert!(text.contains("weir_sink_epoch_commits_total{sink=\"kafka:out\"} 2"), "{text}");
        assert!(text.contains("weir_sink_epoch_commit_seconds_total{sink=\"kafka:out\"} 0.04"), "{text}");
        assert!(text.contains("weir_sink_last_epoch_commit_seconds{sink=\"kafka:out\"} 0.01"), "{text}");
    }
}
