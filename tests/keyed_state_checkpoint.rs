//! Keyed state with timers (`key_by(..).process_with_state(..)`) survives crashes: a query that
//! checkpoints (`Query::checkpoint`) into a directory and writes through the exactly-once file
//! sink is killed again and again and resumed from the same checkpoint directory, and what the
//! sink committed in the end equals, line for line, a batch computation written from the
//! specification (each line exactly once: nothing lost, nothing duplicated).
//!
//! **Why a subprocess.** An in-process stop (`QueryHandle::stop`) is graceful: the sources hold
//! their watermark, the dataflow drains and is dropped, and the process keeps running, so every
//! file handle, RocksDB directory and pending sink file is closed in order. A crash is not: it
//! can come between any two instructions — after a snapshot is written but before the epoch
//! commits, between `commits/N` and the sink's rename, in the middle of a RocksDB checkpoint —
//! and it leaves the RocksDB store directory and `.pending` files behind. Only a process killed
//! with SIGKILL models that faithfully. So the crash tests re-run this test binary as a child
//! (the ignored test [`child_process`], configured through the `WEIR_KEYED_CKPT_CHILD`
//! environment variable), kill it after a random delay, restart it with the same directories,
//! and finally let it run to its end. The graceful stops are tested too, in process
//! ([`graceful_stops_resume_exactly`]).
//!
//! The job, on seeded random input (several partitions, out of order, with records late at their
//! source, random batch sizes; the source is slowed down so that kills land mid-way):
//!
//! * every on-time record of user `u` produces `rec(u, id, n)`, `n` numbering the user's records
//!   in (event time, id) order (state in the store, restored from the checkpoint);
//! * sessions with gap `g` are closed by an **event-time timer** at `last + g`, producing
//!   `session(u, start, end, count, id_sum, total)` at event time `last + g` (timers and the
//!   capability they need restored from the checkpoint);
//! * every record call sets a **processing-time timeout** of one hour: it never falls due during
//!   the test, so every user's timeout fires once when the input ends, producing
//!   `timeout(u, total)` (timeouts restored from the checkpoint with their wall-clock deadline;
//!   a few users only have records at the very beginning, so their timeouts must survive every
//!   restart).
//!
//! Late records never reach the function (a record is late iff its time is below its
//! partition's `max(earlier times) - delay`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
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
use support::crash::{assert_same_rows, committed_count, committed_sorted, CrashLoop, KillAt, Run, StopLoop};
use support::{jittered_time, Arrival, PartitionClock};

/// A realistic base time (2023-11-14T22:13:20Z).
const BASE: u64 = 1_700_000_000_000;
const OP: &str = "sessions";
const CHILD_ENV: &str = "WEIR_KEYED_CKPT_CHILD";
/// Users that only have records at the beginning of each partition.
const EARLY_USERS: u32 = 4;
/// How many runs of a crash test are killed before the last one runs to its end.
const KILLS: usize = 6;

/// An input record; `id` is unique within a case. Ordered by time, then id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Rec {
    ts: u64,
    id: u64,
    user: u32,
}

/// What the operator keeps per user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct UserState {
    total: u64,
    session: Option<Session>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    start: u64,
    end: u64,
    count: u64,
    id_sum: u64,
}

/// One output line. `t` is the output's event time (not shown for timeouts: a timeout's event
/// time is the watermark when it fires, which depends on timing).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Row {
    Rec { user: u32, id: u64, n: u64, t: u64 },
    Session { user: u32, start: u64, end: u64, count: u64, id_sum: u64, total: u64, t: u64 },
    Timeout { user: u32, total: u64 },
}

/// A generated case; everything follows from the seed, so the parent and its children agree.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Config {
    seed: u64,
    workers: usize,
    rocksdb: bool,
    dir: PathBuf,
}

struct Case {
    parts: Vec<Vec<Rec>>,
    delay_ms: u64,
    gap_ms: u64,
    batch: usize,
}

impl Config {
    fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }
    fn output(&self) -> PathBuf {
        self.dir.join("out")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn case(&self) -> Case {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let partitions = rng.random_range(2..=4);
        let per_partition = rng.random_range(1_200..1_800);
        let mut id = 0;
        let parts = (0..partitions)
            .map(|_| {
                let mut cursor = BASE + rng.random_range(0..2_000);
                (0..per_partition)
                    .map(|i| {
                        id += 1;
                        let user =
                            if i < 20 { rng.random_range(0..EARLY_USERS) } else { rng.random_range(EARLY_USERS..16) };
                        Rec { ts: jittered_time(&mut rng, &mut cursor, 120), id, user }
                    })
                    .collect()
            })
            .collect();
        Case {
            parts,
            delay_ms: rng.random_range(0..2_500),
            gap_ms: rng.random_range(200..3_000),
            batch: rng.random_range(1..12),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------------

fn sessions(gap_ms: u64) -> impl FnMut(&u32, Records<'_, Rec>, &mut KeyedState<UserState>, &mut Vec<Row>) + 'static {
    move |user, records, state, out| {
        let now = state.event_time().as_millis();
        match state.fired() {
            Some(Fired::Timer(at)) => {
                let mut user_state = state.get().cloned().expect("a timer is only set with a session");
                let session = user_state.session.take().expect("a timer is only set with a session");
                assert_eq!(at.as_millis(), session.end + gap_ms, "the timer fires at last event + gap");
                out.push(Row::Session {
                    user: *user,
                    start: session.start,
                    end: session.end,
                    count: session.count,
                    id_sum: session.id_sum,
                    total: user_state.total,
                    t: now,
                });
                state.update(user_state);
            }
            Some(Fired::Timeout) => {
                let total = state.get().map_or(0, |s| s.total);
                out.push(Row::Timeout { user: *user, total });
            }
            None => {
                let mut user_state = state.get().cloned().unwrap_or(UserState { total: 0, session: None });
                let mut session =
                    user_state.session.take().unwrap_or(Session { start: now, end: now, count: 0, id_sum: 0 });
                for record in records {
                    user_state.total += 1;
                    session.count += 1;
                    session.id_sum += record.id;
                    out.push(Row::Rec { user: *user, id: record.id, n: user_state.total, t: now });
                }
                session.end = now;
                user_state.session = Some(session);
                state.update(user_state);
                state.set_timer(EventTime::from_millis(now + gap_ms));
                state.set_timeout_duration(Duration::from_secs(3_600));
            }
        }
    }
}

/// A memory source read slowly (a pause after every `per_pause` records), so that a run takes
/// long enough to be killed in the middle.
#[derive(Clone)]
struct Slow {
    inner: MemorySource<Rec>,
    per_pause: usize,
    pause: Duration,
}

struct SlowReader {
    inner: MemoryReader<Rec>,
    per_pause: usize,
    pause: Duration,
    since_pause: usize,
    paused_until: Option<Instant>,
}

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
        let status = self.inner.read(out, max)?;
        self.since_pause += out.len() - before;
        match status {
            ReadStatus::Ready if self.since_pause >= self.per_pause => {
                self.since_pause = 0;
                self.paused_until = Some(Instant::now() + self.pause);
                Ok(ReadStatus::Wait(self.pause))
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
        "slow-memory".to_string()
    }
    fn partitions(&self) -> usize {
        self.inner.partitions()
    }
    fn open(&self, partition: usize) -> Result<SlowReader, QueryError> {
        Ok(SlowReader {
            inner: self.inner.open(partition)?,
            per_pause: self.per_pause,
            pause: self.pause,
            since_pause: 0,
            paused_until: None,
        })
    }
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<SlowReader, QueryError> {
        let inner = self.inner.open_at(partition, position)?;
        Ok(SlowReader { inner, per_pause: self.per_pause, pause: self.pause, since_pause: 0, paused_until: None })
    }
}

/// Starts the job on `config` (resuming from its checkpoint directory if there is one).
fn start(config: &Config) -> Result<QueryHandle, BuildError> {
    let case = config.case();
    let mut query = Query::new("keyed-checkpoint")
        .workers(config.workers)
        .checkpoint(config.checkpoint(), Duration::from_millis(20));
    if config.rocksdb {
        query = query.state_backend(StateBackend::RocksDb(
            RocksDbOptions::new(config.state()).with_block_cache_bytes(1 << 20).with_write_buffer_bytes(64 << 10),
        ));
    }
    let source = Slow { inner: MemorySource::new(case.parts.clone()), per_pause: 10, pause: Duration::from_millis(20) };
    let (delay_ms, gap_ms, batch, output) = (case.delay_ms, case.gap_ms, case.batch, config.output());
    query.start(move |scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            source.clone(),
            |r: &Rec| Some(EventTime::from_millis(r.ts)),
            WatermarkOptions::with_delay(Duration::from_millis(delay_ms)),
            batch,
        );
        let processed = events.key_by(|r: &Rec| r.user).process_with_state(ctx, OP, sessions(gap_ms))?;
        let lines = processed.output.records.map(|event| serde_json::to_string(&event.data).unwrap());
        ExactlyOnceJsonLinesSink::new(&output).write_lines(lines, ctx, "files:out")
    })
}

/// Not a test of its own: the crash tests run this test binary as a child with this test only,
/// configured through `WEIR_KEYED_CKPT_CHILD`; it runs the job (resuming) to its end.
#[test]
#[ignore = "run as a child process by the crash tests of this file"]
fn child_process() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        eprintln!("only run as a child by the crash tests ({CHILD_ENV} is not set)");
        return;
    };
    let config: Config = serde_json::from_str(&config).unwrap();
    let handle = start(&config).unwrap_or_else(|e| panic!("the child's query should build: {e}"));
    handle.await_termination(None).unwrap_or_else(|e| panic!("the child's query failed: {e}"));
}

// ---------------------------------------------------------------------------------------------
// The oracle, from the specification
// ---------------------------------------------------------------------------------------------

fn oracle(case: &Case) -> Vec<Row> {
    // Lateness per partition.
    let mut per_user: BTreeMap<u32, Vec<&Rec>> = BTreeMap::new();
    for part in &case.parts {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            if let Arrival::OnTime { .. } = clock.arrive(rec.ts) {
                per_user.entry(rec.user).or_default().push(rec);
            }
        }
    }
    let mut rows = Vec::new();
    for (user, mut recs) in per_user {
        recs.sort();
        let mut total = 0;
        let mut session: Option<Session> = None;
        for rec in recs {
            if let Some(open) = session.as_ref() {
                // A record exactly `gap` after the last one comes before the timer: it joins.
                if rec.ts > open.end + case.gap_ms {
                    let s = session.take().unwrap();
                    rows.push(Row::Session {
                        user,
                        start: s.start,
                        end: s.end,
                        count: s.count,
                        id_sum: s.id_sum,
                        total,
                        t: s.end + case.gap_ms,
                    });
                }
            }
            total += 1;
            rows.push(Row::Rec { user, id: rec.id, n: total, t: rec.ts });
            let s = session.get_or_insert(Session { start: rec.ts, end: rec.ts, count: 0, id_sum: 0 });
            s.end = rec.ts;
            s.count += 1;
            s.id_sum += rec.id;
        }
        let s = session.expect("a user with records has a session");
        rows.push(Row::Session {
            user,
            start: s.start,
            end: s.end,
            count: s.count,
            id_sum: s.id_sum,
            total,
            t: s.end + case.gap_ms,
        });
        rows.push(Row::Timeout { user, total });
    }
    rows.sort();
    rows
}

/// The committed output, sorted.
fn committed(config: &Config) -> Vec<Row> {
    committed_sorted(&config.output())
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-keyed-ckpt-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `WEIR_KEYED_CKPT_SEED=n` runs every case with other seeds (`seed + 100 n`).
fn seed_offset() -> u64 {
    std::env::var("WEIR_KEYED_CKPT_SEED").ok().and_then(|n| n.parse::<u64>().ok()).map_or(0, |n| 100 * n)
}

// ---------------------------------------------------------------------------------------------
// Crash tests (SIGKILL)
// ---------------------------------------------------------------------------------------------

fn child(config: &Config) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, serde_json::to_string(config).unwrap());
    command
}

/// Kills the child up to `KILLS` times 100 to 700 ms after its start, resuming each time from the
/// same directories (a run that ends before its kill ends the loop), then runs it once more to its
/// end; compares the committed output with the oracle.
fn crash_loop(seed: u64, workers: usize, rocksdb: bool) {
    let seed = seed + seed_offset();
    let label = format!("seed {seed}, {workers} worker(s), {}", if rocksdb { "rocksdb" } else { "memory" });
    let config = Config { seed, workers, rocksdb, dir: scratch(&format!("crash-{seed}-{workers}-{rocksdb}")) };
    let expected = oracle(&config.case());
    let started = Instant::now();
    let settings = CrashLoop {
        label: label.clone(),
        kills: KILLS,
        stop_when_a_run_ends: true,
        ..CrashLoop::new(seed ^ 0x5eed, KillAt::AfterStart(100..700))
    };
    let logs = config.dir.join("logs");
    let (killed, mid_way) = settings.run(
        |n| Run::spawn(vec![child(&config)], vec![logs.join(format!("run-{n}.err"))]),
        || committed_count(&config.output()),
    );
    eprintln!("{label}: {killed} kills ({mid_way} mid-way), {:?}", started.elapsed());
    assert_same_rows(&label, &committed(&config), &expected);
    assert!(mid_way >= 2, "{label}: only {mid_way} of {killed} kills came with some but not all output committed");
    let _ = std::fs::remove_dir_all(&config.dir);
}

#[test]
fn sigkilled_runs_resume_exactly_1_worker_memory() {
    crash_loop(11, 1, false);
}

#[test]
fn sigkilled_runs_resume_exactly_2_workers_memory() {
    crash_loop(12, 2, false);
}

#[test]
fn sigkilled_runs_resume_exactly_1_worker_rocksdb() {
    crash_loop(13, 1, true);
}

#[test]
fn sigkilled_runs_resume_exactly_2_workers_rocksdb() {
    crash_loop(14, 2, true);
}

// ---------------------------------------------------------------------------------------------
// Graceful stops (in process)
// ---------------------------------------------------------------------------------------------

/// Stops the query (`QueryHandle::stop`) at random moments and starts it again from the same
/// checkpoint, in this process, until it runs to its end; then compares with the oracle.
#[test]
fn graceful_stops_resume_exactly() {
    for (seed, workers, rocksdb) in [(21, 1, false), (22, 2, true)] {
        let seed = seed + seed_offset();
        let label = format!("seed {seed}, {workers} worker(s), rocksdb {rocksdb}");
        let config = Config { seed, workers, rocksdb, dir: scratch(&format!("stop-{seed}")) };
        let expected = oracle(&config.case());
        let settings = StopLoop { seed, stops: 4, runs: 20, stop_after_ms: 150..700 };
        let stops = settings.run(&label, || start(&config), || 0).len();
        assert_same_rows(&label, &committed(&config), &expected);
        assert_eq!(stops, 4, "{label}: the runs should be long enough to be stopped");
        let _ = std::fs::remove_dir_all(&config.dir);
    }
}
