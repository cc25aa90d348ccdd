//! The Kafka sink against real brokers, librdkafka's mock cluster, and (gated) a real Apache Kafka.
//!
//! - nisshi 0.8.1 (`WEIR_KAFKA_BROKERS`): at-least-once and idempotent output read back equals the
//!   input (an oracle written from the records, not from the sink), keys on murmur2's partition;
//!   pre-flight errors; a broker stopped mid-run (`WEIR_NISSHI_BIN`) fails the query loudly.
//! - nisshi 0.7.0 (`WEIR_KAFKA_TXN_BROKERS`): exactly-once commits only what the frontier has
//!   passed, one transaction per epoch; a second run with the same transactional id fences the first.
//! - librdkafka's mock cluster: the transactional state machine under injected errors. The mock
//!   does not hide aborted or open transactions from read_committed consumers and does not fence
//!   zombies, so these tests prove the client-side reactions only, nothing about visibility.
//! - `WEIR_KAFKA_EOS_BROKERS` (a real Kafka, unavailable on the development machine): aborted data
//!   is invisible to read_committed consumers and each result appears exactly once.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use timely::dataflow::operators::vec::Map;
use weir::prelude::*;
use weir::runtime::source::{event_source, PartitionReader, ReadStatus, Source};
use weir_connectors::kafka::{Delivery, KafkaOptions, KafkaRecord, KafkaSink, ProducerRecord};

mod support;
use support::kafka::{consume_all, create_topic, unique_topic, Isolation};

// ---------------------------------------------------------------------------------------------
// Harness (brokers, topics and reading back come from tests/support/kafka.rs)
// ---------------------------------------------------------------------------------------------

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Every record of `topic` up to the end of each partition (as fetches see it).
fn read_topic(brokers: &str, topic: &str, read_committed: bool) -> Vec<KafkaRecord> {
    consume_all(brokers, topic, if read_committed { Isolation::ReadCommitted } else { Isolation::ReadUncommitted })
}

/// The Java client's murmur2 (`Utils.murmur2`), from its published definition.
fn murmur2(data: &[u8]) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let r = 24;
    let len = data.len();
    let mut h: u32 = seed ^ len as u32;
    let chunks = len / 4;
    for i in 0..chunks {
        let i4 = i * 4;
        let mut k = u32::from_le_bytes([data[i4], data[i4 + 1], data[i4 + 2], data[i4 + 3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = &data[chunks * 4..];
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java default partitioner picks for a keyed record.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_the_java_clients_published_values() {
    // Values from Kafka's UtilsTest.testMurmur2.
    let cases: [(&[u8], i32); 3] =
        [(b"21", -973_932_308), (b"foobar", -790_332_482), (b"a-little-bit-long-string", -985_981_536)];
    for (key, hash) in cases {
        assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
    }
}

/// A source whose single partition releases its records when the test says so, and ends when
/// told to: the test decides exactly when the frontier moves.
#[derive(Clone)]
struct Scripted {
    times: Arc<Mutex<Vec<u64>>>,
    done: Arc<AtomicBool>,
}

impl Scripted {
    fn new() -> Self {
        Scripted { times: Arc::default(), done: Arc::default() }
    }
    fn release(&self, times: impl IntoIterator<Item = u64>) {
        self.times.lock().unwrap().extend(times);
    }
    fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

struct ScriptedReader(Scripted, usize);

impl PartitionReader for ScriptedReader {
    type Record = u64;
    fn read(&mut self, out: &mut Vec<u64>, _max: usize) -> Result<ReadStatus, QueryError> {
        let times = self.0.times.lock().unwrap();
        out.extend_from_slice(&times[self.1..]);
        self.1 = times.len();
        if self.0.done.load(Ordering::SeqCst) {
            Ok(ReadStatus::Finished)
        } else {
            Ok(ReadStatus::Wait(Duration::from_millis(5)))
        }
    }
    fn position(&self) -> serde_json::Value {
        self.1.into()
    }
}

impl Source for Scripted {
    type Record = u64;
    type Reader = ScriptedReader;
    fn description(&self) -> String {
        "Scripted".into()
    }
    fn partitions(&self) -> usize {
        1
    }
    fn open(&self, _: usize) -> Result<ScriptedReader, QueryError> {
        Ok(ScriptedReader(self.clone(), 0))
    }
}

fn record_of_time(t: u64) -> ProducerRecord {
    ProducerRecord::new(t.to_string()).key(format!("k{}", t % 7)).timestamp(EventTime::from_millis(t))
}

/// Starts a query whose scripted source (watermark delay `delay`) feeds `sink` as sink "out".
fn scripted_query(
    name: &str,
    id: &str,
    script: &Scripted,
    delay: Duration,
    sink: KafkaSink,
) -> Result<QueryHandle, BuildError> {
    let script = script.clone();
    Query::new(name).id(id).progress_interval(Duration::from_millis(100)).start(move |scope, ctx| {
        let events = event_source(
            scope,
            ctx,
            script.clone(),
            |t: &u64| Some(EventTime::from_millis(*t)),
            WatermarkOptions::with_delay(delay),
        );
        let records = events.records.map(|e| record_of_time(e.data));
        sink.clone().write(records, ctx, "out")
    })
}

fn committed_epochs(handle: &QueryHandle) -> u64 {
    handle.context().metrics().sink("out").committed_epochs.load(Ordering::SeqCst)
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn values(reads: &[KafkaRecord]) -> Vec<u64> {
    let mut v: Vec<u64> =
        reads.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap().parse().unwrap()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// at_least_once and idempotent against nisshi 0.8.1
// ---------------------------------------------------------------------------------------------

/// Random keyed input over 4 source partitions; the output is one record per input record, so the
/// oracle is the input itself.
fn run_map_to_kafka(delivery: Delivery, workers: usize, seed: u64) {
    let brokers = match delivery {
        Delivery::ExactlyOnce => support::kafka::txn_brokers(),
        _ => support::kafka::brokers(),
    };
    let topic = unique_topic(&format!("weir-sink-{}-w{workers}", delivery.name()));
    let partitions = 3;
    create_topic(&brokers, &topic, partitions);
    let mut rng = SmallRng::seed_from_u64(seed);
    let input: Vec<Vec<(u64, u32)>> = (0..4)
        .map(|p| {
            let n = rng.random_range(100..400);
            let mut t = 1_000u64;
            (0..n)
                .map(|i| {
                    t += rng.random_range(0..20);
                    (t, (p * 1_000 + i) as u32)
                })
                .collect()
        })
        .collect();
    let expected: Vec<(String, u64, String)> =
        input.iter().flatten().map(|(t, id)| (format!("key-{}", id % 37), *t, format!("{id}@{t}"))).collect();

    let source = MemorySource::new(input);
    let options = KafkaOptions::new(&brokers);
    let sink = KafkaSink::to_topic(options, &topic).delivery(delivery).commit_interval(Duration::from_millis(50));
    let handle = Query::new("kafka-sink-map")
        .workers(workers)
        .start(move |scope, ctx| {
            let events = weir::runtime::source::event_source_with_batch(
                scope,
                ctx,
                source.clone(),
                |r: &(u64, u32)| Some(EventTime::from_millis(r.0)),
                WatermarkOptions::with_delay(Duration::from_millis(30)),
                17,
            );
            let on_time = events.records.map(|e| {
                let (t, id) = e.data;
                ProducerRecord::new(format!("{id}@{t}"))
                    .key(format!("key-{}", id % 37))
                    .header("event-time", t.to_be_bytes().to_vec())
                    .timestamp(EventTime::from_millis(t))
            });
            // Late records are part of the output too: the sink writes whatever it is given.
            let late = events.late.map(|l| {
                let (t, id) = l.record;
                ProducerRecord::new(format!("{id}@{t}"))
                    .key(format!("key-{}", id % 37))
                    .header("event-time", t.to_be_bytes().to_vec())
                    .timestamp(EventTime::from_millis(t))
            });
            use timely::dataflow::operators::Concat;
            KafkaSink::write(sink.clone(), on_time.concat(late), ctx, "out")
        })
        .expect("the sink builds against nisshi 0.8.1");
    let finished = handle.await_termination(Some(Duration::from_secs(60)));
    assert_eq!(finished, Ok(true), "the bounded query ends without error");
    let metrics = handle.context().metrics().sink("out");
    assert_eq!(metrics.output_rows.load(Ordering::SeqCst), expected.len() as u64, "acknowledged rows");
    assert!(metrics.committed_epochs.load(Ordering::SeqCst) >= workers as u64, "at least one flush per worker");

    let read_committed = delivery == Delivery::ExactlyOnce;
    // Every record was acknowledged (above); under load the broker can report a partition's end
    // before the last acknowledged records are readable, so read again (up to 10 s) until at
    // least that many are there. Duplicates would still show: more records than expected.
    let mut reads = read_topic(&brokers, &topic, read_committed);
    let patience = std::time::Instant::now();
    while reads.len() < expected.len() && patience.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        reads = read_topic(&brokers, &topic, read_committed);
    }
    let mut got: Vec<(String, u64, String)> = reads
        .iter()
        .map(|r| {
            assert_eq!(r.headers.len(), 1);
            assert_eq!(r.headers[0].key, "event-time");
            let t = u64::from_be_bytes(r.headers[0].value.clone().unwrap().try_into().unwrap());
            assert_eq!(r.timestamp, Some(t as i64), "the Kafka timestamp is the record's event time");
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                t,
                String::from_utf8(r.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got.len(), want.len(), "records read back (duplicates or losses)");
    assert_eq!(got, want, "the topic holds exactly the input, once each");
    for r in &reads {
        let key = r.key.as_deref().unwrap();
        assert_eq!(
            r.partition,
            java_partition(key, partitions),
            "key {} is on the partition Java's murmur2 partitioner picks",
            String::from_utf8_lossy(key)
        );
    }
}

#[test]
fn at_least_once_output_equals_the_input_on_murmur2_partitions_1_worker() {
    run_map_to_kafka(Delivery::AtLeastOnce, 1, 11);
}

#[test]
fn at_least_once_output_equals_the_input_on_murmur2_partitions_3_workers() {
    run_map_to_kafka(Delivery::AtLeastOnce, 3, 12);
}

#[test]
fn idempotent_output_equals_the_input_on_murmur2_partitions_2_workers() {
    run_map_to_kafka(Delivery::Idempotent, 2, 13);
}

/// nisshi 0.7.0 hides nothing that was aborted, so this shows the committed output is complete
/// and without duplicates when nothing fails, not that read_committed would hide a failed epoch.
#[test]
fn exactly_once_output_equals_the_input_on_murmur2_partitions_2_workers() {
    run_map_to_kafka(Delivery::ExactlyOnce, 2, 14);
}

#[test]
fn at_least_once_flushes_when_the_frontier_advances_not_at_the_end() {
    let brokers = support::kafka::brokers();
    let topic = unique_topic("weir-sink-alo-epochs");
    create_topic(&brokers, &topic, 2);
    let script = Scripted::new();
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic).commit_interval(Duration::from_millis(50));
    let handle = scripted_query("alo-epochs", &unique("q"), &script, Duration::ZERO, sink).expect("builds");
    script.release(1_000..1_010);
    script.release([5_000]);
    wait_until("the first flush", Duration::from_secs(20), || committed_epochs(&handle) >= 1);
    // The query is still running: what was flushed is on the broker already.
    let reads = read_topic(&brokers, &topic, false);
    assert!(values(&reads).starts_with(&(1_000..1_010).collect::<Vec<_>>()), "{:?}", values(&reads));
    assert!(handle.is_active());
    script.finish();
    assert_eq!(handle.await_termination(Some(Duration::from_secs(20))), Ok(true));
    let reads = read_topic(&brokers, &topic, false);
    assert_eq!(values(&reads), (1_000..1_010).chain([5_000]).collect::<Vec<_>>());
}

#[test]
fn a_topic_per_record_routes_each_record_and_a_record_without_topic_fails_the_query() {
    let brokers = support::kafka::brokers();
    let (even, odd) = (unique_topic("sink-even"), unique_topic("sink-odd"));
    create_topic(&brokers, &even, 1);
    create_topic(&brokers, &odd, 1);
    let route = |missing: Option<u64>| {
        let (even, odd) = (even.clone(), odd.clone());
        let sink = KafkaSink::topic_per_record(KafkaOptions::new(&brokers)).commit_interval(Duration::from_millis(20));
        let items: Vec<Vec<u64>> = vec![(0..40).collect()];
        Query::new("per-record")
            .start(move |scope, ctx| {
                let events = event_source(
                    scope,
                    ctx,
                    MemorySource::new(items.clone()),
                    |t: &u64| Some(EventTime::from_millis(*t)),
                    WatermarkOptions::default(),
                );
                let (even, odd) = (even.clone(), odd.clone());
                let records = events.records.map(move |e| {
                    let record = ProducerRecord::new(e.data.to_string());
                    match e.data {
                        t if Some(t) == missing => record,
                        t if t % 2 == 0 => record.topic(even.clone()),
                        _ => record.topic(odd.clone()),
                    }
                });
                sink.clone().write(records, ctx, "out")
            })
            .expect("builds")
            .await_termination(Some(Duration::from_secs(30)))
    };
    assert_eq!(route(None), Ok(true));
    assert_eq!(values(&read_topic(&brokers, &even, false)), (0..40).step_by(2).collect::<Vec<_>>());
    assert_eq!(values(&read_topic(&brokers, &odd, false)), (1..40).step_by(2).collect::<Vec<_>>());
    let error = route(Some(7)).expect_err("a record without a topic fails the query").to_string();
    assert!(error.contains("sink out") && error.contains("no topic"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Pre-flight
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_topic_is_a_build_error_naming_it() {
    let brokers = support::kafka::brokers();
    let topic = unique_topic("weir-sink-no-such-topic");
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic);
    let error =
        scripted_query("missing", "missing", &Scripted::new(), Duration::ZERO, sink).err().expect("a build error");
    let text = error.to_string();
    eprintln!("missing topic: {text}");
    assert!(text.contains(&topic) && text.contains("does not exist") && text.contains(&brokers), "{text}");
    assert!(text.contains("create the topic"), "says what to do: {text}");
}

#[test]
fn unreachable_brokers_are_a_build_error() {
    // Nothing listens on this port of the range reserved for these tests.
    let sink = KafkaSink::to_topic(KafkaOptions::new("127.0.0.1:19299"), "t").preflight_timeout(Duration::from_secs(2));
    let error =
        scripted_query("unreachable", "u", &Scripted::new(), Duration::ZERO, sink).err().expect("a build error");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:19299") && text.contains("did not answer"), "{text}");
}

#[test]
fn exactly_once_on_a_broker_without_transactions_is_a_build_error() {
    let brokers = support::kafka::brokers();
    let topic = unique_topic("weir-sink-no-txn");
    create_topic(&brokers, &topic, 1);
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic)
        .delivery(Delivery::ExactlyOnce)
        .preflight_timeout(Duration::from_secs(5));
    let error =
        scripted_query("no-txn", "no-txn", &Scripted::new(), Duration::ZERO, sink).err().expect("a build error");
    let text = error.to_string();
    eprintln!("no transactions: {text}");
    assert!(text.contains("init_transactions") && text.contains("weir-no-txn-out-0"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A broker that goes away mid-run
// ---------------------------------------------------------------------------------------------

struct OwnBroker(Child);

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_own_nisshi(port: u16) -> (OwnBroker, String) {
    let bin = support::kafka::nisshi_bin();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nisshi");
    let broker = OwnBroker(child);
    let address = format!("127.0.0.1:{port}");
    wait_until("nisshi to listen", Duration::from_secs(10), || std::net::TcpStream::connect(&address).is_ok());
    (broker, address)
}

#[test]
fn a_broker_stopped_mid_run_fails_the_query_loudly() {
    let (mut broker, brokers) = start_own_nisshi(19_250);
    let topic = unique_topic("weir-sink-broker-gone");
    create_topic(&brokers, &topic, 1);
    let script = Scripted::new();
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic)
        .commit_interval(Duration::from_millis(50))
        .delivery_timeout(Duration::from_secs(3));
    let handle = scripted_query("broker-gone", &unique("q"), &script, Duration::ZERO, sink).expect("builds");
    script.release([1_000, 2_000]);
    wait_until("the first flush", Duration::from_secs(20), || committed_epochs(&handle) >= 1);
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();
    let stopped = Instant::now();
    script.release([3_000, 4_000]);
    let outcome = handle.await_termination(Some(Duration::from_secs(30)));
    let error = match outcome {
        Err(error) => error.to_string(),
        other => panic!("the query must fail when its broker is gone, got {other:?}"),
    };
    eprintln!("broker gone: {error}");
    assert!(stopped.elapsed() < Duration::from_secs(20), "failed within the delivery timeout plus slack");
    assert!(error.contains("sink out") && error.contains(&brokers), "{error}");
    assert!(error.to_lowercase().contains("timed out"), "carries librdkafka's message: {error}");
    assert!(handle.context().metrics().sink("out").errors.load(Ordering::SeqCst) >= 1);
}

// ---------------------------------------------------------------------------------------------
// exactly_once against nisshi 0.7.0 (transactions, fencing; NOT aborted-record filtering)
// ---------------------------------------------------------------------------------------------

#[test]
fn exactly_once_commits_one_transaction_per_epoch_once_the_frontier_passes_it() {
    let brokers = support::kafka::txn_brokers();
    let topic = unique_topic("weir-sink-eos-epochs");
    create_topic(&brokers, &topic, 2);
    let script = Scripted::new();
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic)
        .delivery(Delivery::ExactlyOnce)
        .commit_interval(Duration::from_millis(100));
    // Watermark delay 10 s: records up to 10 s ahead of the watermark keep the frontier still.
    let handle = scripted_query("eos-epochs", &unique("q"), &script, Duration::from_secs(10), sink).expect("builds");

    // Stage A: the frontier does not move (watermark 0): nothing may be written, not even uncommitted.
    // Two pushes more than a commit interval apart: the sink runs with input and a due commit
    // moment, yet the frontier has not passed the records' time.
    script.release(1_000..1_005);
    std::thread::sleep(Duration::from_millis(300));
    script.release(1_005..1_010);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(committed_epochs(&handle), 0, "no commit before the frontier passes the epoch");
    assert!(read_topic(&brokers, &topic, false).is_empty(), "nothing produced yet");

    // Stage B: a record 20 s later moves the watermark to 11 s: the epoch (all records so far,
    // stamped at time 0) is complete and goes out in one transaction.
    script.release(21_000..21_005);
    wait_until("the first commit", Duration::from_secs(20), || committed_epochs(&handle) >= 1);
    let committed = read_topic(&brokers, &topic, true);
    assert_eq!(values(&committed), (1_000..1_010).chain(21_000..21_005).collect::<Vec<_>>());
    wait_until("a progress report counting the commit", Duration::from_secs(5), || {
        handle
            .recent_progress()
            .iter()
            .any(|p| p.sink.metrics.get("numCommittedEpochs").map(String::as_str) == Some("1"))
    });

    // Stage C: stamped at 11 s, complete once the watermark moves on to 12 s.
    script.release(22_000..22_005);
    wait_until("the second commit", Duration::from_secs(20), || committed_epochs(&handle) >= 2);
    script.finish();
    assert_eq!(handle.await_termination(Some(Duration::from_secs(20))), Ok(true));
    assert_eq!(committed_epochs(&handle), 2, "one transaction per epoch, none for an empty end");
    assert_eq!(handle.context().metrics().sink("out").output_rows.load(Ordering::SeqCst), 20);
    let committed = read_topic(&brokers, &topic, true);
    assert_eq!(values(&committed), (1_000..1_010).chain(21_000..21_005).chain(22_000..22_005).collect::<Vec<_>>());
}

#[test]
fn a_second_run_with_the_same_transactional_id_fences_the_first_which_fails_loudly() {
    let brokers = support::kafka::txn_brokers();
    let topic = unique_topic("weir-sink-eos-fence");
    create_topic(&brokers, &topic, 1);
    let id = unique("fenced-query");
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic)
        .delivery(Delivery::ExactlyOnce)
        .commit_interval(Duration::from_millis(50));
    let first_script = Scripted::new();
    let first = scripted_query("first", &id, &first_script, Duration::ZERO, sink.clone()).expect("builds");
    first_script.release([1_000, 2_000]);
    wait_until("the first run's commit", Duration::from_secs(20), || committed_epochs(&first) >= 1);

    // The "restart": same query id, same sink name, so the same transactional.id.
    let second_script = Scripted::new();
    let second = scripted_query("second", &id, &second_script, Duration::ZERO, sink).expect("the new run builds");

    first_script.release([3_000, 4_000]);
    let error = match first.await_termination(Some(Duration::from_secs(30))) {
        Err(error) => error.to_string(),
        other => panic!("the fenced run must fail, got {other:?}"),
    };
    eprintln!("fenced run: {error}");
    assert!(error.contains("fenced") && error.contains(&format!("weir-{id}-out-0")), "{error}");

    // The new run works.
    second_script.release([5_000, 6_000]);
    second_script.finish();
    assert_eq!(second.await_termination(Some(Duration::from_secs(20))), Ok(true));
    assert!(committed_epochs(&second) >= 1);
    let reads = read_topic(&brokers, &topic, true);
    let values = values(&reads);
    assert!(values.contains(&1_000) && values.contains(&5_000) && values.contains(&6_000), "{values:?}");
    assert!(!values.contains(&3_000), "the fenced run committed nothing after the fencing: {values:?}");
}

// ---------------------------------------------------------------------------------------------
// The client-side state machine under injected errors (mock cluster: proves nothing about visibility)
// ---------------------------------------------------------------------------------------------

fn mock_run(
    configure: impl FnOnce(&MockCluster<'static, rdkafka::producer::DefaultProducerContext>, &str),
) -> (Result<bool, QueryError>, u64, String, String) {
    let mock = MockCluster::new(1).expect("mock cluster");
    let topic = unique_topic("weir-sink-mock");
    mock.create_topic(&topic, 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    configure(&mock, &topic);
    let script = Scripted::new();
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic)
        .delivery(Delivery::ExactlyOnce)
        .commit_interval(Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(5));
    let handle = scripted_query("mock", &unique("q"), &script, Duration::ZERO, sink).expect("builds on the mock");
    script.release([1_000, 1_001, 2_000]);
    script.finish();
    let outcome = handle.await_termination(Some(Duration::from_secs(30)));
    let commits = committed_epochs(&handle);
    drop(handle);
    (outcome, commits, brokers, topic)
}

#[test]
fn mock_commits_succeed_without_injected_errors() {
    let (outcome, commits, _, _) = mock_run(|_, _| {});
    assert_eq!(outcome, Ok(true));
    assert!(commits >= 1);
}

#[test]
fn mock_retriable_end_txn_errors_are_retried_and_the_epoch_commits() {
    let (outcome, commits, _, _) = mock_run(|mock, _| {
        mock.request_errors(
            RDKafkaApiKey::EndTxn,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            ],
        );
    });
    assert_eq!(outcome, Ok(true), "retriable commit errors must not fail the query");
    assert!(commits >= 1);
}

#[test]
fn mock_fencing_on_commit_fails_the_query_naming_the_fencing() {
    let (outcome, _, _, _) = mock_run(|mock, _| {
        mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED]);
    });
    let error = outcome.expect_err("a fenced producer fails the query").to_string();
    assert!(error.contains("fenced") && error.contains("transactional.id"), "{error}");
}

#[test]
fn mock_produce_authorization_errors_abort_the_transaction_and_fail_the_query() {
    let (outcome, commits, _, _) = mock_run(|mock, _| {
        let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5];
        mock.request_errors(RDKafkaApiKey::Produce, &errors);
    });
    let error = outcome.expect_err("a refused produce fails the query").to_string();
    eprintln!("mock produce refused: {error}");
    assert!(error.contains("sink out") && error.contains("aborted"), "{error}");
    assert!(error.to_lowercase().contains("authorization"), "carries the broker's message: {error}");
    assert_eq!(commits, 0);
}

// ---------------------------------------------------------------------------------------------
// Real Apache Kafka only (WEIR_KAFKA_EOS_BROKERS): visibility of aborted data
// ---------------------------------------------------------------------------------------------

#[test]
fn real_kafka_read_committed_hides_aborted_data_and_shows_each_result_once() {
    let Some(brokers) = support::kafka::eos_brokers() else { return };
    let topic = unique_topic("weir-sink-eos-real");
    create_topic(&brokers, &topic, 3);
    // An aborted transaction by a foreign producer, and one the sink's own fenced run leaves.
    let zombie: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", unique("weir-zombie"))
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    for i in 0..10 {
        zombie.send(BaseRecord::to(&topic).key("aborted").payload(&format!("aborted-{i}"))).unwrap();
    }
    zombie.flush(Duration::from_secs(30)).unwrap();
    zombie.abort_transaction(Duration::from_secs(30)).unwrap();

    let id = unique("eos-real");
    let sink = KafkaSink::to_topic(KafkaOptions::new(&brokers), &topic)
        .delivery(Delivery::ExactlyOnce)
        .commit_interval(Duration::from_millis(100));
    let first_script = Scripted::new();
    let first = scripted_query("first", &id, &first_script, Duration::ZERO, sink.clone()).unwrap();
    first_script.release([1_000, 2_000]);
    wait_until("the first commit", Duration::from_secs(30), || committed_epochs(&first) >= 1);
    let second_script = Scripted::new();
    let second = scripted_query("second", &id, &second_script, Duration::ZERO, sink).unwrap();
    first_script.release([3_000, 4_000]);
    assert!(first.await_termination(Some(Duration::from_secs(60))).is_err(), "the fenced run fails");
    second_script.release([3_000, 4_000, 5_000]);
    second_script.finish();
    assert_eq!(second.await_termination(Some(Duration::from_secs(60))), Ok(true));

    let committed = read_topic(&brokers, &topic, true);
    assert!(committed.iter().all(|r| r.key.as_deref() != Some(b"aborted".as_slice())), "aborted data is hidden");
    assert_eq!(values(&committed), vec![1_000, 2_000, 3_000, 4_000, 5_000], "each result exactly once");
    let uncommitted = read_topic(&brokers, &topic, false);
    assert!(uncommitted.len() >= 15, "read_uncommitted sees the aborted records: the test can fail");
}
