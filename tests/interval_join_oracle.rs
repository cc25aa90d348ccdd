//! Oracle property tests for the interval join (`join_interval`, `join_unbounded`).
//!
//! Random, seeded inputs on two memory sources (several partitions each, out of order, with late
//! records on both sides) run through `Query` with 1 and 3 workers; the collected output is compared
//! exactly, as a multiset, with a nested-loop batch computation written from the specification:
//!
//! * lateness is decided per source partition: record `i` of a partition is late iff
//!   `ts[i] < max(ts[0..i]) - delay`; late records join nothing, are counted in the join's
//!   `late_rows`, and appear once each on `late_left` / `late_right`, naming the join, with their
//!   event time, the watermark they missed and the lateness;
//! * `l` and `r` match iff `l.key == r.key` and `l.ts + lower <= r.ts <= l.ts + upper`;
//! * inner: every matching pair, at `max(l.ts, r.ts)`; left/right/full outer: the pairs plus each
//!   unmatched row of the outer side(s) at its own time; left semi: each left row with a match,
//!   once, at its time; left anti: each left row without a match, at its time;
//! * every output row's event time is at or after the timely time it is emitted at;
//! * an unmatched (padded or anti) row is emitted only once the other input's watermark has passed
//!   the row's last possible match (`t_left + upper` for left rows, `t_right - lower` for right
//!   rows), checked against the other source's watermark when the row reaches the output;
//! * the state gauges (`numRowsTotal`, bytes) return to 0 once the inputs end, and stay bounded
//!   while a long stream flows.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir::prelude::*;
use weir::runtime::metrics::SourceMetrics;
use weir::runtime::source::event_source_with_batch;
use weir::runtime::timely::dataflow::operators::Inspect;

mod support;
use support::{check_late_output, run_to_end, Arrival, OperatorCounts, PartitionClock};

/// A realistic base time (2023-11-14T22:13:20Z).
const BASE: u64 = 1_700_000_000_000;
/// The join operator's name in every dataflow.
const OP: &str = "join";
/// Seeds per join type.
const SEEDS: u64 = 30;

/// An input record; `id` is unique over both sides of a case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
struct Rec {
    id: u64,
    ts: u64,
    key: u32,
}

/// One output row: (left id, right id, event time).
type Row = (Option<u64>, Option<u64>, u64);

#[derive(Clone, Debug)]
struct Case {
    label: String,
    left: Vec<Vec<Rec>>,
    right: Vec<Vec<Rec>>,
    left_delay: u64,
    right_delay: u64,
    /// `None`: `join_unbounded`.
    bounds: Option<(i64, i64)>,
    batch: usize,
}

/// What a run produced.
#[derive(Default)]
struct Run {
    rows: Vec<Row>,
    late_left: Vec<LateRecord<Rec>>,
    late_right: Vec<LateRecord<Rec>>,
    /// Rule violations seen while the query ran.
    violations: Vec<String>,
    late_rows: u64,
    rows_total: i64,
    memory_bytes: i64,
    rows_updated: u64,
    rows_removed: u64,
    /// The largest `numRowsTotal` seen while input flowed.
    peak_rows_total: i64,
    /// Whether the RocksDB store directory of the join existed while input flowed.
    saw_store_dir: bool,
}

#[derive(Default)]
struct Shared {
    rows: Vec<Row>,
    late_left: Vec<LateRecord<Rec>>,
    late_right: Vec<LateRecord<Rec>>,
    violations: Vec<String>,
    peak_rows_total: i64,
    saw_store_dir: bool,
}

/// Whether the other side's watermark, as its source reports it now, has passed `limit`
/// (`None`: that source has finished).
/// Whether `source`'s watermark has passed `limit` (a finished source has passed everything),
/// read in one look at its instances' watermarks; also answers what was seen, for the message.
fn passed(source: &SourceMetrics, limit: i128) -> (bool, Vec<Option<u64>>) {
    let marks = source.watermarks.lock().unwrap();
    let seen: Vec<Option<u64>> = marks.values().map(|w| w.map(|w| w.as_millis())).collect();
    let finished = !marks.is_empty() && marks.values().all(Option::is_none);
    let watermark = marks.values().flatten().min();
    (finished || watermark.is_some_and(|w| w.as_millis() as i128 > limit), seen)
}

fn run(case: &Case, join_type: JoinType, workers: usize, backend: StateBackend) -> Run {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (left, right) =
        (MemorySource::new(case.left.clone()).named("left"), MemorySource::new(case.right.clone()).named("right"));
    let (left_delay, right_delay, bounds, batch) = (case.left_delay, case.right_delay, case.bounds, case.batch);
    let into = shared.clone();
    let started =
        Query::new("interval-join-oracle").workers(workers).state_backend(backend).start(move |scope, ctx| {
            let time = |r: &Rec| Some(EventTime::from_millis(r.ts));
            let lefts = event_source_with_batch(
                scope,
                ctx,
                left.clone(),
                time,
                WatermarkOptions::with_delay(Duration::from_millis(left_delay)),
                batch,
            );
            let rights = event_source_with_batch(
                scope,
                ctx,
                right.clone(),
                time,
                WatermarkOptions::with_delay(Duration::from_millis(right_delay)),
                batch,
            );
            // Sample the state gauge whenever a batch of left records enters the join.
            // With RocksDB, also look for the left side's store directory.
            let (operator, sink) = (ctx.metrics().operator(OP), into.clone());
            let store_dir = match ctx.state_backend() {
                StateBackend::RocksDb(options) => Some(options.dir.join(ctx.id()).join(format!("{OP}-left"))),
                StateBackend::Memory => None,
            };
            let lefts = EventStream {
                records: lefts.records.inspect_batch(move |_, _| {
                    let mut shared = sink.lock().unwrap();
                    shared.peak_rows_total = shared.peak_rows_total.max(operator.rows_total.load(Ordering::SeqCst));
                    shared.saw_store_dir |= store_dir.as_ref().is_some_and(|dir| dir.exists());
                }),
                late: lefts.late,
            };
            let key = |r: &Rec| r.key;
            let joined = match bounds {
                Some((lower, upper)) => lefts.join_interval(
                    ctx,
                    OP,
                    rights,
                    key,
                    key,
                    TimeOffset::from_millis(lower),
                    TimeOffset::from_millis(upper),
                    join_type,
                )?,
                None => lefts.join_unbounded(ctx, OP, rights, key, key, join_type)?,
            };
            let (lower, upper) = bounds.map_or((i128::MIN / 4, i128::MAX / 4), |(l, u)| (l as i128, u as i128));
            let (left_source, right_source) = (ctx.metrics().source("left"), ctx.metrics().source("right"));
            let sink = into.clone();
            joined.rows.records.inspect_time(move |time, event| {
                let row = (
                    event.data.left.as_ref().map(|l| l.id),
                    event.data.right.as_ref().map(|r| r.id),
                    event.time.as_millis(),
                );
                let mut shared = sink.lock().unwrap();
                if event.time < *time {
                    shared.violations.push(format!("{row:?} emitted at timely time {time:?}, after its event time"));
                }
                // An unmatched row is emitted only once the other input can no longer match it.
                let unmatched = match (&event.data.left, &event.data.right) {
                    (Some(l), None) if join_type != JoinType::LeftSemi => {
                        Some(("right", &right_source, l.ts as i128 + upper))
                    }
                    (None, Some(r)) => Some(("left", &left_source, r.ts as i128 - lower)),
                    _ => None,
                };
                if let Some((other, source, limit)) = unmatched {
                    let (passed, seen) = passed(source, limit);
                    if !passed {
                        shared.violations.push(format!(
                            "{row:?} emitted while the {other} watermark had not passed {limit} (its instances stood at {seen:?})"
                        ));
                    }
                }
                shared.rows.push(row);
            });
            let sink = into.clone();
            joined.late_left.inspect(move |late| sink.lock().unwrap().late_left.push(late.clone()));
            let sink = into.clone();
            joined.late_right.inspect(move |late| sink.lock().unwrap().late_right.push(late.clone()));
            let sink = into.clone();
            joined.rows.late.inspect(move |late| {
                sink.lock().unwrap().violations.push(format!("a joined row on rows.late: {late:?}"));
            });
            Ok(())
        });
    let handle = run_to_end(started, &case.label, 120);
    let metrics = OperatorCounts::of(&handle, OP);
    let mut shared = shared.lock().unwrap();
    Run {
        rows: std::mem::take(&mut shared.rows),
        late_left: std::mem::take(&mut shared.late_left),
        late_right: std::mem::take(&mut shared.late_right),
        violations: std::mem::take(&mut shared.violations),
        peak_rows_total: shared.peak_rows_total,
        saw_store_dir: shared.saw_store_dir,
        late_rows: metrics.late_rows,
        rows_total: metrics.rows_total,
        memory_bytes: metrics.memory_bytes,
        rows_updated: metrics.rows_updated,
        rows_removed: metrics.rows_removed,
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/// Splits partitions into on-time records and late ones (id → (event time, watermark)).
fn lateness(parts: &[Vec<Rec>], delay: u64) -> (Vec<Rec>, BTreeMap<u64, (u64, u64)>) {
    let (mut on_time, mut late) = (Vec::new(), BTreeMap::new());
    for part in parts {
        let mut clock = PartitionClock::new(delay);
        for rec in part {
            match clock.arrive(rec.ts) {
                Arrival::Late { watermark } => {
                    late.insert(rec.id, (rec.ts, watermark));
                }
                Arrival::OnTime { .. } => on_time.push(rec.clone()),
            }
        }
    }
    (on_time, late)
}

struct Expected {
    rows: Vec<Row>,
    late_left: BTreeMap<u64, (u64, u64)>,
    late_right: BTreeMap<u64, (u64, u64)>,
    pairs: usize,
}

fn oracle(case: &Case, join_type: JoinType) -> Expected {
    let (lefts, late_left) = lateness(&case.left, case.left_delay);
    let (rights, late_right) = lateness(&case.right, case.right_delay);
    let matches = |l: &Rec, r: &Rec| {
        l.key == r.key
            && case.bounds.is_none_or(|(lower, upper)| {
                let (lt, rt) = (l.ts as i128, r.ts as i128);
                lt + lower as i128 <= rt && rt <= lt + upper as i128
            })
    };
    let mut rows = Vec::new();
    let mut pairs = 0;
    let mut right_matched = vec![false; rights.len()];
    for l in &lefts {
        let mut matched = false;
        for (j, r) in rights.iter().enumerate() {
            if matches(l, r) {
                matched = true;
                right_matched[j] = true;
                pairs += 1;
                if join_type.emits_pairs() {
                    rows.push((Some(l.id), Some(r.id), l.ts.max(r.ts)));
                }
            }
        }
        let emit_left = match join_type {
            JoinType::LeftOuter | JoinType::FullOuter | JoinType::LeftAnti => !matched,
            JoinType::LeftSemi => matched,
            _ => false,
        };
        if emit_left {
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
    Expected { rows, late_left, late_right, pairs }
}

// ---------------------------------------------------------------------------------------------
// Checking a run
// ---------------------------------------------------------------------------------------------

fn describe_difference(got: &[Row], want: &[Row]) -> String {
    let count = |rows: &[Row]| {
        let mut map: BTreeMap<Row, i64> = BTreeMap::new();
        for row in rows {
            *map.entry(*row).or_default() += 1;
        }
        map
    };
    let (got, want) = (count(got), count(want));
    let mut lines = Vec::new();
    for (row, n) in &want {
        let g = got.get(row).copied().unwrap_or(0);
        if g != *n {
            lines.push(format!("  {row:?}: expected {n}, got {g}"));
        }
    }
    for (row, g) in &got {
        if !want.contains_key(row) {
            lines.push(format!("  {row:?}: unexpected (x{g})"));
        }
    }
    let shown = lines.len().min(15);
    let mut text = lines[..shown].join("\n");
    if lines.len() > shown {
        text.push_str(&format!("\n  … and {} more", lines.len() - shown));
    }
    text
}

fn check(case: &Case, join_type: JoinType, workers: usize, backend: StateBackend, expected: &Expected) -> Run {
    let label = format!("{} [{join_type}, {workers} worker(s), {}]", case.label, backend.describe());
    let run = run(case, join_type, workers, backend);
    assert!(run.violations.is_empty(), "{label}: {}", run.violations.join("\n  "));
    let mut rows = run.rows.clone();
    rows.sort();
    assert!(
        rows == expected.rows,
        "{label}: output differs from the oracle:\n{}",
        describe_difference(&rows, &expected.rows)
    );
    check_late_output(&label, "left record", &run.late_left, |r: &Rec| r.id, OP, &expected.late_left);
    check_late_output(&label, "right record", &run.late_right, |r: &Rec| r.id, OP, &expected.late_right);
    assert_eq!(run.late_rows, (expected.late_left.len() + expected.late_right.len()) as u64, "{label}: late_rows");
    assert_eq!(run.rows_total, 0, "{label}: numRowsTotal after the inputs ended");
    assert_eq!(run.memory_bytes, 0, "{label}: memoryUsedBytes after the inputs ended");
    assert_eq!(run.rows_updated, run.rows_removed, "{label}: every buffered row is removed once");
    run
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/// 1..=3 partitions of 0..=150 records per side; times on a 50 ms grid (so that `lower == upper`
/// still finds matches) move forward with random steps, and about a third jump back by up to 3 s.
fn random_case(seed: u64, unbounded: bool) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let keys = rng.random_range(1..=6);
    let mut id = 0;
    let start = BASE + rng.random_range(0..100) * 50;
    let mut side = |rng: &mut SmallRng, first_id: u64| {
        let partitions = rng.random_range(1..=3);
        (0..partitions)
            .map(|_| {
                let len = rng.random_range(0..=150);
                let mut cursor = start + rng.random_range(0..40) * 50;
                (0..len)
                    .map(|_| {
                        cursor += rng.random_range(0..8) * 50;
                        let ts = if rng.random_bool(0.35) { cursor - rng.random_range(0..60) * 50 } else { cursor };
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
    let (left_delay, right_delay) = (delays[rng.random_range(0..3)], delays[rng.random_range(0..3)]);
    let bounds = if unbounded {
        None
    } else {
        let lower: i64 = [-3_000, -1_000, -250, 0, 0, 300, 1_000][rng.random_range(0..7)];
        let width: i64 = [0, 0, 100, 1_000, 2_500, 6_000][rng.random_range(0..6)];
        Some((lower, lower + width))
    };
    let batch = rng.random_range(1..40);
    let label = format!(
        "seed={seed} (bounds={bounds:?}, delays={left_delay}/{right_delay}ms, batch={batch}, partitions={}/{}, keys={keys})",
        left.len(),
        right.len()
    );
    Case { label, left, right, left_delay, right_delay, bounds, batch }
}

/// Runs `SEEDS` random cases of `join_type` with 1 and 3 workers and makes sure the inputs were not
/// trivial (late records on both sides, matches and misses).
fn property(join_type: JoinType, seed_base: u64, unbounded: bool) {
    let (mut late_left, mut late_right, mut pairs, mut rows) = (0, 0, 0, 0);
    for seed in seed_base..seed_base + SEEDS {
        let case = random_case(seed, unbounded);
        let expected = oracle(&case, join_type);
        late_left += expected.late_left.len();
        late_right += expected.late_right.len();
        pairs += expected.pairs;
        rows += expected.rows.len();
        for workers in [1, 3] {
            check(&case, join_type, workers, StateBackend::Memory, &expected);
        }
    }
    assert!(late_left > 0 && late_right > 0, "{join_type}: too few late records ({late_left}/{late_right})");
    assert!(pairs > 0 && rows > 0, "{join_type}: no match or no output was generated");
}

#[test]
fn inner_matches_oracle() {
    property(JoinType::Inner, 1_000, false);
}

#[test]
fn left_outer_matches_oracle() {
    property(JoinType::LeftOuter, 2_000, false);
}

#[test]
fn right_outer_matches_oracle() {
    property(JoinType::RightOuter, 3_000, false);
}

#[test]
fn full_outer_matches_oracle() {
    property(JoinType::FullOuter, 4_000, false);
}

#[test]
fn left_semi_matches_oracle() {
    property(JoinType::LeftSemi, 5_000, false);
}

#[test]
fn left_anti_matches_oracle() {
    property(JoinType::LeftAnti, 6_000, false);
}

/// `join_unbounded` joins on keys alone; its state is still released when the inputs end.
#[test]
fn unbounded_join_matches_oracle() {
    for (i, join_type) in JoinType::ALL.into_iter().enumerate() {
        let seed = 7_000 + i as u64 * 10;
        for seed in seed..seed + 3 {
            let case = random_case(seed, true);
            let expected = oracle(&case, join_type);
            for workers in [1, 3] {
                check(&case, join_type, workers, StateBackend::Memory, &expected);
            }
        }
    }
}

/// A small input worked by hand. Bounds [-1 s, +2 s]; delay 0; keys a = 0, b = 1.
///
/// | side  | id | ts     | key | note                                                        |
/// |-------|----|--------|-----|-------------------------------------------------------------|
/// | left  | 1  | 10000  | a   | matches r11 (Δ = -1000) and r12 (Δ = +2000)                 |
/// | left  | 2  | 10000  | b   | r13 is Δ = +2001: no match                                  |
/// | left  | 3  | 20000  | a   | r14 is Δ = +5000: no match                                  |
/// | right | 11 | 9000   | a   |                                                             |
/// | right | 12 | 12000  | a   |                                                             |
/// | right | 13 | 12001  | b   |                                                             |
/// | right | 14 | 25000  | a   |                                                             |
/// | right | 15 | 5000   | a   | LATE: the right watermark is 25000 (lateness 20000)         |
#[test]
fn hand_checked_example() {
    let rec = |id, ts, key| Rec { id, ts, key };
    let left = vec![vec![rec(1, 10_000, 0), rec(2, 10_000, 1), rec(3, 20_000, 0)]];
    let right =
        vec![vec![rec(11, 9_000, 0), rec(12, 12_000, 0), rec(13, 12_001, 1), rec(14, 25_000, 0), rec(15, 5_000, 0)]];
    let pairs: Vec<Row> = vec![(Some(1), Some(11), 10_000), (Some(1), Some(12), 12_000)];
    let unmatched_left: Vec<Row> = vec![(Some(2), None, 10_000), (Some(3), None, 20_000)];
    let unmatched_right: Vec<Row> = vec![(None, Some(13), 12_001), (None, Some(14), 25_000)];
    let cat = |parts: &[&[Row]]| {
        let mut rows: Vec<Row> = parts.concat();
        rows.sort();
        rows
    };
    let want: [(JoinType, Vec<Row>); 6] = [
        (JoinType::Inner, cat(&[&pairs])),
        (JoinType::LeftOuter, cat(&[&pairs, &unmatched_left])),
        (JoinType::RightOuter, cat(&[&pairs, &unmatched_right])),
        (JoinType::FullOuter, cat(&[&pairs, &unmatched_left, &unmatched_right])),
        (JoinType::LeftSemi, vec![(Some(1), None, 10_000)]),
        (JoinType::LeftAnti, cat(&[&unmatched_left])),
    ];
    for batch in [1, 2, 10] {
        let case = Case {
            label: format!("hand-checked (batch={batch})"),
            left: left.clone(),
            right: right.clone(),
            left_delay: 0,
            right_delay: 0,
            bounds: Some((-1_000, 2_000)),
            batch,
        };
        for (join_type, rows) in &want {
            let expected = oracle(&case, *join_type);
            assert_eq!(&expected.rows, rows, "oracle vs hand computation for {join_type}");
            assert_eq!(expected.late_right, BTreeMap::from([(15, (5_000, 25_000))]));
            assert!(expected.late_left.is_empty());
            for workers in [1, 3] {
                check(&case, *join_type, workers, StateBackend::Memory, &expected);
            }
        }
    }
}

/// A long in-order stream on both sides: the buffered rows stay bounded by what the bounds and
/// delays keep alive (a few hundred), far below the 2 × 20,000 rows that flow, and fall to 0.
#[test]
fn state_stays_bounded_and_is_evicted() {
    let n = 20_000u64;
    let side = |first_id: u64, offset: u64| {
        vec![(0..n).map(|i| Rec { id: first_id + i, ts: BASE + offset + i * 10, key: (i % 7) as u32 }).collect()]
    };
    for join_type in [JoinType::Inner, JoinType::FullOuter, JoinType::LeftAnti] {
        let case = Case {
            label: "long stream".into(),
            left: side(0, 0),
            right: side(1_000_000, 5),
            left_delay: 200,
            right_delay: 200,
            bounds: Some((-500, 1_000)),
            batch: 100,
        };
        let expected = oracle(&case, join_type);
        assert!(expected.pairs > 0);
        let run = check(&case, join_type, 1, StateBackend::Memory, &expected);
        // Rows live about (upper - lower + delay) / 10 ms per side, plus a batch or two.
        assert!(
            run.peak_rows_total > 0 && run.peak_rows_total < 1_500,
            "{join_type}: peak numRowsTotal {} for a stream of {} rows",
            run.peak_rows_total,
            2 * n
        );
        assert!(run.rows_updated >= n, "{join_type}: rows were buffered ({})", run.rows_updated);
    }
}

/// `lower > upper` is rejected when the dataflow is built, with a message saying why.
#[test]
fn lower_after_upper_fails_at_build_time() {
    let result = Query::new("bad-bounds").workers(2).start(|scope, ctx| {
        let source = || MemorySource::new(vec![vec![Rec { id: 0, ts: BASE, key: 0 }]]);
        let time = |r: &Rec| Some(EventTime::from_millis(r.ts));
        let left = event_source_with_batch(scope, ctx, source().named("l"), time, WatermarkOptions::default(), 10);
        let right = event_source_with_batch(scope, ctx, source().named("r"), time, WatermarkOptions::default(), 10);
        left.join_interval(
            ctx,
            OP,
            right,
            |r: &Rec| r.key,
            |r: &Rec| r.key,
            TimeOffset::from_millis(10),
            TimeOffset::from_millis(-10),
            JoinType::Inner,
        )?;
        Ok(())
    });
    let error = result.err().expect("lower > upper must not build").to_string();
    assert!(error.contains("lower bound") && error.contains("upper bound"), "{error}");
}

/// The same joins with the state in RocksDB (its store directory seen while the query ran).
#[test]
fn rocksdb_backend_matches_oracle() {
    let dir = std::env::temp_dir().join(format!("weir-interval-join-rocksdb-{}", std::process::id()));
    for (i, join_type) in JoinType::ALL.into_iter().enumerate() {
        let seed = 9_000 + i as u64;
        let case = random_case(seed, false);
        let expected = oracle(&case, join_type);
        for workers in [1, 3] {
            let run = check(&case, join_type, workers, StateBackend::rocksdb(&dir), &expected);
            assert!(run.saw_store_dir, "{join_type}: the join's state was not in RocksDB under {}", dir.display());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records stamped after their event time (here by hand, as an upstream stage that delays batches
/// would) are late for the join: counted, routed to their side's late output with the stamp as the
/// watermark, and joined with nothing; the on-time records beside them still join.
#[test]
fn records_behind_their_batch_stamp_are_late_for_the_join() {
    use weir::runtime::timely::dataflow::operators::{Input, ToStream};
    use weir::runtime::timely::dataflow::InputHandleVec as InputHandle;

    type Collected = Arc<Mutex<(Vec<Row>, Vec<LateRecord<Rec>>, Vec<LateRecord<Rec>>)>>;
    let collected: Collected = Arc::default();
    let into = collected.clone();
    let ctx = QueryContext::ephemeral("late-at-join");
    let metrics = ctx.metrics().operator(OP);
    weir::runtime::timely::execute_directly(move |worker| {
        let mut left_input = InputHandle::<EventTime, Event<Rec>>::new();
        let mut right_input = InputHandle::<EventTime, Event<Rec>>::new();
        worker.dataflow::<EventTime, _, _>(|scope| {
            let none = || Vec::<LateRecord<Rec>>::new().to_stream(scope).container::<Vec<_>>();
            let left = EventStream { records: scope.input_from(&mut left_input), late: none() };
            let right = EventStream { records: scope.input_from(&mut right_input), late: none() };
            let joined = left
                .join_interval(
                    &ctx,
                    OP,
                    right,
                    |r: &Rec| r.key,
                    |r: &Rec| r.key,
                    TimeOffset::ZERO,
                    TimeOffset::from_millis(10_000),
                    JoinType::FullOuter,
                )
                .unwrap();
            let sink = into.clone();
            joined.rows.records.inspect(move |e| {
                let row = (e.data.left.as_ref().map(|l| l.id), e.data.right.as_ref().map(|r| r.id), e.time.as_millis());
                sink.lock().unwrap().0.push(row);
            });
            let sink = into.clone();
            joined.late_left.inspect(move |l| sink.lock().unwrap().1.push(l.clone()));
            let sink = into.clone();
            joined.late_right.inspect(move |l| sink.lock().unwrap().2.push(l.clone()));
        });
        let event = |id, ts, key| Event::new(EventTime::from_millis(ts), Rec { id, ts, key });
        left_input.send(event(1, 1_000, 0));
        left_input.advance_to(EventTime::from_millis(6_000));
        right_input.advance_to(EventTime::from_millis(5_000));
        // Stamped 5000 / 6000: r11 (4000) and l3 (5500) are behind their stamps.
        right_input.send(event(11, 4_000, 0));
        right_input.send(event(12, 5_000, 0));
        left_input.send(event(2, 6_000, 0));
        left_input.send(event(3, 5_500, 0));
    });
    let (mut rows, late_left, late_right) = std::mem::take(&mut *collected.lock().unwrap());
    rows.sort();
    // l1 (1000) matches r12 (5000); l2 (6000) matches nothing (r12 is before it); the late r11
    // and l3 join nothing and are not padded either.
    assert_eq!(rows, vec![(Some(1), Some(12), 5_000), (Some(2), None, 6_000)]);
    let describe =
        |l: &LateRecord<Rec>| (l.record.id, l.event_time.as_millis(), l.watermark.as_millis(), l.lateness_ms);
    assert_eq!(late_right.iter().map(describe).collect::<Vec<_>>(), vec![(11, 4_000, 5_000, 1_000)]);
    assert_eq!(late_left.iter().map(describe).collect::<Vec<_>>(), vec![(3, 5_500, 6_000, 500)]);
    assert!(late_left.iter().chain(&late_right).all(|l| l.operator == OP));
    assert_eq!(metrics.late_rows.load(Ordering::SeqCst), 2);
    assert_eq!(metrics.rows_total.load(Ordering::SeqCst), 0);
}
