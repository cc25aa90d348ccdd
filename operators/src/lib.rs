//! Weir's event-time operators: windows, aggregations and output modes.
//!
//! Every operator decides completeness and eviction from its input frontier, which in Weir is the
//! event-time watermark, and counts and routes late records instead of dropping them silently.

#![warn(missing_docs)]

pub mod aggregate;
pub mod late;
pub mod lookup_join;
pub mod output_mode;
pub mod pending;
pub mod window;
pub mod window_aggregate;

/// The names most programs need.
pub mod prelude {
    pub use crate::aggregate::{Aggregator, Avg, Count, Max, Min, Sum};
    pub use crate::lookup_join::{LookupJoin, LookupJoinType, LookupTable};
    pub use crate::output_mode::OutputMode;
    pub use crate::window::{Window, Windowing};
    pub use crate::window_aggregate::{Aggregated, WindowAggregate, WindowResult};
}
