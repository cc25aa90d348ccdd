//! Schema evolution with the schema registry: a v1 producer, a v2 reader with a new optional field.
//!
//! 1. A producer registers `User` v1 (`id`, `name`) under `<topic>-value` and writes three users
//!    in Confluent's wire format (magic byte, schema id, Avro body).
//! 2. `User` v2 adds `email: ["null", "string"]` with default `null`: a BACKWARD-compatible change,
//!    which the registry accepts; a second producer writes a user with an email under v2.
//! 3. A Weir query reads the topic with the v2 struct as its reader schema: each record's writer
//!    schema is fetched by id (and cached), resolved against v2 (v1 records get `email: None`),
//!    and printed with the schema id it was written with.
//!
//! ```sh
//! scripts/test-env up && source target/test-env/env.sh   # a Kafka and `weir registry serve`
//! cargo run --example schema_evolution
//! ```

use std::time::Duration;

use apache_avro::AvroSchema;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir::prelude::*;
use weir_connectors::codec::avro::{AvroDecoder, AvroEncoder, AvroEncoderConfig};
use weir_connectors::codec::{Decode, Encode};
use weir_connectors::kafka::source::{EndingOffsets, KafkaSource, StartingOffsets};
use weir_connectors::kafka::{KafkaAdmin, KafkaOptions, KafkaRecord};
use weir_connectors::registry::client::RegistryClient;
use weir_runtime::map_source::SourceExt;

/// What the old producer writes.
#[derive(Clone, Debug, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "User")]
#[avro(namespace = "example")]
struct UserV1 {
    id: i64,
    name: String,
}

/// What the new code reads (and the new producer writes): v1 plus an optional email.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "User")]
#[avro(namespace = "example")]
struct UserV2 {
    id: i64,
    name: String,
    #[avro(default = "null")]
    email: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let registry = std::env::var("WEIR_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:8081".to_string());
    let options = KafkaOptions::new(&brokers);
    let topic = format!("users-{}", std::process::id());
    KafkaAdmin::connect(&options, Duration::from_secs(10))?.create_topic(&topic, 1, 1)?;
    let client = RegistryClient::from_url(&registry)?;
    let producer: ThreadedProducer<_> = options.client_config(&[]).create()?;
    let send = |payload: Vec<u8>| -> Result<(), Box<dyn std::error::Error>> {
        producer.send(BaseRecord::<(), _>::to(&topic).payload(&payload)).map_err(|(e, _)| e)?;
        Ok(())
    };

    // 1. The old producer: registers v1 (auto-register is off by default; on for this demo).
    let v1 = AvroEncoder::<UserV1>::new(client.clone(), &topic, AvroEncoderConfig::default().auto_register(true))?;
    println!("v1 registered under {} with id {}", v1.subject(), v1.schema_id());
    for (id, name) in [(1, "ada"), (2, "grace"), (3, "edsger")] {
        send(v1.encode(&UserV1 { id, name: name.to_string() })?)?;
    }
    // 2. The new producer: v2 is BACKWARD compatible with v1, so the registry accepts it.
    let v2 = AvroEncoder::<UserV2>::new(client.clone(), &topic, AvroEncoderConfig::default().auto_register(true))?;
    println!("v2 registered under {} with id {}", v2.subject(), v2.schema_id());
    send(v2.encode(&UserV2 { id: 4, name: "barbara".into(), email: Some("barbara@example.org".into()) })?)?;
    producer.flush(Duration::from_secs(10))?;

    // 3. Read everything with the v2 reader schema.
    let users = Collector::new();
    let into = users.clone();
    let query = Query::new("schema-evolution").start(move |scope, ctx| {
        let decoder = AvroDecoder::<UserV2>::new(client.clone());
        let source = KafkaSource::subscribe(options.clone(), [topic.clone()])
            .starting_offsets(StartingOffsets::Earliest)
            .ending_offsets(EndingOffsets::Latest)
            .build()?
            .map_records(move |_, record: KafkaRecord| {
                let decoded =
                    decoder.decode(record.value.as_deref().unwrap_or_default()).map_err(|e| QueryError::Source {
                        source_name: "users".into(),
                        message: format!("offset {}: {e}", record.offset),
                    })?;
                Ok(Some((decoded.schema_id, decoded.value, record.timestamp.unwrap_or(0))))
            });
        let events = event_source(
            scope,
            ctx,
            source,
            |(_, _, timestamp): &(u32, UserV2, i64)| Some(EventTime::from_millis(*timestamp as u64)),
            WatermarkOptions::default(),
        );
        into.attach(events.records.map(|event| (event.data.0, event.data.1)), ctx, "users");
        Ok(())
    })?;
    query.await_termination(Some(Duration::from_secs(30)))?;
    if let Some(error) = query.exception() {
        return Err(error.into());
    }
    let mut users: Vec<(u32, UserV2)> = users.take().into_iter().map(|(_, user)| user).collect();
    users.sort_by_key(|(_, user)| user.id);
    for (schema_id, user) in &users {
        println!("written with schema {schema_id}: {user:?}");
    }
    assert_eq!(users.len(), 4);
    assert!(users[..3].iter().all(|(id, user)| *id == v1.schema_id() && user.email.is_none()));
    assert_eq!(users[3].1.email.as_deref(), Some("barbara@example.org"));
    Ok(())
}
