//! Rate → 10 s tumbling window count over 1,000 keys, on 1 and 2 workers, beside a hand-written
//! single-threaded loop doing the same count in a hash map. Prints records/s per worker and the
//! ratio to the loop.
//!
//! `cargo bench --bench window_count` (set `WEIR_BENCH_ROWS` to change the row count; default
//! 40 million per run).

use std::collections::hash_map::Entry;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use timely::dataflow::operators::Inspect;
use weir::prelude::*;

mod common;

const KEYS: u64 = 1_000;
/// Event-time rate of the generated rows: 1 M rows per second of event time, so a 10 s window
/// holds 10 M rows and a run spans a handful of windows.
const EVENT_RATE: u64 = 1_000_000;
const WINDOW_MS: u64 = 10_000;

/// The same job by hand: generate rows, assign each to its 10 s window, count per (window, key),
/// and emit each window when the (in-order) stream passes its end.
fn hand_written(rows: u64) -> u64 {
    let mut counts: FxHashMap<(u64, u64), u64> = FxHashMap::default();
    let mut open_window = 0;
    let mut emitted = 0u64;
    for value in 0..rows {
        let timestamp = common::START_MS + value * 1000 / EVENT_RATE;
        let window = timestamp - timestamp % WINDOW_MS;
        if window != open_window {
            for (_, count) in counts.drain() {
                black_box(count);
                emitted += 1;
            }
            open_window = window;
        }
        match counts.entry((window, value % KEYS)) {
            Entry::Occupied(mut e) => *e.get_mut() += 1,
            Entry::Vacant(e) => {
                e.insert(1);
            }
        }
    }
    emitted += counts.drain().count() as u64;
    emitted
}

fn weir(rows: u64, workers: usize) -> u64 {
    let emitted = Arc::new(AtomicU64::new(0));
    let sink = emitted.clone();
    common::run_to_end(Query::new("bench-window-count").workers(workers), move |scope, ctx| {
        let events = common::rate_source(EVENT_RATE, workers, rows).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(Duration::ZERO),
        );
        let counts = events.window_count(
            ctx,
            "count",
            Windowing::tumbling(Duration::from_millis(WINDOW_MS)),
            OutputMode::Append,
            |row: &RateRow| row.value % KEYS,
        )?;
        let sink = sink.clone();
        counts.results.inspect_batch(move |_, batch| {
            sink.fetch_add(batch.len() as u64, Ordering::Relaxed);
        });
        Ok(())
    });
    emitted.load(Ordering::Relaxed)
}

fn per_second(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

fn main() {
    if common::listing("window_count") {
        return;
    }
    let rows = common::rows(40_000_000);
    let expected_groups = rows.div_ceil(EVENT_RATE * WINDOW_MS / 1000) * KEYS;

    // Warm up and take the best of three for each configuration.
    let (loop_time, loop_groups) = common::best_of_three(|| hand_written(rows));
    assert_eq!(loop_groups, expected_groups, "hand-written loop emitted the wrong number of groups");
    let loop_rate = per_second(rows, loop_time);
    println!("window_count rows={rows} keys={KEYS} window=10s {}", common::machine());
    println!("  hand-written loop (1 thread): {:>8.2} M records/s", loop_rate / 1e6);

    for workers in [1usize, 2] {
        let (time, groups) = common::best_of_three(|| weir(rows, workers));
        assert_eq!(groups, expected_groups, "weir emitted the wrong number of groups with {workers} workers");
        let per_worker = per_second(rows, time) / workers as f64;
        println!(
            "  weir, {workers} worker(s):           {:>8.2} M records/s per worker ({:.2} M/s total), {:.0}% of the loop",
            per_worker / 1e6,
            per_second(rows, time) / 1e6,
            100.0 * per_worker / loop_rate
        );
    }
}
