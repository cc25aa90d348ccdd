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

use serde_json::Value;
use weir::prelude::JoinType;

mod support;
use support::crash::{
    assert_each_once, assert_enough_kills, committed_count, committed_lines, crash_loop, kafka_job_args, rocksdb_flags,
    weir_crash_loop, CrashLoop, KillAt,
};
use support::kafka::{brokers, consume_all, produce_test_stream, unique_topic, Isolation, TestStream};
use support::{Arrival, PartitionClock};

/// Allowed lateness of both inputs (the test stream's disorder).
const DELAY_MS: u64 = 2_000;
/// The join's bounds: `l.ts - 200ms <= r.ts <= l.ts + 300ms`.
const LOWER_MS: i64 = -200;
const UPPER_MS: i64 = 300;

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
    let (lower, upper, delay) = (format!("{LOWER_MS}ms"), format!("{UPPER_MS}ms"), format!("{DELAY_MS}ms"));
    let flags = ["--lower", &lower, "--upper", &upper, "--join-type", join_type.name(), "--watermark-delay", &delay];
    let flags: Vec<&str> = flags.iter().copied().chain(["-w", "2", "--sink", "files"]).collect();
    let inputs = ["--left-topic", left, "--right-topic", right];
    let mut args = kafka_job_args(&["interval-join"], brokers, &inputs, 300, &flags, &dir.join("checkpoint"));
    args.extend(["--output-dir".to_string(), dir.join("out").display().to_string()]);
    if rocksdb {
        args.extend(rocksdb_flags(dir));
    }
    args
}

fn survives_a_crash_loop(label: &str, join_type: JoinType, rocksdb: bool, seed: u64) {
    let brokers = brokers();
    let (left, right) =
        (unique_topic(&format!("ij-crash-{label}-left")), unique_topic(&format!("ij-crash-{label}-right")));
    produce_test_stream(&brokers, &left, TestStream::new(150_000, 100, seed));
    produce_test_stream(&brokers, &right, TestStream::new(150_000, 100, seed + 1));
    let expected = oracle(&brokers, &left, &right, join_type);
    let dir = std::env::temp_dir().join(unique_topic(&format!("ij-crash-{label}-dir")));
    let output = dir.join("out");
    let args = job_args(&brokers, (&left, &right), join_type, &dir, rocksdb);
    let progress = || committed_count(&output);
    // On RocksDB, longer runs before each kill: a RocksDB snapshot (a RocksDB checkpoint per
    // store, worker and epoch) costs tens of milliseconds in a debug build, so a run commits its
    // first epochs later than on the memory backend, and a kill within `crash_loop`'s 0.2-1.2 s
    // would often come before any new commit.
    let kills = if rocksdb {
        weir_crash_loop(&args, &CrashLoop::new(seed, KillAt::AfterStart(800..3_000)), progress)
    } else {
        crash_loop(&args, seed, progress)
    };
    assert_enough_kills(label, kills);
    let label = format!("{label}: after {} crashes", kills.0);
    assert_each_once(&label, "row", &committed_rows(&output), &expected);
    std::fs::remove_dir_all(&dir).unwrap();
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
