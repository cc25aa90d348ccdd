//! Weir's runtime: the event-time model, sources that stamp batches with watermarks, query
//! execution on one or many workers, query handles and Spark-style progress reports.
//!
//! The central idea: every dataflow is timestamped with [`time::EventTime`], and a source never
//! stamps a record later than its event time, so **an operator's input frontier is its watermark**.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod context;
pub mod diagnose;
pub mod error;
pub mod event;
pub mod execution;
pub mod map_source;
pub mod memory_source;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod query;
pub mod source;
pub mod source_cuts;
pub mod state;
pub mod time;
pub mod watermark;

pub use timely;

/// The names most programs need.
pub mod prelude {
    pub use crate::context::QueryContext;
    pub use crate::error::{BuildError, QueryError};
    pub use crate::event::{Event, EventStream, LateRecord};
    pub use crate::execution::Execution;
    pub use crate::memory_source::MemorySource;
    pub use crate::progress::{ProgressListener, StreamingQueryProgress};
    pub use crate::query::{Query, QueryHandle, QueryStatus};
    pub use crate::source::event_source;
    pub use crate::state::{StateBackend, StateStore};
    pub use crate::time::{parse_duration, EventTime};
    pub use crate::watermark::{InvalidTimePolicy, WatermarkOptions};
}
