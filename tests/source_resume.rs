//! Sources that record their cuts and resume from them (`event_source` with
//! `QueryContext::set_records_cuts`, `event_source_resumed`), on random out-of-order input with
//! late records over several `MemorySource` partitions, 1 and 3 workers, random batch sizes and
//! ticks.
//!
//! An uninterrupted run records every partition's cuts. For boundaries `T` (stamps it used,
//! stamps + 1, the first and past the last), the cut at `T` must be a consistent cut (each
//! partition's records emitted below `T` are exactly the records before its cut), and a run
//! resumed at the cut must emit exactly what the uninterrupted run emitted at times `>= T`: the
//! same on-time records at the same times, the same late records judged against the same
//! watermarks. A tumbling-window count over "the uninterrupted run below `T`" + "the resumed run"
//! then equals the count computed from the specification (the per-partition lateness rule).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_runtime::checkpoint::{EpochOffsets, WatermarkState};
use weir_runtime::prelude::*;
use weir_runtime::source::{event_source_resumed, event_source_with_batch};
use weir_runtime::source_cuts::SourceResume;
use weir_runtime::timely::dataflow::operators::Inspect;

mod support;
use support::{jittered_time, run_to_end, Arrival, PartitionClock};

const BASE: u64 = 1_700_000_000_000;
const WINDOW_MS: u64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Rec {
    partition: usize,
    index: usize,
    ts: u64,
}

/// One generated case.
#[derive(Clone, Debug)]
struct Case {
    partitions: Vec<Vec<Rec>>,
    delay_ms: u64,
    tick_ms: u64,
    batch: usize,
}

fn case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let count = rng.random_range(1..=5);
    let partitions = (0..count)
        .map(|partition| {
            let mut cursor = BASE + rng.random_range(0..2_000);
            let len = if rng.random_bool(0.1) { 0 } else { rng.random_range(1..250) };
            (0..len).map(|index| Rec { partition, index, ts: jittered_time(&mut rng, &mut cursor, 150) }).collect()
        })
        .collect();
    Case {
        partitions,
        delay_ms: [0, 200, 1_500][rng.random_range(0..3)],
        tick_ms: [0, 0, 100, 700][rng.random_range(0..4)],
        batch: rng.random_range(1..30),
    }
}

/// What one run of the source emitted.
#[derive(Default, Debug)]
struct Emitted {
    /// (timely time, record), on time.
    records: Vec<(u64, Rec)>,
    /// (timely time, record, event time, watermark it was compared with), late at the source.
    late: Vec<(u64, Rec, u64, u64)>,
}

impl Emitted {
    fn sorted(mut self) -> Self {
        self.records.sort();
        self.late.sort();
        self
    }

    fn from(&self, boundary: u64) -> Emitted {
        Emitted {
            records: self.records.iter().filter(|(t, _)| *t >= boundary).cloned().collect(),
            late: self.late.iter().filter(|(t, ..)| *t >= boundary).cloned().collect(),
        }
    }

    fn before(&self, boundary: u64) -> Emitted {
        Emitted {
            records: self.records.iter().filter(|(t, _)| *t < boundary).cloned().collect(),
            late: self.late.iter().filter(|(t, ..)| *t < boundary).cloned().collect(),
        }
    }
}

/// How a run starts.
#[derive(Clone)]
enum Start {
    /// From the beginning.
    Fresh,
    /// Through `event_source_resumed`.
    Resumed(SourceResume),
    /// Through plain `event_source_with_batch`, with the checkpoint's offsets in the context.
    ResumedByContext(SourceResume),
}

/// Runs the case's source on `workers` workers, recording cuts.
fn run(case: &Case, workers: usize, start: Start) -> (Emitted, QueryContext) {
    let emitted = Arc::new(Mutex::new(Emitted::default()));
    let context = Arc::new(Mutex::new(None));
    let source = MemorySource::new(case.partitions.clone()).named("Numbers");
    let (delay, tick, batch) = (case.delay_ms, case.tick_ms, case.batch);
    let (into, ctx_out) = (emitted.clone(), context.clone());
    let started = Query::new("source-resume").workers(workers).start(move |scope, ctx| {
        ctx.set_records_cuts();
        *ctx_out.lock().unwrap() = Some(ctx.clone());
        let options = WatermarkOptions::with_delay(Duration::from_millis(delay)).tick(Duration::from_millis(tick));
        let time_of = |r: &Rec| Some(EventTime::from_millis(r.ts));
        let events = match start.clone() {
            Start::Fresh => event_source_with_batch(scope, ctx, source.clone(), time_of, options, batch),
            Start::Resumed(resume) => event_source_resumed(scope, ctx, source.clone(), time_of, options, batch, resume),
            Start::ResumedByContext(resume) => {
                ctx.set_resume_offsets(EpochOffsets {
                    epoch: 7,
                    start: EventTime::MIN,
                    end: resume.boundary,
                    sources: BTreeMap::from([("Numbers".to_string(), resume.partitions.values().cloned().collect())]),
                });
                event_source_with_batch(scope, ctx, source.clone(), time_of, options, batch)
            }
        };
        let records = into.clone();
        events.records.inspect_time(move |t, e| {
            assert_eq!(e.data.ts, e.time.as_millis());
            records.lock().unwrap().records.push((t.as_millis(), e.data.clone()))
        });
        let late = into.clone();
        events.late.inspect_time(move |t, l| {
            late.lock().unwrap().late.push((
                t.as_millis(),
                l.record.clone(),
                l.event_time.as_millis(),
                l.watermark.as_millis(),
            ))
        });
        Ok(())
    });
    run_to_end(started, "source-resume", 60);
    let ctx = context.lock().unwrap().take().expect("the dataflow was built");
    let emitted = std::mem::take(&mut *emitted.lock().unwrap()).sorted();
    (emitted, ctx)
}

/// The cut of every partition at `boundary`, gathered from every worker's source instance.
fn resume_at(ctx: &QueryContext, boundary: u64) -> SourceResume {
    let mut cuts = Vec::new();
    for ((name, worker), instance) in ctx.all_source_cuts() {
        assert_eq!(name, "Numbers");
        let cut = instance.lock().unwrap().cut(EventTime::from_millis(boundary));
        cuts.extend(cut.unwrap_or_else(|| panic!("worker {worker} has no cut at {boundary} after a finished run")));
    }
    SourceResume::new(EventTime::from_millis(boundary), cuts)
}

/// Tumbling-window counts of on-time records, from the specification: a record is late iff its
/// time is below its partition's max earlier time minus the delay.
fn oracle_counts(case: &Case) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for partition in &case.partitions {
        let mut clock = PartitionClock::new(case.delay_ms);
        for rec in partition {
            if let Arrival::OnTime { .. } = clock.arrive(rec.ts) {
                *counts.entry(rec.ts - rec.ts % WINDOW_MS).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn counts_of(records: impl Iterator<Item = u64>) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for ts in records {
        *counts.entry(ts - ts % WINDOW_MS).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_run_resumed_at_a_cut_emits_what_the_uninterrupted_run_emitted_after_it() {
    let mut checked = 0;
    let mut controls_differing = 0;
    for seed in 0..24u64 {
        let case = case(seed);
        let total: usize = case.partitions.iter().map(Vec::len).sum();
        let oracle = oracle_counts(&case);
        for workers in [1, 3] {
            let label = format!(
                "seed {seed}, {workers} workers, delay {}, tick {}, batch {}",
                case.delay_ms, case.tick_ms, case.batch
            );
            let (full, ctx) = run(&case, workers, Start::Fresh);
            assert_eq!(full.records.len() + full.late.len(), total, "{label}: every record once");
            assert_eq!(counts_of(full.records.iter().map(|(_, r)| r.ts)), oracle, "{label}: uninterrupted counts");

            let mut stamps: Vec<u64> =
                full.records.iter().map(|(t, _)| *t).chain(full.late.iter().map(|l| l.0)).collect();
            stamps.sort();
            stamps.dedup();
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
            let mut boundaries = vec![0, BASE, stamps.last().map_or(BASE, |s| s + 1)];
            for _ in 0..4 {
                if let Some(&stamp) = stamps.get(rng.random_range(0..stamps.len().max(1))) {
                    boundaries.extend([stamp, stamp + 1]);
                }
            }
            for boundary in boundaries {
                let label = format!("{label}, boundary {boundary}");
                let resume = resume_at(&ctx, boundary);
                assert_eq!(resume.partitions.len(), case.partitions.len(), "{label}: a cut for every partition");

                // A consistent cut: what was emitted below T is exactly what lies before the cut.
                let before = full.before(boundary);
                for (p, cut) in &resume.partitions {
                    let position = cut.position.as_u64().expect("a memory position") as usize;
                    let mut emitted: Vec<usize> = before
                        .records
                        .iter()
                        .map(|(_, r)| r)
                        .chain(before.late.iter().map(|l| &l.1))
                        .filter(|r| r.partition == *p)
                        .map(|r| r.index)
                        .collect();
                    emitted.sort();
                    assert_eq!(emitted, (0..position).collect::<Vec<_>>(), "{label}: partition {p} cut at {position}");
                }

                if workers == 1 {
                    // Control: the same cut without its watermark states judges lateness differently
                    // whenever a late record follows the cut (so the comparison below can fail).
                    let mut forgetful = resume.clone();
                    for cut in forgetful.partitions.values_mut() {
                        cut.watermark = WatermarkState { max_event_time: None, watermark: EventTime::MIN, idle: false };
                    }
                    let (without_state, _) = run(&case, workers, Start::Resumed(forgetful));
                    if without_state.late != full.from(boundary).late {
                        controls_differing += 1;
                    }
                }
                let start = if boundary % 2 == 0 { Start::Resumed(resume) } else { Start::ResumedByContext(resume) };
                let (resumed, _) = run(&case, workers, start);
                let after = full.from(boundary);
                assert!(resumed.records.iter().all(|(t, r)| *t >= boundary && *t <= r.ts), "{label}: stamps");
                assert_eq!(resumed.late, after.late, "{label}: the same late records, judged the same way");
                assert_eq!(resumed.records, after.records, "{label}: the same records at the same times");

                let combined = before.records.iter().chain(resumed.records.iter()).map(|(_, r)| r.ts);
                assert_eq!(counts_of(combined), oracle, "{label}: window counts across the resume");
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked} resumes checked");
    assert!(controls_differing > 60, "resuming without the watermark state differed only {controls_differing} times");
}

/// Without `set_records_cuts` no history is kept (the default path records nothing).
#[test]
fn cuts_are_recorded_only_when_asked() {
    let case = case(3);
    let started = Query::new("no-cuts").workers(2).start(move |scope, ctx| {
        let source = MemorySource::new(case.partitions.clone()).named("Numbers");
        let _ = event_source_with_batch(
            scope,
            ctx,
            source,
            |r: &Rec| Some(EventTime::from_millis(r.ts)),
            WatermarkOptions::default(),
            5,
        );
        assert!(!ctx.records_cuts());
        Ok(())
    });
    let handle = run_to_end(started, "no-cuts", 30);
    assert!(handle.context().all_source_cuts().is_empty());
}
