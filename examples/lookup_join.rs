//! Lookup join: enrich a stream with a table, then aggregate by the table's column.
//!
//! Rate rows carry a product id (`value % 6`); a product table (loaded from a JSON-lines file
//! written here, reloaded every second) gives each id its category; a left join keeps rows whose
//! product is unknown, with the category `unknown`. Then a 2 s tumbling count per category.
//! A bounded run (3,000 rows at 1,000 rows/s), so it ends by itself.
//!
//! ```sh
//! cargo run --example lookup_join
//! ```

use std::time::Duration;

use serde::Deserialize;
use weir::connectors::files::read_json_lines;
use weir::prelude::*;

#[derive(Deserialize)]
struct Product {
    id: u64,
    category: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("weir-products-{}.jsonl", std::process::id()));
    std::fs::write(
        &path,
        "{\"id\":0,\"category\":\"books\"}\n{\"id\":1,\"category\":\"games\"}\n\
         {\"id\":2,\"category\":\"books\"}\n{\"id\":3,\"category\":\"garden\"}\n{\"id\":4,\"category\":\"games\"}\n",
    )?;
    let table_path = path.clone();
    let products = LookupTable::from_loader(path.display().to_string(), move || {
        let rows: Vec<Product> = read_json_lines(&table_path)?;
        Ok(rows.into_iter().map(|p| (p.id, p.category)).collect())
    })
    .refresh_every(Duration::from_secs(1));

    let query = Query::new("lookup-join").workers(2).start(move |scope, ctx| {
        let events = RateSource::new(1_000).row_limit(3_000).events(scope, ctx, WatermarkOptions::default());
        let enriched = events.lookup_join(
            ctx,
            "products",
            products.clone(),
            |row: &RateRow| row.value % 6,
            LookupJoinType::LeftOuter,
        )?;
        let counts = enriched.window_count(
            ctx,
            "per-category",
            Windowing::tumbling(Duration::from_secs(2)),
            OutputMode::Append,
            |(_, category): &(RateRow, Option<String>)| category.clone().unwrap_or_else(|| "unknown".to_string()),
        )?;
        ConsoleSink::new().write(counts.results, ctx, "console")
    })?;
    query.await_termination(Some(Duration::from_secs(30)))?;
    std::fs::remove_file(&path)?;
    Ok(())
}
