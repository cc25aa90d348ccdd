//! Nexmark q2, selection: the auction and price of the bids on every 123rd auction
//! (`SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`).

use serde::{Deserialize, Serialize};
use weir_runtime::event::EventStream;

use super::{bids, Event};

/// One output row of q2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuctionPrice {
    /// The auction's id (a multiple of 123).
    pub auction: u64,
    /// The bid's price, cents.
    pub price: u64,
}

/// The auction and price of every bid whose auction id is a multiple of 123.
pub fn q2(events: EventStream<'_, Event>) -> EventStream<'_, AuctionPrice> {
    bids(events).filter(|bid| bid.auction % 123 == 0).map(|bid| AuctionPrice { auction: bid.auction, price: bid.price })
}
