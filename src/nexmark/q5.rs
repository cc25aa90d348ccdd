//! Nexmark q5, hot items: the auctions with the most bids in each sliding window of 10 s every 2 s.
//!
//! Two public window aggregations, as in the SQL (a count per auction and window, then the
//! maximum per window, joined back): first `window_count` over `Windowing::sliding(10 s, 2 s)`
//! keyed by auction; its results are stamped at their window's end, so they are re-read as an
//! event stream with event time = window end and grouped a second time with a 2 s tumbling
//! window (which holds exactly the windows ending at its start) keyed by the window, with an
//! aggregator that keeps the largest count and every auction that has it (ties all reported).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid};

/// Window size of q5, ms.
pub const SIZE_MS: u64 = 10_000;
/// Window slide of q5, ms.
pub const SLIDE_MS: u64 = 2_000;

/// One output row of q5: an auction with the most bids in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HotItem {
    /// Window start, ms (inclusive).
    pub window_start: i64,
    /// Window end, ms (exclusive).
    pub window_end: i64,
    /// The auction's id.
    pub auction: u64,
    /// Its number of bids in the window (the window's maximum).
    pub count: u64,
}

/// Keeps the largest count and every auction with that count.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxCountAuctions;

type Counted = WindowResult<u64, u64>;

impl Aggregator<Counted> for MaxCountAuctions {
    type Acc = (u64, Vec<u64>);
    type Output = (u64, Vec<u64>);
    fn init(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, row: &Counted) {
        if row.value > acc.0 {
            acc.0 = row.value;
            acc.1.clear();
        }
        if row.value == acc.0 {
            acc.1.push(row.key);
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn finish(&self, acc: &Self::Acc) -> Self::Output {
        let mut auctions = acc.1.clone();
        auctions.sort_unstable();
        (acc.0, auctions)
    }
}

/// The hot items of every 10 s window sliding by 2 s. Its output is an [`EventStream`] whose event
/// time is the window's end + 2 s: the time the second stage knows the maximum and emits it.
/// (Bids late at the source are counted by the first stage; none occur with the source's own
/// watermark delay.)
pub fn q5<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, HotItem>, BuildError> {
    let counts = bids(events).window_count(
        ctx,
        "q5-count",
        Windowing::sliding(Duration::from_millis(SIZE_MS), Duration::from_millis(SLIDE_MS)),
        OutputMode::Append,
        |bid: &Bid| bid.auction,
    )?;
    let windows = EventStream {
        records: counts.results.map(|row: Counted| Event::new(EventTime::from_millis(row.window_end as u64), row)),
        late: counts.late.flat_map(|_| None::<LateRecord<Counted>>),
    };
    let maxima = windows.window_aggregate(
        ctx,
        "q5-max",
        Windowing::tumbling(Duration::from_millis(SLIDE_MS)),
        OutputMode::Append,
        |row: &Counted| (row.window_start, row.window_end),
        MaxCountAuctions,
    )?;
    Ok(EventStream {
        records: maxima.results.flat_map(|row: WindowResult<(i64, i64), (u64, Vec<u64>)>| {
            let (window_start, window_end) = row.key;
            let (count, auctions) = row.value;
            auctions.into_iter().map(move |auction| {
                Event::new(
                    EventTime::from_millis(window_end as u64 + SLIDE_MS),
                    HotItem { window_start, window_end, auction, count },
                )
            })
        }),
        late: maxima.late.flat_map(|_| None::<LateRecord<HotItem>>),
    })
}
