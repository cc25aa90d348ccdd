//! Quickstart: the rate source → a 10 s tumbling count per key, with a 2 s watermark → console.
//!
//! Runs until Ctrl-C, or for `--seconds N`; `--workers N` spreads it over N threads.
//! The first table appears once the watermark passes the end of the first window (≤ 12 s).
//!
//! ```sh
//! cargo run --release --example quickstart -- --seconds 30 --workers 2
//! ```

use std::time::Duration;

use weir::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: Option<u64> = flag("--seconds")?;
    let workers: usize = flag("--workers")?.unwrap_or(1);

    let query = Query::new("quickstart").workers(workers).start(|scope, ctx| {
        // 1,000 rows per second: (timestamp, value); the watermark trails the newest timestamp by 2 s.
        let events = RateSource::new(1_000).num_partitions(2).events(
            scope,
            ctx,
            WatermarkOptions::with_delay(Duration::from_secs(2)),
        );
        // Count rows per key (value % 5) in 10 s windows; each window is printed once, when final.
        let counts = events.window_count(
            ctx,
            "count-per-key",
            Windowing::tumbling(Duration::from_secs(10)),
            OutputMode::Append,
            |row: &RateRow| row.value % 5,
        )?;
        ConsoleSink::new().write(counts.results, ctx, "console")
    })?;

    weir::signals::stop_on_signal(query.stopper());
    match seconds {
        Some(limit) => {
            if !query.await_termination(Some(Duration::from_secs(limit)))? {
                query.stop()?;
            }
        }
        None => {
            query.await_termination(None)?;
        }
    }
    if let Some(progress) = query.last_progress() {
        eprintln!("last progress report:\n{}", progress.pretty_json());
    }
    Ok(())
}

/// Reads `--name value` from the command line.
fn flag<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: not a valid value")),
        None => Ok(None),
    }
}
