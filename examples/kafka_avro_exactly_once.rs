//! Kafka Avro (schema registry) → keyed state → Kafka, exactly-once.
//!
//! Writes 2,000 Avro test events (`weir.test.TestEvent {key, ts, value}`, registered under
//! `<topic>-value`) into a 3-partition topic, then runs a bounded query: the Kafka source reads
//! them with the Kafka timestamp as event time; a decode stage turns each value into a
//! `TestEvent` through the registry (a record that does not decode fails the query, naming its
//! offset); `key_by(key).process_with_state` keeps a running count per key; the Kafka sink
//! writes `{"key","ts","count"}` records **transactionally**: one Kafka transaction per epoch,
//! committed only once the watermark has passed every record in it. The output is then read
//! back with `isolation.level=read_committed`.
//!
//! Needs a broker with Kafka transactions for the output (`WEIR_KAFKA_TXN_BROKERS`) and a schema
//! registry (`WEIR_REGISTRY_URL`); the input topic lives on `WEIR_KAFKA_BROKERS` (default: the
//! same broker). `scripts/test-env up` starts all three; it uses two brokers because the one with
//! transactions here (nisshi 0.7.0) reports wrong end offsets, which a bounded read relies on.
//!
//! ```sh
//! scripts/test-env up && source target/test-env/env.sh
//! cargo run --example kafka_avro_exactly_once
//! ```

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use timely::dataflow::operators::vec::Map;
use weir::jobs::test_stream::{TestEvent, TestStream};
use weir::prelude::*;
use weir_connectors::codec::avro::{AvroDecoder, AvroEncoder, AvroEncoderConfig};
use weir_connectors::codec::{Decode, Encode};
use weir_connectors::kafka::sink::{Delivery, KafkaSink, ProducerRecord};
use weir_connectors::kafka::source::{EndingOffsets, KafkaSource, StartingOffsets};
use weir_connectors::kafka::{KafkaAdmin, KafkaOptions, KafkaRecord};
use weir_connectors::registry::client::RegistryClient;
use weir_runtime::map_source::SourceExt;

const EVENTS: u64 = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("WEIR_KAFKA_TXN_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let input_brokers = std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| brokers.clone());
    let registry = std::env::var("WEIR_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:8081".to_string());
    let (input, output) = (KafkaOptions::new(&input_brokers), KafkaOptions::new(&brokers));
    let run = std::process::id();
    let (events_topic, counts_topic) = (format!("avro-events-{run}"), format!("running-counts-{run}"));
    KafkaAdmin::connect(&input, Duration::from_secs(10))?.create_topic(&events_topic, 3, 1)?;
    KafkaAdmin::connect(&output, Duration::from_secs(10))?.create_topic(&counts_topic, 1, 1)?;
    let client = RegistryClient::from_url(&registry)?;

    // Input: Avro events in Confluent's wire format, Kafka timestamp = event time.
    let encoder =
        AvroEncoder::<TestEvent>::new(client.clone(), &events_topic, AvroEncoderConfig::default().auto_register(true))?;
    let producer: ThreadedProducer<_> = input.client_config(&[("linger.ms", "5")]).create()?;
    let stream = TestStream { records: EVENTS, keys: 20, late_fraction: 0.0, ..Default::default() };
    for event in stream.events() {
        let value = encoder.encode(&event)?;
        producer
            .send(BaseRecord::to(&events_topic).key(event.key.as_bytes()).payload(&value).timestamp(event.ts))
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;

    let query = Query::new("avro-running-count").workers(2).start(move |scope, ctx| {
        let decoder = AvroDecoder::<TestEvent>::new(client.clone());
        let source = KafkaSource::subscribe(input.clone(), [events_topic.clone()])
            .starting_offsets(StartingOffsets::Earliest)
            .ending_offsets(EndingOffsets::Latest)
            .build()?
            .map_records(move |_, record: KafkaRecord| {
                let decoded =
                    decoder.decode(record.value.as_deref().unwrap_or_default()).map_err(|e| QueryError::Source {
                        source_name: "avro-events".into(),
                        message: format!("{}-{} offset {}: {e}", record.topic, record.partition, record.offset),
                    })?;
                Ok(Some(decoded.value))
            });
        let events = event_source(
            scope,
            ctx,
            source,
            |event: &TestEvent| Some(EventTime::from_millis(event.ts as u64)),
            WatermarkOptions::with_delay(Duration::from_secs(2)),
        );
        let running = events.key_by(|event: &TestEvent| event.key.clone()).process_with_state(
            ctx,
            "running-count",
            |key: &String, events, state: &mut KeyedState<u64>, out: &mut Vec<(String, i64, u64)>| {
                let mut count = state.get().copied().unwrap_or(0);
                for event in events {
                    count += 1;
                    out.push((key.clone(), event.ts, count));
                }
                state.update(count);
            },
        )?;
        let records = running.output.records.map(|event| {
            let (key, ts, count) = event.data;
            let value = serde_json::json!({"key": key, "ts": ts, "count": count});
            ProducerRecord::new(value.to_string()).key(key.into_bytes())
        });
        KafkaSink::to_topic(output.clone(), counts_topic.clone())
            .delivery(Delivery::ExactlyOnce)
            .commit_interval(Duration::from_millis(200))
            .write(records, ctx, "running-counts")
    })?;
    query.await_termination(Some(Duration::from_secs(60)))?;
    if let Some(error) = query.exception() {
        return Err(error.into());
    }

    // Read the committed output back.
    let consumer: BaseConsumer = KafkaOptions::new(&brokers)
        .client_config(&[("group.id", "weir-example"), ("isolation.level", "read_committed")])
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&format!("running-counts-{run}"), 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut last_per_key = std::collections::BTreeMap::new();
    let mut rows = 0;
    // Until every count has arrived, for at most 60 s (the end offset some brokers report is not
    // reliable for transactional batches, so no end-of-partition event is relied on).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rows < EVENTS && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
                last_per_key.insert(value["key"].as_str().unwrap_or_default().to_string(), value["count"].as_u64());
                rows += 1;
            }
            None => {}
            Some(Err(error)) => return Err(error.into()),
        }
    }
    println!("{rows} running counts committed; final count per key: {last_per_key:?}");
    assert_eq!(rows, EVENTS, "one running count per event");
    Ok(())
}
