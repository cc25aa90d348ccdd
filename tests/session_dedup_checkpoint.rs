//! Session windows and dedup resume from checkpoints, in process: one query with both operators
//! (`session_count` in append and in update mode, `dedup`) checkpoints every 20 ms into a
//! directory and writes through the exactly-once file sink; it is stopped (`QueryHandle::stop`)
//! at random moments and started again from the same directory, then run to its end. What the
//! sink committed must equal a batch computation written from the specification, each row once,
//! with the memory and the RocksDB state backends, on 1 and 2 workers. The SIGKILL crash loops
//! over Kafka are in `tests/crash_loop_session_dedup.rs`; these are the fast checks.
//!
//! Seeded random input: several partitions, out of order, with records late at their source,
//! random batch sizes, read slowly so that every stop lands mid-way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir_connectors::jsonl::exactly_once::ExactlyOnceJsonLinesSink;
use weir_runtime::error::QueryError;
use weir_runtime::memory_source::MemoryReader;
use weir_runtime::source::{event_source_with_batch, PartitionReader, ReadStatus, Source};
use weir_runtime::state::RocksDbOptions;
use weir_runtime::timely::dataflow::operators::vec::Map;
use weir_runtime::timely::dataflow::operators::Concat;

mod support;
use support::crash::{committed_lines, StopLoop};
use support::{jittered_time, Arrival, PartitionClock};

const BASE: u64 = 1_700_000_000_000;

/// An input record; `id` is unique within a case. Ordered by time, then id (dedup's tie-break).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Rec {
    ts: u64,
    id: u64,
    key: u32,
}

/// One committed line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Row {
    /// A final session (append mode).
    Session { key: u32, start: i64, end: i64, count: u64 },
    /// A session row of update mode (final or superseded).
    Update { key: u32, start: i64, end: i64, count: u64 },
    /// A record dedup passed.
    Passed { id: u64 },
}

struct Case {
    parts: Vec<Vec<Rec>>,
    delay_ms: u64,
    gap_ms: u64,
    within_ms: u64,
    batch: usize,
}

fn case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let partitions = rng.random_range(2..=4);
    let per_partition = rng.random_range(1_200..1_800);
    let mut id = 0;
    let parts = (0..partitions)
        .map(|_| {
            let mut cursor = BASE + rng.random_range(0..2_000);
            (0..per_partition)
                .map(|_| {
                    id += 1;
                    Rec { ts: jittered_time(&mut rng, &mut cursor, 120), id, key: rng.random_range(0..12) }
                })
                .collect()
        })
        .collect();
    Case {
        parts,
        delay_ms: rng.random_range(0..2_500),
        gap_ms: rng.random_range(200..1_500),
        within_ms: rng.random_range(100..3_000),
        batch: rng.random_range(1..12),
    }
}

/// A memory source read slowly (a few records per read, then a pause), so that a run takes long
/// enough to be stopped in the middle.
#[derive(Clone)]
struct Slow {
    inner: MemorySource<Rec>,
}

struct SlowReader {
    inner: MemoryReader<Rec>,
}

impl PartitionReader for SlowReader {
    type Record = Rec;
    fn read(&mut self, out: &mut Vec<Rec>, max: usize) -> Result<ReadStatus, QueryError> {
        match self.inner.read(out, max.min(4))? {
            ReadStatus::Ready => Ok(ReadStatus::Wait(Duration::from_millis(4))),
            status => Ok(status),
        }
    }
    fn position(&self) -> serde_json::Value {
        self.inner.position()
    }
}

impl Source for Slow {
    type Record = Rec;
    type Reader = SlowReader;
    fn description(&self) -> String {
        "slow-memory".to_string()
    }
    fn partitions(&self) -> usize {
        self.inner.partitions()
    }
    fn open(&self, partition: usize) -> Result<SlowReader, QueryError> {
        Ok(SlowReader { inner: self.inner.open(partition)? })
    }
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<SlowReader, QueryError> {
        Ok(SlowReader { inner: self.inner.open_at(partition, position)? })
    }
}

struct Config {
    seed: u64,
    workers: usize,
    rocksdb: bool,
    dir: PathBuf,
}

/// Starts the job (resuming from the checkpoint directory if there is one).
fn start(config: &Config) -> Result<QueryHandle, BuildError> {
    let case = case(config.seed);
    let mut query = Query::new("session-dedup")
        .workers(config.workers)
        .checkpoint(config.dir.join("checkpoint"), Duration::from_millis(20));
    if config.rocksdb {
        query = query.state_backend(StateBackend::RocksDb(
            RocksDbOptions::new(config.dir.join("state"))
                .with_block_cache_bytes(1 << 20)
                .with_write_buffer_bytes(64 << 10),
        ));
    }
    let source = Slow { inner: MemorySource::new(case.parts.clone()) };
    let output = config.dir.join("out");
    let (gap, within) = (Duration::from_millis(case.gap_ms), Duration::from_millis(case.within_ms));
    let (delay_ms, batch) = (case.delay_ms, case.batch);
    query.start(move |scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            source.clone(),
            |r: &Rec| Some(EventTime::from_millis(r.ts)),
            WatermarkOptions::with_delay(Duration::from_millis(delay_ms)),
            batch,
        );
        let line = |row: Row| serde_json::to_string(&row).unwrap();
        let appended = events.clone().session_count(ctx, "sessions", gap, OutputMode::Append, |r: &Rec| r.key)?;
        let appended = appended
            .results
            .map(move |r| line(Row::Session { key: r.key, start: r.window_start, end: r.window_end, count: r.value }));
        let updated = events.clone().session_count(ctx, "updates", gap, OutputMode::Update, |r: &Rec| r.key)?;
        let updated = updated
            .results
            .map(move |r| line(Row::Update { key: r.key, start: r.window_start, end: r.window_end, count: r.value }));
        let passed = events.dedup(ctx, "dedup", |r: &Rec| r.key, within)?;
        let passed = passed.records.map(move |e| line(Row::Passed { id: e.data.id }));
        ExactlyOnceJsonLinesSink::new(&output).write_lines(appended.concat(updated).concat(passed), ctx, "files:out")
    })
}

/// The on-time records (late iff below its partition's `max(earlier times) - delay`).
fn on_time(case: &Case) -> Vec<&Rec> {
    let mut kept = Vec::new();
    for part in &case.parts {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            if let Arrival::OnTime { .. } = clock.arrive(rec.ts) {
                kept.push(rec);
            }
        }
    }
    kept.sort();
    kept
}

/// Final sessions: `(key, start, end) -> count`.
type Sessions = BTreeMap<(u32, i64, i64), u64>;

/// Final sessions and passed record ids, from the definitions.
fn oracle(case: &Case) -> (Sessions, Vec<u64>) {
    let mut per_key: BTreeMap<u32, Vec<&Rec>> = BTreeMap::new();
    for rec in on_time(case) {
        per_key.entry(rec.key).or_default().push(rec);
    }
    let (mut sessions, mut passed) = (BTreeMap::new(), Vec::new());
    for (key, recs) in per_key {
        // Sessions: a new one when a record is at least `gap` after the previous one.
        let mut session: Option<(u64, u64, u64)> = None;
        for rec in &recs {
            match &mut session {
                Some((_, last, count)) if rec.ts < *last + case.gap_ms => {
                    *last = rec.ts;
                    *count += 1;
                }
                _ => {
                    if let Some((first, last, count)) = session.replace((rec.ts, rec.ts, 1)) {
                        sessions.insert((key, first as i64, (last + case.gap_ms) as i64), count);
                    }
                }
            }
        }
        if let Some((first, last, count)) = session {
            sessions.insert((key, first as i64, (last + case.gap_ms) as i64), count);
        }
        // Dedup: in (time, record) order, passes iff first or at least `within` after the last pass.
        let mut last: Option<u64> = None;
        for rec in &recs {
            if last.is_none_or(|f| rec.ts >= f + case.within_ms) {
                last = Some(rec.ts);
                passed.push(rec.id);
            }
        }
    }
    passed.sort_unstable();
    (sessions, passed)
}

/// Checks the committed lines against the oracle: append sessions and passed records exactly
/// (each once); update rows: every final session's last row has its final count, and every row
/// lies within a final session of its key.
fn check_committed(label: &str, config: &Config) {
    let case = case(config.seed);
    let (sessions, passed) = oracle(&case);
    let rows: Vec<Row> =
        committed_lines(&config.dir.join("out")).into_iter().map(|l| serde_json::from_value(l).unwrap()).collect();
    let mut appended: BTreeMap<(u32, i64, i64), u64> = BTreeMap::new();
    let mut got_passed = Vec::new();
    // Files are read in epoch order, so the last update row of a window is its latest.
    let mut last_update: BTreeMap<(u32, i64, i64), u64> = BTreeMap::new();
    for row in rows {
        match row {
            Row::Session { key, start, end, count } => {
                let previous = appended.insert((key, start, end), count);
                assert!(previous.is_none(), "{label}: session {key} [{start}, {end}) committed twice");
            }
            Row::Update { key, start, end, count } => {
                last_update.insert((key, start, end), count);
            }
            Row::Passed { id } => got_passed.push(id),
        }
    }
    if appended != sessions {
        let missing: Vec<_> = sessions.iter().filter(|(k, v)| appended.get(k) != Some(v)).take(5).collect();
        let extra: Vec<_> = appended.iter().filter(|(k, v)| sessions.get(k) != Some(v)).take(5).collect();
        panic!(
            "{label}: {} sessions committed, {} expected; missing or wrong e.g. {missing:?}; unexpected e.g. {extra:?}",
            appended.len(),
            sessions.len()
        );
    }
    got_passed.sort_unstable();
    let unique = got_passed.windows(2).all(|w| w[0] != w[1]);
    assert!(unique, "{label}: dedup committed a record twice");
    assert_eq!(got_passed.len(), passed.len(), "{label}: number of records dedup passed");
    assert_eq!(got_passed, passed, "{label}: records dedup passed");
    for (window, count) in &sessions {
        assert_eq!(last_update.get(window), Some(count), "{label}: last update row of final session {window:?}");
    }
    for (key, start, end) in last_update.keys() {
        assert!(
            sessions.keys().any(|(k, s, e)| k == key && s <= start && end <= e),
            "{label}: update row {key} [{start}, {end}) lies in no final session"
        );
    }
}

/// Stops the query at random moments and starts it again from the same checkpoint, in this
/// process, until it runs to its end; then compares with the oracle.
fn stop_and_resume(seed: u64, workers: usize, rocksdb: bool) {
    let label = format!("seed {seed}, {workers} worker(s), rocksdb {rocksdb}");
    let dir = std::env::temp_dir().join(format!("weir-session-dedup-ckpt-{seed}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config { seed, workers, rocksdb, dir };
    let settings = StopLoop { seed, stops: 4, runs: 20, stop_after_ms: 150..700 };
    let stops = settings.run(&label, || start(&config), || 0).len();
    check_committed(&label, &config);
    assert_eq!(stops, 4, "{label}: the runs should be long enough to be stopped");
    let _ = std::fs::remove_dir_all(&config.dir);
}

#[test]
fn graceful_stops_resume_exactly_memory_1_worker() {
    stop_and_resume(31, 1, false);
}

#[test]
fn graceful_stops_resume_exactly_memory_2_workers() {
    stop_and_resume(32, 2, false);
}

#[test]
fn graceful_stops_resume_exactly_rocksdb_2_workers() {
    stop_and_resume(33, 2, true);
}

/// Without stops, on the same inputs (so a failure above is about resuming, not the job).
#[test]
fn uninterrupted_runs_match_the_oracle() {
    for (seed, workers, rocksdb) in [(34, 1, false), (35, 2, true)] {
        let label = format!("seed {seed}, {workers} worker(s), rocksdb {rocksdb}, no stop");
        let dir = std::env::temp_dir().join(format!("weir-session-dedup-ckpt-{seed}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = Config { seed, workers, rocksdb, dir };
        let handle = start(&config).unwrap_or_else(|e| panic!("{label}: should build: {e}"));
        handle.await_termination(None).unwrap_or_else(|e| panic!("{label}: the query failed: {e}"));
        check_committed(&label, &config);
        let _ = std::fs::remove_dir_all(&config.dir);
    }
}
