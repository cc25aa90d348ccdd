//! Nexmark q4, average closing price per category: for each auction, its winning bid (the highest
//! price among the bids made during its lifetime, `auction.date_time <= bid.date_time <=
//! auction.expires`), then the average of those winning prices per category, updated as auctions
//! close.
//!
//! With public operators only:
//!
//! 1. `join_interval` (inner) of the auctions (left, projected to id, category and expiry) with the
//!    bids (right, projected to auction, price and time) on
//!    `auction.id = bid.auction`, with bounds `[0, max lifetime]`: a bid at or after the auction's
//!    opening and at most the generator's longest auction lifetime later (lifetimes vary per
//!    auction, so the interval covers the longest, see [`max_auction_lifetime`]), then a filter
//!    `bid.date_time <= auction.expires` for the auction's own expiry. The bound lets the join evict
//!    an auction once the bids' watermark passes its longest possible expiry, and a bid once the
//!    auctions' watermark passes it.
//! 2. Each qualifying (auction, bid) pair is re-timed to the auction's expiry (never before the
//!    bid's time it was emitted at, so it stays on time), and `window_aggregate(tumbling 1 s, key
//!    (auction, category), max price)` gives each auction's winning price once, final, when the
//!    watermark passes the end of the second that holds its expiry (the key makes it per auction;
//!    the second-long window only sets when it is emitted).
//! 3. Those closing prices, re-read with event time = that second's end, go into
//!    `window_aggregate(global, update mode, key category, average)`: at every epoch in which
//!    auctions closed, the new average (integer cents, rounded down, like SQL's `AVG` over a
//!    `BIGINT`) of every closed auction of each category that changed, as Flink's continuous q4
//!    emits updated averages. The last row of a category is its final average.
//!
//! Auctions with no bid in their lifetime have no winning bid and are left out (the SQL's inner
//! join).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid, NexmarkSource};

/// The window that times the per-auction maximum, ms.
pub const CLOSE_WINDOW_MS: u64 = 1_000;

/// The generator opens an auction's expiry up to twice the event time it takes to open this many
/// more auctions (Beam's `numInFlightAuctions`).
const IN_FLIGHT_AUCTIONS: u64 = 100;

/// An upper bound on an auction's lifetime (`expires - date_time`) for `source`'s event rate:
/// twice the time to open [`IN_FLIGHT_AUCTIONS`] more auctions (3 in every 50 events), plus a
/// margin for rounding.
pub fn max_auction_lifetime(source: &NexmarkSource) -> Duration {
    let rate = source.generator().config().events_per_second.max(1);
    let events = IN_FLIGHT_AUCTIONS * 50 / 3 + 1;
    Duration::from_millis(2 * (events * 1000).div_ceil(rate) + 2)
}

/// One output row of q4: the average closing price of a category so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CategoryAverage {
    /// The category.
    pub category: u64,
    /// The average winning price of its closed auctions, cents (rounded down).
    pub average: u64,
    /// How many of its auctions have closed with a winning bid.
    pub auctions: u64,
}

/// A closed auction: (when its closing price was known, category, winning price).
type Closed = (u64, u64, u64);

/// What q4 keeps of an auction: its id, category and expiry (its opening is the row's event time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuctionLife {
    /// The auction's id.
    pub id: u64,
    /// Its category.
    pub category: u64,
    /// When it expires, ms.
    pub expires: u64,
}

/// What q4 keeps of a bid: (auction, price, time ms).
type BidPrice = (u64, u64, u64);

/// Keeps the highest price of an auction's bids.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxBidPrice;

impl Aggregator<(AuctionLife, BidPrice)> for MaxBidPrice {
    type Acc = u64;
    type Output = u64;
    fn init(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, (_, (_, price, _)): &(AuctionLife, BidPrice)) {
        *acc = (*acc).max(*price);
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc = (*acc).max(other);
    }
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Averages closing prices; also keeps the latest closing time, which is the epoch a changed
/// category's update is emitted at (its output event time).
#[derive(Clone, Copy, Debug, Default)]
pub struct AverageClosingPrice;

impl Aggregator<Closed> for AverageClosingPrice {
    /// (sum of prices, count, latest closing time).
    type Acc = (u64, u64, u64);
    /// (average, count, latest closing time).
    type Output = (u64, u64, u64);
    fn init(&self) -> Self::Acc {
        (0, 0, 0)
    }
    fn add(&self, acc: &mut Self::Acc, &(time, _, price): &Closed) {
        acc.0 += price;
        acc.1 += 1;
        acc.2 = acc.2.max(time);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 += other.0;
        acc.1 += other.1;
        acc.2 = acc.2.max(other.2);
    }
    fn finish(&self, acc: &Self::Acc) -> Self::Output {
        (acc.0 / acc.1.max(1), acc.1, acc.2)
    }
}

/// The average closing price per category, as an [`EventStream`] of updates: each row at event
/// time = the epoch its category's average changed. `max_lifetime` must bound every auction's
/// lifetime (use [`max_auction_lifetime`] for the generator's). Late auctions/bids (none with the
/// source's own watermark delay) are counted by the operators and not forwarded.
pub fn q4<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
    max_lifetime: Duration,
) -> Result<EventStream<'scope, CategoryAverage>, BuildError> {
    let auctions = events.clone().flat_map(|event| match event {
        super::Event::Auction(auction) => {
            Some(AuctionLife { id: auction.id, category: auction.category, expires: auction.expires })
        }
        _ => None,
    });
    let joined = auctions.join_interval(
        ctx,
        "q4-join",
        bids(events).map(|bid: Bid| (bid.auction, bid.price, bid.date_time)),
        |auction: &AuctionLife| auction.id,
        |&(auction, _, _): &BidPrice| auction,
        TimeOffset::ZERO,
        max_lifetime,
        JoinType::Inner,
    )?;
    let during_lifetime = EventStream {
        records: joined.rows.records.flat_map(|row: Event<JoinedRow<AuctionLife, BidPrice>>| match row.data {
            JoinedRow { left: Some(auction), right: Some(bid) } if bid.2 <= auction.expires => {
                Some(Event::new(EventTime::from_millis(auction.expires), (auction, bid)))
            }
            _ => None,
        }),
        late: joined.late_left.flat_map(|_| None::<LateRecord<(AuctionLife, BidPrice)>>),
    };
    let winners = during_lifetime.window_aggregate(
        ctx,
        "q4-max",
        Windowing::tumbling(Duration::from_millis(CLOSE_WINDOW_MS)),
        OutputMode::Append,
        |(auction, _): &(AuctionLife, BidPrice)| (auction.id, auction.category),
        MaxBidPrice,
    )?;
    let closed = EventStream {
        records: winners.results.map(|row: WindowResult<(u64, u64), u64>| {
            let time = row.window_end as u64;
            Event::new(EventTime::from_millis(time), (time, row.key.1, row.value))
        }),
        late: winners.late.flat_map(|_| None::<LateRecord<Closed>>),
    };
    let averages = closed.window_aggregate(
        ctx,
        "q4-avg",
        Windowing::global(),
        OutputMode::Update,
        |&(_, category, _): &Closed| category,
        AverageClosingPrice,
    )?;
    Ok(EventStream {
        records: averages.results.map(|row: WindowResult<u64, (u64, u64, u64)>| {
            let (average, auctions, time) = row.value;
            Event::new(EventTime::from_millis(time), CategoryAverage { category: row.key, average, auctions })
        }),
        late: averages.late.flat_map(|_| None::<LateRecord<CategoryAverage>>),
    })
}
