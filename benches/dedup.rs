//! Rate → dedup within 50 ms over 100,000 keys, on 1 and 2 workers. Each row's key is a hash of
//! its number, so a key recurs at random times (100 ms apart on average) and about a third of
//! the rows are duplicates. Rows are up to 5 ms out of order, within the 5 ms watermark delay.
//! Prints records/s per worker.
//!
//! `cargo bench --bench dedup` (`WEIR_BENCH_ROWS` sets the rows per run; default 10 million).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::Inspect;
use weir::prelude::*;

const KEYS: u64 = 100_000;
/// 1 M rows per second of event time.
const EVENT_RATE: u64 = 1_000_000;
const WITHIN: Duration = Duration::from_millis(50);
const SKEW: Duration = Duration::from_millis(5);

/// A fixed, well-mixed key per row number (splitmix64).
fn key_of(value: u64) -> u64 {
    common::scrambled_key(value, KEYS)
}

/// Runs the job; returns the number of rows that passed.
fn run(rows: u64, workers: usize) -> u64 {
    let passed = Arc::new(AtomicU64::new(0));
    let p = passed.clone();
    common::run_to_end(Query::new("bench-dedup").workers(workers), move |scope, ctx| {
        let events = common::rate_source(EVENT_RATE, workers, rows).max_skew(SKEW).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(SKEW),
        );
        let unique = events.dedup(ctx, "dedup", |row: &RateRow| key_of(row.value), WITHIN)?;
        let p = p.clone();
        unique.records.inspect_batch(move |_, batch| {
            p.fetch_add(batch.len() as u64, Ordering::Relaxed);
        });
        Ok(())
    });
    passed.load(Ordering::Relaxed)
}

fn main() {
    if common::listing("dedup") {
        return;
    }
    let rows = common::rows(10_000_000);
    println!("dedup rows={rows} keys={KEYS} within=50ms skew=5ms {}", common::machine());
    let mut passed_seen = None;
    for workers in [1usize, 2] {
        let (elapsed, passed) = common::best_of_three(|| run(rows, workers));
        assert_eq!(*passed_seen.get_or_insert(passed), passed, "worker counts disagree on the passed rows");
        assert!(passed > 0 && passed < rows, "some rows pass and some are duplicates");
        common::report(&format!("dedup, {passed} passed"), rows, workers, elapsed);
    }
}
