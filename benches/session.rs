//! Rate → session windows (count per session) over 10,000 keys, on 1 and 2 workers. Each row's
//! key is a hash of its number, so a key's rows arrive at random times (10 ms apart on average);
//! with a 10 ms gap, sessions hold from one to a few dozen rows. Rows are up to 5 ms out of
//! order, within the 5 ms watermark delay. Prints records/s per worker.
//!
//! `cargo bench --bench session` (`WEIR_BENCH_ROWS` sets the rows per run; default 10 million).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::Inspect;
use weir::prelude::*;

const KEYS: u64 = 10_000;
/// 1 M rows per second of event time.
const EVENT_RATE: u64 = 1_000_000;
const GAP: Duration = Duration::from_millis(10);
const SKEW: Duration = Duration::from_millis(5);

/// A fixed, well-mixed key per row number (splitmix64).
fn key_of(value: u64) -> u64 {
    common::scrambled_key(value, KEYS)
}

/// Runs the job; returns (sessions emitted, rows counted in them).
fn run(rows: u64, workers: usize) -> (u64, u64) {
    let sessions = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicU64::new(0));
    let (s, c) = (sessions.clone(), counted.clone());
    common::run_to_end(Query::new("bench-session").workers(workers), move |scope, ctx| {
        let events = common::rate_source(EVENT_RATE, workers, rows).max_skew(SKEW).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(SKEW),
        );
        let out = events.session_count(ctx, "sessions", GAP, OutputMode::Append, |row: &RateRow| key_of(row.value))?;
        let (s, c) = (s.clone(), c.clone());
        out.results.inspect_batch(move |_, batch| {
            s.fetch_add(batch.len() as u64, Ordering::Relaxed);
            c.fetch_add(batch.iter().map(|r| r.value).sum(), Ordering::Relaxed);
        });
        Ok(())
    });
    (sessions.load(Ordering::Relaxed), counted.load(Ordering::Relaxed))
}

fn main() {
    if common::listing("session") {
        return;
    }
    let rows = common::rows(10_000_000);
    println!("session rows={rows} keys={KEYS} gap=10ms skew=5ms {}", common::machine());
    let mut sessions_seen = None;
    for workers in [1usize, 2] {
        let (elapsed, (sessions, counted)) = common::best_of_three(|| run(rows, workers));
        assert_eq!(counted, rows, "every row must be counted in exactly one session");
        assert_eq!(*sessions_seen.get_or_insert(sessions), sessions, "worker counts disagree on the sessions");
        common::report(&format!("session_count, {sessions} sessions"), rows, workers, elapsed);
    }
}
