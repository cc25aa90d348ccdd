//! Weir's event-time operators: windows, aggregations and output modes.
//!
//! Every operator decides completeness and eviction from its input frontier, which in Weir is the
//! event-time watermark, and counts and routes late records instead of dropping them silently.

#![warn(missing_docs)]

pub mod aggregate;
pub mod checkpointed;
pub mod dedup;
pub mod distinct;
pub mod hll;
pub mod interval_join;
pub mod join_type;
pub mod keyed_state;
pub mod late;
pub mod lookup_join;
pub mod output_mode;
pub mod pending;
pub mod session_window;
pub mod store;
pub mod window;
pub mod window_aggregate;

/// The names most programs need.
pub mod prelude {
    pub use crate::aggregate::{Aggregator, Avg, Count, Max, Min, Sum};
    pub use crate::dedup::Dedup;
    pub use crate::distinct::{ApproxCountDistinct, CountDistinct, DistinctSet};
    pub use crate::hll::HyperLogLogPlusPlus;
    pub use crate::interval_join::{IntervalJoin, Joined, JoinedRow, TimeOffset};
    pub use crate::join_type::JoinType;
    pub use crate::keyed_state::{Fired, KeyBy, KeyedState, KeyedStream, Processed, Records};
    pub use crate::lookup_join::{LookupJoin, LookupJoinType, LookupTable};
    pub use crate::output_mode::OutputMode;
    pub use crate::session_window::SessionAggregate;
    pub use crate::window::{Window, Windowing};
    pub use crate::window_aggregate::{Aggregated, WindowAggregate, WindowResult};
}
