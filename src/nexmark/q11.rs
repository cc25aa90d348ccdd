//! Nexmark q11, user sessions: per bidder, the sessions of bids separated by at least 10 s of
//! event time, with each session's bid count and bounds.
//!
//! One public `session_count` keyed by bidder with a 10 s gap in append mode: a session is
//! `[first bid, last bid + 10 s)` and is emitted once, final, when the watermark reaches its end.
//! Workers fold their bids into partial sessions per bidder before the exchange.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{bids, Bid};

/// Session gap of q11, ms.
pub const GAP_MS: u64 = 10_000;

/// One output row of q11: a bidder's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserSession {
    /// The bidder (a person id).
    pub bidder: u64,
    /// Bids in the session.
    pub bid_count: u64,
    /// Session start, ms: the first bid's time (inclusive).
    pub start: i64,
    /// Session end, ms: the last bid's time + 10 s (exclusive).
    pub end: i64,
}

/// The bidders' sessions, as an [`EventStream`] with event time = the session's end (when it is
/// final). (Bids late at the source are counted by the session operator; none occur with the
/// source's own watermark delay.)
pub fn q11<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, UserSession>, BuildError> {
    let sessions = bids(events).session_count(
        ctx,
        "q11-sessions",
        Duration::from_millis(GAP_MS),
        OutputMode::Append,
        |bid: &Bid| bid.bidder,
    )?;
    Ok(EventStream {
        records: sessions.results.map(|row: WindowResult<u64, u64>| {
            Event::new(
                EventTime::from_millis(row.window_end as u64),
                UserSession { bidder: row.key, bid_count: row.value, start: row.window_start, end: row.window_end },
            )
        }),
        late: sessions.late.flat_map(|_| None::<LateRecord<UserSession>>),
    })
}
