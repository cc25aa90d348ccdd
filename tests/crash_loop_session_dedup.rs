//! Exactly-once across crashes for session windows and dedup (EXACTLY_ONCE.md): a Kafka test
//! stream (3 partitions, out of order, with late records) through `weir run session-count` and
//! `weir run dedup` with `--checkpoint ... --sink files` on 2 workers, SIGKILLed at random moments
//! and restarted again and again, then run to its end: the committed output files hold exactly
//! what a batch computation over the input gives, each row once. Sessions span many checkpoint
//! epochs (open sessions, their end capabilities and the index by end must be restored), and
//! dedup holds keys and undecided records across epochs (store, buffered records, expiry index).
//! Each job runs with the memory and with the RocksDB state backend.
//!
//! Needs `WEIR_KAFKA_BROKERS` (`scripts/test-env up`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use serde_json::Value;

mod support;
use support::crash::{committed_lines, crash_loop, KILLS};
use support::kafka::{brokers, consume_all, row, unique_topic, Isolation, Row};
use support::{check, weir, Arrival, PartitionClock, BINARY};

/// Watermark delay of the jobs, ms.
const DELAY_MS: u64 = 2_000;
/// Session gap, ms: with 50 keys and a record every 5 ms a key has a record every 250 ms on
/// average, so sessions hold a handful of records and many span checkpoint epochs.
const GAP_MS: u64 = 500;
/// Dedup bound, ms.
const WITHIN_MS: u64 = 1_000;

fn produce(brokers: &str, topic: &str, seed: u64) {
    check(&weir([
        "kafka",
        "produce-test-data",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--partitions",
        "3",
        "--records",
        "300000",
        "--keys",
        "50",
        "--step",
        "5ms",
        "--late-fraction",
        "0.02",
        "--late-by",
        "30s",
        "--seed",
        &seed.to_string(),
    ]));
}

/// The test stream's records as the JSON jobs read them: (partition, value), in offset order
/// per partition.
fn values(brokers: &str, topic: &str) -> Vec<(i32, Value)> {
    consume_all(brokers, topic, Isolation::ReadUncommitted)
        .iter()
        .map(|r| (r.partition, serde_json::from_slice(r.value.as_deref().expect("a value")).unwrap()))
        .collect()
}

/// The on-time records (per partition: late iff below `max(earlier ts) - delay`, the
/// specification's rule) as (key, ts, value), and how many were late.
fn on_time(records: &[(i32, Value)]) -> (Vec<(String, u64, &Value)>, usize) {
    let mut clocks: BTreeMap<i32, PartitionClock> = BTreeMap::new();
    let (mut kept, mut late) = (Vec::new(), 0);
    for (partition, value) in records {
        let ts = value["ts"].as_u64().expect("ts");
        let key = value["key"].as_str().expect("key").to_string();
        match clocks.entry(*partition).or_insert_with(|| PartitionClock::new(DELAY_MS)).arrive(ts) {
            Arrival::Late { .. } => late += 1,
            Arrival::OnTime { .. } => kept.push((key, ts, value)),
        }
    }
    (kept, late)
}

/// Session counts from the definition: per key, sorted times; a new session when a time is at
/// least `gap` after the previous one; a session spans `[first, last + gap)`.
fn session_oracle(records: &[(i32, Value)]) -> (BTreeSet<Row>, usize) {
    let (kept, late) = on_time(records);
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, ts, _) in kept {
        by_key.entry(key).or_default().push(ts);
    }
    let mut rows = BTreeSet::new();
    for (key, mut times) in by_key {
        times.sort_unstable();
        let mut session: Option<(u64, u64, u64)> = None;
        for t in times {
            match &mut session {
                Some((_, last, count)) if t < *last + GAP_MS => {
                    *last = t;
                    *count += 1;
                }
                _ => {
                    if let Some((first, last, count)) = session.replace((t, t, 1)) {
                        rows.insert((first as i64, (last + GAP_MS) as i64, key.clone(), count));
                    }
                }
            }
        }
        if let Some((first, last, count)) = session {
            rows.insert((first as i64, (last + GAP_MS) as i64, key.clone(), count));
        }
    }
    (rows, late)
}

/// Dedup from the definition: per key, in (event time, record text) order, a record passes iff
/// it is the key's first or at least `within` after the key's last passed record. Answers the
/// passed records' JSON texts and how many were dropped as duplicates.
fn dedup_oracle(records: &[(i32, Value)]) -> (BTreeSet<String>, usize) {
    let (kept, _) = on_time(records);
    let mut by_key: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (key, ts, value) in kept {
        by_key.entry(key).or_default().push((ts, value.to_string()));
    }
    let (mut passed, mut dropped) = (BTreeSet::new(), 0);
    for (_, mut records) in by_key {
        records.sort();
        let mut last: Option<u64> = None;
        for (ts, text) in records {
            if last.is_some_and(|f| ts < f + WITHIN_MS) {
                dropped += 1;
            } else {
                last = Some(ts);
                passed.insert(text);
            }
        }
    }
    (passed, dropped)
}

/// The job's arguments: bounded read of `topic` on 2 workers, checkpoints every 20 ms, reading
/// slowly enough (a cap per activation) to be killed mid-way; `rocksdb` keeps state in RocksDB
/// under `dir/state`.
fn job_args(job: &[&str], brokers: &str, topic: &str, dir: &Path, rocksdb: bool) -> Vec<String> {
    let mut args: Vec<String> = ["run"].iter().chain(job).map(|s| s.to_string()).collect();
    args.extend(
        [
            "--source",
            "kafka",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--ending-offsets",
            "latest",
            "--max-offsets-per-epoch",
            "300",
            "--time-field",
            "ts",
            "--key-field",
            "key",
            "--watermark-delay",
            "2s",
            "-w",
            "2",
            "--checkpoint-interval",
            "20ms",
            "--sink",
            "files",
        ]
        .map(String::from),
    );
    args.extend(["--checkpoint".to_string(), dir.join("checkpoint").display().to_string()]);
    args.extend(["--output-dir".to_string(), dir.join("out").display().to_string()]);
    if rocksdb {
        args.extend(["--state-backend".to_string(), "rocksdb".to_string()]);
        args.extend(["--state-dir".to_string(), dir.join("state").display().to_string()]);
    }
    args
}

/// Runs `args` through the crash loop (seeded by `seed`), with `dir/out` as the exactly-once
/// output, and returns the committed lines; asserts that enough runs were killed, some of them
/// mid-way. The memory backend uses the shared harness ([`crash_loop`]); RocksDB runs take
/// longer to start and to commit their first epochs (a RocksDB checkpoint per epoch and
/// worker), so they are killed later ([`slow_crash_loop`]).
fn crash_and_collect(args: &[String], dir: &Path, seed: u64, rocksdb: bool) -> Vec<Value> {
    let output = dir.join("out");
    let started = std::time::Instant::now();
    let progress = || if output.exists() { committed_lines(&output).len() } else { 0 };
    let (killed, mid_way) =
        if rocksdb { slow_crash_loop(args, seed, dir, progress) } else { crash_loop(args, seed, progress) };
    eprintln!("{}: {killed} kills, {mid_way} mid-way, {:?}", args[1], started.elapsed());
    assert!(killed >= 10, "only {killed} runs were killed: the job finished too fast to test recovery");
    assert!(mid_way >= 3, "only {mid_way} runs were killed with part of the output committed");
    committed_lines(&output)
}

/// [`crash_loop`] for runs that are slow to start (RocksDB opens its stores and writes a
/// checkpoint per epoch and worker, so the first commit can take more than a second on a loaded
/// machine, and a fixed delay either kills every run before it commits or lets the job end before
/// ten kills): each run is killed at a random moment 0–1 s after it committed its first epoch.
/// Each run's stderr is kept in `dir/run-N.err`, and the last run has a time limit (a stalled run
/// shows its stderr).
fn slow_crash_loop(args: &[String], seed: u64, dir: &Path, progress: impl Fn() -> usize) -> (usize, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut killed, mut seen) = (0, Vec::new());
    let run = |n: usize| {
        let err = std::fs::File::create(dir.join(format!("run-{n}.err"))).unwrap();
        Command::new(BINARY).args(args).stdout(Stdio::null()).stderr(err).spawn().unwrap()
    };
    let stderr_of = |n: usize| std::fs::read_to_string(dir.join(format!("run-{n}.err"))).unwrap_or_default();
    let last_commit = || -> Option<u64> {
        let commits = std::fs::read_dir(dir.join("checkpoint").join("commits")).ok()?;
        commits.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).max()
    };
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..4 * KILLS {
        if killed == KILLS {
            break;
        }
        let before = last_commit();
        let mut child = run(n);
        let waiting = Instant::now();
        while last_commit() == before && child.try_wait().unwrap().is_none() {
            assert!(
                waiting.elapsed() < Duration::from_secs(120),
                "run {n} committed nothing in 2 minutes: {}",
                stderr_of(n)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1_000)));
        match child.try_wait().unwrap() {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
                seen.push(progress());
            }
            Some(status) => assert!(status.success(), "run {n} failed: {}", stderr_of(n)),
        }
    }
    let last = 4 * KILLS;
    let mut child = run(last);
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the last run did not end within 10 minutes; its stderr: {}", stderr_of(last));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the last run failed: {}", stderr_of(last));
    let total = progress();
    (killed, seen.iter().filter(|&&visible| visible > 0 && visible < total).count())
}

fn scratch(label: &str) -> PathBuf {
    std::env::temp_dir().join(unique_topic(label))
}

fn session_crash_loop(rocksdb: bool, seed: u64) {
    let brokers = brokers();
    let topic = unique_topic("crash-session");
    produce(&brokers, &topic, seed);
    let (expected, late) = session_oracle(&values(&brokers, &topic));
    assert!(late > 100, "the input has late records");
    assert!(expected.iter().filter(|r| r.3 > 1).count() > 1_000, "sessions of several records");
    let dir = scratch("crash-session-dir");
    let job = ["session-count", "--gap", "500ms", "--output-mode", "append"];
    let written: Vec<Row> = crash_and_collect(&job_args(&job, &brokers, &topic, &dir, rocksdb), &dir, seed, rocksdb)
        .iter()
        .map(row)
        .collect();
    let unique: BTreeSet<Row> = written.iter().cloned().collect();
    assert_eq!(written.len(), unique.len(), "a session was written twice");
    let missing: Vec<_> = expected.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} sessions expected, {} written; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        expected.len(),
        unique.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn dedup_crash_loop(rocksdb: bool, seed: u64) {
    let brokers = brokers();
    let topic = unique_topic("crash-dedup");
    produce(&brokers, &topic, seed);
    let (expected, dropped) = dedup_oracle(&values(&brokers, &topic));
    assert!(dropped > 10_000, "the input has duplicates within the bound");
    let dir = scratch("crash-dedup-dir");
    let job = ["dedup", "--within", "1s"];
    let written: Vec<String> = crash_and_collect(&job_args(&job, &brokers, &topic, &dir, rocksdb), &dir, seed, rocksdb)
        .iter()
        .map(Value::to_string)
        .collect();
    let unique: BTreeSet<String> = written.iter().cloned().collect();
    assert_eq!(written.len(), unique.len(), "a record was passed twice");
    let missing: Vec<_> = expected.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} records should pass, {} passed; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        expected.len(),
        unique.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn session_count_exactly_once_survives_a_crash_loop() {
    session_crash_loop(false, 21);
}

#[test]
fn session_count_on_rocksdb_exactly_once_survives_a_crash_loop() {
    session_crash_loop(true, 22);
}

#[test]
fn dedup_exactly_once_survives_a_crash_loop() {
    dedup_crash_loop(false, 23);
}

#[test]
fn dedup_on_rocksdb_exactly_once_survives_a_crash_loop() {
    dedup_crash_loop(true, 24);
}
