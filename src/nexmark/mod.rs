//! The Nexmark benchmark's queries, written with Weir's public operators only. Each takes the
//! source's [`EventStream`] of [`Event`]s and returns its result stream; generate the input with
//! [`weir_connectors::nexmark::NexmarkSource`], run one with `weir bench nexmark --query q1`.
//!
//! Done: q0 (pass-through), q1 (currency conversion), q2 (selection), q5 (hot items), q7 (highest bid). Not yet: the rest.

pub mod q0;
pub mod q1;
pub mod q2;
pub mod q5;
pub mod q7;
pub mod runner;

pub use weir_connectors::nexmark::{Auction, Bid, Event, NexmarkSource, Person};
use weir_runtime::event::EventStream;

/// The queries implemented, by name (as `weir bench nexmark --query` takes them).
pub const QUERIES: [&str; 5] = ["q0", "q1", "q2", "q5", "q7"];

/// The bids of a Nexmark stream (people and auctions dropped), keeping their event times.
pub fn bids(events: EventStream<'_, Event>) -> EventStream<'_, Bid> {
    events.flat_map(Event::into_bid)
}
