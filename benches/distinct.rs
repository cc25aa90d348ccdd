//! Distinct users per 10 s tumbling window and key: exact (`CountDistinct`, a set of the values)
//! against approximate (`ApproxCountDistinct`, HyperLogLog++ at rsd 0.05 = precision 9), on 1 and
//! 2 workers. Rate source, 1,000 keys, users drawn from a domain of 2^40 values, 100,000 rows per
//! second of event time (so each window and key sees about 1,000 rows and as many distinct users,
//! which makes the sketches dense). Prints records/s per worker, best of three.
//!
//! `cargo bench --bench distinct` (set `WEIR_BENCH_ROWS` to change the row count; default 10
//! million per run).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::Inspect;
use weir::prelude::*;

const KEYS: u64 = 1_000;
const EVENT_RATE: u64 = 100_000;
const WINDOW_MS: u64 = 10_000;
/// Users come from a domain of 2^40 values.
const USER_BITS: u32 = 40;

/// A user drawn (pseudo-randomly, deterministically) from the domain for each row.
fn user_of(row: &RateRow) -> u64 {
    let mut x = row.value.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    x >> (64 - USER_BITS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counting {
    Exact,
    Approx,
}

/// Runs the job; returns (groups emitted, sum of the counts).
fn run(rows: u64, workers: usize, counting: Counting) -> (u64, u64) {
    let emitted = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let (emitted_in, total_in) = (emitted.clone(), total.clone());
    common::run_to_end(Query::new("bench-distinct").workers(workers), move |scope, ctx| {
        let events = common::rate_source(EVENT_RATE, workers, rows).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(Duration::ZERO),
        );
        let windowing = Windowing::tumbling(Duration::from_millis(WINDOW_MS));
        let key = |row: &RateRow| row.value % KEYS;
        let out = match counting {
            Counting::Exact => events.window_aggregate(
                ctx,
                "distinct",
                windowing,
                OutputMode::Append,
                key,
                CountDistinct::new(user_of),
            )?,
            Counting::Approx => {
                let approx = ApproxCountDistinct::new(user_of).rsd(0.05)?;
                events.window_aggregate(ctx, "distinct", windowing, OutputMode::Append, key, approx)?
            }
        };
        let (emitted, total) = (emitted_in.clone(), total_in.clone());
        out.results.inspect_batch(move |_, batch| {
            emitted.fetch_add(batch.len() as u64, Ordering::Relaxed);
            total.fetch_add(batch.iter().map(|r| r.value).sum::<u64>(), Ordering::Relaxed);
        });
        Ok(())
    });
    (emitted.load(Ordering::Relaxed), total.load(Ordering::Relaxed))
}

fn main() {
    if common::listing("distinct") {
        return;
    }
    let rows = common::rows(10_000_000);
    let expected_groups = rows.div_ceil(EVENT_RATE * WINDOW_MS / 1000) * KEYS;
    println!(
        "distinct rows={rows} keys={KEYS} window=10s rows_per_window_and_key={} user_domain=2^{USER_BITS} {}",
        EVENT_RATE * WINDOW_MS / 1000 / KEYS,
        common::machine()
    );
    let mut exact_total = 0;
    for counting in [Counting::Exact, Counting::Approx] {
        for workers in [1usize, 2] {
            let (elapsed, (groups, total)) = common::best_of_three(|| run(rows, workers, counting));
            assert_eq!(
                groups, expected_groups,
                "{counting:?} with {workers} workers emitted the wrong number of groups"
            );
            let label = match counting {
                Counting::Exact => format!("exact distinct (CountDistinct), {workers} worker(s)"),
                Counting::Approx => format!("HLL++ p=9 (ApproxCountDistinct), {workers} worker(s)"),
            };
            common::report(&label, rows, workers, elapsed);
            if counting == Counting::Exact {
                exact_total = total;
            } else {
                let error = (total as f64 - exact_total as f64) / exact_total as f64;
                println!("    sum of estimates vs exact: {:+.3}%", 100.0 * error);
            }
        }
    }
}
