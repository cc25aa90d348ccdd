//! Exactly-once across crashes for the interval join: two Kafka test streams (3 partitions each,
//! out of order, with late records) through `weir run interval-join --source kafka --checkpoint
//! ... --sink files` on 2 workers, SIGKILLed at random moments and restarted again and again
//! (`tests/support/crash.rs`), then run to its end: the committed output files hold exactly the
//! rows a batch computation over both topics gives, each once. One loop per setting: an inner
//! join, a full outer join (padded rows of both sides, emitted at eviction, across restarts), and
//! a left outer join on the RocksDB state backend (its stores snapshotted as RocksDB checkpoints).
//!
//! The oracle, from the job's documented behaviour (as in `tests/cli_interval_join.rs`): a record
//! is late iff its time is below its partition's `max(earlier times) - delay` and joins nothing;
//! `l` and `r` match iff their keys are equal and `l.ts + lower <= r.ts <= l.ts + upper`; an outer
//! join adds each unmatched record of its outer side(s), padded with null.
//!
//! Needs `WEIR_KAFKA_BROKERS` (`scripts/test-env up`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use serde_json::Value;
use weir::prelude::JoinType;

mod support;
use support::crash::{committed_lines, crash_loop, KILLS};
use support::kafka::{brokers, consume_all, unique_topic, Isolation};
use support::{check, weir, Arrival, PartitionClock, BINARY};

/// Allowed lateness of both inputs (the test stream's disorder).
const DELAY_MS: u64 = 2_000;
/// The join's bounds: `l.ts - 200ms <= r.ts <= l.ts + 300ms`.
const LOWER_MS: i64 = -200;
const UPPER_MS: i64 = 300;

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
        "150000",
        "--keys",
        "100",
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

/// One output row: the `value` (sequence number) of its left and right record.
type Row = (Option<i64>, Option<i64>);

/// A topic's on-time records (value, key, ts), and how many were late.
fn on_time(brokers: &str, topic: &str) -> (Vec<(i64, String, i64)>, usize) {
    let mut clocks: BTreeMap<i32, PartitionClock> = BTreeMap::new();
    let (mut kept, mut late) = (Vec::new(), 0);
    for record in consume_all(brokers, topic, Isolation::ReadUncommitted) {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let ts = value["ts"].as_i64().unwrap();
        let clock = clocks.entry(record.partition).or_insert_with(|| PartitionClock::new(DELAY_MS));
        match clock.arrive(ts as u64) {
            Arrival::Late { .. } => late += 1,
            Arrival::OnTime { .. } => {
                kept.push((value["value"].as_i64().unwrap(), value["key"].as_str().unwrap().to_string(), ts))
            }
        }
    }
    (kept, late)
}

/// The expected rows of `join_type` (inner or outer) over the two topics.
fn oracle(brokers: &str, left: &str, right: &str, join_type: JoinType) -> BTreeSet<Row> {
    let (lefts, late_left) = on_time(brokers, left);
    let (rights, late_right) = on_time(brokers, right);
    assert!(late_left > 100 && late_right > 100, "the inputs have late records ({late_left}, {late_right})");
    let mut by_key: BTreeMap<&str, Vec<(i64, usize)>> = BTreeMap::new();
    for (index, (_, key, ts)) in rights.iter().enumerate() {
        by_key.entry(key).or_default().push((*ts, index));
    }
    for list in by_key.values_mut() {
        list.sort();
    }
    let mut rows = BTreeSet::new();
    let mut right_matched = vec![false; rights.len()];
    for (value, key, ts) in &lefts {
        let mut matched = false;
        if let Some(list) = by_key.get(key.as_str()) {
            let first = list.partition_point(|(t, _)| *t < ts + LOWER_MS);
            for (t, index) in &list[first..] {
                if *t > ts + UPPER_MS {
                    break;
                }
                matched = true;
                right_matched[*index] = true;
                rows.insert((Some(*value), Some(rights[*index].0)));
            }
        }
        if !matched && join_type.emits_unmatched_left() {
            rows.insert((Some(*value), None));
        }
    }
    if join_type.emits_unmatched_right() {
        for ((value, _, _), matched) in rights.iter().zip(right_matched) {
            if !matched {
                rows.insert((None, Some(*value)));
            }
        }
    }
    rows
}

/// The committed rows, in file order.
fn committed_rows(dir: &Path) -> Vec<Row> {
    let id = |side: &Value| side.get("value").and_then(Value::as_i64);
    committed_lines(dir).iter().map(|line| (id(&line["left"]), id(&line["right"]))).collect()
}

/// The job's arguments: bounded reads of both topics, 2 workers, checkpoints every 20 ms,
/// reading slowly enough (a cap per activation) to be killed mid-way.
fn job_args(brokers: &str, (left, right): (&str, &str), join_type: JoinType, dir: &Path, rocksdb: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "interval-join",
        "--source",
        "kafka",
        "--brokers",
        brokers,
        "--left-topic",
        left,
        "--right-topic",
        right,
        "--ending-offsets",
        "latest",
        "--max-offsets-per-epoch",
        "300",
        "--lower",
        &format!("{LOWER_MS}ms"),
        "--upper",
        &format!("{UPPER_MS}ms"),
        "--join-type",
        join_type.name(),
        "--watermark-delay",
        &format!("{DELAY_MS}ms"),
        "-w",
        "2",
        "--checkpoint-interval",
        "20ms",
        "--sink",
        "files",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (flag, path) in [("--checkpoint", "checkpoint"), ("--output-dir", "out")] {
        args.extend([flag.to_string(), dir.join(path).display().to_string()]);
    }
    if rocksdb {
        args.extend(["--state-backend".to_string(), "rocksdb".to_string()]);
        args.extend(["--state-dir".to_string(), dir.join("state").display().to_string()]);
    }
    args
}

fn survives_a_crash_loop(label: &str, join_type: JoinType, rocksdb: bool, seed: u64) {
    let brokers = brokers();
    let (left, right) =
        (unique_topic(&format!("ij-crash-{label}-left")), unique_topic(&format!("ij-crash-{label}-right")));
    produce(&brokers, &left, seed);
    produce(&brokers, &right, seed + 1);
    let expected = oracle(&brokers, &left, &right, join_type);
    let dir = std::env::temp_dir().join(unique_topic(&format!("ij-crash-{label}-dir")));
    let output = dir.join("out");
    let args = job_args(&brokers, (&left, &right), join_type, &dir, rocksdb);
    let progress = || if output.exists() { committed_lines(&output).len() } else { 0 };
    let (killed, mid_way) =
        if rocksdb { slow_crash_loop(&args, seed, progress) } else { crash_loop(&args, seed, progress) };
    assert!(killed >= 10, "{label}: only {killed} runs were killed: the job finished too fast to test recovery");
    assert!(mid_way >= 3, "{label}: only {mid_way} runs were killed with part of the output committed");

    let written = committed_rows(&output);
    let unique: BTreeSet<Row> = written.iter().cloned().collect();
    assert_eq!(written.len(), unique.len(), "{label}: a row was written twice");
    let missing: Vec<_> = expected.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{label}: after {killed} crashes: {} rows expected, {} written; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        expected.len(),
        unique.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `crash_loop` with longer runs before each kill: a RocksDB snapshot (a RocksDB checkpoint per
/// store, worker and epoch) costs tens of milliseconds in a debug build, so a run commits its
/// first epochs later than on the memory backend, and a kill within `crash_loop`'s 0.2-1.2 s would
/// often come before any new commit.
fn slow_crash_loop(args: &[String], seed: u64, progress: impl Fn() -> usize) -> (usize, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut seen = Vec::new();
    for _ in 0..4 * KILLS {
        if seen.len() == KILLS {
            break;
        }
        let mut child = Command::new(BINARY).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(800..3_000)));
        match child.try_wait().unwrap() {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                seen.push(progress());
            }
            Some(status) => {
                let output = child.wait_with_output().unwrap();
                assert!(status.success(), "a run failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
    }
    let last = Command::new(BINARY).args(args).output().unwrap();
    assert!(last.status.success(), "the last run failed: {}", String::from_utf8_lossy(&last.stderr));
    let total = progress();
    (seen.len(), seen.iter().filter(|visible| **visible > 0 && **visible < total).count())
}

#[test]
fn inner_join_survives_a_crash_loop() {
    survives_a_crash_loop("inner", JoinType::Inner, false, 21);
}

#[test]
fn full_outer_join_survives_a_crash_loop() {
    survives_a_crash_loop("full-outer", JoinType::FullOuter, false, 31);
}

#[test]
fn left_outer_join_on_rocksdb_survives_a_crash_loop() {
    survives_a_crash_loop("left-outer-rocksdb", JoinType::LeftOuter, true, 41);
}
