//! Append mode: each window is emitted once, final, when the watermark passes its end.
//!
//! Sensor readings arrive out of order; the watermark trails the newest reading by 5 s. The
//! average temperature per sensor and 10 s window is printed per epoch; the reading that comes
//! after its window was closed is reported as late instead of being dropped silently.
//!
//! ```sh
//! cargo run --example append_mode
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::runtime::source::event_source_with_batch;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    at_ms: u64,
    celsius: f64,
}

fn reading(sensor: &str, at_s: f64, celsius: f64) -> Reading {
    Reading { sensor: sensor.into(), at_ms: (at_s * 1000.0) as u64, celsius }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let readings = vec![
        reading("kitchen", 1.0, 21.0),
        reading("garage", 3.0, 9.5),
        reading("kitchen", 8.0, 22.0),
        reading("kitchen", 12.0, 23.0),
        reading("garage", 9.0, 10.5), // out of order (after 12 s), but within the 5 s delay: counted
        reading("garage", 17.0, 11.0),
        reading("kitchen", 4.0, 30.0), // 13 s behind the newest reading: late, routed aside
        reading("kitchen", 26.0, 24.0),
    ];

    let query = Query::new("append-mode").start(move |scope, ctx| {
        // Two records per batch, so the watermark moves several times during this tiny input.
        let events = event_source_with_batch(
            scope,
            ctx,
            MemorySource::new(vec![readings.clone()]),
            |r: &Reading| Some(EventTime::from_millis(r.at_ms)),
            WatermarkOptions::with_delay(Duration::from_secs(5)),
            2,
        );
        let averages = events.window_aggregate(
            ctx,
            "avg-temperature",
            Windowing::tumbling(Duration::from_secs(10)),
            OutputMode::Append,
            |r: &Reading| r.sensor.clone(),
            Avg(|r: &Reading| r.celsius),
        )?;
        for_each_epoch(averages.results, ctx, "print", |epoch, mut rows| {
            rows.sort_by(|a, b| (a.window_start, &a.key).cmp(&(b.window_start, &b.key)));
            for row in rows {
                println!(
                    "epoch {epoch}: window [{}, {}) {:<8} avg {:.2}",
                    row.window_start / 1000,
                    row.window_end / 1000,
                    row.key,
                    row.value.unwrap_or(f64::NAN)
                );
            }
        });
        for_each_epoch(averages.late, ctx, "late", |_, late| {
            for l in late {
                println!(
                    "late: {:?} at {} ms, {} ms behind the watermark",
                    l.record.sensor,
                    l.event_time.as_millis(),
                    l.lateness_ms
                );
            }
        });
        Ok(())
    })?;
    query.await_termination(None)?;
    Ok(())
}
