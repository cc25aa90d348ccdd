//! Nexmark: every implemented query over the generator, unthrottled, on 1 and 2 workers.
//! Prints events/s per worker (best of three) and the per-worker targets.
//!
//! `cargo bench --bench nexmark` (set `WEIR_BENCH_ROWS` to change the event count; default 10 million).

use weir::nexmark::runner::{self, NexmarkRun};
use weir::nexmark::QUERIES;

mod common;

/// The per-worker targets, events/s (queries without one print none).
fn target(query: &str) -> Option<f64> {
    match query {
        "q0" | "q1" | "q2" => Some(5e6),
        "q8" | "q15-hll" => Some(2e6),
        "q5" | "q7" | "q11" => Some(1e6),
        _ => None,
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
            // q12's windows are processing-time windows: how many rows it writes depends on the
            // run's speed, so only the event-time queries must give the same rows every run.
            let processing_time = *query == "q12";
            let mut last_rows = 0;
            let (elapsed, _) = common::best_of_three(|| {
                last_rows = runner::run(run.clone()).expect("the nexmark query runs").output_rows;
                if processing_time {
                    0
                } else {
                    last_rows
                }
            });
            let rows = last_rows;
            common::report(&format!("{query}, {workers} worker(s), output_rows={rows}"), events, workers, elapsed);
            if let Some(target) = target(query) {
                println!("    target {:.1} M events/s per worker", target / 1e6);
            }
        }
    }
    println!("peak_rss_bytes={:?}", runner::peak_rss_bytes());
}
