//! Complete mode: at every epoch in which something changed, the whole result table.
//!
//! Orders per country with no time window (one group per key for the whole stream): complete
//! mode re-emits every country's total each epoch, like Spark's complete mode on a console sink.
//! Append mode would be rejected here, because a group without a window is never final.
//!
//! ```sh
//! cargo run --example complete_mode
//! ```

use weir::prelude::*;
use weir::runtime::source::event_source_with_batch;

#[derive(Clone, Debug)]
struct Order {
    country: &'static str,
    at_ms: u64,
    amount_cents: i64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let orders: Vec<Order> = [("NL", 1, 1250), ("DE", 2, 990), ("NL", 4, 500), ("FR", 6, 4000), ("DE", 9, 100)]
        .into_iter()
        .map(|(country, at_s, amount_cents)| Order { country, at_ms: at_s * 1000, amount_cents })
        .collect();

    // The mistake complete mode exists for: append without a window fails before anything runs.
    let rejected = Query::new("append-without-window").start(|scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            MemorySource::new(vec![Vec::<Order>::new()]),
            |o: &Order| Some(EventTime::from_millis(o.at_ms)),
            WatermarkOptions::default(),
            2,
        );
        events
            .window_count(ctx, "orders", Windowing::global(), OutputMode::Append, |o: &Order| o.country.to_string())?;
        Ok(())
    });
    if let Err(error) = rejected {
        println!("as expected, append without a window is rejected: {error}");
    }

    let query = Query::new("complete-mode").start(move |scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            MemorySource::new(vec![orders.clone()]),
            |o: &Order| Some(EventTime::from_millis(o.at_ms)),
            WatermarkOptions::default(),
            2,
        );
        let totals = events.window_aggregate(
            ctx,
            "revenue-per-country",
            Windowing::global(),
            OutputMode::Complete,
            |o: &Order| o.country.to_string(),
            Sum(|o: &Order| o.amount_cents),
        )?;
        for_each_epoch(totals.results, ctx, "print", |epoch, mut rows| {
            rows.sort();
            let table: Vec<String> = rows.iter().map(|r| format!("{}={:.2}", r.key, r.value as f64 / 100.0)).collect();
            println!("epoch {epoch}: {}", table.join(" "));
        });
        Ok(())
    })?;
    query.await_termination(None)?;
    Ok(())
}
