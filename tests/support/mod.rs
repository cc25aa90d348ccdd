//! Harness code shared by the integration tests (`mod support;` in a test file).
//!
//! Only logic that several tests repeat lives here: the per-partition lateness rule of the
//! oracles, running a bounded `Query` to its end, reading an operator's metrics, describing how two
//! result tables differ, the jittered random times of the generated cases, and running the CLI
//! binary. Everything specific to one operator stays in its test file.
#![allow(dead_code)]

pub mod crash;
pub mod kafka;
pub mod nexmark;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};
use weir_operators::prelude::OutputMode;
use weir_runtime::prelude::*;
use weir_runtime::source::event_source_with_batch;
use weir_runtime::timely::dataflow::Scope;

// ---------------------------------------------------------------------------------------------
// The lateness oracle
// ---------------------------------------------------------------------------------------------

/// How a record arrived, as [`PartitionClock::arrive`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Below the watermark it was compared with.
    Late { watermark: u64 },
    /// At or above the watermark; `out_of_order` when an earlier record of the partition had a
    /// greater event time.
    OnTime { out_of_order: bool },
}

/// The watermark of one source partition, from the specification (not from the runtime's code):
/// after records `ts[0..i]` it is `max(ts[0..i]) - delay` (the epoch before any record), and
/// record `i` is late iff `ts[i] <` that watermark (equal is on time).
#[derive(Clone, Debug)]
pub struct PartitionClock {
    delay_ms: u64,
    max_ts: Option<u64>,
}

impl PartitionClock {
    /// A partition that has seen no record yet, with watermark delay `delay_ms`.
    pub fn new(delay_ms: u64) -> Self {
        PartitionClock { delay_ms, max_ts: None }
    }

    /// The watermark the next record is compared with.
    pub fn watermark(&self) -> u64 {
        self.max_ts.map_or(0, |m| m.saturating_sub(self.delay_ms))
    }

    /// Decides whether a record at `ts` is late, then lets the partition's time advance to it.
    pub fn arrive(&mut self, ts: u64) -> Arrival {
        let watermark = self.watermark();
        let arrival = if ts < watermark {
            Arrival::Late { watermark }
        } else {
            Arrival::OnTime { out_of_order: self.max_ts.is_some_and(|m| ts < m) }
        };
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        arrival
    }
}

// ---------------------------------------------------------------------------------------------
// Running a query
// ---------------------------------------------------------------------------------------------

/// The event stream of a generated case: `source`'s partitions read `batch` records at a time,
/// timed by `time_ms` (milliseconds) with a watermark delay of `delay_ms` per partition.
pub fn memory_events<'scope, R: Clone + Debug + 'static>(
    scope: Scope<'scope, EventTime>,
    ctx: &QueryContext,
    source: &MemorySource<R>,
    time_ms: fn(&R) -> u64,
    delay_ms: u64,
    batch: usize,
) -> EventStream<'scope, R> {
    let options = WatermarkOptions::with_delay(Duration::from_millis(delay_ms));
    event_source_with_batch(
        scope,
        ctx,
        source.clone(),
        move |r| Some(EventTime::from_millis(time_ms(r))),
        options,
        batch,
    )
}

/// Unwraps a started bounded query and waits up to `timeout_secs` for it to finish, panicking
/// with `label` (the case) if it did not build, did not finish in time, or failed.
pub fn run_to_end(started: Result<QueryHandle, BuildError>, label: &str, timeout_secs: u64) -> QueryHandle {
    let handle = started.unwrap_or_else(|error| panic!("{label}: the dataflow should build: {error}"));
    match handle.await_termination(Some(Duration::from_secs(timeout_secs))) {
        Ok(true) => {}
        Ok(false) => panic!("{label}: a bounded query did not finish within {timeout_secs} s"),
        Err(error) => panic!("{label}: the query failed: {error}"),
    }
    handle
}

/// The counters and gauges of one operator, read once (after the query ended).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorCounts {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_updated: u64,
    pub rows_removed: u64,
    pub late_rows: u64,
    pub duplicates_dropped: u64,
    pub rows_total: i64,
    pub memory_bytes: i64,
}

impl OperatorCounts {
    /// Reads the metrics of the operator `name` of the query `handle`.
    pub fn of(handle: &QueryHandle, name: &str) -> Self {
        let metrics = handle.context().metrics().operator(name);
        OperatorCounts {
            rows_in: metrics.rows_in.load(Ordering::SeqCst),
            rows_out: metrics.rows_out.load(Ordering::SeqCst),
            rows_updated: metrics.rows_updated.load(Ordering::SeqCst),
            rows_removed: metrics.rows_removed.load(Ordering::SeqCst),
            late_rows: metrics.late_rows.load(Ordering::SeqCst),
            duplicates_dropped: metrics.duplicates_dropped.load(Ordering::SeqCst),
            rows_total: metrics.rows_total.load(Ordering::SeqCst),
            memory_bytes: metrics.memory_bytes.load(Ordering::SeqCst),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing results
// ---------------------------------------------------------------------------------------------

/// The oracle's late records: record id → (event time, watermark it was compared with).
pub type ExpectedLate = BTreeMap<u64, (u64, u64)>;

/// Checks an operator's late output against the oracle: every record on it is late by
/// `expected`, appears exactly once, names `operator`, and carries its event time, the watermark
/// it was compared with and `lateness_ms = watermark - event time`; no expected late record is
/// missing. `what` names the records in messages ("record", "left record", …).
pub fn check_late_output<'a, R: Debug + 'a>(
    label: &str,
    what: &str,
    late: impl IntoIterator<Item = &'a LateRecord<R>>,
    id_of: impl Fn(&R) -> u64,
    operator: &str,
    expected: &ExpectedLate,
) {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for late in late {
        let id = id_of(&late.record);
        *seen.entry(id).or_default() += 1;
        let Some(&(ts, watermark)) = expected.get(&id) else {
            panic!("{label}: {what} {:?} reported late, but it is on time for its partition", late.record);
        };
        assert_eq!(late.operator, operator, "{label}: late {what} {:?} names the wrong operator", late.record);
        assert_eq!(late.event_time.as_millis(), ts, "{label}: late {what} {:?}: event_time", late.record);
        assert_eq!(
            late.watermark.as_millis(),
            watermark,
            "{label}: late {what} {:?}: watermark it was compared with",
            late.record
        );
        assert_eq!(late.lateness_ms, watermark - ts, "{label}: late {what} {:?}: lateness_ms", late.record);
    }
    for (id, count) in &seen {
        assert_eq!(*count, 1, "{label}: late {what} id {id} appears {count} times on the late output");
    }
    let missing: Vec<_> = expected.keys().filter(|id| !seen.contains_key(id)).collect();
    assert!(missing.is_empty(), "{label}: late {what}s missing from the late output (ids): {missing:?}");
}

/// The final result table of an aggregation's output `rows` (output time, group, value), as
/// `mode` defines it; panics if the output breaks a per-mode rule. Append: each group is emitted
/// once. Update: see [`last_per_group`]. Complete: the snapshot at the greatest output time holds
/// each group once.
pub fn final_table<G: Ord + Copy + Debug, V: Copy + Debug>(
    label: &str,
    mode: OutputMode,
    rows: &[(u64, G, V)],
) -> BTreeMap<G, V> {
    let mut table = BTreeMap::new();
    match mode {
        OutputMode::Append => {
            for (time, group, value) in rows {
                if let Some(previous) = table.insert(*group, *value) {
                    panic!(
                        "{label}: append emitted group {group:?} more than once ({previous:?}, then {value:?} at time {time})"
                    );
                }
            }
        }
        OutputMode::Update => {
            table = last_per_group(label, rows).into_iter().map(|(g, (_, v))| (g, v)).collect();
        }
        OutputMode::Complete => {
            if let Some(latest) = rows.iter().map(|(t, _, _)| *t).max() {
                for (_, group, value) in rows.iter().filter(|(t, _, _)| *t == latest) {
                    if let Some(previous) = table.insert(*group, *value) {
                        panic!(
                            "{label}: the complete snapshot at time {latest} holds group {group:?} twice ({previous:?}, {value:?})"
                        );
                    }
                }
            }
        }
    }
    table
}

/// Update mode: the last emission (output time, value) of every group in `rows`; panics if a group
/// was emitted twice at one output time.
pub fn last_per_group<G: Ord + Copy + Debug, V: Copy + Debug>(
    label: &str,
    rows: &[(u64, G, V)],
) -> BTreeMap<G, (u64, V)> {
    let mut last: BTreeMap<G, (u64, V)> = BTreeMap::new();
    for (time, group, value) in rows {
        match last.get(group) {
            Some((t, v)) if t == time => {
                panic!("{label}: update emitted group {group:?} twice at time {time} ({v:?} and {value:?})")
            }
            Some((t, _)) if t > time => {}
            _ => {
                last.insert(*group, (*time, *value));
            }
        }
    }
    last
}

/// The differences between an actual and an expected result table, one line per missing, wrong or
/// unexpected group (the first 12, then how many more), for assertion messages.
pub fn describe_difference<K: Ord + Debug, V: PartialEq + Debug>(
    actual: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
) -> String {
    let mut lines = Vec::new();
    for (group, value) in expected {
        match actual.get(group) {
            None => lines.push(format!("  missing {group:?}: expected {value:?}")),
            Some(got) if got != value => lines.push(format!("  wrong {group:?}: got {got:?}, expected {value:?}")),
            _ => {}
        }
    }
    for (group, value) in actual {
        if !expected.contains_key(group) {
            lines.push(format!("  unexpected {group:?}: {value:?}"));
        }
    }
    let shown = lines.len().min(12);
    let mut text = lines[..shown].join("\n");
    if lines.len() > shown {
        text.push_str(&format!("\n  … and {} more", lines.len() - shown));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/// The next event time of a generated partition: `cursor` moves forward by `0..step` ms, and about
/// a third of the records jump back from it by up to 3 s (some late, some out of order but on time).
pub fn jittered_time(rng: &mut SmallRng, cursor: &mut u64, step: u64) -> u64 {
    *cursor += rng.random_range(0..step);
    if rng.random_bool(0.35) {
        cursor.saturating_sub(rng.random_range(0..3_000))
    } else {
        *cursor
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI binary
// ---------------------------------------------------------------------------------------------

/// The `weir` binary built for the integration tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_weir");

/// Runs the `weir` binary with `args` to its end and returns what it printed.
pub fn weir<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BINARY).args(args).output().unwrap()
}

/// Asserts that a run of the binary succeeded, showing its stderr otherwise.
pub fn check(output: &Output) {
    assert!(
        output.status.success(),
        "weir failed: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scratch directory `weir-cli-<name>-<pid>` under the system temp dir, created if missing.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `lines` to `path` as JSON lines.
pub fn write_lines(path: &Path, lines: &[Value]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// Milliseconds since the epoch as the ISO-8601 text the jobs print.
pub fn iso(ms: i64) -> String {
    EventTime::from_millis(ms as u64).to_iso8601()
}

/// The event time of an input line's `ts` field, in milliseconds.
pub fn ts_of(line: &Value) -> i64 {
    EventTime::from_json(&line["ts"]).unwrap().as_millis() as i64
}

/// The `{ts, watermark, record}` text both a CLI oracle and [`late_lines`] reduce a late record
/// to, so the two can be compared as sets of strings.
pub fn late_line(ts: impl Into<Value>, watermark: impl Into<Value>, record: &Value) -> String {
    json!({"ts": ts.into(), "watermark": watermark.into(), "record": record}).to_string()
}

/// The late records a job wrote to `path`, in file order, each reduced by [`late_line`]; asserts
/// that every line names `operator` and that its `lateness_ms` is `watermark - event_time`.
pub fn late_lines(path: &Path, operator: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["operator"], operator);
            assert_eq!(
                v["lateness_ms"].as_i64().unwrap(),
                v["watermark"].as_i64().unwrap() - v["event_time"].as_i64().unwrap()
            );
            late_line(v["event_time"].clone(), v["watermark"].clone(), &v["record"])
        })
        .collect()
}

/// Every line of `text` parsed as JSON (a job's stdout or output file).
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
