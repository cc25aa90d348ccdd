//! Nexmark q12, processing-time windows: the number of bids of each bidder in 10 s tumbling
//! windows of PROCESSING time (wall clock), not event time.
//!
//! Weir's windows are event-time windows, so q12 is written with the public keyed state,
//! `key_by(bidder).process_with_state(..)`: the state of a bidder is `(window start, count)` of
//! its open wall-clock window (windows aligned to multiples of 10 s since the Unix epoch). A call
//! with records first closes the open window if the wall clock has left it (emits its count), then
//! counts the records into the current window; every call sets the processing-time timeout to the
//! time left in the open window, so a bidder that gets no more bids has its window emitted when
//! the timeout fires (the window's end, or at once when the input ends). Each window of a bidder
//! is thus emitted exactly once, after it ended or at the end of the input. The output depends on
//! the wall clock (as in every engine's processing-time windows), so runs differ; what is
//! invariant is that each bid is counted in exactly one window of its bidder.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid};

/// Window size of q12, ms of processing time.
pub const SIZE_MS: u64 = 10_000;

/// One row of q12: a bidder's bids in one processing-time window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidderCount {
    /// The bidder.
    pub bidder: u64,
    /// The processing-time window's start, wall-clock ms since the Unix epoch.
    pub window_start: u64,
    /// The window's end (exclusive), wall-clock ms.
    pub window_end: u64,
    /// Bids of the bidder counted in the window.
    pub bids: u64,
}

fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// q12: per bidder, the bids counted in each 10 s processing-time tumbling window, emitted once
/// the window ended (or the input did), with the event time of the call that emits it.
pub fn q12<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, BidderCount>, BuildError> {
    q12_with(ctx, events, SIZE_MS)
}

/// q12 with processing-time windows of `size_ms` (at least 1) instead of 10 s.
pub fn q12_with<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
    size_ms: u64,
) -> Result<EventStream<'scope, BidderCount>, BuildError> {
    let size_ms = size_ms.max(1);
    let counted = bids(events).key_by(|bid: &Bid| bid.bidder).process_with_state(
        ctx,
        "q12-bids-per-bidder",
        move |bidder: &u64, records, state: &mut KeyedState<(u64, u64)>, out: &mut Vec<BidderCount>| {
            let emit = |(start, count): (u64, u64), out: &mut Vec<BidderCount>| {
                out.push(BidderCount {
                    bidder: *bidder,
                    window_start: start,
                    window_end: start + size_ms,
                    bids: count,
                });
            };
            if state.has_timed_out() {
                if let Some(open) = state.get().copied() {
                    emit(open, out);
                }
                state.remove();
                return;
            }
            let now = wall_clock_ms();
            let current = now - now % size_ms;
            let mut open = match state.get().copied() {
                Some(open) if open.0 == current => open,
                Some(closed) => {
                    emit(closed, out);
                    (current, 0)
                }
                None => (current, 0),
            };
            open.1 += records.len() as u64;
            state.update(open);
            state.set_timeout_duration(Duration::from_millis((current + size_ms - now).max(1)));
        },
    )?;
    Ok(counted.output)
}
