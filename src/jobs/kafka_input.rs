//! Kafka as the input of the ready-made jobs: record values decoded from JSON, or from Avro in
//! Confluent's wire format through the schema registry, into JSON values; records that do not
//! decode fail the query, or go to a dead-letter file when one is given.

use std::sync::Arc;

use serde_json::Value;
use timely::dataflow::Scope;
use weir_connectors::codec::avro::GenericAvroDecoder;
use weir_connectors::codec::dead_letter::DeadLetterTarget;
use weir_connectors::codec::json::JsonDecoder;
use weir_connectors::codec::{Decode, DecodeStage, OnDecodeError, RecordOrigin};
use weir_connectors::kafka::source::{EndingOffsets, KafkaSource, StartingOffsets};
use weir_connectors::kafka::{KafkaOptions, KafkaRecord};
use weir_connectors::registry::client::RegistryClient;
use weir_runtime::map_source::SourceExt;
use weir_runtime::prelude::*;
use weir_runtime::source::{event_source, Source};

use super::json_fields;

/// How record values are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ValueFormat {
    /// JSON text (one object per record).
    #[default]
    Json,
    /// Avro in Confluent's wire format; the writer schema is fetched from the registry by id.
    Avro,
}

/// A Kafka input of a job.
#[derive(Clone, Debug)]
pub struct KafkaInput {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The topics to read (every partition of each).
    pub topics: Vec<String>,
    /// `earliest`, `latest`, or Spark's per-partition JSON `{"topic":{"0":23}}`.
    pub starting_offsets: String,
    /// For a bounded run: `latest` (the end when the query starts) or per-partition JSON.
    pub ending_offsets: Option<String>,
    /// A cap on the records read per activation (Spark's `maxOffsetsPerTrigger`).
    pub max_offsets_per_epoch: Option<u64>,
    /// How values are encoded.
    pub format: ValueFormat,
    /// Schema registry URL (for Avro).
    pub registry: Option<String>,
    /// Records that do not decode go here (with the raw bytes, reason, topic, partition and
    /// offset) instead of failing the query. Shared by the workers of a process.
    pub dead_letters: Option<DeadLetters>,
    /// librdkafka settings passed through.
    pub settings: Vec<(String, String)>,
}

/// Where a job's undecodable records go: a JSON-lines file or a Kafka topic.
#[derive(Clone)]
pub struct DeadLetters {
    /// What it is, for messages (`file dead.jsonl`, `topic events-dlq`).
    pub name: String,
    /// The target, shared by the workers of a process.
    pub target: Arc<dyn DeadLetterTarget>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadLetters({})", self.name)
    }
}

impl KafkaInput {
    /// The source, resolved against the cluster (partitions, starting and ending offsets).
    pub fn source(&self) -> Result<KafkaSource, BuildError> {
        let options = KafkaOptions::new(&self.brokers).set_all(self.settings.iter().cloned());
        let starting = match self.starting_offsets.as_str() {
            "earliest" => StartingOffsets::Earliest,
            "latest" => StartingOffsets::Latest,
            json => StartingOffsets::from_json(json)?,
        };
        let mut builder = KafkaSource::subscribe(options, self.topics.iter().cloned()).starting_offsets(starting);
        if let Some(ending) = &self.ending_offsets {
            builder = builder.ending_offsets(match ending.as_str() {
                "latest" => EndingOffsets::Latest,
                json => EndingOffsets::from_json(json)?,
            });
        }
        if let Some(max) = self.max_offsets_per_epoch {
            builder = builder.max_offsets_per_epoch(max);
        }
        builder.build()
    }

    /// The decoded records as an event stream, event time read from `time_field`.
    pub fn events<'scope>(
        &self,
        scope: Scope<'scope, EventTime>,
        ctx: &QueryContext,
        time_field: &str,
        options: WatermarkOptions,
    ) -> Result<EventStream<'scope, Value>, BuildError> {
        let source = self.source()?;
        let on_error = match &self.dead_letters {
            Some(dead_letters) => OnDecodeError::DeadLetter(dead_letters.target.clone()),
            None => OnDecodeError::Fail,
        };
        let description = source.description();
        let time_field = time_field.to_string();
        let time_of = move |record: &Value| json_fields::time_of(record, &time_field);
        Ok(match self.format {
            ValueFormat::Json => {
                let stage = Arc::new(DecodeStage::new(JsonDecoder::<Value>::new(), on_error));
                let decoded = source.map_records(move |_, record: KafkaRecord| decode(&stage, &record, &description));
                event_source(scope, ctx, decoded, time_of, options)
            }
            ValueFormat::Avro => {
                let Some(url) = &self.registry else {
                    return Err(BuildError::invalid("--format avro", "no schema registry given", "add --registry URL"));
                };
                let client = RegistryClient::from_url(url)
                    .map_err(|e| BuildError::invalid("--registry", e.to_string(), "give the registry's http(s) URL"))?;
                let stage = Arc::new(DecodeStage::new(GenericAvroDecoder::new(client), on_error));
                let decoded = source.map_records(move |_, record: KafkaRecord| {
                    decode(&stage, &record, &description).map(|value| value.map(|decoded| avro_to_json(&decoded.value)))
                });
                event_source(scope, ctx, decoded, time_of, options)
            }
        })
    }
}

/// Decodes one record's value; the origin (topic, partition, offset) is built only for a record
/// that does not decode.
fn decode<D: Decode>(
    stage: &DecodeStage<D>,
    record: &KafkaRecord,
    source_name: &str,
) -> Result<Option<D::Output>, QueryError> {
    let bytes = record.value.as_deref().unwrap_or_default();
    if let Ok(value) = stage.decoder().decode(bytes) {
        return Ok(Some(value));
    }
    let origin = RecordOrigin::new(record.topic.clone(), record.partition, record.offset);
    stage.decode(bytes, &origin).map_err(|error| QueryError::Source {
        source_name: source_name.to_string(),
        message: format!(
            "{error}. Fix the producer, or set such records aside with --dead-letter FILE or --dead-letter-topic TOPIC"
        ),
    })
}

/// An Avro value as JSON: records become objects, unions their branch, enums their symbol.
fn avro_to_json(value: &apache_avro::types::Value) -> Value {
    apache_avro::from_value::<Value>(value).unwrap_or_else(|_| Value::String(format!("{value:?}")))
}
