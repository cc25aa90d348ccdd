//! Nexmark q3, local item suggestion: the auctions of category 10 whose seller lives in Oregon,
//! Idaho or California, with the seller's name, city and state.
//!
//! The persons (filtered by state) and the auctions (filtered by category) are joined on
//! `person.id = auction.seller` with the public `join_unbounded` (inner): the SQL has no time
//! bound (a person may sell at any later time), so the join is the explicit unbounded one and its
//! state (the selected persons and auctions) grows with the input, as in Beam/Flink's q3. A pair
//! carries the later of its two rows' event times.

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use weir_operators::prelude::*;
use weir_runtime::prelude::*;

use super::{Auction, Person};

/// The auction category q3 selects.
pub const CATEGORY: u64 = 10;
/// The sellers' states q3 selects.
pub const STATES: [&str; 3] = ["OR", "ID", "CA"];

/// One output row of q3: a person's auction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalItem {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state.
    pub state: String,
    /// The auction's id.
    pub auction: u64,
}

/// The persons of `events` living in one of [`STATES`].
pub fn local_persons(events: EventStream<'_, super::Event>) -> EventStream<'_, Person> {
    events.flat_map(|event| match event {
        super::Event::Person(person) if STATES.contains(&person.state.as_str()) => Some(*person),
        _ => None,
    })
}

/// The auctions of `events` in category [`CATEGORY`].
pub fn category_auctions(events: EventStream<'_, super::Event>) -> EventStream<'_, Auction> {
    events.flat_map(|event| match event {
        super::Event::Auction(auction) if auction.category == CATEGORY => Some(*auction),
        _ => None,
    })
}

/// The local item suggestions, as an [`EventStream`] (event time = the later of the person's and
/// the auction's times). Late persons/auctions (none with the source's own watermark delay) are
/// counted by the join and not forwarded.
pub fn q3<'scope>(
    ctx: &QueryContext,
    events: EventStream<'scope, super::Event>,
) -> Result<EventStream<'scope, LocalItem>, BuildError> {
    let persons = local_persons(events.clone());
    let auctions = category_auctions(events);
    let joined = persons.join_unbounded(
        ctx,
        "q3-join",
        auctions,
        |person: &Person| person.id,
        |auction: &Auction| auction.seller,
        JoinType::Inner,
    )?;
    Ok(EventStream {
        records: joined.rows.records.flat_map(|row: Event<JoinedRow<Person, Auction>>| {
            let time = row.time;
            match row.data {
                JoinedRow { left: Some(person), right: Some(auction) } => Some(Event::new(
                    time,
                    LocalItem { name: person.name, city: person.city, state: person.state, auction: auction.id },
                )),
                _ => None,
            }
        }),
        late: joined.late_left.flat_map(|_| None::<LateRecord<LocalItem>>),
    })
}
