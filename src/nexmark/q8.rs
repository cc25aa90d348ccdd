//! Nexmark q8, monitor new users: the persons who opened an auction in the same 10 s tumbling
//! window in which they registered, with that window's start.
//!
//! As in the SQL (persons grouped by id and window, auctions grouped by seller and window, joined
//! on id = seller and equal window starts), with two public operators:
//!
//! 1. `window_count(tumbling 10 s, key seller)` over the auctions: one row per seller and window
//!    (workers pre-aggregate before the exchange), re-read as an event stream with event time =
//!    the window's end (the time it is emitted at, so it stays on time);
//! 2. `join_interval` (inner) of the persons (left, at their registration time `t`) with those
//!    seller windows (right, at the window's end `e`), keyed by `(id, window start)`. The key makes
//!    the windows equal; a person at `t` in `[e - 10 s, e)` has `0 < e - t <= 10 s`, so the bounds
//!    `[0, 10 s]` admit every match and let the join evict a person 10 s after it registered and a
//!    window as soon as the persons' watermark passes its end.
//!
//! Each person registers once, and each seller has one row per window, so every (person, window)
//! is reported once. Output event time = the window's end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{Auction, Person};

/// Window size of q8, ms.
pub const SIZE_MS: u64 = 10_000;

/// One output row of q8: a new user who opened an auction in the window it registered in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NewUser {
    /// The person's id.
    pub id: u64,
    /// The person's name.
    pub name: String,
    /// The window's start, ms.
    pub window_start: i64,
}

fn window_start(time_ms: u64) -> i64 {
    (time_ms - time_ms % SIZE_MS) as i64
}

/// The new users of every 10 s tumbling window, as an [`EventStream`] with event time = the
/// window's end. Late persons/auctions (none with the source's own watermark delay) are counted by
/// the operators and not forwarded.
pub fn q8<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, NewUser>, BuildError> {
    let persons = events.clone().flat_map(|event| match event {
        super::Event::Person(person) => Some(*person),
        _ => None,
    });
    let auctions = events.flat_map(|event| match event {
        super::Event::Auction(auction) => Some(*auction),
        _ => None,
    });
    let sellers = auctions.window_count(
        ctx,
        "q8-sellers",
        Windowing::tumbling(Duration::from_millis(SIZE_MS)),
        OutputMode::Append,
        |auction: &Auction| auction.seller,
    )?;
    let seller_windows = EventStream {
        records: sellers.results.map(|row: WindowResult<u64, u64>| {
            Event::new(EventTime::from_millis(row.window_end as u64), (row.key, row.window_start))
        }),
        late: sellers.late.flat_map(|_| None::<LateRecord<(u64, i64)>>),
    };
    let joined = persons.join_interval(
        ctx,
        "q8-join",
        seller_windows,
        |person: &Person| (person.id, window_start(person.date_time)),
        |&(seller, start): &(u64, i64)| (seller, start),
        TimeOffset::ZERO,
        Duration::from_millis(SIZE_MS),
        JoinType::Inner,
    )?;
    Ok(EventStream {
        records: joined.rows.records.flat_map(|row: Event<JoinedRow<Person, (u64, i64)>>| {
            let time = row.time;
            match row.data {
                JoinedRow { left: Some(person), right: Some((_, window_start)) } => {
                    Some(Event::new(time, NewUser { id: person.id, name: person.name, window_start }))
                }
                _ => None,
            }
        }),
        late: joined.late_left.flat_map(|_| None::<LateRecord<NewUser>>),
    })
}
