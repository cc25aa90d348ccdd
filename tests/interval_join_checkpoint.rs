//! The interval join in a query that checkpoints (`Query::checkpoint`): its buffered rows, matched
//! flags and held capability are snapshotted at every boundary and restored after a stop, and
//! what the exactly-once file sink committed equals, row for row, a batch computation written from
//! the specification (each row exactly once).
//!
//! Random, seeded inputs on two slowed-down memory sources (several partitions each, out of order,
//! with records late at their source; bounds that include a negative upper bound and a positive
//! lower bound, so that rows at or after a boundary can be evicted before its snapshot), every
//! join type, 2 workers, boundaries every 10 ms. Each case is stopped (gracefully: a last boundary,
//! its commit, then the stop) several times at random moments and resumed from the same
//! directory, then run to its end. The SIGKILL crash loops are in `tests/crash_loop_interval_join.rs`.
//!
//! The oracle, as in `tests/interval_join_oracle.rs`: a record is late iff its time is below its
//! partition's `max(earlier times) - delay` (late records join nothing); `l` and `r` match iff
//! their keys are equal and `l.ts + lower <= r.ts <= l.ts + upper`; pairs, padded, semi and anti
//! rows as the join type says.

use std::path::PathBuf;
use std::time::{Duration, Instant};

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

mod support;
use support::crash::{assert_same_rows, committed_sorted, StopLoop};
use support::{Arrival, PartitionClock};

/// A realistic base time (2023-11-14T22:13:20Z).
const BASE: u64 = 1_700_000_000_000;
const OP: &str = "join";
/// Graceful stops per case before the run to the end.
const STOPS: usize = 4;

/// An input record; `id` is unique over both sides of a case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Rec {
    id: u64,
    ts: u64,
    key: u32,
}

/// One output row: (left id, right id, event time).
type Row = (Option<u64>, Option<u64>, u64);

struct Case {
    left: Vec<Vec<Rec>>,
    right: Vec<Vec<Rec>>,
    left_delay: u64,
    right_delay: u64,
    lower: i64,
    upper: i64,
    batch: usize,
}

fn random_case(seed: u64, bounds: (i64, i64)) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let keys = rng.random_range(3..=8);
    let mut id = 0;
    let mut side = |rng: &mut SmallRng, first_id: u64| {
        (0..rng.random_range(2..=3))
            .map(|_| {
                let mut cursor = BASE + rng.random_range(0..40) * 50;
                (0..rng.random_range(1_000..1_200))
                    .map(|_| {
                        cursor += rng.random_range(0..8) * 50;
                        let ts = if rng.random_bool(0.3) { cursor - rng.random_range(0..60) * 50 } else { cursor };
                        id += 1;
                        Rec { id: first_id + id, ts, key: rng.random_range(0..keys) }
                    })
                    .collect()
            })
            .collect::<Vec<Vec<Rec>>>()
    };
    let left = side(&mut rng, 0);
    let right = side(&mut rng, 1_000_000);
    let delays = [0, 500, 2_000];
    Case {
        left,
        right,
        left_delay: delays[rng.random_range(0..3)],
        right_delay: delays[rng.random_range(0..3)],
        lower: bounds.0,
        upper: bounds.1,
        batch: rng.random_range(1..12),
    }
}

fn on_time(parts: &[Vec<Rec>], delay: u64) -> (Vec<Rec>, usize) {
    let (mut kept, mut late) = (Vec::new(), 0);
    for part in parts {
        let mut clock = PartitionClock::new(delay);
        for rec in part {
            match clock.arrive(rec.ts) {
                Arrival::Late { .. } => late += 1,
                Arrival::OnTime { .. } => kept.push(rec.clone()),
            }
        }
    }
    (kept, late)
}

/// The expected rows (sorted), and how many records were late on each side.
fn oracle(case: &Case, join_type: JoinType) -> (Vec<Row>, usize, usize) {
    let (lefts, late_left) = on_time(&case.left, case.left_delay);
    let (rights, late_right) = on_time(&case.right, case.right_delay);
    let matches = |l: &Rec, r: &Rec| {
        l.key == r.key && l.ts as i64 + case.lower <= r.ts as i64 && r.ts as i64 <= l.ts as i64 + case.upper
    };
    let mut rows = Vec::new();
    let mut right_matched = vec![false; rights.len()];
    for l in &lefts {
        let mut matched = false;
        for (j, r) in rights.iter().enumerate() {
            if matches(l, r) {
                matched = true;
                right_matched[j] = true;
                if join_type.emits_pairs() {
                    rows.push((Some(l.id), Some(r.id), l.ts.max(r.ts)));
                }
            }
        }
        let emit = match join_type {
            JoinType::LeftOuter | JoinType::FullOuter | JoinType::LeftAnti => !matched,
            JoinType::LeftSemi => matched,
            _ => false,
        };
        if emit {
            rows.push((Some(l.id), None, l.ts));
        }
    }
    if matches!(join_type, JoinType::RightOuter | JoinType::FullOuter) {
        for (r, matched) in rights.iter().zip(right_matched) {
            if !matched {
                rows.push((None, Some(r.id), r.ts));
            }
        }
    }
    rows.sort();
    (rows, late_left, late_right)
}

// ---------------------------------------------------------------------------------------------
// A slowed-down memory source (so that stops land mid-way), resumable like `MemorySource`
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Slow {
    name: String,
    inner: MemorySource<Rec>,
}

struct SlowReader {
    inner: MemoryReader<Rec>,
    since_pause: usize,
    paused_until: Option<Instant>,
}

const PER_PAUSE: usize = 10;
const PAUSE: Duration = Duration::from_millis(25);

impl PartitionReader for SlowReader {
    type Record = Rec;
    fn read(&mut self, out: &mut Vec<Rec>, max: usize) -> Result<ReadStatus, QueryError> {
        if let Some(until) = self.paused_until {
            let now = Instant::now();
            if now < until {
                return Ok(ReadStatus::Wait(until - now));
            }
            self.paused_until = None;
        }
        let before = out.len();
        let status = self.inner.read(out, max.min(PER_PAUSE))?;
        self.since_pause += out.len() - before;
        match status {
            ReadStatus::Ready if self.since_pause >= PER_PAUSE => {
                self.since_pause = 0;
                self.paused_until = Some(Instant::now() + PAUSE);
                Ok(ReadStatus::Wait(PAUSE))
            }
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
        self.name.clone()
    }
    fn partitions(&self) -> usize {
        self.inner.partitions()
    }
    fn open(&self, partition: usize) -> Result<SlowReader, QueryError> {
        Ok(SlowReader { inner: self.inner.open(partition)?, since_pause: 0, paused_until: None })
    }
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<SlowReader, QueryError> {
        Ok(SlowReader { inner: self.inner.open_at(partition, position)?, since_pause: 0, paused_until: None })
    }
}

// ---------------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------------

struct Config {
    seed: u64,
    join_type: JoinType,
    bounds: (i64, i64),
    rocksdb: bool,
    dir: PathBuf,
}

impl Config {
    fn label(&self) -> String {
        format!(
            "seed {} ({}, bounds {:?}, {})",
            self.seed,
            self.join_type,
            self.bounds,
            if self.rocksdb { "rocksdb" } else { "memory" }
        )
    }
}

/// Starts the job (resuming from the checkpoint directory if there is one).
fn start(config: &Config) -> Result<QueryHandle, BuildError> {
    let case = random_case(config.seed, config.bounds);
    let mut query = Query::new("interval-join-checkpoint")
        .workers(2)
        .checkpoint(config.dir.join("checkpoint"), Duration::from_millis(10));
    if config.rocksdb {
        query = query.state_backend(StateBackend::RocksDb(
            RocksDbOptions::new(config.dir.join("state"))
                .with_block_cache_bytes(1 << 20)
                .with_write_buffer_bytes(64 << 10),
        ));
    }
    let left = Slow { name: "left".into(), inner: MemorySource::new(case.left.clone()) };
    let right = Slow { name: "right".into(), inner: MemorySource::new(case.right.clone()) };
    let (join_type, output) = (config.join_type, config.dir.join("out"));
    query.start(move |scope, ctx| {
        let time = |r: &Rec| Some(EventTime::from_millis(r.ts));
        let delay = |ms: u64| WatermarkOptions::with_delay(Duration::from_millis(ms));
        let lefts = event_source_with_batch(scope, ctx, left.clone(), time, delay(case.left_delay), case.batch);
        let rights = event_source_with_batch(scope, ctx, right.clone(), time, delay(case.right_delay), case.batch);
        let key = |r: &Rec| r.key;
        let (lower, upper) = (TimeOffset::from_millis(case.lower), TimeOffset::from_millis(case.upper));
        let joined = lefts.join_interval(ctx, OP, rights, key, key, lower, upper, join_type)?;
        let lines = joined.rows.records.map(|event| {
            let row: Row = (event.data.left.map(|l| l.id), event.data.right.map(|r| r.id), event.time.as_millis());
            serde_json::to_string(&row).unwrap()
        });
        ExactlyOnceJsonLinesSink::new(&output).write_lines(lines, ctx, "files:out")
    })
}

/// The committed output, sorted.
fn committed(config: &Config) -> Vec<Row> {
    committed_sorted(&config.dir.join("out"))
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-ij-ckpt-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stops the job `STOPS` times at random moments, resuming it each time, then runs it to its end;
/// the committed output must equal the oracle.
fn stop_and_resume(seed: u64, join_type: JoinType, bounds: (i64, i64), rocksdb: bool) {
    let config = Config { seed, join_type, bounds, rocksdb, dir: scratch(&format!("{seed}")) };
    let label = config.label();
    let (expected, late_left, late_right) = oracle(&random_case(seed, bounds), join_type);
    assert!(late_left > 0 && late_right > 0, "{label}: the input has late records on both sides");
    assert!(!expected.is_empty(), "{label}: the oracle has rows");
    let settings = StopLoop { seed: seed ^ 0x5eed, stops: STOPS, runs: 4 * STOPS, stop_after_ms: 80..300 };
    let seen = settings.run(&label, || start(&config), || committed(&config).len());
    let stops = seen.len();
    let mid_way = seen.iter().filter(|&&visible| visible > 0 && visible < expected.len()).count();
    assert_same_rows(&label, &committed(&config), &expected);
    assert_eq!(stops, STOPS, "{label}: the runs should be long enough to be stopped");
    assert!(mid_way >= 2, "{label}: only {mid_way} stops came with part of the output committed");
    let _ = std::fs::remove_dir_all(&config.dir);
}

#[test]
fn inner_join_resumes_exactly() {
    stop_and_resume(1, JoinType::Inner, (-1_000, 2_000), false);
}

#[test]
fn left_outer_join_resumes_exactly() {
    // A negative upper bound: left rows are evicted up to 2 s after the right watermark.
    stop_and_resume(2, JoinType::LeftOuter, (-3_000, -2_000), false);
}

#[test]
fn right_outer_join_resumes_exactly() {
    // A positive lower bound: right rows are evicted up to 300 ms after the left watermark.
    stop_and_resume(3, JoinType::RightOuter, (300, 1_300), false);
}

#[test]
fn full_outer_join_resumes_exactly_on_rocksdb() {
    stop_and_resume(4, JoinType::FullOuter, (-1_000, 1_000), true);
}

#[test]
fn semi_join_resumes_exactly() {
    stop_and_resume(5, JoinType::LeftSemi, (0, 2_500), false);
}

#[test]
fn anti_join_resumes_exactly() {
    stop_and_resume(6, JoinType::LeftAnti, (-250, 250), false);
}

/// The same jobs run to their end without stops: checkpointing (input held back at boundaries,
/// eviction as if at each boundary) changes nothing in the output.
#[test]
fn checkpointed_runs_without_stops_match_the_oracle() {
    for (seed, join_type, bounds, rocksdb) in [
        (1, JoinType::Inner, (-1_000, 2_000), false),
        (2, JoinType::LeftOuter, (-3_000, -2_000), false),
        (4, JoinType::FullOuter, (-1_000, 1_000), true),
        (6, JoinType::LeftAnti, (-250, 250), false),
    ] {
        let config = Config { seed, join_type, bounds, rocksdb, dir: scratch(&format!("{seed}-whole")) };
        let (expected, _, _) = oracle(&random_case(seed, bounds), join_type);
        let handle = start(&config).unwrap_or_else(|e| panic!("{}: should build: {e}", config.label()));
        handle.await_termination(None).unwrap_or_else(|e| panic!("{}: the query failed: {e}", config.label()));
        assert_same_rows(&config.label(), &committed(&config), &expected);
        let _ = std::fs::remove_dir_all(&config.dir);
    }
}
