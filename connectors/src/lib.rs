//! Weir's connectors: sources (`rate`, JSON-lines files and stdin) and sinks (JSON-lines files,
//! a Spark-style console table, an in-memory collector, and a per-epoch callback).
//!
//! Sources implement [`weir_runtime::source::Source`] and come with an `events` helper that runs
//! them through [`weir_runtime::source::event_source`]. Sinks that produce one ordered output
//! gather every record to worker 0 and emit an epoch (one timely time) once the frontier has
//! passed it, in increasing time order.

#![warn(missing_docs)]

pub mod codec;
pub mod console;
pub mod files;
pub mod foreach;
pub mod jsonl;
pub mod kafka;
pub mod memory;
pub mod nexmark;
pub mod rate;
pub mod registry;

pub use console::ConsoleSink;
pub use files::JsonLinesSource;
pub use foreach::for_each_epoch;
pub use jsonl::JsonLinesSink;
pub use memory::Collector;
pub use rate::{RateRow, RateSource};
