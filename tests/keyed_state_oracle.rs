//! Oracle property tests for keyed state with timers (`key_by(..).process_with_state(..)`).
//!
//! Seeded random inputs (several partitions, out of order, with late records, random batch
//! sizes) run through `Query` with 1 and 3 workers, on the memory and the RocksDB backend, and the
//! output is compared exactly with a batch computation written from the specification:
//!
//! * lateness is per source partition: record `i` is late iff its time is below
//!   `max(ts[0..i]) - delay` (equal is on time); late records never reach the function, are
//!   counted in `late_rows` and appear once on `Processed::late`, naming the operator;
//! * the function sees each key's on-time records in event-time order, records of one instant
//!   together and sorted by `Ord`, so a running count numbers each key's records 1, 2, 3, … in
//!   (time, record) order;
//! * an event-time timer at `t` fires after the key's records at `t`: sessions with gap `g` close
//!   when the next record is more than `g` after the last one (a record exactly `g` later joins);
//! * each output carries the event time of the call that made it and is stamped no later;
//! * state goes back to 0 rows (and 0 bytes) once timers have removed it; a running count keeps
//!   one row per key; updates and removals are counted exactly.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir_runtime::source::event_source_with_batch;
use weir_runtime::state::RocksDbOptions;
use weir_runtime::timely::dataflow::operators::Inspect;

mod support;
use support::{check_late_output, jittered_time, memory_events, run_to_end, Arrival, OperatorCounts, PartitionClock};

/// A realistic base time (2023-11-14T22:13:20Z).
const BASE: u64 = 1_700_000_000_000;
const OP: &str = "keyed";
const SEEDS: u64 = 30;

/// An input record; `id` is unique within a case. Ordered by time, then id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Rec {
    ts: u64,
    id: u64,
    user: u32,
}

/// A session in the making: first and last event time, record count, sum of record ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    start: u64,
    end: u64,
    count: u64,
    id_sum: u64,
}

/// (user, session start, session end, count, sum of ids).
type SessionRow = (u32, u64, u64, u64, u64);
/// (user, record id, count so far).
type CountRow = (u32, u64, u64);

#[derive(Clone, Debug)]
struct Case {
    label: String,
    parts: Vec<Vec<Rec>>,
    delay_ms: u64,
    batch: usize,
    gap_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    RunningCount,
    Sessions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Memory,
    /// RocksDB for the whole query (`Query::state_backend`).
    RocksDbQuery,
    /// RocksDB for this operator only (`ctx.with_state_backend`).
    RocksDbOperator,
}

/// What a run produced: outputs as (timely time, event time, row), late records, metrics.
struct Run<R> {
    rows: Vec<(u64, u64, R)>,
    late: Vec<LateRecord<Rec>>,
    late_rows: u64,
    rows_total: i64,
    memory_bytes: i64,
    rows_updated: u64,
    rows_removed: u64,
}

fn scratch_dir() -> std::path::PathBuf {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "weir-keyed-oracle-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ))
}

fn rocksdb(dir: &std::path::Path) -> StateBackend {
    // Small buffers so that state really goes through RocksDB's files.
    StateBackend::RocksDb(RocksDbOptions::new(dir).with_block_cache_bytes(1 << 20).with_write_buffer_bytes(64 << 10))
}

/// The running count: one output per record, numbering the key's records.
fn running_count(user: &u32, records: Records<'_, Rec>, state: &mut KeyedState<u64>, out: &mut Vec<CountRow>) {
    assert!(!state.has_timed_out(), "the running count sets no timer");
    let mut count = state.get().copied().unwrap_or(0);
    for record in records {
        assert_eq!(record.ts, state.event_time().as_millis(), "records of one call share its event time");
        count += 1;
        out.push((*user, record.id, count));
    }
    state.update(count);
}

/// Sessions closed by an event-time timer `gap_ms` after their last record.
fn sessions(
    gap_ms: u64,
) -> impl FnMut(&u32, Records<'_, Rec>, &mut KeyedState<Session>, &mut Vec<SessionRow>) + 'static {
    move |user, records, state, out| {
        let now = state.event_time().as_millis();
        if state.has_timed_out() {
            assert_eq!(records.len(), 0, "a timer call has no records");
            assert_eq!(state.fired(), Some(Fired::Timer(state.event_time())));
            let session = state.get().cloned().expect("a timer is only set with a session");
            assert_eq!(now, session.end + gap_ms, "the timer fires at last event + gap");
            out.push((*user, session.start, session.end, session.count, session.id_sum));
            state.remove();
            return;
        }
        assert!(records.len() > 0, "a record call has records");
        if let Some(session) = state.get() {
            assert!(now <= session.end + gap_ms, "a record after the gap must come after the timer");
            assert!(now > session.end, "records arrive in event-time order, one call per instant");
        }
        let mut session = state.get().cloned().unwrap_or(Session { start: now, end: now, count: 0, id_sum: 0 });
        for record in records {
            session.count += 1;
            session.id_sum += record.id;
        }
        session.end = now;
        state.update(session);
        state.set_timer(EventTime::from_millis(now + gap_ms));
    }
}

fn run<R: Clone + Send + From<RowOf> + 'static>(case: &Case, job: Job, backend: Backend, workers: usize) -> Run<R> {
    let rows: Arc<Mutex<Vec<(u64, u64, R)>>> = Arc::default();
    let late: Arc<Mutex<Vec<LateRecord<Rec>>>> = Arc::default();
    let dir = scratch_dir();
    let mut query = Query::new("keyed-oracle").workers(workers);
    if backend == Backend::RocksDbQuery {
        query = query.state_backend(rocksdb(&dir));
    }
    let operator_dir = dir.clone();
    let (source, delay_ms, batch, gap_ms) =
        (MemorySource::new(case.parts.clone()), case.delay_ms, case.batch, case.gap_ms);
    let (rows_into, late_into) = (rows.clone(), late.clone());
    let started = query.start(move |scope, ctx| {
        let events = memory_events(scope, ctx, &source, |r: &Rec| r.ts, delay_ms, batch);
        let ctx = if backend == Backend::RocksDbOperator {
            ctx.with_state_backend(rocksdb(&operator_dir))
        } else {
            ctx.clone()
        };
        let keyed = events.key_by(|r: &Rec| r.user);
        let rows = rows_into.clone();
        let late = late_into.clone();
        match job {
            Job::RunningCount => {
                let out = keyed.process_with_state(&ctx, OP, running_count)?;
                out.output.records.inspect_time(move |t, e| {
                    rows.lock().unwrap().push((t.as_millis(), e.time.as_millis(), R::from(RowOf::Count(e.data))))
                });
                out.late.inspect(move |l| late.lock().unwrap().push(l.clone()));
            }
            Job::Sessions => {
                let out = keyed.process_with_state(&ctx, OP, sessions(gap_ms))?;
                out.output.records.inspect_time(move |t, e| {
                    rows.lock().unwrap().push((t.as_millis(), e.time.as_millis(), R::from(RowOf::Session(e.data))))
                });
                out.late.inspect(move |l| late.lock().unwrap().push(l.clone()));
            }
        }
        Ok(())
    });
    let handle = run_to_end(started, &case.label, 60);
    let metrics = OperatorCounts::of(&handle, OP);
    let run = Run {
        rows: std::mem::take(&mut *rows.lock().unwrap()),
        late: std::mem::take(&mut *late.lock().unwrap()),
        late_rows: metrics.late_rows,
        rows_total: metrics.rows_total,
        memory_bytes: metrics.memory_bytes,
        rows_updated: metrics.rows_updated,
        rows_removed: metrics.rows_removed,
    };
    drop(handle);
    if backend != Backend::Memory {
        let leftovers: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(leftovers.is_empty(), "{}: RocksDB stores left files behind: {leftovers:?}", case.label);
        let _ = std::fs::remove_dir_all(&dir);
    }
    run
}

/// One output row of either job (so `run` can collect both).
enum RowOf {
    Count(CountRow),
    Session(SessionRow),
}
impl From<RowOf> for CountRow {
    fn from(row: RowOf) -> Self {
        match row {
            RowOf::Count(row) => row,
            RowOf::Session(_) => unreachable!(),
        }
    }
}
impl From<RowOf> for SessionRow {
    fn from(row: RowOf) -> Self {
        match row {
            RowOf::Session(row) => row,
            RowOf::Count(_) => unreachable!(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

struct Expected {
    /// On-time records per user, sorted by (time, id).
    on_time: BTreeMap<u32, Vec<Rec>>,
    /// Late record ids: (event time, watermark compared with).
    late: BTreeMap<u64, (u64, u64)>,
    out_of_order_on_time: usize,
}

fn oracle(case: &Case) -> Expected {
    let mut on_time: BTreeMap<u32, Vec<Rec>> = BTreeMap::new();
    let mut late = BTreeMap::new();
    let mut out_of_order_on_time = 0;
    for part in &case.parts {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            match clock.arrive(rec.ts) {
                Arrival::Late { watermark } => {
                    late.insert(rec.id, (rec.ts, watermark));
                }
                Arrival::OnTime { out_of_order } => {
                    out_of_order_on_time += usize::from(out_of_order);
                    on_time.entry(rec.user).or_default().push(rec.clone());
                }
            }
        }
    }
    for records in on_time.values_mut() {
        records.sort_by_key(|r| (r.ts, r.id));
    }
    Expected { on_time, late, out_of_order_on_time }
}

/// Running count: (event time, row) for every on-time record.
fn expected_counts(expected: &Expected) -> Vec<(u64, CountRow)> {
    let mut rows = Vec::new();
    for (user, records) in &expected.on_time {
        for (i, rec) in records.iter().enumerate() {
            rows.push((rec.ts, (*user, rec.id, i as u64 + 1)));
        }
    }
    rows.sort();
    rows
}

/// Sessions: a record joins the open session if it is at most `gap` after the session's last
/// record; each session is emitted at last + gap.
fn expected_sessions(expected: &Expected, gap: u64) -> Vec<(u64, SessionRow)> {
    let mut rows = Vec::new();
    for (user, records) in &expected.on_time {
        let mut open: Option<Session> = None;
        for rec in records {
            match &mut open {
                Some(s) if rec.ts <= s.end + gap => {
                    s.end = rec.ts;
                    s.count += 1;
                    s.id_sum += rec.id;
                }
                _ => {
                    if let Some(s) = open.take() {
                        rows.push((s.end + gap, (*user, s.start, s.end, s.count, s.id_sum)));
                    }
                    open = Some(Session { start: rec.ts, end: rec.ts, count: 1, id_sum: rec.id });
                }
            }
        }
        if let Some(s) = open {
            rows.push((s.end + gap, (*user, s.start, s.end, s.count, s.id_sum)));
        }
    }
    rows.sort();
    rows
}

/// Distinct (user, time) pairs of on-time records: the number of calls with records.
fn record_calls(expected: &Expected) -> u64 {
    expected
        .on_time
        .values()
        .map(|records| {
            let mut times: Vec<u64> = records.iter().map(|r| r.ts).collect();
            times.dedup();
            times.len() as u64
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn check_late(label: &str, run_late: &[LateRecord<Rec>], late_rows: u64, expected: &Expected) {
    check_late_output(label, "record", run_late, |r: &Rec| r.id, OP, &expected.late);
    assert_eq!(late_rows, expected.late.len() as u64, "{label}: late_rows metric");
}

/// Checks that every output is on time (stamped no later than its event time) and returns the
/// rows as (event time, row), sorted.
fn on_time_rows<R: Ord + Clone + std::fmt::Debug>(label: &str, rows: &[(u64, u64, R)]) -> Vec<(u64, R)> {
    for (stamp, time, row) in rows {
        assert!(stamp <= time, "{label}: output {row:?} at event time {time} was stamped later, at {stamp}");
    }
    let mut rows: Vec<(u64, R)> = rows.iter().map(|(_, t, r)| (*t, r.clone())).collect();
    rows.sort();
    rows
}

fn assert_same<R: PartialEq + std::fmt::Debug>(label: &str, got: &[(u64, R)], want: &[(u64, R)]) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    panic!(
        "{label}: output differs from the oracle ({} rows, expected {}); first difference at row {first}: got {:?}, expected {:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    );
}

fn check_case(case: &Case, backend: Backend, workers: usize, expected: &Expected) {
    let label = format!("{} [{backend:?}, workers={workers}]", case.label);

    let counts: Run<CountRow> = run(case, Job::RunningCount, backend, workers);
    let label_counts = format!("{label} running count");
    check_late(&label_counts, &counts.late, counts.late_rows, expected);
    assert_same(&label_counts, &on_time_rows(&label_counts, &counts.rows), &expected_counts(expected));
    assert_eq!(counts.rows_total, expected.on_time.len() as i64, "{label_counts}: one state row per user");
    assert_eq!(counts.rows_updated, record_calls(expected), "{label_counts}: one update per (user, time)");
    assert_eq!(counts.rows_removed, 0, "{label_counts}: nothing removed");

    let sessions: Run<SessionRow> = run(case, Job::Sessions, backend, workers);
    let label_sessions = format!("{label} sessions");
    check_late(&label_sessions, &sessions.late, sessions.late_rows, expected);
    let want = expected_sessions(expected, case.gap_ms);
    assert_same(&label_sessions, &on_time_rows(&label_sessions, &sessions.rows), &want);
    assert_eq!(sessions.rows_total, 0, "{label_sessions}: every session's state is removed by its timer");
    assert_eq!(sessions.memory_bytes, 0, "{label_sessions}: no state bytes once everything is evicted");
    assert_eq!(sessions.rows_updated, record_calls(expected), "{label_sessions}: one update per (user, time)");
    assert_eq!(sessions.rows_removed, want.len() as u64, "{label_sessions}: one removal per session");
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/// 1..=4 partitions of 0..=250 records each over 6 users; times on a 50 ms grid (so one user often
/// has several records at one instant), moving forward by random steps, a third jumping back by
/// up to 3 s (late or out of order but on time).
fn random_case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let delay_ms = [0, 500, 2_000][rng.random_range(0..3)];
    let batch = rng.random_range(1..40);
    let gap_ms = [300, 1_000, 2_500][rng.random_range(0..3)];
    let partitions = rng.random_range(1..=4);
    let mut id = 0;
    let parts = (0..partitions)
        .map(|_| {
            let len = rng.random_range(0..=250);
            let mut cursor = BASE + rng.random_range(0..5_000);
            (0..len)
                .map(|_| {
                    let ts = jittered_time(&mut rng, &mut cursor, 600);
                    id += 1;
                    Rec { ts: ts - ts % 50, id, user: rng.random_range(0..6) }
                })
                .collect()
        })
        .collect();
    let label = format!("seed={seed} (delay={delay_ms}ms, gap={gap_ms}ms, batch={batch}, partitions={partitions})");
    Case { label, parts, delay_ms, batch, gap_ms }
}

fn property(backend: Backend, seed_base: u64, seeds: u64) {
    let (mut late_total, mut out_of_order, mut ties, mut sessions_total) = (0, 0, 0, 0);
    for seed in seed_base..seed_base + seeds {
        let case = random_case(seed);
        let expected = oracle(&case);
        late_total += expected.late.len();
        out_of_order += expected.out_of_order_on_time;
        let on_time: usize = expected.on_time.values().map(Vec::len).sum();
        ties += on_time as u64 - record_calls(&expected);
        sessions_total += expected_sessions(&expected, case.gap_ms).len();
        for workers in [1, 3] {
            check_case(&case, backend, workers, &expected);
        }
    }
    assert!(late_total > 0, "no late record was generated");
    assert!(out_of_order > 0, "no out-of-order on-time record was generated");
    assert!(ties > 0, "no user ever had two records at one instant");
    assert!(sessions_total > 0, "no session was generated");
}

#[test]
fn memory_backend_matches_the_oracle() {
    property(Backend::Memory, 0, SEEDS);
}

#[test]
fn rocksdb_backend_for_the_query_matches_the_oracle() {
    property(Backend::RocksDbQuery, 100, SEEDS / 3);
}

#[test]
fn rocksdb_backend_for_one_operator_matches_the_oracle() {
    property(Backend::RocksDbOperator, 200, SEEDS / 3);
}

/// alice, bob, alice, alice, bob → 1, 1, 2, 3, 2, with the late record (a second bob, 5 s behind
/// with no allowed delay) reported once and not counted.
#[test]
fn hand_checked_running_count_with_a_late_record() {
    let users = [(1_000, 0), (2_000, 1), (3_000, 0), (4_000, 0), (5_000, 1), (0, 1)];
    let parts =
        vec![users.iter().enumerate().map(|(i, &(ts, user))| Rec { ts: BASE + ts, id: i as u64, user }).collect()];
    let case = Case { label: "hand-checked".into(), parts, delay_ms: 0, batch: 2, gap_ms: 1_000 };
    for workers in [1, 3] {
        for backend in [Backend::Memory, Backend::RocksDbQuery] {
            let run: Run<CountRow> = run(&case, Job::RunningCount, backend, workers);
            let counts: Vec<u64> = on_time_rows("hand", &run.rows).iter().map(|(_, (_, _, n))| *n).collect();
            assert_eq!(counts, vec![1, 1, 2, 3, 2], "[{backend:?}, workers={workers}]");
            assert_eq!(run.late.len(), 1);
            assert_eq!(run.late[0].record.id, 5);
            assert_eq!(run.late[0].lateness_ms, 5_000);
            assert_eq!(run.late_rows, 1);
            assert_eq!(run.rows_total, 2, "alice and bob keep their counts");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timers, timeouts and build errors, by hand
// ---------------------------------------------------------------------------------------------

/// One call as the function saw it: (call number for the key, what made it, event time,
/// watermark, number of records).
type CallRow = (u64, String, u64, Option<u64>, usize);

/// Runs `parts` (records of user 0 unless stated) through a function that logs every call, and
/// returns the calls in order and the outputs' (stamp, event time) pairs.
fn log_calls<S>(
    source: S,
    on_call: impl Fn(&mut KeyedState<u64>, usize) + Send + Sync + Clone + 'static,
) -> Vec<(u64, u64, CallRow)>
where
    S: weir_runtime::source::Source<Record = Rec> + Clone + Send + Sync,
{
    let rows: Arc<Mutex<Vec<(u64, u64, CallRow)>>> = Arc::default();
    let into = rows.clone();
    let handle = Query::new("calls")
        .start(move |scope, ctx| {
            let events = event_source_with_batch(
                scope,
                ctx,
                source.clone(),
                |r: &Rec| Some(EventTime::from_millis(r.ts)),
                WatermarkOptions::with_delay(Duration::ZERO),
                1,
            );
            let on_call = on_call.clone();
            let out = events.key_by(|r: &Rec| r.user).process_with_state(
                ctx,
                OP,
                move |_user: &u32, records, state: &mut KeyedState<u64>, out: &mut Vec<CallRow>| {
                    let call = state.get().copied().unwrap_or(0) + 1;
                    state.update(call);
                    let what = match state.fired() {
                        None => "records".to_string(),
                        Some(Fired::Timer(t)) => format!("timer@{}", t.as_millis()),
                        Some(Fired::Timeout) => "timeout".to_string(),
                    };
                    let n = records.len();
                    on_call(state, n);
                    let watermark = state.current_watermark().map(|w| w.as_millis());
                    out.push((call, what, state.event_time().as_millis(), watermark, n));
                },
            )?;
            let into = into.clone();
            out.output.records.inspect_time(move |t, e| {
                into.lock().unwrap().push((t.as_millis(), e.time.as_millis(), e.data.clone()))
            });
            Ok(())
        })
        .expect("the dataflow builds");
    assert!(handle.await_termination(Some(Duration::from_secs(30))).expect("the query runs"), "finished in 30 s");
    let mut rows = rows.lock().unwrap().clone();
    rows.sort_by_key(|(_, _, call)| call.0);
    for (stamp, time, call) in &rows {
        assert!(stamp <= time, "call {call:?} was stamped at {stamp}, after its event time {time}");
    }
    rows
}

fn recs(times: &[u64]) -> Vec<Rec> {
    times.iter().enumerate().map(|(i, &ts)| Rec { ts, id: i as u64, user: 0 }).collect()
}

/// A timer set at or before the time being processed fires right after that call, at that
/// time; a timer at `t` fires after the records at `t`; a timer set again replaces the old one.
#[test]
fn timers_fire_after_the_records_of_their_time_and_in_the_past_at_once() {
    let source = MemorySource::new(vec![recs(&[1_000, 2_000, 2_000, 3_000, 9_000])]);
    let calls = log_calls(source, |state, records| {
        match (state.fired(), state.event_time().as_millis(), records) {
            // In the past: fires right after this call, at 1000.
            (None, 1_000, _) => state.set_timer(EventTime::from_millis(10)),
            // At 3000, replaced below by 2500 ... which is before the records at 3000.
            (Some(Fired::Timer(_)), 1_000, _) => state.set_timer(EventTime::from_millis(3_000)),
            (None, 2_000, _) => state.set_timer(EventTime::from_millis(2_500)),
            // Exactly at the records' time: after them.
            (Some(Fired::Timer(_)), 2_500, _) => state.set_timer(EventTime::from_millis(3_000)),
            // Set and then cleared: never fires. (Clearing in the records call at 3000 would
            // have cancelled the timer at 3000 too: a key has one timer.)
            (Some(Fired::Timer(_)), 3_000, _) => {
                state.set_timer(EventTime::from_millis(5_000));
                state.clear_timer();
            }
            _ => {}
        }
    });
    let got: Vec<(String, u64, usize)> = calls.into_iter().map(|(_, _, (_, what, t, _, n))| (what, t, n)).collect();
    let want: Vec<(String, u64, usize)> = vec![
        ("records".into(), 1_000, 1),
        ("timer@1000".into(), 1_000, 0),
        ("records".into(), 2_000, 2),
        ("timer@2500".into(), 2_500, 0),
        ("records".into(), 3_000, 1),
        ("timer@3000".into(), 3_000, 0),
        ("records".into(), 9_000, 1),
    ];
    assert_eq!(got, want);
}

/// A partition that hands out its records at once, then stays open (nothing to read) for
/// `open_for` before it ends: lets processing time pass while the watermark stands still.
#[derive(Clone, Debug)]
struct OpenFor {
    records: Vec<Rec>,
    open_for: Duration,
}

struct OpenForReader {
    source: OpenFor,
    done: bool,
    since: std::time::Instant,
}

impl weir_runtime::source::PartitionReader for OpenForReader {
    type Record = Rec;
    fn read(&mut self, out: &mut Vec<Rec>, _max: usize) -> Result<weir_runtime::source::ReadStatus, QueryError> {
        use weir_runtime::source::ReadStatus;
        if !self.done {
            out.extend(self.source.records.iter().cloned());
            self.done = true;
            self.since = std::time::Instant::now();
            return Ok(ReadStatus::Ready);
        }
        Ok(if self.since.elapsed() < self.source.open_for {
            ReadStatus::Wait(Duration::from_millis(10))
        } else {
            ReadStatus::Finished
        })
    }
    fn position(&self) -> serde_json::Value {
        self.done.into()
    }
}

impl weir_runtime::source::Source for OpenFor {
    type Record = Rec;
    type Reader = OpenForReader;
    fn description(&self) -> String {
        "OpenFor".into()
    }
    fn partitions(&self) -> usize {
        1
    }
    fn open(&self, _partition: usize) -> Result<OpenForReader, QueryError> {
        Ok(OpenForReader { source: self.clone(), done: false, since: std::time::Instant::now() })
    }
}

/// A processing-time timeout fires while the input is still open (watermark known), once, with
/// outputs at the watermark; one set again in the timeout call fires again.
#[test]
fn a_processing_time_timeout_fires_while_the_input_is_open() {
    let source = OpenFor { records: recs(&[1_000, 2_000]), open_for: Duration::from_millis(1_500) };
    let calls = log_calls(source, |state, _| {
        if state.event_time().as_millis() == 1_000 && !state.has_timed_out() {
            state.set_timeout_duration(Duration::from_millis(100));
        }
        if state.fired() == Some(Fired::Timeout) && state.get() == Some(&2) {
            // The second call is the first timeout: set it once more.
            state.set_timeout_duration(Duration::from_millis(100));
        }
    });
    let got: Vec<(String, u64, Option<u64>, usize)> =
        calls.into_iter().map(|(_, _, (_, what, t, w, n))| (what, t, w, n)).collect();
    // The watermark stands at 2000 (records at 2000 wait for it to pass) while the source is
    // open, so both timeouts fire at 2000, before the last record.
    let want: Vec<(String, u64, Option<u64>, usize)> = vec![
        ("records".into(), 1_000, Some(2_000), 1),
        ("timeout".into(), 2_000, Some(2_000), 0),
        ("timeout".into(), 2_000, Some(2_000), 0),
        ("records".into(), 2_000, None, 1),
    ];
    assert_eq!(got, want);
}

/// Records push a timeout back: a key that gets records more often than its timeout never times
/// out while they come; at the end of a bounded input a pending timeout fires at once (the query
/// does not wait an hour).
#[test]
fn pending_timeouts_fire_at_the_end_of_input() {
    let source = MemorySource::new(vec![recs(&[1_000, 2_000, 3_000])]);
    let started = std::time::Instant::now();
    let calls = log_calls(source, |state, _| {
        if !state.has_timed_out() {
            state.set_timeout_duration(Duration::from_secs(3_600));
        } else {
            // Set again in the end-of-input timeout call: dropped, no data can follow.
            state.set_timeout_duration(Duration::from_secs(3_600));
        }
    });
    assert!(started.elapsed() < Duration::from_secs(20));
    let got: Vec<(String, u64, Option<u64>)> =
        calls.into_iter().map(|(_, _, (_, what, t, w, _))| (what, t, w)).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3].0, "timeout");
    assert_eq!(got[3].2, None, "the end-of-input timeout sees no watermark");
}

#[test]
fn an_unusable_state_directory_or_an_empty_name_fails_the_build() {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"x").unwrap();
    for (backend, name) in [(StateBackend::rocksdb(&file), OP), (StateBackend::Memory, "")] {
        let result = Query::new("bad").state_backend(backend.clone()).start(move |scope, ctx| {
            let events = event_source(
                scope,
                ctx,
                MemorySource::new(vec![recs(&[1])]),
                |r: &Rec| Some(EventTime::from_millis(r.ts)),
                WatermarkOptions::with_delay(Duration::ZERO),
            );
            events.key_by(|r: &Rec| r.user).process_with_state(ctx, name, running_count)?;
            Ok(())
        });
        let error = match result {
            Ok(_) => panic!("{backend:?} / {name:?}: the build should fail"),
            Err(error) => error.to_string(),
        };
        if name.is_empty() {
            assert!(error.contains("name is empty"), "{error}");
        } else {
            assert!(error.contains("state backend of operator keyed") && error.contains("file"), "{error}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
