//! Nexmark q7, highest bid: in every 10 s tumbling window, the bids with the window's highest
//! price (the SQL joins the maximum back to the bids; ties all reported).
//!
//! One public `window_aggregate` keyed by nothing (one group per window) with an aggregator that
//! keeps the highest price and the bids that have it — the "join back" folded into the
//! aggregate. Workers pre-aggregate before the exchange, so only each worker's best bids of a
//! window travel.

use std::time::Duration;

use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid};

/// Window size of q7, ms.
pub const SIZE_MS: u64 = 10_000;

/// Keeps the highest price and every bid with that price.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxPriceBids;

impl Aggregator<Bid> for MaxPriceBids {
    type Acc = Vec<Bid>;
    type Output = Vec<Bid>;
    fn init(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<Bid>, bid: &Bid) {
        match acc.first().map(|b| b.price) {
            Some(best) if bid.price < best => {}
            Some(best) if bid.price == best => acc.push(bid.clone()),
            _ => {
                acc.clear();
                acc.push(bid.clone());
            }
        }
    }
    fn merge(&self, acc: &mut Vec<Bid>, other: Vec<Bid>) {
        match (acc.first().map(|b| b.price), other.first().map(|b| b.price)) {
            (_, None) => {}
            (Some(best), Some(theirs)) if theirs < best => {}
            (Some(best), Some(theirs)) if theirs == best => acc.extend(other),
            _ => *acc = other,
        }
    }
    fn finish(&self, acc: &Vec<Bid>) -> Vec<Bid> {
        let mut bids = acc.clone();
        bids.sort();
        bids
    }
}

/// The highest bids of every 10 s tumbling window, as an [`EventStream`] with event time = the
/// window's end (when the maximum is known).
pub fn q7<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, Bid>, BuildError> {
    let best = bids(events).window_aggregate(
        ctx,
        "q7-max",
        Windowing::tumbling(Duration::from_millis(SIZE_MS)),
        OutputMode::Append,
        |_: &Bid| (),
        MaxPriceBids,
    )?;
    Ok(EventStream {
        records: best.results.flat_map(|row: WindowResult<(), Vec<Bid>>| {
            let time = EventTime::from_millis(row.window_end as u64);
            row.value.into_iter().map(move |bid| Event::new(time, bid))
        }),
        late: best.late.flat_map(|_| None::<LateRecord<Bid>>),
    })
}
