//! The Nexmark event generator, following Apache Beam's `GeneratorConfig`/`NexmarkGenerator`
//! (which Flink's `nexmark` also uses): every event is a pure function of its event number and
//! the seed, so any split of the event numbers over partitions produces the same events.
//!
//! * Kind: within each block of 50 event numbers, offset 0 is a person, 1–3 are auctions and
//!   4–49 are bids (1 : 3 : 46).
//! * Ids: person and auction ids follow from the event number (the number of people/auctions
//!   created so far, from 1000). Bids and auctions refer to recent people/auctions: with
//!   probability 1/2 a bid goes to a "hot" auction (the latest even-numbered one), with
//!   probability 3/4 the bidder is a hot bidder, and with 3/4 an auction's seller is hot;
//!   otherwise the id is drawn among the last 100 auctions / 1000 people (plus a lead of 10,
//!   ids not created yet, as in Beam).
//! * Prices: `round(10^(6·u) · 100)` cents for `u` uniform in [0, 1).
//! * Time: event number `n` has time `base + ⌊n · 1000 / rate⌋` ms. Out of order as in Beam: the
//!   `n`-th event generated is event number `adjusted(n) = g·⌊n/g⌋ + (953·n mod g)`, a
//!   permutation within each group of `g` (`out_of_order_group_size`, default 1 = in order).

use std::sync::Arc;

use super::model::{Auction, Bid, Event, Person};

/// People per block of [`PROPORTION_DENOMINATOR`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per block.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per block.
pub const BID_PROPORTION: u64 = 46;
/// Events per block.
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// The first person id.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category id.
pub const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_CHANNEL_RATIO: u64 = 2;
const AUCTION_ID_LEAD: u64 = 10;
const PERSON_ID_LEAD: u64 = 10;
const CHANNELS: usize = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];

/// The kind of event an event number produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A person.
    Person,
    /// An auction.
    Auction,
    /// A bid.
    Bid,
}

/// The kind of event number `n` (1 : 3 : 46 within each block of 50).
pub fn kind_of(n: u64) -> EventKind {
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        EventKind::Person
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        EventKind::Auction
    } else {
        EventKind::Bid
    }
}

/// The settings every generated event depends on.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    /// Seed of the per-event random numbers.
    pub seed: u64,
    /// Event time of event number 0, ms.
    pub base_time_ms: u64,
    /// Events per second of event time.
    pub events_per_second: u64,
    /// Size of the groups within which events are permuted (1: in order).
    pub out_of_order_group_size: u64,
    /// Length of the `extra` padding of every event (0: empty, no allocation).
    pub extra_bytes: usize,
}

/// Generates events by number from a [`GeneratorConfig`], with a shared channel/URL cache.
#[derive(Clone, Debug)]
pub struct Generator {
    config: GeneratorConfig,
    channels: Arc<Vec<(Arc<str>, Arc<str>)>>,
}

/// SplitMix64: a small, fast, well-mixed generator (one per event, seeded from its number).
struct Random(u64);

impl Random {
    fn new(seed: u64, n: u64) -> Self {
        let mut r = Random(seed ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next_u64();
        r
    }
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..bound` (bound > 0).
    #[inline]
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn string(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
    fn price(&mut self) -> u64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as u64
    }
}

/// The number of people created before or at event number `n`, minus one (Beam's `lastBase0PersonId`).
pub fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / PROPORTION_DENOMINATOR;
    let mut offset = n % PROPORTION_DENOMINATOR;
    if offset >= PERSON_PROPORTION {
        offset = PERSON_PROPORTION - 1;
    }
    epoch * PERSON_PROPORTION + offset
}

/// The id (base 0) of the last auction created at or before event number `n` (Beam's `lastBase0AuctionId`).
pub fn last_base0_auction_id(n: u64) -> u64 {
    let mut epoch = n / PROPORTION_DENOMINATOR;
    let mut offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // A person: the last auction is from the previous block.
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

fn next_base0_person_id(n: u64, rnd: &mut Random) -> u64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rnd.below(active + PERSON_ID_LEAD)
}

fn next_base0_auction_id(n: u64, rnd: &mut Random) -> u64 {
    let max = last_base0_auction_id(n);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rnd.below(max - min + 1 + AUCTION_ID_LEAD)
}

impl Generator {
    /// A generator for `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        let channels = (0..CHANNELS)
            .map(|i| {
                let channel: Arc<str> = format!("channel-{i}").into();
                let url: Arc<str> = format!("https://www.nexmark.com/item.htm?query=1&channel_id={i}").into();
                (channel, url)
            })
            .chain(HOT_CHANNELS.iter().map(|c| {
                let url: Arc<str> = format!("https://www.nexmark.com/{}/item.htm?query=1", c.to_lowercase()).into();
                (Arc::<str>::from(*c), url)
            }))
            .collect();
        Generator { config, channels: Arc::new(channels) }
    }

    /// The settings.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The event number of the `n`-th event generated (a permutation within out-of-order groups).
    pub fn adjusted_number(&self, n: u64) -> u64 {
        let g = self.config.out_of_order_group_size.max(1);
        (n / g) * g + (n.wrapping_mul(953)) % g
    }

    /// The event time of event number `n`, ms.
    pub fn time_of_number(&self, n: u64) -> u64 {
        let rate = self.config.events_per_second.max(1) as u128;
        self.config.base_time_ms + (n as u128 * 1000 / rate) as u64
    }

    /// The `n`-th event generated (event number `adjusted_number(n)`).
    pub fn event(&self, n: u64) -> Event {
        let number = self.adjusted_number(n);
        let time = self.time_of_number(number);
        let mut rnd = Random::new(self.config.seed, number);
        match kind_of(number) {
            EventKind::Person => Event::Person(Box::new(self.person(number, time, &mut rnd))),
            EventKind::Auction => Event::Auction(Box::new(self.auction(number, time, &mut rnd))),
            EventKind::Bid => Event::Bid(self.bid(number, time, &mut rnd)),
        }
    }

    fn extra(&self, rnd: &mut Random) -> String {
        if self.config.extra_bytes == 0 {
            String::new()
        } else {
            rnd.string(self.config.extra_bytes)
        }
    }

    fn person(&self, number: u64, time: u64, rnd: &mut Random) -> Person {
        let name = format!(
            "{} {}",
            FIRST_NAMES[rnd.below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[rnd.below(LAST_NAMES.len() as u64) as usize]
        );
        let email_address = format!("{}@{}.com", rnd.string(7), rnd.string(5));
        let credit_card = format!(
            "{:04} {:04} {:04} {:04}",
            rnd.below(10_000),
            rnd.below(10_000),
            rnd.below(10_000),
            rnd.below(10_000)
        );
        Person {
            id: last_base0_person_id(number) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city: US_CITIES[rnd.below(US_CITIES.len() as u64) as usize].to_string(),
            state: US_STATES[rnd.below(US_STATES.len() as u64) as usize].to_string(),
            date_time: time,
            extra: self.extra(rnd),
        }
    }

    fn auction(&self, number: u64, time: u64, rnd: &mut Random) -> Auction {
        let seller = if rnd.below(HOT_SELLER_RATIO) > 0 {
            (last_base0_person_id(number) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            next_base0_person_id(number, rnd)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + rnd.below(NUM_CATEGORIES);
        let initial_bid = rnd.price();
        let reserve = initial_bid + rnd.price();
        // The auction runs for up to twice the event time it takes to open NUM_IN_FLIGHT_AUCTIONS more.
        let horizon = self
            .time_of_number(number + NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION)
            .saturating_sub(time);
        let expires = time + 1 + rnd.below((horizon * 2).max(1));
        Auction {
            id: last_base0_auction_id(number) + FIRST_AUCTION_ID,
            item_name: rnd.string(8),
            description: rnd.string(16),
            initial_bid,
            reserve,
            date_time: time,
            expires,
            seller,
            category,
            extra: self.extra(rnd),
        }
    }

    #[inline]
    fn bid(&self, number: u64, time: u64, rnd: &mut Random) -> Bid {
        let auction = if rnd.below(HOT_AUCTION_RATIO) > 0 {
            (last_base0_auction_id(number) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            next_base0_auction_id(number, rnd)
        } + FIRST_AUCTION_ID;
        let bidder = if rnd.below(HOT_BIDDER_RATIO) > 0 {
            (last_base0_person_id(number) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            next_base0_person_id(number, rnd)
        } + FIRST_PERSON_ID;
        let price = rnd.price();
        let index = if rnd.below(HOT_CHANNEL_RATIO) > 0 {
            CHANNELS + rnd.below(HOT_CHANNELS.len() as u64) as usize
        } else {
            rnd.below(CHANNELS as u64) as usize
        };
        let (channel, url) = &self.channels[index];
        Bid {
            auction,
            bidder,
            price,
            channel: channel.clone(),
            url: url.clone(),
            date_time: time,
            extra: self.extra(rnd),
        }
    }
}
