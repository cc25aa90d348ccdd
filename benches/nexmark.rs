//! Nexmark: every implemented query over the generator, unthrottled, on 1 and 2 workers.
//! Prints events/s per worker (best of three) and the per-worker targets.
//!
//! `cargo bench --bench nexmark` (set `WEIR_BENCH_ROWS` to change the event count; default 10 million).

use weir::nexmark::runner::{self, NexmarkRun};
use weir::nexmark::QUERIES;

mod common;

/// Per-worker targets, events/s.
fn target(query: &str) -> f64 {
    match query {
        "q0" | "q1" | "q2" => 5e6,
        "q15-hll" => 2e6,
        _ => 1e6,
    }
}

fn main() {
    if common::listing("nexmark") {
        return;
    }
    let events = common::rows(10_000_000);
    println!("nexmark events={events} rate=10000/s seed=0 {}", common::machine());
    for query in QUERIES {
        for workers in [1usize, 2] {
            let run = NexmarkRun {
                query: query.to_string(),
                events,
                workers,
                rate: 10_000,
                seed: 0,
                out_of_order_group_size: 1,
            };
            let (elapsed, rows) =
                common::best_of_three(|| runner::run(run.clone()).expect("the nexmark query runs").output_rows);
            common::report(&format!("{query}, {workers} worker(s), output_rows={rows}"), events, workers, elapsed);
            println!("    target {:.1} M events/s per worker", target(query) / 1e6);
        }
    }
    println!("peak_rss_bytes={:?}", runner::peak_rss_bytes());
}
