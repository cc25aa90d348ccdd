//! The outputs of the JSON-lines jobs: result lines to a file, stdout or a Kafka topic, and late
//! records, as [`late_line`]s, to an optional second file.

use std::time::Duration;

use serde_json::Value;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use weir_connectors::jsonl::exactly_once::ExactlyOnceJsonLinesSink;
use weir_connectors::jsonl::JsonLinesSink;
use weir_connectors::kafka::sink::{Delivery, KafkaSink, ProducerRecord};
use weir_connectors::kafka::KafkaOptions;
use weir_runtime::prelude::*;

use super::json_fields::{late_line, TimeFormat};

/// Where a job's result lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// JSON lines to a file (`-` is stdout), each epoch's lines sorted.
    JsonLines(String),
    /// One Kafka record per line.
    Kafka(KafkaOutput),
    /// Exactly-once files in this directory: one file per checkpoint epoch and worker, made
    /// visible (renamed into place) only once the epoch's checkpoint is committed. The query must
    /// checkpoint.
    Files(String),
}

impl From<&str> for OutputTarget {
    fn from(path: &str) -> Self {
        OutputTarget::JsonLines(path.to_string())
    }
}

impl From<String> for OutputTarget {
    fn from(path: String) -> Self {
        OutputTarget::JsonLines(path)
    }
}

/// A Kafka topic as a job's output: each result line is a record's value; its key is the line's
/// `key` field (as JSON text, e.g. `"k7"`), if it has one, so a key's results share a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaOutput {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The topic (it must exist).
    pub topic: String,
    /// At-least-once, idempotent, or exactly-once (one transaction per epoch).
    pub delivery: Delivery,
    /// How often an exactly-once sink commits a transaction.
    pub commit_interval: Duration,
    /// librdkafka settings passed through.
    pub settings: Vec<(String, String)>,
    /// Exactly-once with a checkpoint: tag every record with the headers `weir-epoch`,
    /// `weir-worker` and `weir-run` (see `KafkaSink::epoch_headers`).
    pub epoch_headers: bool,
}

/// Writes result `lines` to `target`: JSON lines as the sink `jsonl:<target>`, or Kafka records
/// as the sink `kafka:<topic>`.
pub fn write_results<'scope>(
    lines: StreamVec<'scope, EventTime, String>,
    target: &OutputTarget,
    ctx: &QueryContext,
) -> Result<(), BuildError> {
    match target {
        OutputTarget::JsonLines(path) => JsonLinesSink::new(path).write_lines(lines, ctx, &format!("jsonl:{path}")),
        OutputTarget::Files(dir) => ExactlyOnceJsonLinesSink::new(dir).write_lines(lines, ctx, &format!("files:{dir}")),
        OutputTarget::Kafka(kafka) => {
            let options = KafkaOptions::new(&kafka.brokers).set_all(kafka.settings.iter().cloned());
            let records = lines.map(|line| {
                let key =
                    serde_json::from_str::<Value>(&line).ok().and_then(|value| value.get("key").map(Value::to_string));
                let record = ProducerRecord::new(line.into_bytes());
                match key {
                    Some(key) => record.key(key.into_bytes()),
                    None => record,
                }
            });
            KafkaSink::to_topic(options, kafka.topic.clone())
                .delivery(kafka.delivery)
                .commit_interval(kafka.commit_interval)
                .epoch_headers(kafka.epoch_headers)
                .write(records, ctx, &format!("kafka:{}", kafka.topic))
        }
    }
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
