//! Nexmark q0, pass-through: every bid, unchanged (Flink's `SELECT auction, bidder, price,
//! dateTime, extra FROM bid`). It measures the cost of the source and of moving records.

use weir_runtime::event::EventStream;

use super::{bids, Bid, Event};

/// Every bid of `events`, unchanged.
pub fn q0(events: EventStream<'_, Event>) -> EventStream<'_, Bid> {
    bids(events)
}
