//! Oracle property tests for the windowed aggregation.
//!
//! Random, seeded inputs run through `Query` (memory source → `window_aggregate` → inspect) and the
//! collected output is compared with a batch oracle computed from the specification alone:
//!
//! * lateness is decided per source partition: the partition watermark after record `i` is
//!   `max(ts[0..=i]) - delay`, and record `i` is late iff `ts[i] <` the watermark after record
//!   `i - 1` (equal is on time); late records are excluded from every aggregate, counted in the
//!   operator's `late_rows`, and appear on `Aggregated::late` exactly once, naming the operator,
//!   with their event time and the watermark they were compared with;
//! * tumbling windows start at multiples of the size, sliding windows are every `[s, s + size)`
//!   with `s ≡ 0 (mod slide)` that contains the event time (start inclusive, end exclusive);
//! * append emits every window once with its final value; update's last emission per group is the
//!   final value; complete's snapshot at the greatest output time is the whole result table;
//! * results do not depend on the number of workers or on how the batches are cut;
//! * state is evicted (append/update) or kept (complete), as the `rows_total` gauge shows;
//! * invalid dataflows are rejected by `Query::start` with a message naming the problem.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;
use weir_runtime::source::event_source_with_batch;
use weir_runtime::timely::dataflow::operators::Inspect;
use weir_runtime::timely::ExchangeData;

mod support;
use support::{
    check_late_output, describe_difference, final_table, jittered_time, memory_events, run_to_end, Arrival,
    OperatorCounts, PartitionClock,
};

/// A realistic base time (2023-11-14T22:13:20Z), far from the epoch.
const BASE: u64 = 1_700_000_000_000;
/// The name of the aggregation operator in every dataflow.
const OP: &str = "win";
/// Seeds per configuration.
const SEEDS: u64 = 40;

/// An input record. `id` is unique within a case, to check that late records appear once each.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    id: u64,
    ts: u64,
    key: u32,
    value: i64,
}

/// Which aggregator a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

const AGGS: [Agg; 5] = [Agg::Count, Agg::Sum, Agg::Min, Agg::Max, Agg::Avg];

/// An aggregated value, whatever the aggregator. Values are small integers, so every partial sum
/// is exact in `f64` and averages can be compared exactly whatever the merge order.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val {
    Int(i64),
    Opt(Option<i64>),
    Float(Option<f64>),
}

/// A group of the result table: (window start, window end, key).
type Group = (i64, i64, u32);
/// One collected result row: (timely time of the output batch, group, value).
type Row = (u64, Group, Val);
type Rows = Arc<Mutex<Vec<Row>>>;
type Lates = Arc<Mutex<Vec<(u64, LateRecord<Rec>)>>>;

/// One generated input and its configuration.
#[derive(Clone, Debug)]
struct Case {
    label: String,
    parts: Vec<Vec<Rec>>,
    delay_ms: u64,
    windowing: Windowing,
    batch: usize,
}

/// What a run produced.
struct Run {
    rows: Vec<Row>,
    late: Vec<(u64, LateRecord<Rec>)>,
    op_late_rows: u64,
    rows_total: i64,
}

/// What the specification says a case must produce.
struct Expected {
    /// Every group of the result table with the values of its on-time records.
    groups: BTreeMap<Group, Vec<i64>>,
    /// Late records by id: (event time, watermark compared with).
    late: BTreeMap<u64, (u64, u64)>,
    /// On-time records whose event time is below an earlier record's (out of order, not late).
    out_of_order_on_time: usize,
}

// ---------------------------------------------------------------------------------------------
// Running a dataflow
// ---------------------------------------------------------------------------------------------

/// Where the inspect operators of every worker put what they see.
#[derive(Clone, Default)]
struct Collectors {
    rows: Rows,
    lates: Lates,
}

/// Adds the aggregation `OP` to `events` and collects its two outputs into `into`.
fn attach<'scope, A>(
    events: EventStream<'scope, Rec>,
    ctx: &QueryContext,
    (windowing, mode): (Windowing, OutputMode),
    aggregator: A,
    convert: fn(&A::Output) -> Val,
    into: &Collectors,
) -> Result<(), BuildError>
where
    A: Aggregator<Rec>,
    A::Output: ExchangeData,
{
    let out = events.window_aggregate(ctx, OP, windowing, mode, |r: &Rec| r.key, aggregator)?;
    let rows = into.rows.clone();
    out.results.inspect_time(move |t, r| {
        rows.lock().unwrap().push((t.as_millis(), (r.window_start, r.window_end, r.key), convert(&r.value)));
    });
    let lates = into.lates.clone();
    out.late.inspect_time(move |t, l| lates.lock().unwrap().push((t.as_millis(), l.clone())));
    Ok(())
}

fn run(case: &Case, mode: OutputMode, agg: Agg, workers: usize) -> Run {
    let collectors = Collectors::default();
    let source = MemorySource::new(case.parts.clone());
    let (spec, batch, delay_ms) = ((case.windowing, mode), case.batch, case.delay_ms);
    let into = collectors.clone();
    let started = Query::new("oracle").workers(workers).start(move |scope, ctx| {
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
    let OperatorCounts { late_rows: op_late_rows, rows_total, .. } = OperatorCounts::of(&handle, OP);
    let rows = std::mem::take(&mut *collectors.rows.lock().unwrap());
    let late = std::mem::take(&mut *collectors.lates.lock().unwrap());
    Run { rows, late, op_late_rows, rows_total }
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/// Every window `[start, end)` containing `ts`, computed from the definition (not from the code).
fn windows_of(windowing: &Windowing, ts: u64) -> Vec<(i64, i64)> {
    let t = ts as i64;
    match *windowing {
        Windowing::Tumbling { size, offset } => {
            assert!(offset.is_zero(), "the oracle knows no offsets");
            let size = size.as_millis() as i64;
            let start = t.div_euclid(size) * size;
            vec![(start, start + size)]
        }
        Windowing::Sliding { size, slide, offset } => {
            assert!(offset.is_zero(), "the oracle knows no offsets");
            let (size, slide) = (size.as_millis() as i64, slide.as_millis() as i64);
            // All multiples of `slide` in [t - size + 1, t].
            let lowest = t - size + 1;
            let mut start = lowest.div_euclid(slide) * slide;
            if start < lowest {
                start += slide;
            }
            let mut windows = Vec::new();
            while start <= t {
                windows.push((start, start + size));
                start += slide;
            }
            windows
        }
        Windowing::Global => unreachable!("the random tests use event-time windows"),
    }
}

fn oracle(case: &Case) -> Expected {
    let mut groups: BTreeMap<Group, Vec<i64>> = BTreeMap::new();
    let mut late = BTreeMap::new();
    let mut out_of_order_on_time = 0;
    for part in &case.parts {
        // Watermark before any data: the epoch (nothing is late).
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            match clock.arrive(rec.ts) {
                Arrival::Late { watermark } => {
                    late.insert(rec.id, (rec.ts, watermark));
                }
                Arrival::OnTime { out_of_order } => {
                    out_of_order_on_time += usize::from(out_of_order);
                    for (start, end) in windows_of(&case.windowing, rec.ts) {
                        groups.entry((start, end, rec.key)).or_default().push(rec.value);
                    }
                }
            }
        }
    }
    Expected { groups, late, out_of_order_on_time }
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
    expected.groups.iter().map(|(g, values)| (*g, expected_value(agg, values))).collect()
}

// ---------------------------------------------------------------------------------------------
// Checking a run against the oracle
// ---------------------------------------------------------------------------------------------

/// Checks one run against the oracle; returns its final table (to compare worker counts) and the
/// number of rows it emitted.
fn check(
    case: &Case,
    mode: OutputMode,
    agg: Agg,
    workers: usize,
    expected: &Expected,
) -> (BTreeMap<Group, Val>, usize) {
    let label = format!("{} [mode={mode}, agg={agg:?}, workers={workers}]", case.label);
    let run = run(case, mode, agg, workers);

    // Late records: each exactly once, labelled with the operator, its time and its watermark.
    check_late_output(&label, "record", run.late.iter().map(|(_, l)| l), |r: &Rec| r.id, OP, &expected.late);
    assert_eq!(run.op_late_rows, expected.late.len() as u64, "{label}: operator late_rows metric");

    // State.
    let want_rows = if mode == OutputMode::Complete { expected.groups.len() as i64 } else { 0 };
    assert_eq!(run.rows_total, want_rows, "{label}: rows_total gauge after the bounded run");

    // Results.
    let table = final_table(&label, mode, &run.rows);
    let want = expected_table(expected, agg);
    assert!(table == want, "{label}: result table differs from the oracle:\n{}", describe_difference(&table, &want));
    (table, run.rows.len())
}

/// Runs `case` with 1 and 3 workers, checks both against the oracle and against each other;
/// returns the number of rows emitted with 1 worker.
fn check_workers(case: &Case, mode: OutputMode, agg: Agg, expected: &Expected) -> usize {
    let (one, emitted) = check(case, mode, agg, 1, expected);
    let (three, _) = check(case, mode, agg, 3, expected);
    assert!(one == three, "{}: 1 and 3 workers disagree:\n{}", case.label, describe_difference(&three, &one));
    emitted
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/// 1..=4 partitions of 0..=300 records each; time moves forward with random steps, and about a
/// third of the records jump back by up to 3 s (some late, some out of order but on time).
fn random_case(name: &str, seed: u64, base: u64, windowing: impl FnOnce(&mut SmallRng) -> Windowing) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let windowing = windowing(&mut rng);
    let delay_ms = [0, 500, 2_000][rng.random_range(0..3)];
    let batch = rng.random_range(1..50);
    let partitions = rng.random_range(1..=4);
    let mut id = 0;
    let parts = (0..partitions)
        .map(|_| {
            let len = rng.random_range(0..=300);
            let mut cursor = base + rng.random_range(0..5_000);
            (0..len)
                .map(|_| {
                    let ts = jittered_time(&mut rng, &mut cursor, 400);
                    id += 1;
                    Rec { id, ts, key: rng.random_range(0..5), value: rng.random_range(-50..100) }
                })
                .collect()
        })
        .collect();
    let label = format!(
        "{name} seed={seed} ({}, delay={delay_ms}ms, batch={batch}, partitions={partitions})",
        windowing.describe()
    );
    Case { label, parts, delay_ms, windowing, batch }
}

fn random_tumbling(rng: &mut SmallRng) -> Windowing {
    Windowing::tumbling(Duration::from_millis([1_000, 2_000, 5_000][rng.random_range(0..3)]))
}

fn random_sliding(rng: &mut SmallRng) -> Windowing {
    // Sizes that are and are not multiples of the slide, and slide = size.
    let (size, slide) =
        [(2_000, 1_000), (5_000, 1_000), (3_000, 2_000), (2_500, 1_000), (1_000, 1_000)][rng.random_range(0..5)];
    Windowing::sliding(Duration::from_millis(size), Duration::from_millis(slide))
}

/// Runs `SEEDS` random cases through `mode` with 1 and 3 workers, rotating the aggregators, and
/// makes sure the inputs were not trivially on time.
fn property(
    name: &str,
    seed_base: u64,
    base: u64,
    mode: OutputMode,
    aggs: &[Agg],
    windowing: fn(&mut SmallRng) -> Windowing,
) {
    let (mut late_total, mut seeds_with_late, mut out_of_order_total, mut groups_total) = (0, 0, 0, 0);
    let mut emitted_total = 0;
    for seed in seed_base..seed_base + SEEDS {
        let case = random_case(name, seed, base, windowing);
        let expected = oracle(&case);
        late_total += expected.late.len();
        seeds_with_late += usize::from(!expected.late.is_empty());
        out_of_order_total += expected.out_of_order_on_time;
        groups_total += expected.groups.len();
        let agg = aggs[(seed % aggs.len() as u64) as usize];
        emitted_total += check_workers(&case, mode, agg, &expected);
    }
    assert!(
        late_total > 0 && seeds_with_late >= SEEDS as usize / 2,
        "{name}: too few late records ({seeds_with_late} seeds with late records)"
    );
    assert!(out_of_order_total > 0, "{name}: no out-of-order on-time record was generated");
    assert!(groups_total > 0, "{name}: no group was generated");
    if mode == OutputMode::Update {
        // Groups were emitted more than once, so "the last emission is final" was really tested.
        assert!(emitted_total > groups_total, "{name}: update never re-emitted a group ({emitted_total} rows)");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Tiny literal input, worked by hand. Tumbling 10 s, delay 5 s, one partition, keys a = 0, b = 1:
///
/// | # | ts     | key | watermark before it          | verdict                  |
/// |---|--------|-----|------------------------------|--------------------------|
/// | 0 | 10000  | a   | epoch (0)                    | on time                  |
/// | 1 | 12000  | b   | 10000 - 5000 = 5000          | on time                  |
/// | 2 |  6000  | a   | 12000 - 5000 = 7000          | LATE (6000 < 7000)       |
/// | 3 |  7000  | a   | 7000                         | on time (equal)          |
/// | 4 | 20000  | b   | 7000                         | on time                  |
/// | 5 | 15000  | a   | 20000 - 5000 = 15000         | on time (equal)          |
/// | 6 | 14999  | b   | 15000                        | LATE (14999 < 15000)     |
/// | 7 | 15000  | b   | 15000                        | on time (equal)          |
///
/// Windows of the on-time records: [0, 10000) a: {7000} → 1; [10000, 20000) a: {10000, 15000} →
/// 2, b: {12000, 15000} → 2; [20000, 30000) b: {20000} → 1. Sums with value = ts / 1000:
/// 7; 10 + 15 = 25; 12 + 15 = 27; 20.
#[test]
fn hand_checked_example() {
    let input = [(10_000, 0), (12_000, 1), (6_000, 0), (7_000, 0), (20_000, 1), (15_000, 0), (14_999, 1), (15_000, 1)];
    let parts = vec![input
        .iter()
        .enumerate()
        .map(|(i, &(ts, key))| Rec { id: i as u64, ts, key, value: ts as i64 / 1000 })
        .collect()];
    let counts: BTreeMap<Group, Val> = [
        ((0, 10_000, 0), Val::Int(1)),
        ((10_000, 20_000, 0), Val::Int(2)),
        ((10_000, 20_000, 1), Val::Int(2)),
        ((20_000, 30_000, 1), Val::Int(1)),
    ]
    .into();
    let sums: BTreeMap<Group, Val> = [
        ((0, 10_000, 0), Val::Int(7)),
        ((10_000, 20_000, 0), Val::Int(25)),
        ((10_000, 20_000, 1), Val::Int(27)),
        ((20_000, 30_000, 1), Val::Int(20)),
    ]
    .into();
    // Record id → (event time, watermark it was compared with, lateness).
    let late: BTreeMap<u64, (u64, u64, u64)> = [(2, (6_000, 7_000, 1_000)), (6, (14_999, 15_000, 1))].into();

    for batch in [1, 3, 8] {
        for workers in [1, 3] {
            for mode in [OutputMode::Append, OutputMode::Update, OutputMode::Complete] {
                for (agg, want) in [(Agg::Count, &counts), (Agg::Sum, &sums)] {
                    let case = Case {
                        label: format!("hand-checked example (batch={batch})"),
                        parts: parts.clone(),
                        delay_ms: 5_000,
                        windowing: Windowing::tumbling(Duration::from_secs(10)),
                        batch,
                    };
                    let label = format!("{} [mode={mode}, agg={agg:?}, workers={workers}]", case.label);
                    // The oracle agrees with the hand computation ...
                    let expected = oracle(&case);
                    assert_eq!(&expected_table(&expected, agg), want, "oracle vs hand computation");
                    assert_eq!(expected.late.keys().copied().collect::<Vec<_>>(), vec![2, 6], "oracle's late records");
                    // ... and so does the operator.
                    let run = run(&case, mode, agg, workers);
                    let table = final_table(&label, mode, &run.rows);
                    assert!(&table == want, "{label}:\n{}", describe_difference(&table, want));
                    let mut got_late: Vec<(u64, u64, u64, u64, String)> = run
                        .late
                        .iter()
                        .map(|(_, l)| {
                            (
                                l.record.id,
                                l.event_time.as_millis(),
                                l.watermark.as_millis(),
                                l.lateness_ms,
                                l.operator.clone(),
                            )
                        })
                        .collect();
                    got_late.sort();
                    let want_late: Vec<_> =
                        late.iter().map(|(id, &(t, w, n))| (*id, t, w, n, OP.to_string())).collect();
                    assert_eq!(got_late, want_late, "{label}: late output");
                    assert_eq!(run.op_late_rows, 2, "{label}: late_rows");
                    let rows_total = if mode == OutputMode::Complete { 4 } else { 0 };
                    assert_eq!(run.rows_total, rows_total, "{label}: rows_total");
                }
            }
        }
    }
}

/// Append, tumbling windows, count: one final emission per window, equal to the oracle.
#[test]
fn append_tumbling_count_matches_oracle() {
    property("append/tumbling", 1_000, BASE, OutputMode::Append, &[Agg::Count], random_tumbling);
}

/// Append, sliding windows, every aggregator.
#[test]
fn append_sliding_matches_oracle() {
    property("append/sliding", 2_000, BASE, OutputMode::Append, &AGGS, random_sliding);
}

/// Append, tumbling windows, sum/min/max/avg of the value field.
#[test]
fn append_tumbling_value_aggregates_match_oracle() {
    property(
        "append/tumbling/values",
        3_000,
        BASE,
        OutputMode::Append,
        &[Agg::Sum, Agg::Min, Agg::Max, Agg::Avg],
        random_tumbling,
    );
}

/// Update, tumbling windows: the last emission of every group is its oracle value.
#[test]
fn update_tumbling_matches_oracle() {
    property("update/tumbling", 4_000, BASE, OutputMode::Update, &AGGS, random_tumbling);
}

/// Update, sliding windows.
#[test]
fn update_sliding_matches_oracle() {
    property("update/sliding", 5_000, BASE, OutputMode::Update, &AGGS, random_sliding);
}

/// Complete, tumbling windows: the snapshot at the greatest output time is the whole table.
#[test]
fn complete_tumbling_matches_oracle() {
    property("complete/tumbling", 6_000, BASE, OutputMode::Complete, &AGGS, random_tumbling);
}

/// Complete, sliding windows.
#[test]
fn complete_sliding_matches_oracle() {
    property("complete/sliding", 7_000, BASE, OutputMode::Complete, &AGGS, random_sliding);
}

/// Complete mode, smallest input showing that the final snapshot must hold every key whichever
/// worker owns it. One partition, delay 0, tumbling 10 s, batch 1: key k at ts 1000·k for
/// k = 0..6, all on time, all in window [0, 10000) with count 1. Each batch moves the watermark,
/// so each epoch changes one key; the snapshot at the last output time must still hold all six.
#[test]
fn complete_final_snapshot_holds_every_key() {
    let parts = vec![(0..6).map(|k| Rec { id: k, ts: 1_000 * k, key: k as u32, value: 1 }).collect()];
    let case = Case {
        label: "complete, six keys".into(),
        parts,
        delay_ms: 0,
        windowing: Windowing::tumbling(Duration::from_secs(10)),
        batch: 1,
    };
    let want: BTreeMap<Group, Val> = (0..6).map(|k| ((0, 10_000, k), Val::Int(1))).collect();
    assert_eq!(expected_table(&oracle(&case), Agg::Count), want, "oracle vs hand computation");
    for workers in [1, 2, 3] {
        let mut rows = run(&case, OutputMode::Complete, Agg::Count, workers).rows;
        let table = final_table(&case.label, OutputMode::Complete, &rows);
        rows.sort_by_key(|(t, g, _)| (*t, *g));
        let rows: Vec<String> = rows.iter().map(|(t, g, v)| format!("    t={t} {g:?} {v:?}")).collect();
        assert!(
            table == want,
            "{} with {workers} workers: the snapshot at the greatest output time is not the whole table:\n{}\n  all output rows:\n{}",
            case.label,
            describe_difference(&table, &want),
            rows.join("\n")
        );
    }
}

/// Sliding windows near the epoch: the first windows start before it (negative starts).
#[test]
fn sliding_near_the_epoch_matches_oracle() {
    for mode in [OutputMode::Append, OutputMode::Update] {
        property(&format!("{mode}/sliding/epoch"), 8_000, 0, mode, &[Agg::Count, Agg::Sum], random_sliding);
    }
    // The oracle itself has windows starting before the epoch.
    let w = Windowing::sliding(Duration::from_secs(5), Duration::from_secs(1));
    assert_eq!(
        windows_of(&w, 1_500),
        vec![(-3_000, 2_000), (-2_000, 3_000), (-1_000, 4_000), (0, 5_000), (1_000, 6_000)]
    );
}

/// Starts a one-record query with `windowing` and `mode` on another thread, so that a `Query::start`
/// that never returns fails the test instead of hanging it. The receiver gets `Ok` if the query
/// started (it is then awaited) or the `BuildError`'s text.
fn start_in_background(workers: usize, windowing: Windowing, mode: OutputMode) -> Receiver<Result<(), String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
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
            events.window_count(ctx, OP, windowing, mode, |r: &Rec| r.key)?;
            Ok(())
        });
        let outcome = match started {
            Ok(handle) => {
                handle.await_termination(Some(Duration::from_secs(10))).map(|_| ()).map_err(|e| e.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        let _ = tx.send(outcome);
    });
    rx
}

/// Invalid dataflows are rejected by `Query::start` (1 and 3 workers) with a `BuildError` whose
/// text names the problem; a valid one next to them starts and finishes.
#[test]
fn invalid_dataflows_fail_at_build_time() {
    let cases: [(&str, Windowing, OutputMode, &[&str]); 5] = [
        ("append without a window", Windowing::global(), OutputMode::Append, &["append", "window"]),
        (
            "slide longer than size",
            Windowing::sliding(Duration::from_secs(5), Duration::from_secs(10)),
            OutputMode::Update,
            &["slide", "longer than the window size"],
        ),
        (
            "zero-size tumbling window",
            Windowing::tumbling(Duration::ZERO),
            OutputMode::Append,
            &["window size", "zero"],
        ),
        (
            "zero-size sliding window",
            Windowing::sliding(Duration::ZERO, Duration::ZERO),
            OutputMode::Complete,
            &["window size", "zero"],
        ),
        (
            "zero slide",
            Windowing::sliding(Duration::from_secs(5), Duration::ZERO),
            OutputMode::Update,
            &["slide", "zero"],
        ),
    ];
    // All at once, with one deadline, so that several hangs cost one timeout.
    let valid =
        start_in_background(3, Windowing::sliding(Duration::from_secs(5), Duration::from_secs(5)), OutputMode::Append);
    let pending: Vec<_> = cases
        .iter()
        .flat_map(|&(what, windowing, mode, mentions)| {
            [1, 3].map(|workers| {
                (format!("{what} ({workers} workers)"), mentions, start_in_background(workers, windowing, mode))
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut problems = Vec::new();
    for (label, mentions, outcome) in pending {
        match outcome.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Err(_) => problems.push(format!("{label}: Query::start did not return within 10 s (deadlock?)")),
            Ok(Ok(())) => problems.push(format!("{label}: Query::start accepted an invalid dataflow")),
            Ok(Err(error)) => {
                for mention in mentions {
                    if !error.to_lowercase().contains(mention) {
                        problems.push(format!("{label}: the error should mention {mention:?}: {error}"));
                    }
                }
            }
        }
    }
    match valid.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => problems.push(format!("valid sliding(5s, 5s) append query failed: {error}")),
        Err(_) => problems.push("valid sliding(5s, 5s) append query did not finish within 10 s".to_string()),
    }
    assert!(problems.is_empty(), "{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
}
