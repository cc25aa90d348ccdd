//! Update mode: at every epoch, the groups that changed, with their new values.
//!
//! Page views per page in 1-minute windows. Each epoch prints only the counts that changed;
//! a window's state is dropped once the watermark passes its end.
//!
//! ```sh
//! cargo run --example update_mode
//! ```

use std::time::Duration;

use weir::prelude::*;
use weir::runtime::source::event_source_with_batch;

#[derive(Clone, Debug)]
struct View {
    page: &'static str,
    at_ms: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let views: Vec<View> = [("/home", 5), ("/docs", 12), ("/home", 30), ("/home", 61), ("/docs", 50), ("/docs", 75)]
        .into_iter()
        .map(|(page, at_s)| View { page, at_ms: at_s * 1000 })
        .collect();

    let query = Query::new("update-mode").start(move |scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            MemorySource::new(vec![views.clone()]),
            |v: &View| Some(EventTime::from_millis(v.at_ms)),
            WatermarkOptions::with_delay(Duration::from_secs(30)),
            2,
        );
        let counts = events.window_count(
            ctx,
            "views-per-page",
            Windowing::tumbling(Duration::from_secs(60)),
            OutputMode::Update,
            |v: &View| v.page.to_string(),
        )?;
        for_each_epoch(counts.results, ctx, "print", |epoch, mut rows| {
            rows.sort();
            let changes: Vec<String> = rows
                .iter()
                .map(|r| format!("{} in [{}s, {}s) = {}", r.key, r.window_start / 1000, r.window_end / 1000, r.value))
                .collect();
            println!("epoch {epoch}: {}", changes.join("; "));
        });
        Ok(())
    })?;
    query.await_termination(None)?;
    Ok(())
}
