//! Oracle property tests for session windows (`session_aggregate`).
//!
//! Random, seeded, out-of-order inputs with late records run through `Query` (memory source →
//! `session_aggregate` → inspect) with 1 and 3 workers, and the output is compared with a batch
//! computation written from the definition:
//!
//! * lateness per source partition: the watermark after record `i` is `max(ts[0..=i]) - delay`,
//!   and record `i` is late iff `ts[i] <` the watermark after record `i - 1`; late records are in
//!   no session, are counted in `late_rows`, and appear once each on the late output, naming the
//!   operator, with their event time and the watermark they missed;
//! * sessions: the on-time records of a key sorted by time; a record starts a new session iff
//!   its time is `>=` the previous record's time + gap; a session is `[first, last + gap)`;
//! * append: every session is emitted exactly once, at timely time = its end, with its final
//!   value; update: the last emission of every session is its final value, no session is emitted
//!   twice at one time, and every other row emitted is a narrower, earlier version of a final
//!   session of its key (it grew or was bridged later);
//! * the results do not depend on worker count or batch boundaries; the state is evicted
//!   (`rows_total` back to 0), also while the input is still open, as soon as the frontier passes
//!   the sessions' ends.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;
use weir_runtime::source::event_source_with_batch;
use weir_runtime::timely::dataflow::operators::vec::{Input, ToStream};
use weir_runtime::timely::dataflow::operators::{Inspect, Probe};
use weir_runtime::timely::ExchangeData;

mod support;
use support::{
    check_late_output, describe_difference, jittered_time, last_per_group, memory_events, run_to_end, Arrival,
    OperatorCounts, PartitionClock,
};

/// 2023-11-14T22:13:20Z.
const BASE: u64 = 1_700_000_000_000;
const OP: &str = "sessions";
const SEEDS: u64 = 40;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    id: u64,
    ts: u64,
    key: u32,
    value: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// Values are small integers, so sums and averages are exact in `f64` whatever the merge order.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val {
    Int(i64),
    Opt(Option<i64>),
    Float(Option<f64>),
}

/// (window start, window end, key).
type Group = (i64, i64, u32);
/// (timely time of the output batch, group, value).
type Row = (u64, Group, Val);

#[derive(Clone, Debug)]
struct Case {
    label: String,
    parts: Vec<Vec<Rec>>,
    delay_ms: u64,
    gap_ms: u64,
    batch: usize,
}

struct Run {
    rows: Vec<Row>,
    late: Vec<LateRecord<Rec>>,
    late_rows: u64,
    rows_total: i64,
    rows_updated: u64,
}

struct Expected {
    /// Every session with the values of its records.
    sessions: BTreeMap<Group, Vec<i64>>,
    /// Late records by id: (event time, watermark compared with).
    late: BTreeMap<u64, (u64, u64)>,
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Collectors {
    rows: Arc<Mutex<Vec<Row>>>,
    late: Arc<Mutex<Vec<LateRecord<Rec>>>>,
}

fn attach<'scope, A>(
    events: EventStream<'scope, Rec>,
    ctx: &QueryContext,
    (gap, mode): (Duration, OutputMode),
    aggregator: A,
    convert: fn(&A::Output) -> Val,
    into: &Collectors,
) -> Result<(), BuildError>
where
    A: Aggregator<Rec>,
    A::Output: ExchangeData,
{
    let out = events.session_aggregate(ctx, OP, gap, mode, |r: &Rec| r.key, aggregator)?;
    let rows = into.rows.clone();
    out.results.inspect_time(move |t, r| {
        rows.lock().unwrap().push((t.as_millis(), (r.window_start, r.window_end, r.key), convert(&r.value)));
    });
    let late = into.late.clone();
    out.late.inspect(move |l| late.lock().unwrap().push(l.clone()));
    Ok(())
}

fn run(case: &Case, mode: OutputMode, agg: Agg, workers: usize) -> Run {
    run_on(case, mode, agg, workers, StateBackend::Memory)
}

fn run_on(case: &Case, mode: OutputMode, agg: Agg, workers: usize, backend: StateBackend) -> Run {
    let collectors = Collectors::default();
    let source = MemorySource::new(case.parts.clone());
    let (spec, batch, delay_ms) = ((Duration::from_millis(case.gap_ms), mode), case.batch, case.delay_ms);
    let into = collectors.clone();
    let started = Query::new("session-oracle").workers(workers).state_backend(backend).start(move |scope, ctx| {
        let events = memory_events(scope, ctx, &source, |r: &Rec| r.ts, delay_ms, batch);
        match agg {
            Agg::Count => attach(events, ctx, spec, Count, |v: &u64| Val::Int(*v as i64), &into),
            Agg::Sum => attach(events, ctx, spec, Sum(|r: &Rec| r.value), |v: &i64| Val::Int(*v), &into),
            Agg::Min => attach(events, ctx, spec, Min(|r: &Rec| r.value), |v: &Option<i64>| Val::Opt(*v), &into),
            Agg::Max => attach(events, ctx, spec, Max(|r: &Rec| r.value), |v: &Option<i64>| Val::Opt(*v), &into),
            Agg::Avg => {
                attach(events, ctx, spec, Avg(|r: &Rec| r.value as f64), |v: &Option<f64>| Val::Float(*v), &into)
            }
        }
    });
    let handle = run_to_end(started, &case.label, 60);
    let OperatorCounts { late_rows, rows_total, rows_updated, .. } = OperatorCounts::of(&handle, OP);
    let rows = std::mem::take(&mut *collectors.rows.lock().unwrap());
    let late = std::mem::take(&mut *collectors.late.lock().unwrap());
    Run { rows, late, late_rows, rows_total, rows_updated }
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

fn oracle(case: &Case) -> Expected {
    let mut late = BTreeMap::new();
    let mut by_key: BTreeMap<u32, Vec<(u64, i64)>> = BTreeMap::new();
    for part in &case.parts {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            match clock.arrive(rec.ts) {
                Arrival::Late { watermark } => {
                    late.insert(rec.id, (rec.ts, watermark));
                }
                Arrival::OnTime { .. } => by_key.entry(rec.key).or_default().push((rec.ts, rec.value)),
            }
        }
    }
    let mut sessions = BTreeMap::new();
    for (key, mut records) in by_key {
        records.sort();
        let mut current: Option<(u64, u64, Vec<i64>)> = None; // (first, last, values)
        for (ts, value) in records {
            match &mut current {
                Some((_, last, values)) if ts < *last + case.gap_ms => {
                    *last = ts;
                    values.push(value);
                }
                _ => {
                    if let Some((first, last, values)) = current.replace((ts, ts, vec![value])) {
                        sessions.insert((first as i64, (last + case.gap_ms) as i64, key), values);
                    }
                }
            }
        }
        if let Some((first, last, values)) = current {
            sessions.insert((first as i64, (last + case.gap_ms) as i64, key), values);
        }
    }
    Expected { sessions, late }
}

fn expected_value(agg: Agg, values: &[i64]) -> Val {
    match agg {
        Agg::Count => Val::Int(values.len() as i64),
        Agg::Sum => Val::Int(values.iter().sum()),
        Agg::Min => Val::Opt(values.iter().min().copied()),
        Agg::Max => Val::Opt(values.iter().max().copied()),
        Agg::Avg => Val::Float(Some(values.iter().sum::<i64>() as f64 / values.len() as f64)),
    }
}

fn expected_table(expected: &Expected, agg: Agg) -> BTreeMap<Group, Val> {
    expected.sessions.iter().map(|(g, values)| (*g, expected_value(agg, values))).collect()
}

// ---------------------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------------------

/// The final table the rows show for `mode`, checking the per-mode rules against the expected
/// sessions; also returns how many rows were superseded versions (update mode).
fn final_table(
    label: &str,
    mode: OutputMode,
    rows: &[Row],
    want: &BTreeMap<Group, Val>,
) -> (BTreeMap<Group, Val>, usize) {
    let mut table = BTreeMap::new();
    let mut superseded = 0;
    match mode {
        OutputMode::Append => {
            for (time, group, value) in rows {
                assert_eq!(*time as i64, group.1, "{label}: session {group:?} emitted at time {time}, not at its end");
                if let Some(previous) = table.insert(*group, *value) {
                    panic!("{label}: append emitted session {group:?} twice ({previous:?}, then {value:?})");
                }
            }
        }
        OutputMode::Update => {
            for (group, (time, value)) in last_per_group(label, rows) {
                if want.contains_key(&group) {
                    table.insert(group, value);
                    continue;
                }
                // Not a final session: it must lie inside a final session of its key that was
                // emitted (for the last time) no earlier than it.
                let (start, end, key) = group;
                let container = want.keys().find(|(s, e, k)| *k == key && *s <= start && end <= *e);
                let Some(container) = container else {
                    panic!(
                        "{label}: update emitted {group:?} = {value:?}, which no final session of key {key} contains"
                    );
                };
                let container_time = rows.iter().filter(|(_, g, _)| g == container).map(|(t, _, _)| *t).max();
                assert!(
                    container_time.is_some_and(|t| t >= time),
                    "{label}: {group:?} (at {time}) was never superseded by its final session {container:?}"
                );
                superseded += 1;
            }
        }
        OutputMode::Complete => unreachable!("complete is rejected for sessions"),
    }
    (table, superseded)
}

/// Runs one case with `workers`, checks late records, metrics and results; returns the final
/// table and the number of superseded rows.
fn check(
    case: &Case,
    mode: OutputMode,
    agg: Agg,
    workers: usize,
    expected: &Expected,
) -> (BTreeMap<Group, Val>, usize) {
    check_on(case, mode, agg, workers, expected, StateBackend::Memory)
}

fn check_on(
    case: &Case,
    mode: OutputMode,
    agg: Agg,
    workers: usize,
    expected: &Expected,
    backend: StateBackend,
) -> (BTreeMap<Group, Val>, usize) {
    let label = format!("{} [mode={mode}, agg={agg:?}, workers={workers}, state={}]", case.label, backend.describe());
    let run = run_on(case, mode, agg, workers, backend);

    check_late_output(&label, "record", &run.late, |r: &Rec| r.id, OP, &expected.late);
    assert_eq!(run.late_rows, expected.late.len() as u64, "{label}: late_rows metric");
    assert_eq!(run.rows_total, 0, "{label}: rows_total after the bounded run (state not evicted)");
    assert!(run.rows_updated >= expected.sessions.len() as u64, "{label}: rows_updated below the session count");

    let want = expected_table(expected, agg);
    let (table, superseded) = final_table(&label, mode, &run.rows, &want);
    assert!(table == want, "{label}: sessions differ from the oracle:\n{}", describe_difference(&table, &want));
    (table, superseded)
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/// 1..=4 partitions of 0..=300 records; time moves forward by 0..400 ms per record, and about a
/// third of the records jump back by up to 3 s (some late, some out of order but on time, some
/// bridging sessions already formed).
fn random_case(name: &str, seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let gap_ms = [300, 1_000, 2_500][rng.random_range(0..3)];
    let delay_ms = [0, 500, 2_000][rng.random_range(0..3)];
    let batch = rng.random_range(1..50);
    let partitions = rng.random_range(1..=4);
    let mut id = 0;
    let parts = (0..partitions)
        .map(|_| {
            let len = rng.random_range(0..=300);
            let mut cursor = BASE + rng.random_range(0..5_000);
            (0..len)
                .map(|_| {
                    let ts = jittered_time(&mut rng, &mut cursor, 400);
                    id += 1;
                    Rec { id, ts, key: rng.random_range(0..5), value: rng.random_range(-50..100) }
                })
                .collect()
        })
        .collect();
    let label =
        format!("{name} seed={seed} (gap={gap_ms}ms, delay={delay_ms}ms, batch={batch}, partitions={partitions})");
    Case { label, parts, delay_ms, gap_ms, batch }
}

fn property(name: &str, seed_base: u64, mode: OutputMode, aggs: &[Agg]) {
    let (mut late_total, mut sessions_total, mut multi_record, mut superseded_total) = (0, 0, 0, 0);
    for seed in seed_base..seed_base + SEEDS {
        let case = random_case(name, seed);
        let expected = oracle(&case);
        late_total += expected.late.len();
        sessions_total += expected.sessions.len();
        multi_record += expected.sessions.values().filter(|v| v.len() > 1).count();
        let agg = aggs[(seed % aggs.len() as u64) as usize];
        let (one, superseded) = check(&case, mode, agg, 1, &expected);
        let (three, _) = check(&case, mode, agg, 3, &expected);
        assert!(one == three, "{}: 1 and 3 workers disagree:\n{}", case.label, describe_difference(&three, &one));
        superseded_total += superseded;
    }
    assert!(late_total > 0, "{name}: no late record was generated");
    assert!(sessions_total > 0 && multi_record > 0, "{name}: no session of several records was generated");
    if mode == OutputMode::Update {
        assert!(superseded_total > 0, "{name}: no session ever grew after being emitted, so merging was not tested");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Worked by hand. Gap 10 s, delay 10 s, one partition, keys a = 0 and b = 1, value = ts / 1000:
///
/// | # | ts    | key | watermark before | verdict                                                  |
/// |---|-------|-----|------------------|----------------------------------------------------------|
/// | 0 | 10000 | a   | 0                | on time: a [10000, 20000)                                |
/// | 1 | 25000 | a   | 0                | on time: a [25000, 35000), a second session              |
/// | 2 | 12000 | b   | 15000            | LATE                                                     |
/// | 3 | 18000 | a   | 15000            | on time: overlaps both, bridges them: a [10000, 35000)   |
/// | 4 | 40000 | b   | 15000            | on time: b [40000, 50000)                                |
/// | 5 | 29999 | a   | 30000            | LATE                                                     |
/// | 6 | 30000 | b   | 30000            | on time (equal): b [30000, 40000); 40000 is not < 40000, |
/// |   |       |     |                  | so b at 40000 stays a session of its own (end exclusive) |
/// | 7 | 44000 | a   | 30000            | on time: 44000 >= 25000 + 10000: a [44000, 54000)        |
/// | 8 | 45000 | a   | 34000            | on time: a [44000, 55000)                                |
#[test]
fn hand_checked_example() {
    let input = [
        (10_000, 0),
        (25_000, 0),
        (12_000, 1),
        (18_000, 0),
        (40_000, 1),
        (29_999, 0),
        (30_000, 1),
        (44_000, 0),
        (45_000, 0),
    ];
    let parts = vec![input
        .iter()
        .enumerate()
        .map(|(i, &(ts, key))| Rec { id: i as u64, ts, key, value: ts as i64 / 1000 })
        .collect()];
    let counts: BTreeMap<Group, Val> = [
        ((10_000, 35_000, 0), Val::Int(3)),
        ((44_000, 55_000, 0), Val::Int(2)),
        ((30_000, 40_000, 1), Val::Int(1)),
        ((40_000, 50_000, 1), Val::Int(1)),
    ]
    .into();
    let sums: BTreeMap<Group, Val> = [
        ((10_000, 35_000, 0), Val::Int(10 + 25 + 18)),
        ((44_000, 55_000, 0), Val::Int(44 + 45)),
        ((30_000, 40_000, 1), Val::Int(30)),
        ((40_000, 50_000, 1), Val::Int(40)),
    ]
    .into();
    let late: BTreeMap<u64, (u64, u64)> = [(2, (12_000, 15_000)), (5, (29_999, 30_000))].into();
    let mut bridged_in_state = false;
    for batch in [1, 2, 9] {
        let case = Case {
            label: format!("hand-checked (batch={batch})"),
            parts: parts.clone(),
            delay_ms: 10_000,
            gap_ms: 10_000,
            batch,
        };
        let expected = oracle(&case);
        assert_eq!(expected.late, late, "oracle's late records vs hand computation");
        assert_eq!(expected_table(&expected, Agg::Count), counts, "oracle vs hand computation");
        assert_eq!(expected_table(&expected, Agg::Sum), sums, "oracle vs hand computation");
        for workers in [1, 3] {
            for mode in [OutputMode::Append, OutputMode::Update] {
                let (table, _) = check(&case, mode, Agg::Count, workers, &expected);
                assert_eq!(table, counts);
                let (table, _) = check(&case, mode, Agg::Sum, workers, &expected);
                assert_eq!(table, sums);
                if mode == OutputMode::Update && batch == 1 {
                    // One record per batch: a's two sessions were emitted before record 3 bridged them.
                    let rows = run(&case, mode, Agg::Count, workers).rows;
                    let groups: Vec<Group> = rows.iter().map(|(_, g, _)| *g).collect();
                    bridged_in_state |= groups.contains(&(10_000, 20_000, 0)) && groups.contains(&(25_000, 35_000, 0));
                }
            }
        }
    }
    assert!(bridged_in_state, "the bridging record never met two sessions already in state");
}

#[test]
fn append_count_matches_oracle() {
    property("append/count", 10_000, OutputMode::Append, &[Agg::Count]);
}

#[test]
fn append_value_aggregates_match_oracle() {
    property("append/values", 11_000, OutputMode::Append, &[Agg::Sum, Agg::Min, Agg::Max, Agg::Avg]);
}

#[test]
fn update_matches_oracle() {
    property("update", 12_000, OutputMode::Update, &[Agg::Count, Agg::Sum, Agg::Min, Agg::Max, Agg::Avg]);
}

/// With the input still open, sessions are closed and evicted as the frontier passes their
/// ends: `rows_total` falls back to 0 before the input ends, and append emits each session then.
#[test]
fn eviction_follows_the_frontier_while_the_input_is_open() {
    for mode in [OutputMode::Append, OutputMode::Update] {
        let ctx = QueryContext::ephemeral("eviction");
        let metrics = ctx.metrics().operator(OP);
        let rows: Arc<Mutex<Vec<Row>>> = Arc::default();
        let seen = rows.clone();
        let gauges = metrics.clone();
        weir_runtime::timely::execute_directly(move |worker| {
            let metrics = gauges;
            let (mut input, probe) = worker.dataflow::<EventTime, _, _>(|scope| {
                let (input, records) = scope.new_input::<Event<Rec>>();
                let late = Vec::<LateRecord<Rec>>::new().to_stream(scope);
                let out = EventStream { records, late }
                    .session_count(&ctx, OP, Duration::from_millis(1_000), mode, |r: &Rec| r.key)
                    .unwrap();
                let (probe, _) = out
                    .results
                    .inspect_time(move |t, r| {
                        let group = (r.window_start, r.window_end, r.key);
                        seen.lock().unwrap().push((t.as_millis(), group, Val::Int(r.value as i64)))
                    })
                    .probe();
                (input, probe)
            });
            // Runs the dataflow until the output frontier reaches `to`, then a little more so the
            // operator has certainly seen the new input frontier.
            let mut settle = |to: u64| {
                while probe.less_than(&EventTime::from_millis(to)) {
                    worker.step();
                }
                for _ in 0..20 {
                    worker.step();
                }
            };
            let rec = |ts: u64, key: u32| Event::new(EventTime::from_millis(ts), Rec { id: ts, ts, key, value: 0 });
            let total = || metrics.rows_total.load(Ordering::SeqCst);
            // Sessions: key 0 [1000, 2500) (two records), key 1 [1200, 2200), key 2 [3000, 4000).
            for event in [rec(1_000, 0), rec(1_200, 1), rec(1_500, 0), rec(3_000, 2)] {
                input.send(event);
            }
            for (to, open, why) in [
                (1_001, 3, "three sessions open at 1001"),
                (2_200, 2, "key 1's session closed at 2200"),
                (2_499, 2, "key 0's session ends at 2500, not before"),
                (2_500, 1, "key 0's session closed at 2500"),
                (10_000, 0, "everything evicted while the input is still open"),
            ] {
                input.advance_to(EventTime::from_millis(to));
                settle(to);
                assert_eq!(total(), open, "{mode}: {why}");
            }
            assert_eq!(metrics.memory_bytes.load(Ordering::SeqCst), 0, "{mode}: memory gauge back to 0");
            // A record for key 0 after its session closed starts a new session.
            input.send(rec(10_000, 0));
            input.advance_to(EventTime::from_millis(10_001));
            settle(10_001);
            assert_eq!(total(), 1, "{mode}: a new session for key 0");
        });
        let mut groups: Vec<(u64, Group)> = rows.lock().unwrap().iter().map(|(t, g, _)| (*t, *g)).collect();
        groups.sort();
        match mode {
            OutputMode::Append => assert_eq!(
                groups,
                vec![
                    (2_200, (1_200, 2_200, 1)),
                    (2_500, (1_000, 2_500, 0)),
                    (4_000, (3_000, 4_000, 2)),
                    (11_000, (10_000, 11_000, 0)),
                ],
                "append: each session once, at its end, including the one flushed when the input closed"
            ),
            _ => assert!(groups.iter().any(|(_, g)| *g == (1_000, 2_500, 0)), "update: {groups:?}"),
        }
        assert_eq!(metrics.rows_total.load(Ordering::SeqCst), 0, "{mode}: state evicted after the input closed");
    }
}

/// A gap under one millisecond and complete mode are rejected by `Query::start`.
#[test]
fn invalid_sessions_fail_at_build_time() {
    for (gap, mode, mention) in [
        (Duration::ZERO, OutputMode::Append, "session gap"),
        (Duration::from_micros(100), OutputMode::Update, "zero milliseconds"),
        (Duration::from_secs(1), OutputMode::Complete, "complete"),
    ] {
        for workers in [1, 3] {
            let started = Query::new("invalid").workers(workers).start(move |scope, ctx| {
                let source = MemorySource::new(vec![vec![Rec { id: 0, ts: BASE, key: 0, value: 0 }]]);
                let events = event_source_with_batch(
                    scope,
                    ctx,
                    source,
                    |r: &Rec| Some(EventTime::from_millis(r.ts)),
                    WatermarkOptions::default(),
                    10,
                );
                events.session_count(ctx, OP, gap, mode, |r: &Rec| r.key)?;
                Ok(())
            });
            match started {
                Ok(_) => panic!("gap {gap:?}, mode {mode}: Query::start accepted an invalid session window"),
                Err(error) => assert!(error.to_string().contains(mention), "{error}"),
            }
        }
    }
}

/// The same oracle on the RocksDB state backend, once it can open a store (skipped, with a
/// message, while `RocksDbStore::open` fails).
#[test]
fn sessions_on_rocksdb_match_oracle() {
    let dir = std::env::temp_dir().join(format!("weir-session-rocksdb-{}", std::process::id()));
    if let Err(error) = StateBackend::rocksdb(&dir).open::<u32, u64>("probe", "probe", 0) {
        eprintln!("skipping the RocksDB session test: {error}");
        return;
    }
    for seed in 13_000..13_010 {
        let case = random_case("rocksdb", seed);
        let expected = oracle(&case);
        let mode = if seed % 2 == 0 { OutputMode::Append } else { OutputMode::Update };
        check_on(&case, mode, Agg::Sum, 2, &expected, StateBackend::rocksdb(&dir));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
