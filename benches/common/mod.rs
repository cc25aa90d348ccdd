//! What every bench shares: the row count from `WEIR_BENCH_ROWS`, best-of-three timing, and one
//! line per configuration in records/s per worker. Include with `mod common;`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Rows per run: `WEIR_BENCH_ROWS`, or `default`.
pub fn rows(default: u64) -> u64 {
    std::env::var("WEIR_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether cargo only asked for the list of benches (`--list`); prints `name: bench` then.
pub fn listing(name: &str) -> bool {
    if std::env::args().any(|a| a == "--list") {
        println!("{name}: bench");
        return true;
    }
    false
}

/// The best (shortest) of three runs of `run`, which returns a check value (e.g. rows emitted)
/// that must be the same every time.
pub fn best_of_three<T: PartialEq + std::fmt::Debug>(mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..3 {
        let started = Instant::now();
        let value = run();
        let elapsed = started.elapsed();
        if let Some((_, previous)) = &best {
            assert_eq!(previous, &value, "the bench's result changed between runs");
        }
        if best.as_ref().is_none_or(|(d, _)| elapsed < *d) {
            best = Some((elapsed, value));
        }
    }
    best.expect("three runs")
}

/// The machine line printed first by every bench.
pub fn machine() -> String {
    format!("machine_cores={}", std::thread::available_parallelism().map_or(0, |n| n.get()))
}

/// Prints one configuration's result: records/s per worker and in total.
pub fn report(label: &str, records: u64, workers: usize, elapsed: Duration) {
    let total = records as f64 / elapsed.as_secs_f64();
    println!(
        "  {label:<44} {:>8.2} M records/s per worker ({:.2} M/s total, {workers} worker(s), {:.2} s)",
        total / workers as f64 / 1e6,
        total / 1e6,
        elapsed.as_secs_f64()
    );
}
