//! Nexmark q16, channel statistics report: q15's statistics per day AND channel (bids, distinct
//! bidders, distinct auctions, in total and per price rank).
//!
//! One public `window_aggregate` (1-day tumbling window) keyed by the bid's channel with q15's
//! [`BidStatistics`] aggregator, exact ([`CountDistinct`], `--query q16`) or HyperLogLog++
//! ([`ApproxCountDistinct`], `--query q16-hll`). Workers pre-aggregate per batch and channel
//! before the exchange by channel.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::q15::{BidStatistics, BidStats, DAY_MS};
use super::{bids, Bid};

/// One row of q16: a day, a channel and its statistics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelDayStats {
    /// The day's start, ms since the epoch (UTC midnight).
    pub day_start: u64,
    /// The channel.
    pub channel: Arc<str>,
    /// The statistics of the channel's bids that day.
    pub stats: BidStats,
}

/// q16 with the given statistics aggregator: one [`ChannelDayStats`] per day and channel with
/// bids, as an [`EventStream`] with event time = the day's end (when the day is complete).
pub fn q16_with<'scope, B, A>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
    statistics: BidStatistics<B, A>,
) -> Result<EventStream<'scope, ChannelDayStats>, BuildError>
where
    B: Aggregator<Bid, Output = u64>,
    A: Aggregator<Bid, Output = u64>,
{
    let days = bids(events).window_aggregate(
        ctx,
        "q16-channel-day",
        Windowing::tumbling(Duration::from_millis(DAY_MS)),
        OutputMode::Append,
        |bid: &Bid| bid.channel.clone(),
        statistics,
    )?;
    Ok(EventStream {
        records: days.results.map(|row: WindowResult<Arc<str>, BidStats>| {
            Event::new(
                EventTime::from_millis(row.window_end as u64),
                ChannelDayStats { day_start: row.window_start as u64, channel: row.key, stats: row.value },
            )
        }),
        late: days.late.flat_map(|_| None::<LateRecord<ChannelDayStats>>),
    })
}

/// q16 with exact distinct counts (`--query q16`).
pub fn q16<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, ChannelDayStats>, BuildError> {
    q16_with(ctx, events, BidStatistics::exact())
}

/// q16 with HyperLogLog++ distinct counts (`--query q16-hll`).
pub fn q16_hll<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, ChannelDayStats>, BuildError> {
    q16_with(ctx, events, BidStatistics::approximate())
}
