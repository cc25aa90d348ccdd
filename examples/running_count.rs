//! Running count per user with keyed state: alice, bob, alice, alice, bob → 1, 1, 2, 3, 2.
//!
//! Each click goes through `key_by(user).process_with_state(..)`: the function reads the user's
//! count from its state, adds the user's new clicks, emits the running count after each click and
//! stores the new count. Pass `--rocksdb` to keep the counts in RocksDB (under the system's temp
//! directory) instead of memory, and `--workers N` to spread users over N threads: the output is
//! the same.
//!
//! ```sh
//! cargo run --example running_count
//! cargo run --example running_count -- --rocksdb --workers 2
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;

/// 2024-06-01T00:00:00Z: the clicks happen 1, 2, 3, 4 and 5 s after it.
const BASE_MS: u64 = 1_717_200_000_000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Click {
    at_ms: u64,
    user: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let workers: usize = match args.iter().position(|a| a == "--workers") {
        Some(i) => args.get(i + 1).ok_or("--workers needs a value")?.parse()?,
        None => 1,
    };
    let backend = if args.iter().any(|a| a == "--rocksdb") {
        StateBackend::rocksdb(std::env::temp_dir().join("weir-example-running-count"))
    } else {
        StateBackend::Memory
    };
    println!("state backend: {}, workers: {workers}", backend.describe());

    let clicks: Vec<Click> = ["alice", "bob", "alice", "alice", "bob"]
        .iter()
        .enumerate()
        .map(|(i, user)| Click { at_ms: BASE_MS + 1_000 * (i as u64 + 1), user: user.to_string() })
        .collect();
    let counts = Collector::new();
    let into = counts.clone();

    let query = Query::new("running-count").workers(workers).state_backend(backend).start(move |scope, ctx| {
        let events = event_source(
            scope,
            ctx,
            MemorySource::new(vec![clicks.clone()]),
            |click: &Click| Some(EventTime::from_millis(click.at_ms)),
            WatermarkOptions::with_delay(Duration::ZERO),
        );
        let running = events.key_by(|click: &Click| click.user.clone()).process_with_state(
            ctx,
            "running-count",
            |user: &String, clicks, state: &mut KeyedState<u64>, out: &mut Vec<(String, u64)>| {
                let mut count = state.get().copied().unwrap_or(0);
                for _click in clicks {
                    count += 1;
                    out.push((user.clone(), count));
                }
                state.update(count);
            },
        )?;
        into.attach(running.output.records, ctx, "counts");
        Ok(())
    })?;
    query.await_termination(Some(Duration::from_secs(30)))?;
    // The stores delete their own directories when the query ends; this removes the empty root.
    let _ = std::fs::remove_dir(std::env::temp_dir().join("weir-example-running-count"));

    // Print in event-time order (workers deliver in any order).
    let mut rows: Vec<Event<(String, u64)>> = counts.take().into_iter().map(|(_, event)| event).collect();
    rows.sort();
    for Event { time, data: (user, count) } in &rows {
        println!("{time} {user:<6} {count}");
    }
    let summary: Vec<String> = rows.iter().map(|e| e.data.1.to_string()).collect();
    println!("counts: {}", summary.join(", "));
    if let Some(op) = query.context().metrics().operators().iter().find(|m| m.name == "running-count") {
        println!("users with state (numRowsTotal): {}", op.rows_total.load(std::sync::atomic::Ordering::SeqCst));
    }
    Ok(())
}
