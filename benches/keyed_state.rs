//! Keyed state: a running count per key (`key_by(..).process_with_state(..)`, one output per
//! record) over 100,000 keys, with the state in memory and in RocksDB, on 1 and 2 workers,
//! beside a hand-written single-threaded loop doing the same count in a hash map. Prints
//! records/s per worker.
//!
//! `cargo bench --bench keyed_state` (set `WEIR_BENCH_ROWS` to change the row count; default
//! 2 million per run).

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use timely::dataflow::operators::Inspect;
use weir::prelude::*;
use weir_runtime::state::RocksDbOptions;

const KEYS: u64 = 100_000;
/// 1 M rows per second of event time.
const EVENT_RATE: u64 = 1_000_000;

/// The same count by hand: one hash-map update and one output per row.
fn hand_written(rows: u64) -> u64 {
    let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
    let mut emitted = 0;
    for value in 0..rows {
        let count = counts.entry(value % KEYS).or_insert(0);
        *count += 1;
        black_box(*count);
        emitted += 1;
    }
    emitted
}

fn weir(rows: u64, workers: usize, backend: StateBackend) -> u64 {
    let emitted = Arc::new(AtomicU64::new(0));
    let sink = emitted.clone();
    common::run_to_end(Query::new("bench-keyed-state").workers(workers).state_backend(backend), move |scope, ctx| {
        let events = common::rate_source(EVENT_RATE, workers, rows).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(Duration::ZERO),
        );
        let counts = events.key_by(|row: &RateRow| row.value % KEYS).process_with_state(
            ctx,
            "running-count",
            |key: &u64, rows, state: &mut KeyedState<u64>, out: &mut Vec<(u64, u64)>| {
                let mut count = state.get().copied().unwrap_or(0);
                for _ in rows {
                    count += 1;
                    out.push((*key, count));
                }
                state.update(count);
            },
        )?;
        let sink = sink.clone();
        counts.output.records.inspect_batch(move |_, batch| {
            sink.fetch_add(batch.len() as u64, Ordering::Relaxed);
        });
        Ok(())
    });
    emitted.load(Ordering::Relaxed)
}

fn main() {
    if common::listing("keyed_state") {
        return;
    }
    let rows = common::rows(2_000_000);
    println!("keyed_state running count rows={rows} keys={KEYS} {}", common::machine());

    let (elapsed, emitted) = common::best_of_three(|| hand_written(rows));
    assert_eq!(emitted, rows);
    common::report("hand-written loop (hash map, 1 thread)", rows, 1, elapsed);

    let dir = std::env::temp_dir().join(format!("weir-bench-keyed-state-{}", std::process::id()));
    let backends = [
        ("memory", StateBackend::Memory),
        ("rocksdb (64 MiB cache, 16 MiB memtables)", StateBackend::RocksDb(RocksDbOptions::new(&dir))),
    ];
    for (name, backend) in backends {
        for workers in [1usize, 2] {
            let (elapsed, emitted) = common::best_of_three(|| weir(rows, workers, backend.clone()));
            assert_eq!(emitted, rows, "{name}: one output per row");
            common::report(&format!("{name}, {workers} worker(s)"), rows, workers, elapsed);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
