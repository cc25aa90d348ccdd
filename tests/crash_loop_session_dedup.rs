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
use std::time::Duration;

use serde_json::Value;

mod support;
use support::crash::{
    assert_each_once, assert_enough_kills, committed_count, committed_lines, crash_loop, kafka_job_args, rocksdb_flags,
    CrashLoop, KillAt, Run,
};
use support::kafka::{brokers, json_values, produce_test_stream, row, unique_topic, Row, TestStream};
use support::{Arrival, PartitionClock};

/// Watermark delay of the jobs, ms.
const DELAY_MS: u64 = 2_000;
/// Session gap, ms: with 50 keys and a record every 5 ms a key has a record every 250 ms on
/// average, so sessions hold a handful of records and many span checkpoint epochs.
const GAP_MS: u64 = 500;
/// Dedup bound, ms.
const WITHIN_MS: u64 = 1_000;

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
    let flags = ["--time-field", "ts", "--key-field", "key", "--watermark-delay", "2s", "-w", "2", "--sink", "files"];
    let mut args = kafka_job_args(job, brokers, &["--topic", topic], 300, &flags, &dir.join("checkpoint"));
    args.extend(["--output-dir".to_string(), dir.join("out").display().to_string()]);
    if rocksdb {
        args.extend(rocksdb_flags(dir));
    }
    args
}

/// Runs `args` through the crash loop (seeded by `seed`), with `dir/out` as the exactly-once
/// output, and returns the committed lines; asserts that enough runs were killed, some of them
/// mid-way. The memory backend uses the shared harness's kills (0.2–1.2 s after each start);
/// RocksDB runs take longer to start and to commit their first epochs (a RocksDB checkpoint per
/// epoch and worker), so each is killed at a random moment 0–0.4 s after it committed its first
/// epoch ([`KillAt::AfterFirstCommit`]), failing if a run commits nothing in 2 minutes; each
/// run's stderr is kept in `dir/run-N.err`, and the last run has 10 minutes.
fn crash_and_collect(args: &[String], dir: &Path, seed: u64, rocksdb: bool) -> Vec<Value> {
    let output = dir.join("out");
    let started = std::time::Instant::now();
    let progress = || committed_count(&output);
    let (killed, mid_way) = if rocksdb {
        let kill_at = KillAt::AfterFirstCommit {
            checkpoint: dir.join("checkpoint"),
            after_ms: 0..400,
            wait: Duration::from_secs(120),
            must_commit: true,
        };
        let settings = CrashLoop { last_run_limit: Some(Duration::from_secs(600)), ..CrashLoop::new(seed, kill_at) };
        settings.run(|n| Run::weir(args, dir.join(format!("run-{n}.err"))), progress)
    } else {
        crash_loop(args, seed, progress)
    };
    eprintln!("{}: {killed} kills, {mid_way} mid-way, {:?}", args[1], started.elapsed());
    assert_enough_kills("", (killed, mid_way));
    committed_lines(&output)
}

fn scratch(label: &str) -> PathBuf {
    std::env::temp_dir().join(unique_topic(label))
}

fn session_crash_loop(rocksdb: bool, seed: u64) {
    let brokers = brokers();
    let topic = unique_topic("crash-session");
    produce_test_stream(&brokers, &topic, TestStream::new(300_000, 50, seed));
    let (expected, late) = session_oracle(&json_values(&brokers, &topic));
    assert!(late > 100, "the input has late records");
    assert!(expected.iter().filter(|r| r.3 > 1).count() > 1_000, "sessions of several records");
    let dir = scratch("crash-session-dir");
    let job = ["session-count", "--gap", "500ms", "--output-mode", "append"];
    let written: Vec<Row> = crash_and_collect(&job_args(&job, &brokers, &topic, &dir, rocksdb), &dir, seed, rocksdb)
        .iter()
        .map(row)
        .collect();
    assert_each_once("", "session", &written, &expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn dedup_crash_loop(rocksdb: bool, seed: u64) {
    let brokers = brokers();
    let topic = unique_topic("crash-dedup");
    produce_test_stream(&brokers, &topic, TestStream::new(300_000, 50, seed));
    let (expected, dropped) = dedup_oracle(&json_values(&brokers, &topic));
    assert!(dropped > 10_000, "the input has duplicates within the bound");
    let dir = scratch("crash-dedup-dir");
    let job = ["dedup", "--within", "1s"];
    let written: Vec<String> = crash_and_collect(&job_args(&job, &brokers, &topic, &dir, rocksdb), &dir, seed, rocksdb)
        .iter()
        .map(Value::to_string)
        .collect();
    assert_each_once("dedup", "passed record", &written, &expected);
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
