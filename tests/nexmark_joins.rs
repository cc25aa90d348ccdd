//! Nexmark q11 (user sessions), q3 (local item suggestion), q8 (new users) and q4 (average
//! closing price per category), each run through `Query` with 1
//! and 2/3 workers and compared exactly (rows and event times) with a batch computation over the
//! generator's events, and through the CLI runner (`weir bench nexmark --query qN --json`, its row count).

mod support;

use std::collections::BTreeMap;

use support::nexmark::{run_query, sorted_with_times};
use weir::nexmark::{Bid, Event, NexmarkSource};

const EVENTS: u64 = 20_000;

/// `rate` events per second of event time and out-of-order groups of 16.
fn source(rate: u64) -> NexmarkSource {
    NexmarkSource::new().seed(42).events(EVENTS).rate(rate).out_of_order_group_size(16)
}

/// All generated events, by the generator alone (the batch input).
fn batch_events(rate: u64) -> Vec<Event> {
    let generator = source(rate).generator();
    (0..EVENTS).map(|n| generator.event(n)).collect()
}

fn batch_bids(rate: u64) -> Vec<Bid> {
    batch_events(rate).into_iter().filter_map(Event::into_bid).collect()
}

/// Runs `weir bench nexmark --query <query> --json` on the test's input with `workers` workers
/// and returns its `output_rows`.
fn cli_output_rows(query: &str, rate: u64, workers: usize) -> u64 {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "nexmark", "--query", query, "--json", "--seed", "42", "--out-of-order-group-size", "16"])
        .args(["--events", &EVENTS.to_string(), "--rate", &rate.to_string(), "-w", &workers.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_str(String::from_utf8(output.stdout).unwrap().trim()).unwrap();
    assert_eq!(json["query"].as_str(), Some(query));
    json["output_rows"].as_u64().unwrap()
}

#[test]
fn q11_reports_each_bidders_sessions_with_a_10_s_gap() {
    use weir::nexmark::q11::{q11, UserSession, GAP_MS};
    // 100 events/s: the 20,000 events span 200 s, so bidders come back after a gap.
    const RATE: u64 = 100;
    // Batch: each bidder's bid times sorted; a bid less than 10 s after the previous one continues
    // the session, otherwise it starts a new one. A session ends 10 s after its last bid.
    let mut times: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for bid in batch_bids(RATE) {
        times.entry(bid.bidder).or_default().push(bid.date_time);
    }
    let mut sessions = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let (mut start, mut last, mut count) = (ts[0], ts[0], 0u64);
        for t in ts {
            if t >= last + GAP_MS {
                sessions.push((bidder, count, start, last + GAP_MS));
                start = t;
                count = 0;
            }
            last = t;
            count += 1;
        }
        sessions.push((bidder, count, start, last + GAP_MS));
    }
    let expected = sorted_with_times(sessions.into_iter().map(|(bidder, bid_count, start, end)| {
        (end, UserSession { bidder, bid_count, start: start as i64, end: end as i64 })
    }));
    // The input has bidders with several sessions and sessions with several bids.
    assert!(expected.iter().any(|(_, s)| s.bid_count > 1));
    let per_bidder = expected.iter().fold(BTreeMap::<u64, u64>::new(), |mut m, (_, s)| {
        *m.entry(s.bidder).or_default() += 1;
        m
    });
    assert!(per_bidder.values().any(|&n| n > 1));
    for workers in [1, 3] {
        assert_eq!(
            run_query(source(RATE), workers, |ctx, events| q11(ctx, events).unwrap()),
            expected,
            "{workers} worker(s)"
        );
        assert_eq!(cli_output_rows("q11", RATE, workers), expected.len() as u64, "CLI, {workers} worker(s)");
    }
}

#[test]
fn q3_joins_local_sellers_with_their_category_10_auctions() {
    use weir::nexmark::q3::{q3, LocalItem};
    const RATE: u64 = 1_000;
    // Batch: every (person in OR/ID/CA, auction of category 10 sold by that person), at the later
    // of the two times.
    let events = batch_events(RATE);
    let persons: BTreeMap<u64, (String, String, String, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) if ["OR", "ID", "CA"].contains(&p.state.as_str()) => {
                Some((p.id, (p.name.clone(), p.city.clone(), p.state.clone(), p.date_time)))
            }
            _ => None,
        })
        .collect();
    let expected = sorted_with_times(events.iter().filter_map(|e| match e {
        Event::Auction(a) if a.category == 10 => persons.get(&a.seller).map(|(name, city, state, t)| {
            (
                a.date_time.max(*t),
                LocalItem { name: name.clone(), city: city.clone(), state: state.clone(), auction: a.id },
            )
        }),
        _ => None,
    }));
    assert!(expected.len() > 20, "the input has local category-10 auctions ({})", expected.len());
    for workers in [1, 2] {
        assert_eq!(
            run_query(source(RATE), workers, |ctx, events| q3(ctx, events).unwrap()),
            expected,
            "{workers} worker(s)"
        );
        assert_eq!(cli_output_rows("q3", RATE, workers), expected.len() as u64, "CLI, {workers} worker(s)");
    }
}

#[test]
fn q8_reports_persons_who_sold_in_the_window_they_registered_in() {
    use weir::nexmark::q8::{q8, NewUser};
    const RATE: u64 = 1_000;
    // Batch: the 10 s windows in which each seller opened an auction; a person is reported for the
    // window containing its registration if it sold in that window, at the window's end.
    let events = batch_events(RATE);
    let window = |t: u64| t - t % 10_000;
    let sold: std::collections::BTreeSet<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((a.seller, window(a.date_time))),
            _ => None,
        })
        .collect();
    let expected = sorted_with_times(events.iter().filter_map(|e| match e {
        Event::Person(p) if sold.contains(&(p.id, window(p.date_time))) => Some((
            window(p.date_time) + 10_000,
            NewUser { id: p.id, name: p.name.clone(), window_start: window(p.date_time) as i64 },
        )),
        _ => None,
    }));
    assert!(expected.len() > 20, "the input has new users ({})", expected.len());
    for workers in [1, 3] {
        assert_eq!(
            run_query(source(RATE), workers, |ctx, events| q8(ctx, events).unwrap()),
            expected,
            "{workers} worker(s)"
        );
        assert_eq!(cli_output_rows("q8", RATE, workers), expected.len() as u64, "CLI, {workers} worker(s)");
    }
}

#[test]
fn q4_averages_the_winning_bids_per_category_as_auctions_close() {
    use weir::nexmark::q4::{max_auction_lifetime, q4, CategoryAverage};
    const RATE: u64 = 1_000;
    // Batch: each auction's highest bid made within [date_time, expires]; it is known at the end
    // of the second holding the expiry. At each such time, every category that gained an auction
    // reports the average (rounded down) and count of all its auctions closed so far.
    let events = batch_events(RATE);
    let lifetime = max_auction_lifetime(&source(RATE)).as_millis() as u64;
    let auctions: BTreeMap<u64, (u64, u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => {
                assert!(a.expires - a.date_time <= lifetime, "the lifetime bound holds");
                Some((a.id, (a.date_time, a.expires, a.category)))
            }
            _ => None,
        })
        .collect();
    let mut winning: BTreeMap<u64, u64> = BTreeMap::new();
    for bid in events.iter().filter_map(|e| e.clone().into_bid()) {
        if let Some(&(opened, expires, _)) = auctions.get(&bid.auction) {
            if opened <= bid.date_time && bid.date_time <= expires {
                let w = winning.entry(bid.auction).or_default();
                *w = (*w).max(bid.price);
            }
        }
    }
    // category -> closing time -> prices closing then
    let mut closed: BTreeMap<u64, BTreeMap<u64, Vec<u64>>> = BTreeMap::new();
    for (id, price) in &winning {
        let (_, expires, category) = auctions[id];
        closed.entry(category).or_default().entry(expires - expires % 1_000 + 1_000).or_default().push(*price);
    }
    let mut rows = Vec::new();
    for (category, by_time) in &closed {
        let (mut sum, mut count) = (0u64, 0u64);
        for (time, prices) in by_time {
            sum += prices.iter().sum::<u64>();
            count += prices.len() as u64;
            rows.push((*time, CategoryAverage { category: *category, average: sum / count, auctions: count }));
        }
    }
    let expected = sorted_with_times(rows);
    assert_eq!(closed.len(), 5, "all five categories have closed auctions");
    assert!(winning.len() > 100 && winning.len() < auctions.len(), "some auctions close without bids");
    for workers in [1, 2] {
        let rows = run_query(source(RATE), workers, move |ctx, events| {
            q4(ctx, events, std::time::Duration::from_millis(lifetime)).unwrap()
        });
        assert_eq!(rows, expected, "{workers} worker(s)");
        assert_eq!(cli_output_rows("q4", RATE, workers), expected.len() as u64, "CLI, {workers} worker(s)");
    }
}
