//! Oracle property tests for distinct counts in windows: `CountDistinct` (exact) and
//! `ApproxCountDistinct` (HyperLogLog++) through `window_aggregate`.
//!
//! Random, seeded, out-of-order inputs with late records, over several partitions and random batch
//! sizes, run through `Query` with 1 and 3 workers, compared with a batch computation written from
//! the definitions:
//!
//! * a record is late iff its event time is below its partition's watermark (max event time seen
//!   before it in that partition − delay); late records count nowhere, and each appears once on
//!   the late output with the watermark it missed;
//! * a window's distinct count is the number of different values among the on-time records of
//!   its (window, key) group: exactly, for `CountDistinct`; within a few standard errors
//!   (`1.04 / sqrt(2^p)`) for `ApproxCountDistinct`, and exact or off by one below 100;
//! * append emits each window once, update's last emission of a group is its final value,
//!   complete's last snapshot is the whole table; state returns to 0 rows after the input ends
//!   (append, update) or holds every group (complete);
//! * approximate results do not depend on the number of workers (sketch merges are exact).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;
use weir_runtime::timely::dataflow::operators::Inspect;

mod support;
use support::{
    check_late_output, final_table, jittered_time, memory_events, run_to_end, Arrival, OperatorCounts, PartitionClock,
};

/// 2023-11-14T22:13:20Z.
const BASE: u64 = 1_700_000_000_000;
const OP: &str = "distinct";
const SEEDS: u64 = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    id: u64,
    ts: u64,
    key: u32,
    /// The value counted: a string, so exact counting compares the values themselves.
    user: String,
}

type Group = (i64, i64, u32);
/// (timely time of the output batch, group, count).
type Row = (u64, Group, u64);

#[derive(Clone, Debug)]
struct Case {
    label: String,
    parts: Vec<Vec<Rec>>,
    delay_ms: u64,
    windowing: Windowing,
    batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counting {
    Exact,
    Approx { precision: u8 },
}

struct Run {
    rows: Vec<Row>,
    late: Vec<LateRecord<Rec>>,
    late_rows: u64,
    rows_total: i64,
}

struct Expected {
    /// The distinct values of every group.
    groups: BTreeMap<Group, BTreeSet<String>>,
    /// Late record id → (event time, watermark it missed).
    late: BTreeMap<u64, (u64, u64)>,
    /// How often a value came again within a group (so distinctness matters).
    repeats: usize,
}

// ---------------------------------------------------------------------------------------------
// Running and the oracle
// ---------------------------------------------------------------------------------------------

fn run(case: &Case, mode: OutputMode, counting: Counting, workers: usize) -> Run {
    let rows: Arc<Mutex<Vec<Row>>> = Arc::default();
    let lates: Arc<Mutex<Vec<LateRecord<Rec>>>> = Arc::default();
    let source = MemorySource::new(case.parts.clone());
    let (windowing, batch, delay_ms) = (case.windowing, case.batch, case.delay_ms);
    let (rows_in, lates_in) = (rows.clone(), lates.clone());
    let started = Query::new("distinct-oracle").workers(workers).start(move |scope, ctx| {
        let events = memory_events(scope, ctx, &source, |r: &Rec| r.ts, delay_ms, batch);
        let user = |r: &Rec| r.user.clone();
        let out = match counting {
            Counting::Exact => {
                events.window_aggregate(ctx, OP, windowing, mode, |r: &Rec| r.key, CountDistinct::new(user))?
            }
            Counting::Approx { precision } => {
                let approx = ApproxCountDistinct::new(user).precision(precision)?;
                events.window_aggregate(ctx, OP, windowing, mode, |r: &Rec| r.key, approx)?
            }
        };
        let rows = rows_in.clone();
        out.results.inspect_time(move |t, r| {
            rows.lock().unwrap().push((t.as_millis(), (r.window_start, r.window_end, r.key), r.value))
        });
        let lates = lates_in.clone();
        out.late.inspect(move |l| lates.lock().unwrap().push(l.clone()));
        Ok(())
    });
    let handle = run_to_end(started, &case.label, 120);
    let OperatorCounts { late_rows, rows_total, .. } = OperatorCounts::of(&handle, OP);
    let rows = std::mem::take(&mut *rows.lock().unwrap());
    let late = std::mem::take(&mut *lates.lock().unwrap());
    Run { rows, late, late_rows, rows_total }
}

/// Every window `[start, end)` containing `ts`, from the definition.
fn windows_of(windowing: &Windowing, ts: u64) -> Vec<(i64, i64)> {
    let t = ts as i64;
    let (size, slide) = match *windowing {
        Windowing::Tumbling { size, .. } => (size.as_millis() as i64, size.as_millis() as i64),
        Windowing::Sliding { size, slide, .. } => (size.as_millis() as i64, slide.as_millis() as i64),
        Windowing::Global => return vec![(i64::MIN, i64::MAX)],
    };
    // Every multiple of `slide` in (t - size, t].
    let lowest = t - size + 1;
    let first = lowest + (slide - lowest.rem_euclid(slide)) % slide;
    (first..=t).step_by(slide as usize).map(|s| (s, s + size)).collect()
}

fn oracle(case: &Case) -> Expected {
    let mut groups: BTreeMap<Group, BTreeSet<String>> = BTreeMap::new();
    let mut late = BTreeMap::new();
    let mut repeats = 0;
    for part in &case.parts {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            match clock.arrive(rec.ts) {
                Arrival::Late { watermark } => {
                    late.insert(rec.id, (rec.ts, watermark));
                }
                Arrival::OnTime { .. } => {
                    for (start, end) in windows_of(&case.windowing, rec.ts) {
                        if !groups.entry((start, end, rec.key)).or_default().insert(rec.user.clone()) {
                            repeats += 1;
                        }
                    }
                }
            }
        }
    }
    Expected { groups, late, repeats }
}

/// Checks one run against the oracle and returns its final table.
fn check(
    case: &Case,
    mode: OutputMode,
    counting: Counting,
    workers: usize,
    expected: &Expected,
) -> BTreeMap<Group, u64> {
    let label = format!("{} [{mode}, {counting:?}, {workers} workers]", case.label);
    let run = run(case, mode, counting, workers);

    // Late records: each once, with its time and the watermark it missed.
    check_late_output(&label, "record", &run.late, |r: &Rec| r.id, OP, &expected.late);
    assert_eq!(run.late_rows, expected.late.len() as u64, "{label}: late_rows metric");

    // State: evicted after the input ends, except in complete mode.
    let want_rows = if mode == OutputMode::Complete { expected.groups.len() as i64 } else { 0 };
    assert_eq!(run.rows_total, want_rows, "{label}: rows_total after the bounded run");

    let table = final_table(&label, mode, &run.rows);
    let groups: BTreeSet<&Group> = expected.groups.keys().collect();
    assert_eq!(table.keys().collect::<BTreeSet<_>>(), groups, "{label}: the groups differ from the oracle's");
    for (group, values) in &expected.groups {
        let (want, got) = (values.len() as u64, table[group]);
        match counting {
            Counting::Exact => assert_eq!(got, want, "{label}: {group:?}"),
            Counting::Approx { precision } => {
                let sigma = 1.04 / ((1u64 << precision) as f64).sqrt();
                let allowed = if want < 100 { 1.0 } else { (4.0 * sigma * want as f64).max(1.0) };
                assert!(
                    (got as f64 - want as f64).abs() <= allowed,
                    "{label}: {group:?}: estimate {got} for {want} distinct values (allowed ±{allowed:.0})"
                );
            }
        }
    }
    table
}

/// Runs with 1 and 3 workers and checks both; the two tables must agree exactly (approximate
/// ones too: merging sketches in any order gives the same sketch).
fn check_workers(case: &Case, mode: OutputMode, counting: Counting, expected: &Expected) {
    let one = check(case, mode, counting, 1, expected);
    let three = check(case, mode, counting, 3, expected);
    assert_eq!(one, three, "{} [{mode}, {counting:?}]: 1 and 3 workers disagree", case.label);
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/// `partitions` partitions of up to `len` records; time moves forward with random steps of up to
/// `step` ms, a third of the records jump back by up to 3 s (some late, some out of order but on
/// time); users are drawn from `users` values.
fn random_case(
    name: &str,
    seed: u64,
    len: usize,
    step: u64,
    users: u64,
    windowing: fn(&mut SmallRng) -> Windowing,
) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let windowing = windowing(&mut rng);
    let delay_ms = [0, 500, 2_000][rng.random_range(0..3)];
    let batch = rng.random_range(1..60);
    let partitions = rng.random_range(1..=4);
    let mut id = 0;
    let parts = (0..partitions)
        .map(|_| {
            let mut cursor = BASE + rng.random_range(0..5_000);
            (0..rng.random_range(0..=len))
                .map(|_| {
                    let ts = jittered_time(&mut rng, &mut cursor, step);
                    id += 1;
                    let user = format!("user-{}", rng.random_range(0..users));
                    Rec { id, ts, key: rng.random_range(0..3), user }
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

fn tumbling(rng: &mut SmallRng) -> Windowing {
    Windowing::tumbling(Duration::from_millis([1_000, 2_000, 5_000][rng.random_range(0..3)]))
}

fn sliding(rng: &mut SmallRng) -> Windowing {
    let (size, slide) = [(2_000, 1_000), (5_000, 1_000), (3_000, 2_000), (2_500, 1_000)][rng.random_range(0..4)];
    Windowing::sliding(Duration::from_millis(size), Duration::from_millis(slide))
}

fn property(
    name: &str,
    seed_base: u64,
    counting: Counting,
    mode: OutputMode,
    windowing: fn(&mut SmallRng) -> Windowing,
) {
    let (mut late, mut repeats, mut groups) = (0, 0, 0);
    for seed in seed_base..seed_base + SEEDS {
        // Few users, so that values repeat within groups (distinct < records).
        let case = random_case(name, seed, 300, 400, 40, windowing);
        let expected = oracle(&case);
        late += expected.late.len();
        groups += expected.groups.len();
        repeats += expected.repeats;
        check_workers(&case, mode, counting, &expected);
    }
    assert!(late > 0, "{name}: no late record was generated");
    assert!(groups > 0, "{name}: no group was generated");
    assert!(repeats > 0, "{name}: no value repeated within a group, so distinctness was not tested");
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

const MODES: [OutputMode; 3] = [OutputMode::Append, OutputMode::Update, OutputMode::Complete];

#[test]
fn exact_distinct_tumbling_matches_oracle() {
    for (i, mode) in MODES.into_iter().enumerate() {
        property(&format!("exact/{mode}/tumbling"), 100 + 20 * i as u64, Counting::Exact, mode, tumbling);
    }
}

#[test]
fn exact_distinct_sliding_matches_oracle() {
    for (i, mode) in MODES.into_iter().enumerate() {
        property(&format!("exact/{mode}/sliding"), 200 + 20 * i as u64, Counting::Exact, mode, sliding);
    }
}

/// Small groups (< 100 distinct values): the sketch is exact or off by one.
#[test]
fn approx_distinct_matches_oracle_on_small_groups() {
    let approx = Counting::Approx { precision: 9 };
    for (i, mode) in MODES.into_iter().enumerate() {
        property(&format!("approx/{mode}/tumbling"), 300 + 20 * i as u64, approx, mode, tumbling);
        property(&format!("approx/{mode}/sliding"), 400 + 20 * i as u64, approx, mode, sliding);
    }
}

/// Large groups (thousands of distinct values, dense sketches): within 4 standard errors of the
/// exact count, identical with 1 and 3 workers; the exact count on the same input is exact.
#[test]
fn approx_distinct_on_large_groups_is_within_the_error_bound() {
    let mut largest = 0;
    for seed in 0..4 {
        let windowing: fn(&mut SmallRng) -> Windowing = if seed % 2 == 0 { tumbling } else { sliding };
        // ~15 records per ms of event time in each partition, users from a million.
        let case = random_case("approx/large", 500 + seed, 12_000, 2, 1_000_000, windowing);
        let expected = oracle(&case);
        largest = largest.max(expected.groups.values().map(BTreeSet::len).max().unwrap_or(0));
        for precision in [9, 12] {
            check_workers(&case, OutputMode::Append, Counting::Approx { precision }, &expected);
        }
        check_workers(&case, OutputMode::Update, Counting::Exact, &expected);
    }
    assert!(largest > 2_000, "the groups stayed small ({largest}), so dense sketches were not tested");
}

/// Without a window (update mode): one group per key over the whole stream.
#[test]
fn global_distinct_counts_per_key() {
    for seed in 0..5 {
        let case = random_case("global", 600 + seed, 300, 400, 500, |_| Windowing::global());
        let expected = oracle(&case);
        check_workers(&case, OutputMode::Update, Counting::Exact, &expected);
        check_workers(&case, OutputMode::Complete, Counting::Approx { precision: 14 }, &expected);
    }
}

/// A hand-checked example. Tumbling 10 s, delay 5 s, one partition, key 0:
///
/// | ts     | user | watermark before | verdict        |
/// |--------|------|------------------|----------------|
/// | 1000   | a    | 0                | on time        |
/// | 2000   | b    | 0                | on time        |
/// | 3000   | a    | 0                | on time (dup)  |
/// | 12000  | a    | 0                | on time        |
/// | 4000   | c    | 7000             | LATE           |
/// | 9000   | c    | 7000             | on time        |
///
/// [0, 10000): {a, b, c} → 3; [10000, 20000): {a} → 1.
#[test]
fn hand_checked_example() {
    let input = [(1_000, "a"), (2_000, "b"), (3_000, "a"), (12_000, "a"), (4_000, "c"), (9_000, "c")];
    let parts = vec![input
        .iter()
        .enumerate()
        .map(|(i, &(ts, user))| Rec { id: i as u64, ts: BASE / 10_000 * 10_000 + ts, key: 0, user: user.into() })
        .collect()];
    let case = Case {
        label: "hand-checked".into(),
        parts,
        delay_ms: 5_000,
        windowing: Windowing::tumbling(Duration::from_secs(10)),
        batch: 2,
    };
    let base = (BASE / 10_000 * 10_000) as i64;
    let want: BTreeMap<Group, u64> = [((base, base + 10_000, 0), 3), ((base + 10_000, base + 20_000, 0), 1)].into();
    let expected = oracle(&case);
    assert_eq!(expected.late.keys().copied().collect::<Vec<_>>(), vec![4]);
    for counting in [Counting::Exact, Counting::Approx { precision: 4 }, Counting::Approx { precision: 18 }] {
        for mode in MODES {
            for workers in [1, 3] {
                assert_eq!(check(&case, mode, counting, workers, &expected), want, "{counting:?} {mode}");
            }
        }
    }
}
