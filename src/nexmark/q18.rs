//! Nexmark q18, find last bid: the last bid (greatest event time) of every (bidder, auction).
//!
//! Flink's SQL is a top-1 per key (`ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY
//! dateTime DESC) = 1`), whose result is an *updating* table: a key's last bid is only final once
//! no later bid of that key can arrive, which an unbounded stream never guarantees (an auction's
//! `expires` does not bound its bids in the generator). So q18 is an upsert stream: one public
//! `window_aggregate` with no window (`Windowing::global()`) in `OutputMode::Update`, keyed by
//! (bidder, auction), with [`LatestBid`] keeping the bid with the greatest `(date_time, bid)`
//! (ties broken by the bid's `Ord`, so the result does not depend on arrival order). At every
//! epoch it emits the keys whose last bid may have changed, with their current last bid; the last
//! row emitted per key is its last bid over the whole input (exactly the batch answer on a bounded
//! input). State: one bid per (bidder, auction) ever seen, never evicted (as in Flink without
//! state TTL). Workers pre-aggregate each batch before the exchange by key.

use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid};

/// Keeps the bid with the greatest `(date_time, bid)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LatestBid;

impl Aggregator<Bid> for LatestBid {
    type Acc = Option<Bid>;
    type Output = Bid;
    fn init(&self) -> Option<Bid> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<Bid>, bid: &Bid) {
        match acc {
            Some(last) if (last.date_time, &*last) >= (bid.date_time, bid) => {}
            _ => *acc = Some(bid.clone()),
        }
    }
    fn merge(&self, acc: &mut Option<Bid>, other: Option<Bid>) {
        if let Some(bid) = other {
            match acc {
                Some(last) if (last.date_time, &*last) >= (bid.date_time, &bid) => {}
                _ => *acc = Some(bid),
            }
        }
    }
    fn finish(&self, acc: &Option<Bid>) -> Bid {
        acc.clone().expect("a group exists only once a bid was added")
    }
}

/// The current last bid of each (bidder, auction) whose last bid changed, at every epoch, as an
/// [`EventStream`] with event time = that bid's time (never below the epoch it is emitted at: the
/// key received a bid of that epoch, whose time is at least the epoch, and the last bid is at
/// least as late).
pub fn q18<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, Bid>, BuildError> {
    let last = bids(events).window_aggregate(
        ctx,
        "q18-last-bid",
        Windowing::global(),
        OutputMode::Update,
        |bid: &Bid| (bid.bidder, bid.auction),
        LatestBid,
    )?;
    Ok(EventStream {
        records: last.results.map(|row: WindowResult<(u64, u64), Bid>| {
            Event::new(EventTime::from_millis(row.value.date_time), row.value)
        }),
        late: last.late.flat_map(|_| None::<LateRecord<Bid>>),
    })
}
