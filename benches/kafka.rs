//! Kafka → 10 s tumbling count per key → Kafka, records/s per worker: JSON and Avro values,
//! at-least-once and exactly-once delivery, beside the raw produce and consume rates of the same
//! broker with the same client library (librdkafka), which bound what any pipeline can do.
//!
//! `WEIR_BENCH_ROWS` test-stream records (default 1,000,000; ~50-byte JSON values, 1,000 keys,
//! out of order, no late records) are produced once per format into a 4-partition topic on
//! `WEIR_KAFKA_BROKERS`; the job reads them to the end (ending offsets = latest). Exactly-once
//! output goes to `WEIR_KAFKA_TXN_BROKERS` (the broker here with transactions). The schema
//! registry is `WEIR_REGISTRY_URL`, or a `weir registry serve` started for the bench. All of it
//! runs on one machine, so the broker's own work is part of every number.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir::jobs::json_output::KafkaOutput;
use weir::jobs::kafka_input::{KafkaInput, ValueFormat};
use weir::jobs::test_stream::{TestEvent, TestStream};
use weir::jobs::window_count::{Input, Output, WindowCount};
use weir::prelude::*;
use weir_connectors::codec::avro::{AvroEncoder, AvroEncoderConfig};
use weir_connectors::codec::Encode;
use weir_connectors::kafka::sink::Delivery;
use weir_connectors::kafka::{KafkaAdmin, KafkaOptions};
use weir_connectors::registry::client::RegistryClient;

mod common;

const PARTITIONS: i32 = 4;

fn stream(rows: u64) -> TestStream {
    TestStream { records: rows, keys: 1_000, step: Duration::from_millis(1), late_fraction: 0.0, ..Default::default() }
}

/// Produces the test stream into `topic`; answers the time it took.
fn produce(brokers: &str, topic: &str, rows: u64, avro: Option<&AvroEncoder<TestEvent>>) -> Duration {
    let producer: ThreadedProducer<_> = KafkaOptions::new(brokers)
        .client_config(&[
            ("linger.ms", "20"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "500000"),
        ])
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut value = Vec::new();
    for event in stream(rows).events() {
        value.clear();
        match avro {
            Some(encoder) => encoder.encode_into(&event, &mut value).expect("avro"),
            None => serde_json::to_writer(&mut value, &event).expect("json"),
        }
        let mut record = BaseRecord::to(topic).key(event.key.as_bytes()).payload(&value).timestamp(event.ts);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("all records delivered");
    started.elapsed()
}

/// Reads `topic` to its end with a plain consumer; answers (records, time).
fn consume(brokers: &str, topic: &str) -> (u64, Duration) {
    let consumer: BaseConsumer = KafkaOptions::new(brokers)
        .client_config(&[("group.id", "weir-bench"), ("enable.partition.eof", "true"), ("enable.auto.commit", "false")])
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let started = Instant::now();
    let (mut read, mut ended) = (0u64, 0);
    while ended < PARTITIONS {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => read += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(error)) => panic!("consume: {error}"),
            None => {}
        }
    }
    (read, started.elapsed())
}

/// A `weir registry serve` for the bench, killed on drop.
struct Registry(Option<Child>, String);

impl Registry {
    fn get() -> Registry {
        if let Ok(url) = std::env::var("WEIR_REGISTRY_URL") {
            return Registry(None, url);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("weir registry serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().trim_start_matches("listening on ").to_string();
        Registry(Some(child), url)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the window-count job from `topic` to a fresh output topic; answers the rows written.
fn pipeline(input: &KafkaInput, output_brokers: &str, delivery: Delivery, workers: usize) -> u64 {
    let output_topic = format!("weir-bench-counts-{}-{}", std::process::id(), rand_suffix());
    KafkaAdmin::connect(&KafkaOptions::new(output_brokers), Duration::from_secs(10))
        .and_then(|admin| admin.create_topic(&output_topic, 1, 1))
        .expect("output topic");
    let job = WindowCount {
        input: Input::Kafka { kafka: input.clone(), time_field: "ts".into(), key_field: "key".into() },
        windowing: Windowing::tumbling(Duration::from_secs(10)),
        watermark_delay: Duration::from_secs(2),
        idle_timeout: None,
        output_mode: OutputMode::Append,
        output: Output::Kafka(KafkaOutput {
            brokers: output_brokers.to_string(),
            topic: output_topic.clone(),
            delivery,
            commit_interval: Duration::from_secs(1),
            settings: Vec::new(),
            epoch_headers: false,
        }),
        late_output: None,
        time_format: weir::jobs::json_fields::TimeFormat::Ms,
        drop_invalid_time: false,
    };
    let query = job.start(Query::new("kafka-bench").workers(workers)).expect("job starts");
    query.await_termination(None).expect("job ends");
    if let Some(error) = query.exception() {
        panic!("bench job failed: {error}");
    }
    query.context().metrics().sinks().iter().map(|s| s.output_rows.load(std::sync::atomic::Ordering::Relaxed)).sum()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
}

fn main() {
    if common::listing("kafka") {
        return;
    }
    let (Ok(brokers), Ok(txn_brokers)) = (std::env::var("WEIR_KAFKA_BROKERS"), std::env::var("WEIR_KAFKA_TXN_BROKERS"))
    else {
        panic!("no Kafka brokers: set WEIR_KAFKA_BROKERS and WEIR_KAFKA_TXN_BROKERS (`scripts/test-env up && source target/test-env/env.sh`)");
    };
    let rows = common::rows(1_000_000);
    let registry = Registry::get();
    let client = RegistryClient::from_url(&registry.1).expect("registry URL");
    let admin = KafkaAdmin::connect(&KafkaOptions::new(&brokers), Duration::from_secs(10)).expect("admin");
    println!(
        "kafka: {rows} test-stream records, {PARTITIONS} partitions, 1,000 keys, broker {brokers}; {}",
        common::machine()
    );

    for format in [ValueFormat::Json, ValueFormat::Avro] {
        let topic = format!("weir-bench-{format:?}-{}", std::process::id()).to_lowercase();
        admin.create_topic(&topic, PARTITIONS, 1).expect("input topic");
        let encoder = (format == ValueFormat::Avro).then(|| {
            AvroEncoder::<TestEvent>::new(client.clone(), &topic, AvroEncoderConfig::default().auto_register(true))
                .expect("schema registered")
        });
        let produced = produce(&brokers, &topic, rows, encoder.as_ref());
        common::report(&format!("{format:?}: raw produce (rdkafka, acks=all)"), rows, 1, produced);
        let (read, consumed) = consume(&brokers, &topic);
        assert_eq!(read, rows);
        common::report(&format!("{format:?}: raw consume (rdkafka)"), rows, 1, consumed);
        let input = KafkaInput {
            brokers: brokers.clone(),
            topics: vec![topic.clone()],
            starting_offsets: "earliest".into(),
            ending_offsets: Some("latest".into()),
            max_offsets_per_epoch: None,
            format,
            registry: Some(registry.1.clone()),
            dead_letters: None,
            settings: Vec::new(),
        };
        for (delivery, output_brokers) in [(Delivery::AtLeastOnce, &brokers), (Delivery::ExactlyOnce, &txn_brokers)] {
            for workers in [1usize, 2] {
                let (elapsed, written) = common::best_of_three(|| pipeline(&input, output_brokers, delivery, workers));
                assert!(written > 0, "windows were written");
                common::report(&format!("{format:?} window count, {}", delivery.name()), rows, workers, elapsed);
            }
        }
    }
}
