//! Weir: event-time stream processing on timely dataflow.
//!
//! The frontier of every operator is its event-time watermark; windows close when it passes their
//! end; late records are counted and routed, never dropped silently. Start with [`prelude`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::prelude::*;
//!
//! let query = Query::new("counts").workers(2).start(|scope, ctx| {
//!     let events = RateSource::new(1_000).events(scope, ctx, WatermarkOptions::with_delay(Duration::from_secs(2)));
//!     let counts = events.window_count(ctx, "count", Windowing::tumbling(Duration::from_secs(10)),
//!                                      OutputMode::Append, |row: &RateRow| row.value % 10)?;
//!     ConsoleSink::new().write(counts.results, ctx, "console")
//! })?;
//! query.await_termination(Some(Duration::from_secs(30)))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(doctest)]
mod guide;
pub mod jobs;
pub mod metrics_endpoint;
pub mod nexmark;
pub mod signals;

pub use weir_connectors as connectors;
pub use weir_operators as operators;
pub use weir_runtime as runtime;

/// Everything a dataflow program usually needs, in one import.
pub mod prelude {
    pub use weir_connectors::console::ConsoleSink;
    pub use weir_connectors::files::JsonLinesSource;
    pub use weir_connectors::foreach::for_each_epoch;
    pub use weir_connectors::jsonl::JsonLinesSink;
    pub use weir_connectors::memory::Collector;
    pub use weir_connectors::rate::{RateRow, RateSource};
    pub use weir_operators::prelude::*;
    pub use weir_runtime::prelude::*;
}
