//! Interval join: two rate sources joined on a key within [-5 ms, +5 ms], at a 1:1 match rate
//! (every left row matches exactly one right row) and a 1:N match rate (every left row matches
//! N = 10 right rows), inner join, plus a 1:1 left outer join; on 1 and 2 workers. Prints input
//! records (left + right) per second per worker.
//!
//! `cargo bench --bench interval_join` (set `WEIR_BENCH_ROWS` to change the input records per
//! run, both sides together; default 4 million).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::Inspect;
use weir::prelude::*;

/// Left rows per second of event time: 1,000 rows per millisecond.
const LEFT_RATE: u64 = 1_000_000;

/// Runs one join of `left_rows` left rows against `fan_out` right rows per left row; returns the
/// number of joined rows.
fn run(left_rows: u64, fan_out: u64, join_type: JoinType, workers: usize) -> u64 {
    let joined = Arc::new(AtomicU64::new(0));
    let sink = joined.clone();
    common::run_to_end(Query::new("bench-interval-join").workers(workers), move |scope, ctx| {
        let options = WatermarkOptions::with_delay(Duration::ZERO);
        let left = common::rate_source(LEFT_RATE, workers, left_rows).events(scope, ctx, options.clone());
        // The right side has `fan_out` times the rate (and partitions, so that both sides
        // advance through event time at the same pace; one more, so that the two sources'
        // names in progress reports differ even at 1:1): right row `w` has the same
        // millisecond as left row `w / fan_out`, whose key it carries.
        let right = common::rate_source(LEFT_RATE * fan_out, workers * fan_out as usize + 1, left_rows * fan_out)
            .events(scope, ctx, options);
        let out = left.join_interval(
            ctx,
            "interval-join",
            right,
            |row: &RateRow| row.value,
            move |row: &RateRow| row.value / fan_out,
            TimeOffset::from_millis(-5),
            TimeOffset::from_millis(5),
            join_type,
        )?;
        let sink = sink.clone();
        out.rows.records.inspect_batch(move |_, batch| {
            sink.fetch_add(batch.len() as u64, Ordering::Relaxed);
        });
        Ok(())
    });
    joined.load(Ordering::Relaxed)
}

fn main() {
    if common::listing("interval_join") {
        return;
    }
    let records = common::rows(4_000_000);
    println!("interval_join records={records} (left + right) bounds=[-5ms, +5ms] {}", common::machine());
    for (label, fan_out, join_type) in [
        ("1:1 inner", 1u64, JoinType::Inner),
        ("1:10 inner", 10, JoinType::Inner),
        ("1:1 left outer", 1, JoinType::LeftOuter),
    ] {
        let left_rows = records / (1 + fan_out);
        let inputs = left_rows * (1 + fan_out);
        for workers in [1usize, 2] {
            let (elapsed, joined) = common::best_of_three(|| run(left_rows, fan_out, join_type, workers));
            assert_eq!(joined, left_rows * fan_out, "{label}: every left row matches exactly {fan_out} right row(s)");
            common::report(&format!("interval join {label} ({joined} rows out)"), inputs, workers, elapsed);
        }
    }
}
