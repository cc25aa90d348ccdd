//! Nexmark q1, currency conversion: every bid with its price in euros
//! (`SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid`). Prices are integer
//! cents, so the euro price is `⌊price · 908 / 1000⌋` cents (exact, no floating point).

use weir_runtime::event::EventStream;

use super::{bids, Bid, Event};

/// A dollar price in cents converted to euro cents (× 0.908, rounded down).
pub fn dollars_to_euros(cents: u64) -> u64 {
    cents * 908 / 1000
}

/// Every bid of `events`, with its price converted to euros.
pub fn q1(events: EventStream<'_, Event>) -> EventStream<'_, Bid> {
    bids(events).map(|bid| Bid { price: dollars_to_euros(bid.price), ..bid })
}
