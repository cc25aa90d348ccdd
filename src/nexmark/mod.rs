//! The Nexmark benchmark's queries, written with Weir's public operators only. Each takes the
//! source's [`EventStream`] of [`Event`]s and returns its result stream; generate the input with
//! [`weir_connectors::nexmark::NexmarkSource`], run one with `weir bench nexmark --query q1`.
//!
//! Done: q0 (pass-through), q1 (currency conversion), q2 (selection), q3 (local item suggestion), q4 (average
//! closing price per category), q5 (hot items), q7 (highest bid), q8 (new users), q11 (user sessions), q12
//! (processing-time windows), q15/q16 (daily bid and channel statistics, exact and HyperLogLog), q18 (last bid).
//! Also q3 (local item suggestion), q4 (average closing price per category), q8 (new users), q11 (user sessions).

pub mod q0;
pub mod q1;
pub mod q11;
pub mod q12;
pub mod q15;
pub mod q16;
pub mod q18;
pub mod q2;
pub mod q3;
pub mod q4;
pub mod q5;
pub mod q7;
pub mod q8;
pub mod runner;

pub use weir_connectors::nexmark::{Auction, Bid, Event, NexmarkSource, Person};
use weir_runtime::event::EventStream;

/// The queries implemented, by name (as `weir bench nexmark --query` takes them).
pub const QUERIES: &[&str] =
    &["q0", "q1", "q2", "q5", "q7", "q11", "q3", "q4", "q8", "q15", "q15-hll", "q16", "q16-hll", "q18", "q12"];

/// The bids of a Nexmark stream (people and auctions dropped), keeping their event times.
pub fn bids(events: EventStream<'_, Event>) -> EventStream<'_, Bid> {
    events.flat_map(Event::into_bid)
}
