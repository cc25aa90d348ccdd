//! The Kafka source against a real broker (`WEIR_KAFKA_BROKERS`, nisshi 0.8.1; start it with
//! `scripts/test-env up`): every subscription form, every starting-offset form, ending offsets,
//! the per-epoch offset cap, the data-loss policy, librdkafka pass-through options, record fields,
//! a windowed count over a 3-partition topic compared with a batch oracle (1 and 3 workers, late
//! records included), consumer lag in progress reports, and a broker killed mid-run.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use weir_connectors::kafka::{
    EndingOffsets, KafkaOptions, KafkaRecord, KafkaSource, KafkaSourceBuilder, StartingOffsets, TimestampType,
    TopicPartition,
};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;
use weir_runtime::timely::dataflow::operators::Inspect;

mod support;
use support::kafka::{brokers, consume_all, create_topic, nisshi_bin, produce, unique_topic, Isolation, TestRecord};
use support::{check_late_output, describe_difference, final_table, jittered_time, Arrival, PartitionClock};

/// A realistic base time (2023-11-14T22:13:20Z).
const BASE: i64 = 1_700_000_000_000;

/// What a bounded run of a source produced.
#[derive(Default)]
struct Collected {
    /// (timely time the batch was stamped at, record), on-time records.
    records: Vec<(u64, KafkaRecord)>,
    /// Records late at their partition.
    late: Vec<LateRecord<KafkaRecord>>,
}

impl Collected {
    /// Every record (on time and late), sorted by topic, partition and offset.
    fn all(&self) -> Vec<KafkaRecord> {
        let mut all: Vec<KafkaRecord> =
            self.records.iter().map(|(_, r)| r.clone()).chain(self.late.iter().map(|l| l.record.clone())).collect();
        all.sort();
        all
    }

    /// (topic, partition, offset) of every record.
    fn positions(&self) -> Vec<(String, i32, i64)> {
        self.all().into_iter().map(|r| (r.topic, r.partition, r.offset)).collect()
    }
}

/// Starts a query reading `source` on `workers` workers, collecting everything it reads.
fn start(
    source: KafkaSource,
    workers: usize,
    watermark: WatermarkOptions,
) -> (Result<QueryHandle, BuildError>, Arc<Mutex<Collected>>) {
    let collected = Arc::new(Mutex::new(Collected::default()));
    let into = collected.clone();
    let started = Query::new("kafka-source").workers(workers).progress_interval(Duration::from_millis(20)).start(
        move |scope, ctx| {
            let events = source.clone().events(scope, ctx, KafkaRecord::event_time, watermark.clone());
            let records = into.clone();
            events
                .records
                .inspect_time(move |t, e| records.lock().unwrap().records.push((t.as_millis(), e.data.clone())));
            let late = into.clone();
            events.late.inspect(move |l| late.lock().unwrap().late.push(l.clone()));
            Ok(())
        },
    );
    (started, collected)
}

/// Runs a bounded source to its end (30 s at most) and returns what it read.
fn read_bounded(source: KafkaSource, workers: usize) -> Collected {
    let (started, collected) = start(source, workers, WatermarkOptions::default());
    let handle = started.expect("the query starts");
    match handle.await_termination(Some(Duration::from_secs(30))) {
        Ok(true) => {}
        Ok(false) => panic!("a bounded Kafka read did not finish in 30 s"),
        Err(error) => panic!("the query failed: {error}"),
    }
    let read = std::mem::take(&mut *collected.lock().unwrap());
    read
}

fn options() -> KafkaOptions {
    KafkaOptions::new(brokers())
}

/// `n` records per partition with values `p-i` and timestamps `BASE + i * 1000`.
fn fill(topic: &str, partitions: i32, n: i64) {
    let mut records = Vec::new();
    for p in 0..partitions {
        for i in 0..n {
            records.push(TestRecord::new(p, BASE + i * 1000, format!("{p}-{i}")));
        }
    }
    produce(&brokers(), topic, &records);
}

fn expect_build_error(builder: KafkaSourceBuilder, needles: &[&str]) -> String {
    let message = match builder.build() {
        Ok(source) => panic!("the source should not build: {:?}", source.topic_partitions()),
        Err(error) => error.to_string(),
    };
    for needle in needles {
        assert!(message.contains(needle), "the error should mention {needle:?}: {message}");
    }
    message
}

fn positions(topic: &str, spec: &[(i32, std::ops::Range<i64>)]) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    for (p, range) in spec {
        out.extend(range.clone().map(|o| (topic.to_string(), *p, o)));
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Record fields
// ---------------------------------------------------------------------------------------------

#[test]
fn record_fields_round_trip() {
    let topic = unique_topic("fields");
    create_topic(&brokers(), &topic, 1);
    let sent = vec![
        TestRecord::new(0, BASE, "plain"),
        TestRecord::new(0, BASE + 5, "keyed").key("k1").header("h1", Some(b"v1")).header("h2", Some(b"")),
        TestRecord {
            key: Some(b"tomb".to_vec()),
            value: None,
            partition: Some(0),
            timestamp: Some(BASE + 9),
            headers: vec![],
        },
        TestRecord::new(0, BASE + 7, "binary").key(vec![0u8, 255, 1]).header("null", None).header("h1", Some(b"again")),
    ];
    produce(&brokers(), &topic, &sent);
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::Earliest)
        .ending_offsets(EndingOffsets::Latest)
        .build()
        .unwrap();
    assert_eq!(source.starting_offsets_json(), json!({ topic.clone(): {"0": 0} }));
    assert_eq!(source.ending_offsets_json(), Some(json!({ topic.clone(): {"0": 4} })));
    let read = read_bounded(source, 1).all();
    assert_eq!(read.len(), sent.len(), "{read:?}");
    for (offset, (got, want)) in read.iter().zip(&sent).enumerate() {
        assert_eq!(got.topic, topic);
        assert_eq!(got.partition, 0);
        assert_eq!(got.offset, offset as i64);
        assert_eq!(got.key, want.key, "key of offset {offset}");
        assert_eq!(got.value, want.value, "value of offset {offset}");
        assert_eq!(got.timestamp, want.timestamp, "timestamp of offset {offset}");
        assert_eq!(got.timestamp_type, TimestampType::CreateTime);
        let headers: Vec<(String, Option<Vec<u8>>)> =
            got.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect();
        assert_eq!(headers, want.headers, "headers of offset {offset}");
    }
    assert_eq!(read, consume_all(&brokers(), &topic, Isolation::ReadUncommitted), "a plain consumer reads the same");
    assert_eq!(read[1].header("h1"), Some(Some(&b"v1"[..])));
    assert_eq!(read[3].header("null"), Some(None));
    assert_eq!(read[0].value_str(), Some("plain"));
    assert_eq!(read[0].event_time(), Some(EventTime::from_millis(BASE as u64)));
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_reads_every_partition_of_several_topics_on_two_workers() {
    let (a, b) = (unique_topic("sub-a"), unique_topic("sub-b"));
    create_topic(&brokers(), &a, 2);
    create_topic(&brokers(), &b, 1);
    fill(&a, 2, 7);
    fill(&b, 1, 5);
    let source = KafkaSource::subscribe(options(), [a.as_str(), b.as_str()])
        .starting_offsets(StartingOffsets::Earliest)
        .ending_offsets(EndingOffsets::Latest)
        .build()
        .unwrap();
    assert_eq!(source.topic_partitions().len(), 3);
    let read = read_bounded(source, 2);
    let mut want = positions(&a, &[(0, 0..7), (1, 0..7)]);
    want.extend(positions(&b, &[(0, 0..5)]));
    want.sort();
    assert_eq!(read.positions(), want);
    for r in read.all() {
        assert_eq!(r.value_str().unwrap(), format!("{}-{}", r.partition, r.offset), "value of {r:?}");
    }

    let missing = unique_topic("missing");
    expect_build_error(KafkaSource::subscribe(options(), [missing.as_str()]), &[&missing, "does not exist"]);
}

#[test]
fn subscribe_pattern_reads_the_matching_topics_only() {
    let prefix = unique_topic("pat");
    let (x, y, other) = (format!("{prefix}-x"), format!("{prefix}-y"), format!("{prefix}x-other"));
    for topic in [&x, &y, &other] {
        create_topic(&brokers(), topic, 1);
        fill(topic, 1, 3);
    }
    let pattern = format!("{}-[xy]", regex_escape(&prefix));
    let source = KafkaSource::subscribe_pattern(options(), pattern.clone())
        .starting_offsets(StartingOffsets::Earliest)
        .ending_offsets(EndingOffsets::Latest)
        .build()
        .unwrap();
    assert_eq!(source.topic_partitions(), &[TopicPartition::new(x.clone(), 0), TopicPartition::new(y.clone(), 0)]);
    let read = read_bounded(source, 1);
    let mut want = positions(&x, &[(0, 0..3)]);
    want.extend(positions(&y, &[(0, 0..3)]));
    want.sort();
    assert_eq!(read.positions(), want);

    expect_build_error(
        KafkaSource::subscribe_pattern(options(), format!("{prefix}-nothing-.*")),
        &["matches no topic"],
    );
    expect_build_error(KafkaSource::subscribe_pattern(options(), "(unclosed"), &["not a regular expression"]);
}

fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}

#[test]
fn assign_reads_only_the_given_partitions() {
    let topic = unique_topic("assign");
    create_topic(&brokers(), &topic, 3);
    fill(&topic, 3, 4);
    let source =
        KafkaSource::assign(options(), [TopicPartition::new(topic.clone(), 2), TopicPartition::new(topic.clone(), 0)])
            .starting_offsets(StartingOffsets::Earliest)
            .ending_offsets(EndingOffsets::Latest)
            .build()
            .unwrap();
    assert_eq!(
        source.topic_partitions(),
        &[TopicPartition::new(topic.clone(), 0), TopicPartition::new(topic.clone(), 2)]
    );
    assert_eq!(read_bounded(source, 3).positions(), positions(&topic, &[(0, 0..4), (2, 0..4)]));
    expect_build_error(
        KafkaSource::assign(options(), [TopicPartition::new(topic.clone(), 3)]),
        &["does not exist", "-3"],
    );
}

// ---------------------------------------------------------------------------------------------
// Starting and ending offsets
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_offsets_latest_reads_only_records_produced_after_the_start() {
    let topic = unique_topic("latest");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, 2, 3);
    let source = KafkaSource::subscribe(options(), [topic.as_str()]).build().unwrap(); // latest is the default
    assert_eq!(source.starting_offsets_json(), json!({ topic.clone(): {"0": 3, "1": 3} }));
    let (started, collected) = start(source, 2, WatermarkOptions::default());
    let handle = started.unwrap();
    let new: Vec<TestRecord> = (0..2)
        .flat_map(|p| (0..4).map(move |i| TestRecord::new(p, BASE + 10_000 + i, format!("new-{p}-{i}"))))
        .collect();
    produce(&brokers(), &topic, &new);
    let deadline = Instant::now() + Duration::from_secs(20);
    while collected.lock().unwrap().all().len() < new.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();
    let read = collected.lock().unwrap();
    assert_eq!(read.positions(), positions(&topic, &[(0, 3..7), (1, 3..7)]));
    assert!(read.all().iter().all(|r| r.value_str().unwrap().starts_with("new-")));
}

#[test]
fn starting_offsets_json_with_earliest_latest_and_numbers() {
    let topic = unique_topic("json");
    create_topic(&brokers(), &topic, 3);
    fill(&topic, 3, 6);
    let text = format!(r#"{{"{topic}":{{"0":4,"1":-2,"2":-1}}}}"#);
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::from_json(&text).unwrap())
        .ending_offsets(EndingOffsets::Latest)
        .build()
        .unwrap();
    assert_eq!(source.starting_offsets_json(), json!({ topic.clone(): {"0": 4, "1": 0, "2": 6} }));
    assert_eq!(read_bounded(source, 2).positions(), positions(&topic, &[(0, 4..6), (1, 0..6)]));

    // Every partition must be listed, as in Spark.
    let partial = StartingOffsets::from_json(&format!(r#"{{"{topic}":{{"0":1}}}}"#)).unwrap();
    expect_build_error(
        KafkaSource::subscribe(options(), [topic.as_str()]).starting_offsets(partial),
        &["must list every partition", &format!("{topic}-2")],
    );
    assert!(StartingOffsets::from_json("{\"t\":[1]}").unwrap_err().to_string().contains("Spark's form"));
    assert!(StartingOffsets::from_json("{\"t\":{\"x\":1}}")
        .unwrap_err()
        .to_string()
        .contains("not a partition number"));
}

#[test]
fn starting_offsets_by_timestamp_global_and_per_partition() {
    let topic = unique_topic("bytime");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, 2, 10); // offset i has timestamp BASE + i * 1000
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::Timestamp(BASE + 6_500))
        .ending_offsets(EndingOffsets::Latest)
        .build()
        .unwrap();
    assert_eq!(read_bounded(source, 1).positions(), positions(&topic, &[(0, 7..10), (1, 7..10)]));

    let text = format!(r#"{{"{topic}":{{"0":{},"1":{}}}}}"#, BASE + 2_000, BASE + 60_000);
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::timestamps_from_json(&text).unwrap())
        .ending_offsets(EndingOffsets::Latest)
        .build()
        .unwrap();
    // Partition 1 has no record that recent: it starts at its end.
    assert_eq!(source.starting_offsets_json(), json!({ topic.clone(): {"0": 2, "1": 10} }));
    assert_eq!(read_bounded(source, 2).positions(), positions(&topic, &[(0, 2..10)]));
}

#[test]
fn ending_offsets_json_bounds_each_partition_and_the_query_ends() {
    let topic = unique_topic("ending");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, 2, 8);
    let text = format!(r#"{{"{topic}":{{"0":3,"1":-1}}}}"#);
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::Earliest)
        .ending_offsets(EndingOffsets::from_json(&text).unwrap())
        .build()
        .unwrap();
    assert_eq!(source.ending_offsets_json(), Some(json!({ topic.clone(): {"0": 3, "1": 8} })));
    // Records produced after the build are past "latest", which was resolved once.
    fill(&topic, 2, 2);
    assert_eq!(read_bounded(source, 2).positions(), positions(&topic, &[(0, 0..3), (1, 0..8)]));

    let before_start = format!(r#"{{"{topic}":{{"0":1,"1":-1}}}}"#);
    expect_build_error(
        KafkaSource::subscribe(options(), [topic.as_str()])
            .starting_offsets(StartingOffsets::Latest)
            .ending_offsets(EndingOffsets::from_json(&before_start).unwrap()),
        &["before its starting offset"],
    );
}

// ---------------------------------------------------------------------------------------------
// max_offsets_per_epoch
// ---------------------------------------------------------------------------------------------

#[test]
fn max_offsets_per_epoch_splits_the_backlog_into_several_epochs() {
    let topic = unique_topic("cap");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, 2, 60); // increasing timestamps, so each activation gets its own stamp
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::Earliest)
        .ending_offsets(EndingOffsets::Latest)
        .max_offsets_per_epoch(10)
        .build()
        .unwrap();
    let read = read_bounded(source, 1);
    assert_eq!(read.all().len(), 120);
    // One worker reads both partitions; each partition reads at most 10 / 2 = 5 per activation.
    let mut per_stamp: BTreeMap<(u64, i32), usize> = BTreeMap::new();
    for (stamp, record) in &read.records {
        *per_stamp.entry((*stamp, record.partition)).or_default() += 1;
    }
    let stamps: std::collections::BTreeSet<u64> = per_stamp.keys().map(|(s, _)| *s).collect();
    assert!(per_stamp.values().all(|n| *n <= 5), "a partition read more than 5 records in one epoch: {per_stamp:?}");
    assert!(stamps.len() >= 12, "120 records at <= 10 per epoch need >= 12 epochs, saw {}", stamps.len());
    assert!(expect_build_error(KafkaSource::subscribe(options(), [topic.as_str()]).max_offsets_per_epoch(0), &[])
        .contains("max_offsets_per_epoch"));
}

// ---------------------------------------------------------------------------------------------
// fail_on_data_loss
// ---------------------------------------------------------------------------------------------

#[test]
fn fail_on_data_loss_for_deleted_records() {
    let topic = unique_topic("loss");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, 1, 10);
    let admin = support::kafka::admin(&brokers());
    let tp = TopicPartition::new(topic.clone(), 0);
    admin.delete_records(&BTreeMap::from([(tp.clone(), 6)])).expect("the broker supports DeleteRecords");
    assert_eq!(admin.watermarks(&tp).unwrap().low, 6, "DeleteRecords moved the log start");

    let from_two = || {
        KafkaSource::subscribe(options(), [topic.as_str()])
            .starting_offsets(StartingOffsets::from_json(&format!(r#"{{"{topic}":{{"0":2}}}}"#)).unwrap())
            .ending_offsets(EndingOffsets::Latest)
    };
    expect_build_error(
        from_two(),
        &[
            &format!("topic {topic:?} partition 0"),
            "offset 2",
            "earliest available offset is 6",
            "fail_on_data_loss(false)",
        ],
    );
    let source = from_two().fail_on_data_loss(false).build().unwrap();
    assert_eq!(source.data_loss_events(), 1);
    assert_eq!(read_bounded(source, 1).positions(), positions(&topic, &[(0, 6..10)]));
}

#[test]
fn fail_on_data_loss_for_records_deleted_while_the_query_runs() {
    let topic = unique_topic("loss-run");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, 1, 10);
    let tp = TopicPartition::new(topic.clone(), 0);
    let build = |fail: bool| {
        KafkaSource::subscribe(options(), [topic.as_str()])
            .starting_offsets(StartingOffsets::Earliest)
            .ending_offsets(EndingOffsets::Latest)
            .fail_on_data_loss(fail)
            .build()
            .unwrap()
    };
    // Both sources resolve offset 0 as their start; the records are deleted before they read it.
    let (failing, continuing) = (build(true), build(false));
    support::kafka::admin(&brokers()).delete_records(&BTreeMap::from([(tp, 4)])).unwrap();

    let (started, _) = start(failing, 1, WatermarkOptions::default());
    let error = match started.unwrap().await_termination(Some(Duration::from_secs(30))) {
        Err(error) => error.to_string(),
        other => panic!("reading deleted offsets should fail the query, got {other:?}"),
    };
    for needle in [
        &format!("topic {topic:?} partition 0"),
        "offset 0",
        "earliest available offset is 4",
        "fail_on_data_loss(false)",
    ] {
        assert!(error.contains(needle), "the error should mention {needle:?}: {error}");
    }

    let read = read_bounded(continuing.clone(), 1);
    assert_eq!(read.positions(), positions(&topic, &[(0, 4..10)]));
    assert_eq!(continuing.data_loss_events(), 1, "the skipped range is counted");
}

#[test]
fn fail_on_data_loss_for_an_offset_beyond_the_end() {
    let topic = unique_topic("beyond");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, 1, 5);
    let beyond = || {
        KafkaSource::subscribe(options(), [topic.as_str()])
            .starting_offsets(StartingOffsets::from_json(&format!(r#"{{"{topic}":{{"0":100}}}}"#)).unwrap())
    };
    expect_build_error(
        beyond(),
        &[&format!("topic {topic:?} partition 0"), "offset 100", "ends at 5", "earliest available 0"],
    );
    let source = beyond().fail_on_data_loss(false).build().unwrap();
    assert_eq!(source.data_loss_events(), 1);
    assert_eq!(source.starting_offsets_json(), json!({ topic.clone(): {"0": 5} }));
}

// ---------------------------------------------------------------------------------------------
// kafka.* pass-through
// ---------------------------------------------------------------------------------------------

#[test]
fn kafka_options_pass_through_and_invalid_ones_are_clear_errors() {
    let topic = unique_topic("opts");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, 1, 3);
    // Valid librdkafka settings, with and without the prefix, reach the consumer.
    let source = KafkaSource::subscribe(
        options().set("kafka.client.id", "weir-test").set("fetch.wait.max.ms", "20").set("kafka.check.crcs", "true"),
        [topic.as_str()],
    )
    .starting_offsets(StartingOffsets::Earliest)
    .ending_offsets(EndingOffsets::Latest)
    .build()
    .unwrap();
    assert_eq!(read_bounded(source, 1).positions(), positions(&topic, &[(0, 0..3)]));

    let subscribe = |o: KafkaOptions| KafkaSource::subscribe(o, [topic.as_str()]);
    expect_build_error(
        subscribe(options().set("kafka.no.such.setting", "1")),
        &["no.such.setting", "librdkafka's property names"],
    );
    expect_build_error(subscribe(options().set("kafka.fetch.wait.max.ms", "soon")), &["fetch.wait.max.ms"]);
    expect_build_error(
        subscribe(options().set("kafka.auto.offset.reset", "earliest")),
        &["auto.offset.reset", "starting_offsets"],
    );
    expect_build_error(
        subscribe(options().set("kafka.enable.auto.commit", "true")),
        &["enable.auto.commit", "checkpoint"],
    );
    expect_build_error(subscribe(options().set("kafka.source.failure.timeout", "soon")), &["source.failure.timeout"]);
    expect_build_error(
        KafkaSource::subscribe(KafkaOptions::new("127.0.0.1:1"), [topic.as_str()])
            .metadata_timeout(Duration::from_secs(1)),
        &["127.0.0.1:1", "check that the brokers run"],
    );
}

// ---------------------------------------------------------------------------------------------
// A windowed count over Kafka, against a batch oracle
// ---------------------------------------------------------------------------------------------

const OP: &str = "win";

/// Window start, end, key.
type Group = (i64, i64, u32);

fn key_of(r: &KafkaRecord) -> u32 {
    r.key_str().and_then(|k| k.parse().ok()).expect("numeric key")
}

fn id_of(r: &KafkaRecord) -> u64 {
    r.value_str().and_then(|v| v.parse().ok()).expect("numeric value")
}

#[test]
fn windowed_count_over_three_partitions_matches_the_oracle_with_1_and_3_workers() {
    for seed in 0..3u64 {
        let mut rng = SmallRng::seed_from_u64(0x6b61666b61 + seed);
        let delay_ms = [0u64, 500, 2_000][seed as usize % 3];
        let size_ms = [1_000i64, 2_000, 5_000][rng.random_range(0..3)];
        let topic = unique_topic("window");
        create_topic(&brokers(), &topic, 3);
        // Per partition, in offset order: (id, ts, key).
        let mut parts: Vec<Vec<(u64, u64, u32)>> = vec![Vec::new(); 3];
        let mut id = 0u64;
        let mut sent = Vec::new();
        for (p, part) in parts.iter_mut().enumerate() {
            let mut cursor = BASE as u64 + rng.random_range(0..5_000);
            for _ in 0..rng.random_range(150..=300) {
                let ts = jittered_time(&mut rng, &mut cursor, 400);
                let key = rng.random_range(0..5u32);
                id += 1;
                part.push((id, ts, key));
                sent.push(TestRecord::new(p as i32, ts as i64, id.to_string()).key(key.to_string()));
            }
        }
        produce(&brokers(), &topic, &sent);

        // The oracle, from the specification: per-partition lateness, tumbling windows.
        let mut want: BTreeMap<Group, u64> = BTreeMap::new();
        let mut want_late = BTreeMap::new();
        for part in &parts {
            let mut clock = PartitionClock::new(delay_ms);
            for &(id, ts, key) in part {
                match clock.arrive(ts) {
                    Arrival::Late { watermark } => {
                        want_late.insert(id, (ts, watermark));
                    }
                    Arrival::OnTime { .. } => {
                        let start = (ts as i64).div_euclid(size_ms) * size_ms;
                        *want.entry((start, start + size_ms, key)).or_default() += 1;
                    }
                }
            }
        }
        assert!(!want_late.is_empty(), "seed {seed}: the input should contain late records");

        let mut tables = Vec::new();
        for workers in [1, 3] {
            let label = format!("seed={seed} delay={delay_ms}ms size={size_ms}ms workers={workers}");
            let source = KafkaSource::subscribe(options(), [topic.as_str()])
                .starting_offsets(StartingOffsets::Earliest)
                .ending_offsets(EndingOffsets::Latest)
                .build()
                .unwrap();
            let rows: Arc<Mutex<Vec<(u64, Group, u64)>>> = Arc::default();
            let lates: Arc<Mutex<Vec<LateRecord<KafkaRecord>>>> = Arc::default();
            let (rows_in, lates_in) = (rows.clone(), lates.clone());
            let started = Query::new("kafka-window").workers(workers).start(move |scope, ctx| {
                let events = source.clone().events(
                    scope,
                    ctx,
                    KafkaRecord::event_time,
                    WatermarkOptions::with_delay(Duration::from_millis(delay_ms)),
                );
                let windowing = Windowing::tumbling(Duration::from_millis(size_ms as u64));
                let out = events.window_aggregate(ctx, OP, windowing, OutputMode::Append, key_of, Count)?;
                let rows = rows_in.clone();
                out.results.inspect_time(move |t, r| {
                    rows.lock().unwrap().push((t.as_millis(), (r.window_start, r.window_end, r.key), r.value))
                });
                let lates = lates_in.clone();
                out.late.inspect(move |l| lates.lock().unwrap().push(l.clone()));
                Ok(())
            });
            support::run_to_end(started, &label, 60);
            let rows = rows.lock().unwrap().clone();
            let table = final_table(&label, OutputMode::Append, &rows);
            assert!(table == want, "{label}: result differs from the oracle:\n{}", describe_difference(&table, &want));
            check_late_output(&label, "record", lates.lock().unwrap().iter(), id_of, OP, &want_late);
            tables.push(table);
        }
        assert_eq!(tables[0], tables[1], "seed {seed}: 1 and 3 workers disagree");
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer lag in the progress report
// ---------------------------------------------------------------------------------------------

#[test]
fn consumer_lag_appears_in_progress_reports() {
    let topic = unique_topic("lag");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, 1, 200);
    let source = KafkaSource::subscribe(options(), [topic.as_str()])
        .starting_offsets(StartingOffsets::Earliest)
        .ending_offsets(EndingOffsets::Latest)
        .max_offsets_per_epoch(5)
        .build()
        .unwrap();
    let reports: Arc<Mutex<Vec<StreamingQueryProgress>>> = Arc::default();
    let into = reports.clone();
    let started = Query::new("kafka-lag")
        .progress_interval(Duration::from_millis(20))
        .on_progress(move |p: &StreamingQueryProgress| into.lock().unwrap().push(p.clone()))
        .start(move |scope, ctx| {
            let events = source.clone().events(scope, ctx, KafkaRecord::event_time, WatermarkOptions::default());
            // A slow consumer: 10 ms per batch of at most 5 records, so a backlog builds up.
            events.records.inspect_batch(|_, _| std::thread::sleep(Duration::from_millis(10)));
            Ok(())
        });
    support::run_to_end(started, "lag", 60);
    let reports = reports.lock().unwrap();
    let kafka: Vec<_> =
        reports.iter().flat_map(|r| r.sources.iter()).filter(|s| s.description.contains(&topic)).collect();
    let lagging = kafka
        .iter()
        .find(|s| s.metrics.get("maxOffsetsBehindLatest").and_then(|m| m.parse::<i64>().ok()).is_some_and(|m| m > 0))
        .unwrap_or_else(|| panic!("no report shows a lag: {kafka:#?}"));
    assert_eq!(lagging.description, format!("KafkaSource[Subscribe[{topic}]]"));
    assert_eq!(lagging.latest_offset, json!({ topic.clone(): {"0": 200} }));
    let end = lagging.end_offset[&topic]["0"].as_i64().expect("endOffset in Spark's shape");
    assert_eq!(lagging.metrics["maxOffsetsBehindLatest"], (200 - end).to_string());
    assert_eq!(lagging.metrics["minOffsetsBehindLatest"], (200 - end).to_string());
    assert!(lagging.metrics.contains_key("avgOffsetsBehindLatest"));
    let json = serde_json::to_value(lagging).unwrap();
    assert!(json["metrics"]["maxOffsetsBehindLatest"].is_string(), "Spark's metrics are strings: {json}");
}

// ---------------------------------------------------------------------------------------------
// A broker that dies mid-run
// ---------------------------------------------------------------------------------------------

struct OwnBroker {
    child: Child,
    address: String,
}

impl OwnBroker {
    fn start() -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(nisshi_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "0s", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nisshi from WEIR_NISSHI_BIN");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "nisshi did not listen on {address}");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnBroker { child, address }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_killed_broker_fails_the_query_within_the_timeout() {
    let mut broker = OwnBroker::start();
    let topic = unique_topic("outage");
    create_topic(&broker.address, &topic, 2);
    let records: Vec<TestRecord> = (0..20).map(|i| TestRecord::new(i % 2, BASE + i as i64, format!("r{i}"))).collect();
    produce(&broker.address, &topic, &records);
    let source = KafkaSource::subscribe(
        KafkaOptions::new(broker.address.clone()).set("kafka.source.failure.timeout", "3s"),
        [topic.as_str()],
    )
    .starting_offsets(StartingOffsets::Earliest)
    .build()
    .unwrap();
    let (started, collected) = start(source, 2, WatermarkOptions::default());
    let handle = started.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while collected.lock().unwrap().all().len() < 20 {
        assert!(Instant::now() < deadline, "the records were not read before the outage");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    let killed = Instant::now();
    let error = match handle.await_termination(Some(Duration::from_secs(30))) {
        Err(error) => error.to_string(),
        Ok(true) => panic!("the query ended without an error after its broker died"),
        Ok(false) => panic!("the query hangs 30 s after its broker died (failure timeout 3 s)"),
    };
    let waited = killed.elapsed();
    println!("failed {waited:?} after the broker died: {error}");
    assert!(waited >= Duration::from_secs(3), "failed after {waited:?}, before the 3 s timeout: {error}");
    assert!(waited < Duration::from_secs(15), "took {waited:?} to fail with a 3 s timeout: {error}");
    for needle in ["no progress", &broker.address, "kafka.source.failure.timeout"] {
        assert!(error.contains(needle), "the error should mention {needle:?}: {error}");
    }
    assert!(handle.exception().is_some());
}
