//! The Nexmark data model: people who sell, auctions of their items, and bids on those auctions
//! (the field sets of the Nexmark benchmark as in Apache Beam and Flink's `nexmark`).
//!
//! Times (`date_time`, `expires`) are event times in milliseconds since the Unix epoch. Prices are
//! in cents. A bid's `channel` and `url` come from a shared cache (`Arc<str>`), so generating a
//! bid allocates nothing when its `extra` padding is empty.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A person: a seller or bidder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Person {
    /// Unique id (from 1000).
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// US state code.
    pub state: String,
    /// Event time of the registration, ms.
    pub date_time: u64,
    /// Padding.
    pub extra: String,
}

/// An auction of one item.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Auction {
    /// Unique id (from 1000).
    pub id: u64,
    /// The item's name.
    pub item_name: String,
    /// The item's description.
    pub description: String,
    /// Opening price, cents.
    pub initial_bid: u64,
    /// Reserve price, cents (above the initial bid).
    pub reserve: u64,
    /// Event time the auction opened, ms.
    pub date_time: u64,
    /// Event time the auction closes, ms.
    pub expires: u64,
    /// The id of the selling person.
    pub seller: u64,
    /// Category id (10 .. 14).
    pub category: u64,
    /// Padding.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidding person's id.
    pub bidder: u64,
    /// Price, cents.
    pub price: u64,
    /// The channel the bid came through.
    pub channel: Arc<str>,
    /// The bid's URL.
    pub url: Arc<str>,
    /// Event time of the bid, ms.
    pub date_time: u64,
    /// Padding.
    pub extra: String,
}

/// One Nexmark event. People and auctions are boxed so that the common case, a bid, stays small.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Box<Person>),
    /// A new auction.
    Auction(Box<Auction>),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's time, ms since the epoch.
    pub fn date_time(&self) -> u64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The bid, if this event is one.
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(bid) => Some(bid),
            _ => None,
        }
    }
}
