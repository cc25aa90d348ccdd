//! Checkpoints and exactly-once files: a 1 s tumbling count per key over 12,000 rate-source rows,
//! written by the exactly-once file sink, stopped in the middle of its work and started again
//! from its checkpoint. The second run resumes after the last committed epoch (sources at their
//! cuts, the open windows restored), so the output directory ends up with every window exactly
//! once and the counts add up to the rows generated.
//!
//! Killing the process with SIGKILL instead of stopping it gives the same result (that is what
//! `tests/crash_loop*.rs` do, again and again). `--workers N` spreads the work over N threads.
//!
//! ```sh
//! cargo run --example checkpointed_counts -- --workers 2
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use timely::dataflow::operators::vec::Map;
use timely::dataflow::Scope;
use weir::connectors::jsonl::exactly_once::ExactlyOnceJsonLinesSink;
use weir::prelude::*;

/// Rows generated: 4,000 per second of event time for 3 s (the source runs at that rate too).
const ROWS: u64 = 12_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers: usize = flag("--workers")?.unwrap_or(1);
    let dir = std::env::temp_dir().join(format!("weir-example-checkpointed-counts-{}", std::process::id()));
    let (checkpoint, output) = (dir.join("checkpoint"), dir.join("out"));
    let _ = std::fs::remove_dir_all(&dir);

    for run in 1..=2 {
        let query = Query::new("checkpointed-counts")
            .workers(workers)
            .checkpoint(&checkpoint, Duration::from_millis(100))
            .start(build(output.clone()))?;
        match query.context().checkpoint().and_then(|live| live.resumed()) {
            Some((epoch, _)) => println!("run {run}: resumed after committed epoch {epoch}"),
            None => println!("run {run}: no checkpoint yet, starting fresh"),
        }
        if run == 1 {
            // Stop the first run in the middle of its work, as a crash would.
            std::thread::sleep(Duration::from_millis(1_500));
            query.stop()?;
            println!("run 1: stopped with {} windows committed", committed(&output)?.len());
        } else {
            query.await_termination(None)?;
        }
    }

    // Every window once, and the counts add up to the rows generated.
    let windows = committed(&output)?;
    let total: u64 = windows.values().sum();
    println!("{} windows written exactly once; {total} rows counted of {ROWS} generated", windows.len());
    for ((start, key), count) in windows.iter().take(5) {
        println!("  window starting {start} ms, key {key}: {count}");
    }
    std::fs::remove_dir_all(&dir)?;
    if total != ROWS {
        return Err(format!("counted {total} rows, generated {ROWS}").into());
    }
    Ok(())
}

/// The dataflow: rate rows (throttled, so that the first run is stopped half-way) → 1 s counts
/// per key (value % 4) → one JSON line per window → exactly-once files.
fn build(
    output: std::path::PathBuf,
) -> impl for<'scope> Fn(Scope<'scope, EventTime>, &QueryContext) -> Result<(), BuildError> + Send + Sync + 'static {
    move |scope, ctx| {
        let events = RateSource::new(4_000)
            .num_partitions(2)
            .row_limit(ROWS)
            .start_time(EventTime::from_millis(1_700_000_000_000))
            .events(scope, ctx, WatermarkOptions::with_delay(Duration::from_millis(200)));
        let counts = events.window_count(
            ctx,
            "count-per-key",
            Windowing::tumbling(Duration::from_secs(1)),
            OutputMode::Append,
            |row: &RateRow| row.value % 4,
        )?;
        let lines = counts
            .results
            .map(|row| format!(r#"{{"window_start":{},"key":{},"count":{}}}"#, row.window_start, row.key, row.value));
        ExactlyOnceJsonLinesSink::new(&output).write_lines(lines, ctx, "files")
    }
}

/// The committed windows in `output` (files of committed epochs only), by (start, key); a window
/// written twice is an error.
fn committed(output: &std::path::Path) -> Result<BTreeMap<(i64, u64), u64>, Box<dyn std::error::Error>> {
    let mut windows = BTreeMap::new();
    if !output.exists() {
        return Ok(windows);
    }
    for entry in std::fs::read_dir(output)? {
        let path = entry?.path();
        if !path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("part-")) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let row: serde_json::Value = serde_json::from_str(line)?;
            let key = (row["window_start"].as_i64().unwrap_or(0), row["key"].as_u64().unwrap_or(0));
            if windows.insert(key, row["count"].as_u64().unwrap_or(0)).is_some() {
                return Err(format!("window {key:?} was written twice").into());
            }
        }
    }
    Ok(windows)
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
