//! Lookup join: rate rows → a 10,000-row table (every key present, so 1:1) → counted in a sink,
//! inner join; on 1 and 2 workers. Records/s per worker; the table is broadcast, so the stream
//! is never exchanged.
//!
//! `cargo bench --bench lookup_join` (set `WEIR_BENCH_ROWS` to change the row count).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::Inspect;
use weir::prelude::*;

const TABLE_ROWS: u64 = 10_000;

fn run(rows: u64, workers: usize) -> u64 {
    let joined = Arc::new(AtomicU64::new(0));
    let sink = joined.clone();
    let table = LookupTable::from_rows("bench table", (0..TABLE_ROWS).map(|k| (k, k * 2)).collect::<Vec<_>>());
    common::run_to_end(Query::new("bench-lookup-join").workers(workers), move |scope, ctx| {
        let events = common::rate_source(1_000_000, workers, rows).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(Duration::ZERO),
        );
        let out = events.lookup_join(
            ctx,
            "lookup",
            table.clone(),
            |row: &RateRow| row.value % TABLE_ROWS,
            LookupJoinType::Inner,
        )?;
        let sink = sink.clone();
        out.records.inspect_batch(move |_, batch| {
            sink.fetch_add(batch.len() as u64, Ordering::Relaxed);
        });
        Ok(())
    });
    joined.load(Ordering::Relaxed)
}

fn main() {
    if common::listing("lookup_join") {
        return;
    }
    let rows = common::rows(10_000_000);
    println!("lookup_join rows={rows} table_rows={TABLE_ROWS} join=inner {}", common::machine());
    for workers in [1usize, 2] {
        let (elapsed, joined) = common::best_of_three(|| run(rows, workers));
        assert_eq!(joined, rows, "every row has exactly one match");
        common::report("lookup join (broadcast table)", rows, workers, elapsed);
    }
}
