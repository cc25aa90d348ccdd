//! The Kafka flags of `weir run` jobs: `--source kafka --brokers .. --topic ..` for input and
//! `--sink kafka --output-topic .. --delivery ..` for output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use weir::jobs::json_output::{KafkaOutput, OutputTarget};
use weir::jobs::kafka_input::{DeadLetters, KafkaInput, ValueFormat};
use weir_connectors::codec::dead_letter::DeadLetterFile;
use weir_connectors::kafka::dead_letter::KafkaDeadLetters;
use weir_connectors::kafka::sink::Delivery;
use weir_connectors::kafka::KafkaOptions;

use super::duration;

/// Where a job reads Kafka records from, and how it decodes them.
#[derive(Args, Debug, Clone)]
pub struct KafkaSourceArgs {
    /// Kafka bootstrap servers, host:port[,host:port] (with --source kafka; also the sink's default).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic to read (repeatable), with --source kafka.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Where to start: earliest, latest, or Spark's JSON {"topic":{"0":23,"1":-2}} (-2 earliest,
    /// -1 latest). The CLI starts at earliest (Spark's streaming default is latest).
    #[arg(long, default_value = "earliest")]
    pub starting_offsets: String,
    /// End a bounded run here: latest (the end when the query starts) or Spark's JSON. Without it
    /// the query runs until stopped.
    #[arg(long)]
    pub ending_offsets: Option<String>,
    /// Read at most this many records per source activation, split evenly over the partitions
    /// (Spark's maxOffsetsPerTrigger).
    #[arg(long)]
    pub max_offsets_per_epoch: Option<u64>,
    /// How record values are encoded: json, or avro (Confluent wire format; needs --registry).
    #[arg(long, value_enum, default_value_t = ValueFormat::Json)]
    pub format: ValueFormat,
    /// Schema registry URL, for --format avro.
    #[arg(long)]
    pub registry: Option<String>,
    /// Records that do not decode are written here (JSON lines: raw bytes, reason, topic,
    /// partition, offset) instead of failing the query.
    #[arg(long, value_name = "FILE", conflicts_with = "dead_letter_topic")]
    pub dead_letter: Option<PathBuf>,
    /// Like --dead-letter, to a Kafka topic on --brokers (it must exist): one record per letter,
    /// its value the JSON envelope, its key `topic/partition`.
    #[arg(long, value_name = "TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// A librdkafka setting, key=value (repeatable; a leading kafka. is dropped), for the source and sink.
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

impl KafkaSourceArgs {
    /// The Kafka input these flags describe.
    pub fn input(&self) -> Result<KafkaInput> {
        let Some(brokers) = &self.brokers else { bail!("--source kafka needs --brokers host:port") };
        if self.topics.is_empty() {
            bail!("--source kafka needs --topic NAME (repeatable)");
        }
        let settings = settings(&self.settings)?;
        let dead_letters = match (&self.dead_letter, &self.dead_letter_topic) {
            (Some(path), _) => Some(DeadLetters {
                name: format!("file {}", path.display()),
                target: Arc::new(
                    DeadLetterFile::create(path)
                        .with_context(|| format!("cannot open the dead-letter file {}", path.display()))?,
                ),
            }),
            (None, Some(topic)) => {
                let options = KafkaOptions::new(brokers).set_all(settings.iter().cloned());
                Some(DeadLetters {
                    name: format!("topic {topic}"),
                    target: Arc::new(KafkaDeadLetters::new(&options, topic)?),
                })
            }
            (None, None) => None,
        };
        Ok(KafkaInput {
            brokers: brokers.clone(),
            topics: self.topics.clone(),
            starting_offsets: self.starting_offsets.clone(),
            ending_offsets: self.ending_offsets.clone(),
            max_offsets_per_epoch: self.max_offsets_per_epoch,
            format: self.format,
            registry: self.registry.clone(),
            dead_letters,
            settings,
        })
    }
}

/// Where a job writes Kafka records.
#[derive(Args, Debug, Clone)]
pub struct KafkaSinkArgs {
    /// Topic to write results to, with --sink kafka (it must exist).
    #[arg(long)]
    pub output_topic: Option<String>,
    /// Bootstrap servers of the sink (default: --brokers).
    #[arg(long)]
    pub output_brokers: Option<String>,
    /// at-least-once, idempotent, or exactly-once (one Kafka transaction per epoch, committed when
    /// the watermark has passed it).
    #[arg(long, default_value = "at-least-once")]
    pub delivery: String,
    /// How often an exactly-once sink commits its transaction (with --checkpoint, transactions
    /// follow the checkpoint's epochs instead).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub commit_interval: Duration,
    /// Exactly-once with --checkpoint: add the headers weir-epoch, weir-worker and weir-run to
    /// every record (which checkpoint epoch, worker and run wrote it).
    #[arg(long)]
    pub epoch_headers: bool,
}

impl KafkaSinkArgs {
    /// The Kafka output these flags describe; `brokers` is the source's `--brokers`, if any.
    pub fn target(&self, brokers: Option<&str>, source_settings: &[String]) -> Result<OutputTarget> {
        let Some(topic) = &self.output_topic else { bail!("--sink kafka needs --output-topic NAME") };
        let Some(brokers) = self.output_brokers.as_deref().or(brokers) else {
            bail!("--sink kafka needs --output-brokers host:port (or --brokers)")
        };
        Ok(OutputTarget::Kafka(KafkaOutput {
            brokers: brokers.to_string(),
            topic: topic.clone(),
            delivery: Delivery::parse(&self.delivery)?,
            commit_interval: self.commit_interval,
            settings: settings(source_settings)?,
            epoch_headers: self.epoch_headers,
        }))
    }
}

/// Parses repeated `key=value` settings.
pub fn settings(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Ok((key.trim().to_string(), value.trim().to_string())),
            None => bail!("--kafka {pair:?}: expected key=value, e.g. --kafka fetch.min.bytes=1"),
        })
        .collect()
}
