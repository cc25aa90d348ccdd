//! Exactly-once **Kafka** output across crashes: the Kafka test stream (3 partitions, out of
//! order, late records) through `weir run window-count --checkpoint ... --sink kafka --delivery
//! exactly-once` on 2 workers, SIGKILLed at random moments and restarted, then run to its end.
//!
//! The sink stages each epoch's records in the checkpoint and commits them, with its progress
//! marker (a transactional consumer-group offset), only after the epoch's checkpoint commit.
//!
//! - On nisshi 0.7.0 (`WEIR_KAFKA_TXN_BROKERS`), whose read_committed consumers still see aborted
//!   records, the test shows what can be shown without that filter. Every record carries the
//!   headers `weir-epoch`, `weir-worker`, `weir-run`; after every kill the harness does what the
//!   restart would do first (`init_transactions` with each worker's `transactional.id`: the dead
//!   run's open transaction is aborted, a decided commit completes) and reads each worker's
//!   marker. A run's attempt at epoch `e` committed iff the marker moved to `>= e` during that
//!   run (marker and records are one transaction). Checked: no run writes an epoch its marker
//!   already covers; every (epoch, worker) is committed by exactly one run; every attempt at an
//!   (epoch, worker) writes the same rows (they come from the staged file); the committed
//!   attempts' rows are the batch oracle's, each once; markers only move forward, never beyond
//!   the checkpoint's last commit, and end at each worker's last epoch.
//! - With a real Apache Kafka in `WEIR_KAFKA_EOS_BROKERS`, the same loop's output read with
//!   `read_committed` equals the oracle record for record; otherwise that test prints `SKIPPED`.
//! - Progress markers on nisshi 0.7.0: committed with their transaction only; a zombie's open
//!   transaction is aborted by the next `init_transactions`, and the zombie cannot commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir_connectors::kafka::{KafkaRecord, KafkaSink};

mod support;
use support::crash::{assert_each_once, assert_enough_kills, crash_loop, kafka_job_args, last_commit};
use support::kafka::{
    brokers, consume_all, create_topic, eos_brokers, produce_test_stream, row, rows_of, txn_brokers, unique_topic,
    window_count_oracle, Isolation, Row, TestStream,
};
use support::{check, weir, BINARY};

const WORKERS: usize = 2;

/// The job: bounded read of `topic`, 10 s windows, 2 s watermark delay, 2 workers, checkpoints
/// every 20 ms, exactly-once Kafka output to `out_topic` on `out_brokers`, with epoch headers.
fn job_args(brokers: &str, topic: &str, checkpoint: &Path, out_brokers: &str, out_topic: &str) -> Vec<String> {
    let flags = ["--window", "10s", "--watermark-delay", "2s", "-w", "2"];
    let mut args = kafka_job_args(&["window-count"], brokers, &["--topic", topic], 300, &flags, checkpoint);
    let sink = ["--sink", "kafka", "--output-topic", out_topic, "--output-brokers", out_brokers];
    args.extend(sink.iter().chain(&["--delivery", "exactly-once", "--epoch-headers"]).map(|s| s.to_string()));
    args
}

/// The checkpoint's query id (its metadata), if the checkpoint exists yet.
fn query_id(checkpoint: &Path) -> Option<String> {
    let text = std::fs::read_to_string(checkpoint.join("metadata")).ok()?;
    let json = text.split_once('\n')?.1;
    let metadata: serde_json::Value = serde_json::from_str(json).unwrap();
    Some(metadata["query_id"].as_str().unwrap().to_string())
}

/// What the restart would do first: `init_transactions` with the worker's `transactional.id`
/// (aborting the dead run's open transaction, completing a commit it had decided); then the
/// worker's progress marker, read with `require_stable` (read_committed offset fetch).
fn fence_and_read_marker(
    brokers: &str,
    query_id: &str,
    sink: &str,
    worker: usize,
    progress_topic: &str,
) -> Option<u64> {
    let id = KafkaSink::transactional_id(query_id, sink, worker);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", &id)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap_or_else(|e| panic!("fencing {id}: {e}"));
    drop(producer);
    read_marker(brokers, &KafkaSink::progress_group(query_id, sink, worker), progress_topic)
}

fn read_marker(brokers: &str, group: &str, topic: &str) -> Option<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let committed = consumer.committed_offsets(partitions, Duration::from_secs(30)).unwrap();
    match committed.find_partition(topic, 0).unwrap().offset() {
        Offset::Invalid => None,
        Offset::Offset(next) if next > 0 => Some(next as u64 - 1),
        other => panic!("group {group}: unexpected committed offset {other:?}"),
    }
}

fn header(record: &KafkaRecord, name: &str) -> String {
    let value = record.header(name).flatten().unwrap_or_else(|| panic!("record without header {name}: {record:?}"));
    String::from_utf8(value.to_vec()).unwrap()
}

/// One observation interval: the run(s) between two observations (normally one killed run).
#[derive(Debug, Default)]
struct Interval {
    /// Each worker's marker before and after.
    before: Vec<Option<u64>>,
    after: Vec<Option<u64>>,
    /// The checkpoint's last commit after.
    last_commit: Option<u64>,
    /// Rows written in the interval, by (epoch, worker), then by run id.
    written: BTreeMap<(u64, usize), BTreeMap<String, Vec<Row>>>,
}

/// Watches the output between runs (see the module docs).
struct Observer {
    brokers: String,
    topic: String,
    sink: String,
    checkpoint: std::path::PathBuf,
    next_offset: RefCell<BTreeMap<i32, i64>>,
    markers: RefCell<Vec<Option<u64>>>,
    intervals: RefCell<Vec<Interval>>,
}

impl Observer {
    fn new(brokers: &str, topic: &str, checkpoint: &Path) -> Self {
        Observer {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            sink: format!("kafka:{topic}"),
            checkpoint: checkpoint.to_path_buf(),
            next_offset: RefCell::new(BTreeMap::new()),
            markers: RefCell::new(vec![None; WORKERS]),
            intervals: RefCell::new(Vec::new()),
        }
    }

    /// Called after each kill and at the end: fences, reads markers and the new records.
    /// Answers the progress (epochs delivered, summed over the workers' markers).
    fn observe(&self) -> usize {
        let before = self.markers.borrow().clone();
        let mut interval = Interval { before: before.clone(), ..Interval::default() };
        interval.after = match query_id(&self.checkpoint) {
            Some(id) => (0..WORKERS)
                .map(|worker| fence_and_read_marker(&self.brokers, &id, &self.sink, worker, &self.topic))
                .collect(),
            None => before,
        };
        interval.last_commit = last_commit(&self.checkpoint);
        let mut next = self.next_offset.borrow_mut();
        for record in consume_all(&self.brokers, &self.topic, Isolation::ReadUncommitted) {
            let seen = next.entry(record.partition).or_insert(0);
            if record.offset < *seen {
                continue;
            }
            *seen = record.offset + 1;
            let epoch: u64 = header(&record, "weir-epoch").parse().unwrap();
            let worker: usize = header(&record, "weir-worker").parse().unwrap();
            let run = header(&record, "weir-run");
            let row = row(&serde_json::from_slice(record.value.as_deref().unwrap()).unwrap());
            interval.written.entry((epoch, worker)).or_default().entry(run).or_default().push(row);
        }
        let progress = interval.after.iter().map(|m| m.map_or(0, |e| e as usize + 1)).sum();
        *self.markers.borrow_mut() = interval.after.clone();
        self.intervals.borrow_mut().push(interval);
        progress
    }
}

/// What the attempts show (see the module docs); panics on any violation.
struct Analysis {
    /// The rows of the committed attempts.
    rows: Vec<Row>,
    /// (epoch, worker)s written more than once (all but one attempt aborted).
    retried: usize,
    /// (epoch, worker)s written by a run that started after the epoch's checkpoint commit: the
    /// restart's recovery delivered them from the staged records.
    recovered: usize,
}

/// One attempt at an (epoch, worker): its rows (sorted), and whether its transaction committed.
type Attempt = (Vec<Row>, bool);

fn analyse(intervals: &[Interval]) -> Analysis {
    let mut committed_by: BTreeMap<(u64, usize), usize> = BTreeMap::new();
    let mut tried: BTreeMap<(u64, usize), Vec<Attempt>> = BTreeMap::new();
    let mut attempts: BTreeMap<(u64, usize), usize> = BTreeMap::new();
    let mut runs_seen: BTreeSet<String> = BTreeSet::new();
    let mut recovered = 0;
    for (i, interval) in intervals.iter().enumerate() {
        let committed_before = i.checked_sub(1).and_then(|p| intervals[p].last_commit);
        recovered += interval.written.keys().filter(|(epoch, _)| committed_before.is_some_and(|c| *epoch <= c)).count();
        let mut runs_here = BTreeSet::new();
        for worker in 0..WORKERS {
            let (before, after) = (interval.before[worker], interval.after[worker]);
            assert!(after >= before, "interval {i}: worker {worker}'s marker went back from {before:?} to {after:?}");
            if let Some(marker) = after {
                assert!(
                    interval.last_commit.is_some_and(|last| marker <= last),
                    "interval {i}: worker {worker}'s marker {marker} is beyond the checkpoint's last commit {:?}",
                    interval.last_commit
                );
            }
        }
        for (&(epoch, worker), by_run) in &interval.written {
            let before = interval.before[worker];
            assert!(
                before.is_none_or(|m| epoch > m),
                "interval {i}: epoch {epoch} of worker {worker} was written again although its marker was {before:?}"
            );
            for (run, rows) in by_run {
                runs_here.insert(run.clone());
                let mut sorted = rows.clone();
                sorted.sort();
                let unique: BTreeSet<&Row> = sorted.iter().collect();
                assert_eq!(unique.len(), sorted.len(), "run {run} wrote a row of epoch {epoch}/{worker} twice");
                // An attempt killed while producing is aborted with part of its rows: the
                // staged epoch is fixed, so every attempt holds a subset of the committed one.
                let committed_here = interval.after[worker].is_some_and(|m| epoch <= m);
                tried.entry((epoch, worker)).or_default().push((sorted, committed_here));
                *attempts.entry((epoch, worker)).or_default() += 1;
            }
            if interval.after[worker].is_some_and(|m| epoch <= m) {
                *committed_by.entry((epoch, worker)).or_default() += 1;
            }
        }
        assert!(runs_here.is_disjoint(&runs_seen), "interval {i}: a run id appears in two intervals");
        runs_seen.extend(runs_here);
    }
    let mut content: BTreeMap<(u64, usize), Vec<Row>> = BTreeMap::new();
    for (&(epoch, worker), attempts) in &tried {
        assert_eq!(
            committed_by.get(&(epoch, worker)).copied().unwrap_or(0),
            1,
            "epoch {epoch} of worker {worker} must be committed by exactly one run"
        );
        let committed = attempts
            .iter()
            .find(|(_, committed)| *committed)
            .map(|(rows, _)| rows.clone())
            .unwrap_or_else(|| panic!("epoch {epoch} of worker {worker}: no attempt was committed"));
        for (rows, _) in attempts {
            let held: BTreeSet<&Row> = committed.iter().collect();
            assert!(
                rows.iter().all(|row| held.contains(row)),
                "epoch {epoch} of worker {worker} was written with rows that its committed attempt does not hold: \
                 the staged epoch changed between attempts"
            );
        }
        content.insert((epoch, worker), committed);
    }
    let last = intervals.last().unwrap();
    for worker in 0..WORKERS {
        let last_epoch = content.keys().filter(|(_, w)| *w == worker).map(|(e, _)| *e).max();
        assert_eq!(last.after[worker], last_epoch, "worker {worker}'s final marker is its last epoch with records");
    }
    let retried = attempts.values().filter(|&&n| n > 1).count();
    Analysis { rows: content.into_values().flatten().collect(), retried, recovered }
}

#[test]
fn exactly_once_kafka_output_survives_a_crash_loop() {
    let (brokers, out_brokers) = (brokers(), txn_brokers());
    let topic = unique_topic("crash-loop-kafka-in");
    produce_test_stream(&brokers, &topic, TestStream::new(600_000, 50, 11));
    let (expected, late) =
        window_count_oracle(&consume_all(&brokers, &topic, Isolation::ReadUncommitted), 2_000, 10_000, false);
    assert!(late > 100, "the input has late records");
    let out_topic = unique_topic("crash-loop-kafka-out");
    create_topic(&out_brokers, &out_topic, 2);
    let dir = std::env::temp_dir().join(unique_topic("crash-loop-kafka-dir"));
    let checkpoint = dir.join("checkpoint");
    let observer = Observer::new(&out_brokers, &out_topic, &checkpoint);
    let started = Instant::now();
    let (killed, mid_way) =
        crash_loop(&job_args(&brokers, &topic, &checkpoint, &out_brokers, &out_topic), 17, || observer.observe());
    assert_enough_kills("", (killed, mid_way));

    let intervals = observer.intervals.into_inner();
    let Analysis { rows, retried, recovered } = analyse(&intervals);
    assert_each_once(&format!("after {killed} crashes (committed)"), "window", &rows, &expected);
    let written: usize =
        intervals.iter().flat_map(|i| i.written.values()).flat_map(|runs| runs.values()).map(Vec::len).sum();
    println!(
        "crash loop (Kafka exactly-once on nisshi 0.7.0): {killed} kills ({mid_way} mid-way) in {:.0?}; {} windows \
         committed once each; {written} records written in all, {} of them in aborted attempts; {retried} \
         (epoch, worker)s aborted and written again; {recovered} (epoch, worker)s delivered by a restart's recovery",
        started.elapsed(),
        rows.len(),
        written - rows.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run whose producers are fenced while it works (what a restart does to a zombie) fails
/// loudly and commits nothing more; the next run delivers, from the staged records, the epochs
/// the fenced run had committed in the checkpoint but not in Kafka, and the output is the oracle's.
#[test]
fn a_fenced_run_fails_and_the_restart_delivers_what_it_left() {
    let (brokers, out_brokers) = (brokers(), txn_brokers());
    let topic = unique_topic("fenced-kafka-in");
    produce_test_stream(&brokers, &topic, TestStream::new(600_000, 50, 11));
    let (expected, _) =
        window_count_oracle(&consume_all(&brokers, &topic, Isolation::ReadUncommitted), 2_000, 10_000, false);
    let out_topic = unique_topic("fenced-kafka-out");
    create_topic(&out_brokers, &out_topic, 2);
    let dir = std::env::temp_dir().join(unique_topic("fenced-kafka-dir"));
    let checkpoint = dir.join("checkpoint");
    let args = job_args(&brokers, &topic, &checkpoint, &out_brokers, &out_topic);
    let observer = Observer::new(&out_brokers, &out_topic, &checkpoint);
    let mut zombie = Command::new(BINARY).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Wait until both workers have committed something, then fence them (observe does).
    loop {
        assert!(Instant::now() < deadline, "no progress marker after 120 s");
        assert!(zombie.try_wait().unwrap().is_none(), "the run ended before it could be fenced");
        if let Some(id) = query_id(&checkpoint) {
            let sink = format!("kafka:{out_topic}");
            if (0..WORKERS)
                .all(|w| read_marker(&out_brokers, &KafkaSink::progress_group(&id, &sink, w), &out_topic).is_some())
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fenced_at = Instant::now();
    observer.observe();
    let output = zombie.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the fenced run must fail");
    assert!(stderr.contains("fenced"), "the failure names the fencing: {stderr}");
    let died_after = fenced_at.elapsed();
    observer.observe();
    let restarted = Instant::now();
    check(&weir(&args));
    observer.observe();
    let Analysis { rows, retried, recovered } = analyse(&observer.intervals.into_inner());
    assert_each_once("committed output", "window", &rows, &expected);
    assert!(recovered > 0, "the restart had committed epochs of the fenced run to deliver");
    println!("the fenced run's error: {}", stderr.lines().rfind(|l| l.contains("fenced")).unwrap_or_default());
    println!(
        "fenced run failed {died_after:.1?} after the fencing; the restart (ran {:.1?}) delivered {recovered} \
         (epoch, worker)s from staged records; {retried} written twice (one aborted); {} windows committed once each",
        restarted.elapsed(),
        rows.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With a real Apache Kafka: what read_committed consumers see of the crash loop's output is the
/// oracle, each window once.
#[test]
fn read_committed_output_of_the_crash_loop_equals_the_oracle_on_a_real_kafka() {
    let Some(out_brokers) = eos_brokers() else { return };
    let brokers = brokers();
    let topic = unique_topic("crash-loop-eos-in");
    produce_test_stream(&brokers, &topic, TestStream::new(600_000, 50, 11));
    let (expected, _) =
        window_count_oracle(&consume_all(&brokers, &topic, Isolation::ReadUncommitted), 2_000, 10_000, false);
    let out_topic = unique_topic("crash-loop-eos-out");
    create_topic(&out_brokers, &out_topic, 2);
    let dir = std::env::temp_dir().join(unique_topic("crash-loop-eos-dir"));
    let checkpoint = dir.join("checkpoint");
    let read = || rows_of(&out_brokers, &out_topic, Isolation::ReadCommitted);
    let kills = crash_loop(&job_args(&brokers, &topic, &checkpoint, &out_brokers, &out_topic), 18, || read().len());
    assert_enough_kills("", kills);
    assert_each_once("read_committed output", "window", &read(), &expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The progress marker on nisshi 0.7.0: an offset sent with `send_offsets_to_transaction` is
/// committed with its transaction and only then; an aborted transaction's offset is dropped; a
/// zombie's open transaction is aborted by the next `init_transactions` with its
/// `transactional.id`, and the zombie can no longer commit. (Unlike aborted *records*, which this
/// broker shows to read_committed consumers: that is why the marker is an offset.)
#[test]
fn progress_markers_commit_with_their_transaction_only() {
    let brokers = txn_brokers();
    let topic = unique_topic("progress-marker");
    create_topic(&brokers, &topic, 1);
    let id = KafkaSink::transactional_id("marker-test", &format!("kafka:{topic}"), 0);
    let group = KafkaSink::progress_group("marker-test", &format!("kafka:{topic}"), 0);
    let metadata_source: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", &group).create().unwrap();
    let metadata = metadata_source.group_metadata().unwrap();
    let producer = |id: &str| -> BaseProducer {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("transactional.id", id).create().unwrap();
        producer.init_transactions(Duration::from_secs(30)).unwrap();
        producer
    };
    let open = |producer: &BaseProducer, epoch: i64| {
        producer.begin_transaction().unwrap();
        producer.send(BaseRecord::<[u8], [u8]>::to(&topic).payload(b"row".as_slice())).unwrap();
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&topic, 0, Offset::Offset(epoch + 1)).unwrap();
        producer.send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(10)).unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let first = producer(&id);
    assert_eq!(read_marker(&brokers, &group, &topic), None);
    open(&first, 4);
    assert_eq!(read_marker(&brokers, &group, &topic), None, "not visible before the commit");
    first.commit_transaction(Duration::from_secs(10)).unwrap();
    assert_eq!(read_marker(&brokers, &group, &topic), Some(4));
    open(&first, 5);
    first.abort_transaction(Duration::from_secs(10)).unwrap();
    assert_eq!(read_marker(&brokers, &group, &topic), Some(4), "an aborted marker is dropped");
    open(&first, 6);
    // A restart: the new producer fences the first and aborts its open transaction.
    let second = producer(&id);
    assert_eq!(read_marker(&brokers, &group, &topic), Some(4), "the zombie's open marker is aborted");
    assert!(first.commit_transaction(Duration::from_secs(3)).is_err(), "the fenced zombie cannot commit");
    assert_eq!(read_marker(&brokers, &group, &topic), Some(4));
    open(&second, 7);
    second.commit_transaction(Duration::from_secs(10)).unwrap();
    assert_eq!(read_marker(&brokers, &group, &topic), Some(7));
    // The records of the aborted transactions are still there for read_committed consumers on
    // this broker (5 and 6 aborted, 4 and 7 committed): the reason the marker is not a record.
    let visible = consume_all(&brokers, &topic, Isolation::ReadCommitted).len();
    println!("nisshi 0.7.0 shows {visible} of 4 transactional records (2 committed, 2 aborted) to read_committed");
}

/// The analysis fails on what a broken sink would write: an epoch written again after its
/// marker covered it, an epoch only ever written in aborted attempts, attempts with different
/// rows, a marker going back.
#[test]
fn the_analysis_rejects_repeated_lost_or_changed_epochs() {
    let row = |n: i64| -> Row { (n, n + 10, "k".to_string(), 1) };
    let interval = |before: [Option<u64>; 2], after: [Option<u64>; 2], written: &[(u64, usize, &str, i64)]| {
        let mut by_epoch: BTreeMap<(u64, usize), BTreeMap<String, Vec<Row>>> = BTreeMap::new();
        for &(epoch, worker, run, value) in written {
            by_epoch.entry((epoch, worker)).or_default().entry(run.to_string()).or_default().push(row(value));
        }
        Interval { before: before.to_vec(), after: after.to_vec(), last_commit: Some(9), written: by_epoch }
    };
    let good = vec![
        interval([None, None], [Some(1), None], &[(0, 0, "a", 1), (1, 0, "a", 2), (2, 0, "a", 3)]),
        interval([Some(1), None], [Some(2), Some(0)], &[(2, 0, "b", 3), (0, 1, "b", 4)]),
    ];
    let analysis = analyse(&good);
    assert_eq!((analysis.rows.len(), analysis.retried), (4, 1));
    let fails = |intervals: Vec<Interval>| std::panic::catch_unwind(|| analyse(&intervals)).is_err();
    // Epoch 1 of worker 0 written again by run b although the marker said 1.
    assert!(fails(vec![
        interval([None, None], [Some(1), None], &[(0, 0, "a", 1), (1, 0, "a", 2)]),
        interval([Some(1), None], [Some(1), None], &[(1, 0, "b", 2)]),
    ]));
    // Epoch 2 of worker 0 written but never committed (the marker stops at 1).
    assert!(fails(vec![interval([None, None], [Some(1), None], &[(1, 0, "a", 2), (2, 0, "a", 3)])]));
    // Two attempts at epoch 2 with different rows.
    assert!(fails(vec![
        interval([None, None], [None, None], &[(2, 0, "a", 3)]),
        interval([None, None], [Some(2), None], &[(2, 0, "b", 4)]),
    ]));
    // A marker going back.
    assert!(fails(vec![
        interval([None, None], [Some(2), None], &[(2, 0, "a", 3)]),
        interval([Some(2), None], [Some(1), None], &[]),
    ]));
}
