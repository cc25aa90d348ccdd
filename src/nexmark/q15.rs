//! Nexmark q15, bidding statistics report: per day (a 1-day tumbling event-time window), the
//! number of bids, of distinct bidders and of distinct auctions, in total and split by price
//! range (rank 1: price < 10,000; rank 2: 10,000 ≤ price < 1,000,000; rank 3: price ≥ 1,000,000,
//! on the generator's `price` field, cents, as Flink's nexmark does).
//!
//! One public `window_aggregate` keyed by nothing (one group per day) with [`BidStatistics`], an
//! aggregator holding the four bid counts and four distinct sets (or sketches) of bidders and of
//! auctions. The distinct part is delegated to Weir's [`CountDistinct`] (exact, `--query q15`) or
//! [`ApproxCountDistinct`] (HyperLogLog++, rsd 0.05, `--query q15-hll`), so partial results merge
//! across workers: each worker pre-aggregates every batch before the exchange.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid};

/// Window size of q15 and q16: one day, ms.
pub const DAY_MS: u64 = 86_400_000;
/// Prices below this (cents) are rank 1.
pub const RANK1_BELOW: u64 = 10_000;
/// Prices at least [`RANK1_BELOW`] and below this (cents) are rank 2; the rest rank 3.
pub const RANK2_BELOW: u64 = 1_000_000;

/// The price rank of a bid: 1, 2 or 3.
pub fn rank_of(price: u64) -> usize {
    if price < RANK1_BELOW {
        1
    } else if price < RANK2_BELOW {
        2
    } else {
        3
    }
}

/// The statistics of a group of bids. Index 0 of each array is the total, index `r` price rank
/// `r` (see [`rank_of`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidStats {
    /// Bids: total, rank 1, rank 2, rank 3.
    pub bids: [u64; 4],
    /// Distinct bidders: total, rank 1, rank 2, rank 3.
    pub bidders: [u64; 4],
    /// Distinct auctions: total, rank 1, rank 2, rank 3.
    pub auctions: [u64; 4],
}

/// The partial result of [`BidStatistics`]: counts and distinct partials, total and per rank.
/// A rank's distinct partials are created only once it has a bid, so that a partial of a few bids
/// (as workers make per batch and group before the exchange) builds and merges only what it uses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BidStatsAcc<B, A> {
    bids: [u64; 4],
    bidders: [Option<B>; 4],
    auctions: [Option<A>; 4],
}

/// Aggregates bids into [`BidStats`]; `bidders`/`auctions` count distinct values (one of
/// [`CountDistinct`] or [`ApproxCountDistinct`], or any aggregator of bids into a `u64`).
#[derive(Clone, Copy, Debug)]
pub struct BidStatistics<B, A> {
    bidders: B,
    auctions: A,
}

/// The exact flavour: distinct bidders and auctions with [`CountDistinct`].
pub type ExactBidStatistics = BidStatistics<CountDistinct<fn(&Bid) -> u64>, CountDistinct<fn(&Bid) -> u64>>;
/// The approximate flavour: distinct bidders and auctions with [`ApproxCountDistinct`] (HyperLogLog++).
pub type ApproxBidStatistics =
    BidStatistics<ApproxCountDistinct<fn(&Bid) -> u64>, ApproxCountDistinct<fn(&Bid) -> u64>>;

fn bidder_of(bid: &Bid) -> u64 {
    bid.bidder
}

fn auction_of(bid: &Bid) -> u64 {
    bid.auction
}

impl<B, A> BidStatistics<B, A> {
    /// Statistics counting distinct bidders with `bidders` and distinct auctions with `auctions`.
    pub fn new(bidders: B, auctions: A) -> Self {
        BidStatistics { bidders, auctions }
    }
}

impl ExactBidStatistics {
    /// Exact distinct counts.
    pub fn exact() -> Self {
        BidStatistics::new(CountDistinct::new(bidder_of as fn(&Bid) -> u64), CountDistinct::new(auction_of as _))
    }
}

impl ApproxBidStatistics {
    /// HyperLogLog++ distinct counts at the default rsd 0.05 (precision 9): exact or off by one
    /// below about a hundred distinct values, 4.6 % relative standard error above.
    pub fn approximate() -> Self {
        BidStatistics::new(
            ApproxCountDistinct::new(bidder_of as fn(&Bid) -> u64),
            ApproxCountDistinct::new(auction_of as _),
        )
    }
}

impl<B, A> Aggregator<Bid> for BidStatistics<B, A>
where
    B: Aggregator<Bid, Output = u64>,
    A: Aggregator<Bid, Output = u64>,
{
    type Acc = BidStatsAcc<B::Acc, A::Acc>;
    type Output = BidStats;

    fn init(&self) -> Self::Acc {
        BidStatsAcc { bids: [0; 4], bidders: [None, None, None, None], auctions: [None, None, None, None] }
    }

    #[inline]
    fn add(&self, acc: &mut Self::Acc, bid: &Bid) {
        let rank = rank_of(bid.price);
        for i in [0, rank] {
            acc.bids[i] += 1;
            self.bidders.add(acc.bidders[i].get_or_insert_with(|| self.bidders.init()), bid);
            self.auctions.add(acc.auctions[i].get_or_insert_with(|| self.auctions.init()), bid);
        }
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        let BidStatsAcc { bids, bidders, auctions } = other;
        for (mine, theirs) in acc.bids.iter_mut().zip(bids) {
            *mine += theirs;
        }
        for (mine, theirs) in acc.bidders.iter_mut().zip(bidders) {
            merge_optional(&self.bidders, mine, theirs);
        }
        for (mine, theirs) in acc.auctions.iter_mut().zip(auctions) {
            merge_optional(&self.auctions, mine, theirs);
        }
    }

    fn finish(&self, acc: &Self::Acc) -> BidStats {
        BidStats {
            bids: acc.bids,
            bidders: std::array::from_fn(|i| acc.bidders[i].as_ref().map_or(0, |b| self.bidders.finish(b))),
            auctions: std::array::from_fn(|i| acc.auctions[i].as_ref().map_or(0, |a| self.auctions.finish(a))),
        }
    }
}

/// Merges an optional partial into another (absent = no records).
fn merge_optional<G: Aggregator<Bid>>(aggregator: &G, mine: &mut Option<G::Acc>, theirs: Option<G::Acc>) {
    match (mine.as_mut(), theirs) {
        (_, None) => {}
        (Some(acc), Some(other)) => aggregator.merge(acc, other),
        (None, other) => *mine = other,
    }
}

/// One row of q15: a day and its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DayBidStats {
    /// The day's start, ms since the epoch (UTC midnight).
    pub day_start: u64,
    /// The day's statistics.
    pub stats: BidStats,
}

/// q15 with the given statistics aggregator: one [`DayBidStats`] per day with bids, as an
/// [`EventStream`] with event time = the day's end (when the day is complete).
pub fn q15_with<'scope, B, A>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
    statistics: BidStatistics<B, A>,
) -> Result<EventStream<'scope, DayBidStats>, BuildError>
where
    B: Aggregator<Bid, Output = u64>,
    A: Aggregator<Bid, Output = u64>,
{
    let days = bids(events).window_aggregate(
        ctx,
        "q15-day",
        Windowing::tumbling(Duration::from_millis(DAY_MS)),
        OutputMode::Append,
        |_: &Bid| (),
        statistics,
    )?;
    Ok(EventStream {
        records: days.results.map(|row: WindowResult<(), BidStats>| {
            Event::new(
                EventTime::from_millis(row.window_end as u64),
                DayBidStats { day_start: row.window_start as u64, stats: row.value },
            )
        }),
        late: days.late.flat_map(|_| None::<LateRecord<DayBidStats>>),
    })
}

/// q15 with exact distinct counts (`--query q15`).
pub fn q15<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, DayBidStats>, BuildError> {
    q15_with(ctx, events, BidStatistics::exact())
}

/// q15 with HyperLogLog++ distinct counts (`--query q15-hll`).
pub fn q15_hll<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, DayBidStats>, BuildError> {
    q15_with(ctx, events, BidStatistics::approximate())
}
