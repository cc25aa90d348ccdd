//! Kafka helpers for the integration tests: where the test brokers are (from the environment
//! that `scripts/test-env up` writes), unique topic names, creating topics, producing records with
//! every field, and reading a topic back.
//!
//! A test that needs a broker and finds none FAILS with a message saying how to start one; only
//! the tests gated on a real Apache Kafka (`WEIR_KAFKA_EOS_BROKERS`) skip, and say so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir_connectors::kafka::{KafkaAdmin, KafkaOptions, KafkaRecord};

const HOW_TO_START: &str = "Start one with `scripts/test-env up && source target/test-env/env.sh`, or run the whole suite with scripts/test.sh";

fn required(variable: &str, what: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!("no {what}: {variable} is not set. {HOW_TO_START}"),
    }
}

/// The brokers of the main test cluster (nisshi 0.8.1): `WEIR_KAFKA_BROKERS`, or a panic saying
/// how to start them.
pub fn brokers() -> String {
    required("WEIR_KAFKA_BROKERS", "Kafka broker")
}

/// The brokers that support transactions (nisshi 0.7.0): `WEIR_KAFKA_TXN_BROKERS`, or a panic.
pub fn txn_brokers() -> String {
    required("WEIR_KAFKA_TXN_BROKERS", "transactional Kafka broker")
}

/// The path of a nisshi 0.8.1 binary for tests that start and stop a broker of their own
/// (`WEIR_NISSHI_BIN`), or a panic.
pub fn nisshi_bin() -> String {
    required("WEIR_NISSHI_BIN", "nisshi binary")
}

/// A real Apache Kafka for exactly-once visibility tests (`WEIR_KAFKA_EOS_BROKERS`), or `None`
/// after printing `SKIPPED (no real Kafka): <test name> ...` (such tests cannot pass on the
/// brokers that install here, and must not pretend to).
pub fn eos_brokers() -> Option<String> {
    match std::env::var("WEIR_KAFKA_EOS_BROKERS") {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            let test = std::thread::current().name().unwrap_or("this test").to_string();
            println!(
                "SKIPPED (no real Kafka): {test} needs a real Apache Kafka (read_committed must hide aborted records); set WEIR_KAFKA_EOS_BROKERS=host:port to run it"
            );
            None
        }
    }
}

/// A topic name no other test (or earlier run against the same broker) has used:
/// `weir-<label>-<pid>-<time>-<n>`.
pub fn unique_topic(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("weir-{label}-{}-{:x}-{}", std::process::id(), nanos % (1 << 40), NEXT.fetch_add(1, Ordering::SeqCst))
}

/// An admin connection to `brokers` (10 s timeouts).
pub fn admin(brokers: &str) -> KafkaAdmin {
    KafkaAdmin::connect(&KafkaOptions::new(brokers), Duration::from_secs(10)).expect("admin client")
}

/// Creates `topic` with `partitions` partitions and waits until the metadata shows them.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    admin(brokers)
        .create_topic(topic, partitions, 1)
        .unwrap_or_else(|e| panic!("creating test topic {topic:?} on {brokers}: {e}"));
}

/// One record to produce. `partition: None` lets the producer's partitioner choose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl TestRecord {
    /// A record with a UTF-8 value, for `partition` at `timestamp` (ms).
    pub fn new(partition: i32, timestamp: i64, value: impl Into<String>) -> Self {
        TestRecord {
            value: Some(value.into().into_bytes()),
            partition: Some(partition),
            timestamp: Some(timestamp),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: Option<&[u8]>) -> Self {
        self.headers.push((name.to_string(), value.map(<[u8]>::to_vec)));
        self
    }
}

/// Produces `records` to `topic` in order (idempotent producer, acks=all, one in flight per
/// partition so the order within a partition is the order given) and waits until every one is
/// acknowledged; panics with the broker's message otherwise.
pub fn produce(brokers: &str, topic: &str, records: &[TestRecord]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("test producer");
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key: key.as_str(), value: value.as_deref() });
        }
        let mut base = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(timestamp) = record.timestamp {
            base = base.timestamp(timestamp);
        }
        let mut pending = base;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    producer.poll(Duration::from_millis(10));
                    pending = back;
                }
                Err((error, _)) => panic!("producing to {topic}: {error}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap_or_else(|e| panic!("flushing records to {topic}: {e}"));
    assert_eq!(producer.in_flight_count(), 0, "records to {topic} were not all delivered");
}

/// Which records a reader sees (Kafka's `isolation.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// Every record of `topic` from the start up to the end of each partition as the reader's
/// fetches see it (partition-EOF events, so it also works on brokers whose ListOffsets is wrong,
/// and with `read_committed` stops at the last stable offset), sorted by (partition, offset).
pub fn consume_all(brokers: &str, topic: &str, isolation: Isolation) -> Vec<KafkaRecord> {
    let partitions = admin(brokers).partitions_of(&[topic.to_string()]).expect("topic exists");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("weir-test-reader-{}", unique_topic("g")))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set(
            "isolation.level",
            match isolation {
                Isolation::ReadUncommitted => "read_uncommitted",
                Isolation::ReadCommitted => "read_committed",
            },
        )
        .create()
        .expect("test consumer");
    let mut list = TopicPartitionList::new();
    for tp in &partitions {
        list.add_partition_offset(&tp.topic, tp.partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&list).expect("assign");
    let mut at_end = std::collections::BTreeSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < partitions.len() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} back: only partitions {at_end:?} of {} reached their end in 30 s",
            partitions.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                records.push(KafkaRecord::from_message(&message));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(error)) => panic!("reading {topic} back: {error}"),
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// A window-count result row: (window_start, window_end, key, count).
pub type Row = (i64, i64, String, u64);

/// The row of one result line `{"window_start","window_end","key","count"}`.
pub fn row(value: &serde_json::Value) -> Row {
    let field = |name: &str| value[name].as_i64().unwrap_or_else(|| panic!("{name} in {value}"));
    (field("window_start"), field("window_end"), value["key"].as_str().unwrap().to_string(), field("count") as u64)
}

/// What a tumbling window count (`window_ms`, watermark delay `delay_ms`, append mode) must
/// write for the records of a topic read back with their partitions in offset order (the test
/// stream of `weir kafka produce-test-data`: key in the Kafka key, event time in the Kafka
/// timestamp): a record is late iff it is below its partition's watermark (the specification's
/// rule, `super::PartitionClock`). With `avro`, records that are not Confluent-framed are left
/// out (they go to a dead-letter output). Answers the rows and the number of late records.
pub fn window_count_oracle(
    records: &[KafkaRecord],
    delay_ms: u64,
    window_ms: i64,
    avro: bool,
) -> (BTreeSet<Row>, usize) {
    let mut clocks: BTreeMap<i32, super::PartitionClock> = BTreeMap::new();
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut late = 0;
    for record in records {
        let value = record.value.as_deref().unwrap_or_default();
        if avro && value.first() != Some(&0) {
            continue;
        }
        let ts = record.timestamp.expect("the test stream sets timestamps");
        let key = String::from_utf8(record.key.clone().expect("keyed")).unwrap();
        match clocks.entry(record.partition).or_insert_with(|| super::PartitionClock::new(delay_ms)).arrive(ts as u64) {
            super::Arrival::Late { .. } => late += 1,
            super::Arrival::OnTime { .. } => {
                *counts.entry((ts.div_euclid(window_ms) * window_ms, key)).or_default() += 1
            }
        }
    }
    let rows = counts.into_iter().map(|((start, key), count)| (start, start + window_ms, key, count)).collect();
    (rows, late)
}

/// The window-count rows (JSON values) of every record of `topic`, as `isolation` reads them.
pub fn rows_of(brokers: &str, topic: &str, isolation: Isolation) -> Vec<Row> {
    consume_all(brokers, topic, isolation)
        .iter()
        .map(|r| row(&serde_json::from_slice(r.value.as_deref().unwrap()).unwrap()))
        .collect()
}

/// The test stream's records as the JSON jobs read them: (partition, value), in offset order
/// per partition.
pub fn json_values(brokers: &str, topic: &str) -> Vec<(i32, serde_json::Value)> {
    consume_all(brokers, topic, Isolation::ReadUncommitted)
        .iter()
        .map(|r| (r.partition, serde_json::from_slice(r.value.as_deref().expect("a value")).unwrap()))
        .collect()
}

/// The settings of a test stream of `weir kafka produce-test-data` that the tests vary.
#[derive(Clone, Copy, Debug)]
pub struct TestStream<'a> {
    /// `--records`.
    pub records: u64,
    /// `--keys`.
    pub keys: u64,
    /// `--seed`.
    pub seed: u64,
    /// More flags (e.g. `--event-types`).
    pub extra: &'a [&'a str],
}

impl TestStream<'static> {
    /// `records` records over `keys` keys, seeded by `seed`, no more flags.
    pub fn new(records: u64, keys: u64, seed: u64) -> Self {
        TestStream { records, keys, seed, extra: &[] }
    }
}

/// Produces a test stream to `topic` with `weir kafka produce-test-data`: 3 partitions, a record
/// every 5 ms, 2 % of them 30 s late, and `stream`'s records, keys, seed and
/// flags.
pub fn produce_test_stream(brokers: &str, topic: &str, stream: TestStream) {
    let (records, keys, seed) = (stream.records.to_string(), stream.keys.to_string(), stream.seed.to_string());
    let mut args = vec![
        "kafka",
        "produce-test-data",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--partitions",
        "3",
        "--records",
        &records,
        "--keys",
        &keys,
        "--step",
        "5ms",
        "--late-fraction",
        "0.02",
        "--late-by",
        "30s",
        "--seed",
        &seed,
    ];
    args.extend_from_slice(stream.extra);
    super::check(&super::weir(&args));
}
