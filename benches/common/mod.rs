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

/// The event time of the first generated row, ms (November 2023).
pub const START_MS: u64 = 1_700_000_000_000;

/// The benches' input: `rows` rows at `rows_per_second` of event time from [`START_MS`], over
/// `partitions` partitions, generated as fast as the query takes them.
pub fn rate_source(rows_per_second: u64, partitions: usize, rows: u64) -> weir::prelude::RateSource {
    weir::prelude::RateSource::new(rows_per_second)
        .num_partitions(partitions)
        .unthrottled()
        .row_limit(rows)
        .start_time(weir::prelude::EventTime::from_millis(START_MS))
}

/// Starts `query` with the dataflow `build` builds and waits until its input is exhausted;
/// panics if it does not build or fails.
pub fn run_to_end<F>(query: weir::prelude::Query, build: F)
where
    F: for<'scope> Fn(
            timely::dataflow::Scope<'scope, weir::prelude::EventTime>,
            &weir::prelude::QueryContext,
        ) -> Result<(), weir::prelude::BuildError>
        + Send
        + Sync
        + 'static,
{
    let handle = query.start(build).expect("the bench dataflow builds");
    handle.await_termination(None).expect("the bench query runs");
}

/// A well-spread key in `0..keys` for row `value` (the SplitMix64 finalizer, then modulo), so
/// that a key's rows are scattered over event time instead of following a fixed period.
pub fn scrambled_key(value: u64, keys: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % keys
}
