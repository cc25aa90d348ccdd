//! Oracle tests for the stream-static (lookup) join.
//!
//! Random, seeded streams (several partitions, out of order, with records late at their source)
//! are joined with random tables (duplicate rows per key, keys missing from either side) on 1 and
//! 3 workers, with every join type. The oracle is a nested loop over the input: for each record,
//! the table rows with an equal key. The join is stateless for the stream, so late records are
//! joined too and stay on the late side (with their source's lateness). A second test reloads a
//! table while a throttled stream runs and checks that records switch from the old version to
//! the new one, never back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir::prelude::*;
use weir_runtime::source::event_source_with_batch;
use weir_runtime::timely::dataflow::operators::Inspect;

mod support;
use support::{memory_events, run_to_end, Arrival, PartitionClock};

const BASE: u64 = 1_700_000_000_000;
const OP: &str = "lookup";
const TYPES: [LookupJoinType; 4] =
    [LookupJoinType::Inner, LookupJoinType::LeftOuter, LookupJoinType::LeftSemi, LookupJoinType::LeftAnti];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    id: u64,
    ts: u64,
    key: u32,
}

/// One output row: (record id, joined table row, whether it came out on the late side).
type Out = (u64, Option<String>, bool);

struct Case {
    label: String,
    parts: Vec<Vec<Rec>>,
    table: Vec<(u32, String)>,
    delay_ms: u64,
    batch: usize,
}

fn random_case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let keys = rng.random_range(1..12u32);
    let mut id = 0;
    let parts = (0..rng.random_range(1..4))
        .map(|_| {
            let mut ts = BASE;
            (0..rng.random_range(0..120))
                .map(|_| {
                    ts += rng.random_range(0..50);
                    id += 1;
                    // Some records jump back in time: some of those are late at their partition.
                    let back = if rng.random_bool(0.2) { rng.random_range(0..300) } else { 0 };
                    Rec { id, ts: ts - back, key: rng.random_range(0..keys + 3) }
                })
                .collect()
        })
        .collect();
    let table = (0..rng.random_range(0..20)).map(|row| (rng.random_range(0..keys), format!("row{row}"))).collect();
    Case {
        label: format!("seed {seed}"),
        parts,
        table,
        delay_ms: rng.random_range(0..150),
        batch: rng.random_range(1..40),
    }
}

/// The records a partition marks late: record i is late iff ts[i] < max(ts[..i]) - delay.
fn late_ids(case: &Case) -> Vec<u64> {
    let mut late = Vec::new();
    for part in &case.parts {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in part {
            if let Arrival::Late { .. } = clock.arrive(rec.ts) {
                late.push(rec.id);
            }
        }
    }
    late
}

fn oracle(case: &Case, join_type: LookupJoinType) -> Vec<Out> {
    let late = late_ids(case);
    let mut out = Vec::new();
    for rec in case.parts.iter().flatten() {
        let is_late = late.contains(&rec.id);
        let matches: Vec<&String> = case.table.iter().filter(|(k, _)| *k == rec.key).map(|(_, v)| v).collect();
        match join_type {
            LookupJoinType::Inner => out.extend(matches.iter().map(|v| (rec.id, Some((*v).clone()), is_late))),
            LookupJoinType::LeftOuter if matches.is_empty() => out.push((rec.id, None, is_late)),
            LookupJoinType::LeftOuter => out.extend(matches.iter().map(|v| (rec.id, Some((*v).clone()), is_late))),
            LookupJoinType::LeftSemi if !matches.is_empty() => out.push((rec.id, None, is_late)),
            LookupJoinType::LeftAnti if matches.is_empty() => out.push((rec.id, None, is_late)),
            _ => {}
        }
    }
    out.sort();
    out
}

fn run(case: &Case, join_type: LookupJoinType, workers: usize) -> Vec<Out> {
    let out: Arc<Mutex<Vec<Out>>> = Arc::default();
    let source = MemorySource::new(case.parts.clone());
    let table = LookupTable::from_rows("random table", case.table.clone());
    let (batch, delay_ms, into) = (case.batch, case.delay_ms, out.clone());
    let started = Query::new("lookup-oracle").workers(workers).start(move |scope, ctx| {
        let events = memory_events(scope, ctx, &source, |r: &Rec| r.ts, delay_ms, batch);
        let joined = events.lookup_join(ctx, OP, table.clone(), |r: &Rec| r.key, join_type)?;
        let on_time = into.clone();
        joined.records.inspect_time(move |stamp, e| {
            assert!(e.time >= *stamp, "a joined record is stamped after its event time");
            assert_eq!(e.time.as_millis(), e.data.0.ts, "a joined record keeps its event time");
            on_time.lock().unwrap().push((e.data.0.id, e.data.1.clone(), false));
        });
        let late = into.clone();
        joined.late.inspect(move |l| {
            assert_eq!(l.event_time.as_millis(), l.record.0.ts);
            late.lock().unwrap().push((l.record.0.id, l.record.1.clone(), true));
        });
        Ok(())
    });
    run_to_end(started, &case.label, 60);
    let mut rows = std::mem::take(&mut *out.lock().unwrap());
    rows.sort();
    rows
}

#[test]
fn lookup_joins_match_a_nested_loop_on_random_inputs() {
    let mut checked = (0, 0, 0);
    for seed in 0..24 {
        let case = random_case(seed);
        for join_type in TYPES {
            let expected = oracle(&case, join_type);
            for workers in [1, 3] {
                let actual = run(&case, join_type, workers);
                assert_eq!(
                    actual, expected,
                    "{} {join_type:?} with {workers} worker(s): the join differs from the nested loop",
                    case.label
                );
            }
            checked.0 += expected.len();
            checked.1 += expected.iter().filter(|(_, _, late)| *late).count();
            checked.2 += expected.iter().filter(|(_, v, _)| v.is_none()).count();
        }
    }
    // The random cases must exercise what they claim to: rows, late rows, and unmatched rows.
    assert!(checked.0 > 1000 && checked.1 > 20 && checked.2 > 100, "weak random cases: {checked:?}");
}

#[test]
fn an_invalid_join_type_or_refresh_interval_is_rejected() {
    let error = "sideways".parse::<LookupJoinType>().unwrap_err().to_string();
    assert!(error.contains("sideways") && error.contains("left-anti"), "{error}");
    assert_eq!("left_outer".parse::<LookupJoinType>().unwrap(), LookupJoinType::LeftOuter);

    let table = LookupTable::from_rows("t", vec![(1u32, 1u32)]).refresh_every(Duration::ZERO);
    let started = Query::new("bad-refresh").start(move |scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            MemorySource::new(vec![vec![1u32]]),
            |_| Some(EventTime::from_millis(1)),
            WatermarkOptions::default(),
            8,
        );
        events.lookup_join(ctx, OP, table.clone(), |r: &u32| *r, LookupJoinType::Inner).map(|_| ())
    });
    let error = started.err().expect("a zero refresh interval is rejected").to_string();
    assert!(error.contains("refresh interval") && error.contains("positive"), "{error}");
}

#[test]
fn a_failing_first_load_fails_the_query_with_the_loaders_message() {
    let table: LookupTable<u32, u32> =
        LookupTable::from_loader("missing.jsonl", || Err("cannot open missing.jsonl: No such file".to_string()));
    let handle = Query::new("bad-table")
        .start(move |scope, ctx| {
            let events = event_source_with_batch(
                scope,
                ctx,
                MemorySource::new(vec![vec![1u32, 2, 3]]),
                |r: &u32| Some(EventTime::from_millis(*r as u64)),
                WatermarkOptions::default(),
                8,
            );
            events.lookup_join(ctx, OP, table.clone(), |r: &u32| *r, LookupJoinType::Inner).map(|_| ())
        })
        .expect("the dataflow builds");
    let error = handle.await_termination(Some(Duration::from_secs(30))).expect_err("the query fails").to_string();
    assert!(error.contains("missing.jsonl") && error.contains("No such file"), "{error}");
}

#[test]
fn a_refreshed_table_is_seen_by_later_records_and_never_reverts() {
    // A throttled rate stream of ~3 s; the table's loader switches from version 1 to version 2
    // while it runs, and the table reloads every 50 ms.
    let switched = Arc::new(AtomicBool::new(false));
    let flag = switched.clone();
    let table = LookupTable::from_loader("versioned", move || {
        let version = if flag.load(Ordering::SeqCst) { "v2" } else { "v1" };
        Ok((0..4u64).map(|key| (key, version.to_string())).collect())
    })
    .refresh_every(Duration::from_millis(50));
    let seen: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let into = seen.clone();
    let handle = Query::new("refresh")
        .start(move |scope, ctx| {
            let events = RateSource::new(200).row_limit(600).events(scope, ctx, WatermarkOptions::default());
            let joined =
                events.lookup_join(ctx, OP, table.clone(), |r: &RateRow| r.value % 4, LookupJoinType::Inner)?;
            let into = into.clone();
            joined.records.inspect(move |e| {
                into.lock().unwrap().insert(e.data.0.value, e.data.1.clone().expect("inner rows carry a table row"));
            });
            Ok(())
        })
        .expect("the dataflow builds");
    std::thread::sleep(Duration::from_millis(1200));
    switched.store(true, Ordering::SeqCst);
    assert!(handle.await_termination(Some(Duration::from_secs(30))).expect("the query runs"), "the stream ends");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 600, "every row is joined exactly once");
    let first_v2 = seen.iter().find(|(_, v)| v.as_str() == "v2").map(|(k, _)| *k).expect("the new version is seen");
    assert!(first_v2 > 0, "the first rows see the first version");
    let reverted: Vec<_> = seen.range(first_v2..).filter(|(_, v)| v.as_str() == "v1").collect();
    assert!(reverted.is_empty(), "rows after the switch saw the old version again: {reverted:?}");
}
