//! The Nexmark generator (proportions, determinism, partition independence, event times) and the
//! queries, each checked against a batch computation over the same generated events.

mod support;

use std::collections::BTreeMap;

use support::nexmark::{run_query, sorted_with_times};
use weir::connectors::nexmark::generator::{kind_of, EventKind, FIRST_AUCTION_ID, FIRST_PERSON_ID};
use weir::nexmark::q1::dollars_to_euros;
use weir::nexmark::q2::AuctionPrice;
use weir::nexmark::{q0, q1, q2, Bid, Event, NexmarkSource};
use weir::runtime::source::{PartitionReader, ReadStatus, Source};

fn kind(event: &Event) -> EventKind {
    match event {
        Event::Person(_) => EventKind::Person,
        Event::Auction(_) => EventKind::Auction,
        Event::Bid(_) => EventKind::Bid,
    }
}

/// Every event of `source`, read partition by partition with odd batch sizes.
fn read_partitions(source: &NexmarkSource) -> Vec<Vec<Event>> {
    (0..source.partitions())
        .map(|p| {
            let mut reader = source.open(p).unwrap();
            let mut out = Vec::new();
            loop {
                match reader.read(&mut out, 777).unwrap() {
                    ReadStatus::Finished => return out,
                    ReadStatus::Ready => {}
                    ReadStatus::Wait(d) => panic!("unthrottled source asked to wait {d:?}"),
                }
            }
        })
        .collect()
}

#[test]
fn kinds_are_exactly_1_3_46_in_every_block_of_50() {
    let generator = NexmarkSource::new().seed(3).generator();
    for block in 0..400u64 {
        let mut counts = [0usize; 3];
        for n in block * 50..block * 50 + 50 {
            let event = generator.event(n);
            assert_eq!(kind(&event), kind_of(n));
            counts[kind(&event) as usize] += 1;
        }
        assert_eq!(counts, [1, 3, 46], "block {block}");
    }
    // Out of order, the proportions hold over whole groups.
    let generator = NexmarkSource::new().out_of_order_group_size(100).generator();
    let mut counts = [0usize; 3];
    for n in 0..10_000 {
        counts[kind(&generator.event(n)) as usize] += 1;
    }
    assert_eq!(counts, [200, 600, 9200]);
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let a = NexmarkSource::new().seed(11).events(5_000);
    let b = NexmarkSource::new().seed(11).events(5_000);
    let c = NexmarkSource::new().seed(12).events(5_000);
    let (ea, eb, ec) = (read_partitions(&a), read_partitions(&b), read_partitions(&c));
    assert_eq!(ea, eb);
    assert_ne!(ea, ec);
    assert_eq!(ea[0].len(), 5_000);
}

#[test]
fn the_events_do_not_depend_on_the_number_of_partitions() {
    let all = |p: usize| {
        let mut events: Vec<Event> =
            read_partitions(&NexmarkSource::new().seed(5).events(20_003).partitions(p).out_of_order_group_size(7))
                .into_iter()
                .flatten()
                .collect();
        events.sort();
        events
    };
    let one = all(1);
    assert_eq!(one.len(), 20_003);
    assert_eq!(one, all(2));
    assert_eq!(one, all(3));
}

#[test]
fn ids_and_times_follow_the_event_numbers() {
    let source = NexmarkSource::new().seed(1).events(50_000).rate(1_000).out_of_order_group_size(20);
    let generator = source.generator();
    let events = read_partitions(&source).remove(0);
    let mut people = Vec::new();
    let mut auctions = Vec::new();
    let mut max_time = 0;
    let mut out_of_order = 0;
    let delay = source.watermark_delay().as_millis() as u64;
    for (n, event) in events.iter().enumerate() {
        let number = generator.adjusted_number(n as u64);
        assert_eq!(event.date_time(), generator.time_of_number(number));
        assert_eq!(event.date_time(), 1_700_000_000_000 + number);
        // Never later than the source's watermark delay behind the largest time seen.
        assert!(event.date_time() + delay >= max_time, "event {n} too far out of order");
        out_of_order += usize::from(event.date_time() < max_time);
        max_time = max_time.max(event.date_time());
        match event {
            Event::Person(p) => people.push(p.id),
            Event::Auction(a) => {
                assert!(a.reserve > a.initial_bid && a.expires > a.date_time && (10..15).contains(&a.category));
                assert!(a.seller >= FIRST_PERSON_ID && a.seller < FIRST_PERSON_ID + people.len() as u64 + 30);
                auctions.push(a.id)
            }
            Event::Bid(b) => {
                assert!(b.auction >= FIRST_AUCTION_ID && b.auction < FIRST_AUCTION_ID + 3 * (number / 50 + 1) + 10);
                assert!(b.bidder >= FIRST_PERSON_ID && b.bidder < FIRST_PERSON_ID + number / 50 + 1 + 10);
                assert!(b.price >= 100 && b.price <= 100_000_000, "{}", b.price);
            }
        }
    }
    assert!(out_of_order > 1000, "group size 20 makes the stream out of order ({out_of_order})");
    people.sort();
    auctions.sort();
    assert_eq!(people, (0..1_000).map(|i| FIRST_PERSON_ID + i).collect::<Vec<_>>());
    assert_eq!(auctions, (0..3_000).map(|i| FIRST_AUCTION_ID + i).collect::<Vec<_>>());
    // Hot auctions: about half the bids go to the latest even-numbered auction.
    let bids: Vec<&Bid> = events
        .iter()
        .filter_map(|e| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .collect();
    let mut per_auction: BTreeMap<u64, usize> = BTreeMap::new();
    for b in &bids {
        *per_auction.entry(b.auction).or_default() += 1;
    }
    let even = bids.iter().filter(|b| (b.auction - FIRST_AUCTION_ID) % 2 == 0).count();
    assert!(even * 100 > bids.len() * 70, "hot auctions are even: {even} of {}", bids.len());
}

const EVENTS: u64 = 20_000;

fn source() -> NexmarkSource {
    // 1,000 events per second of event time and out-of-order groups of 16.
    NexmarkSource::new().seed(42).events(EVENTS).rate(1_000).out_of_order_group_size(16)
}

/// All generated events, by the generator alone (the batch input).
fn batch_events() -> Vec<Event> {
    let generator = source().generator();
    (0..EVENTS).map(|n| generator.event(n)).collect()
}

fn batch_bids() -> Vec<Bid> {
    batch_events().into_iter().filter_map(Event::into_bid).collect()
}

#[test]
fn q0_passes_every_bid_through() {
    let expected = sorted_with_times(batch_bids().into_iter().map(|b| (b.date_time, b)));
    assert_eq!(expected.len(), (EVENTS / 50 * 46) as usize);
    for workers in [1, 3] {
        assert_eq!(run_query(source(), workers, |_, events| q0::q0(events)), expected, "{workers} worker(s)");
    }
}

#[test]
fn q1_converts_every_price_to_euros() {
    let expected = sorted_with_times(batch_bids().into_iter().map(|b| {
        let euros = (b.price as f64 * 0.908).floor() as u64;
        (b.date_time, Bid { price: euros, ..b })
    }));
    assert!(expected.iter().any(|(_, b)| b.price > 0));
    assert_eq!(dollars_to_euros(1000), 908);
    for workers in [1, 2] {
        assert_eq!(run_query(source(), workers, |_, events| q1::q1(events)), expected, "{workers} worker(s)");
    }
}

#[test]
fn q2_selects_auctions_divisible_by_123() {
    let expected = sorted_with_times(
        batch_bids()
            .into_iter()
            .filter(|b| b.auction % 123 == 0)
            .map(|b| (b.date_time, AuctionPrice { auction: b.auction, price: b.price })),
    );
    assert!(expected.len() > 10, "the input has bids on auctions divisible by 123 ({})", expected.len());
    for workers in [1, 3] {
        assert_eq!(run_query(source(), workers, |_, events| q2::q2(events)), expected, "{workers} worker(s)");
    }
}

#[test]
fn q5_reports_the_auctions_with_the_most_bids_per_sliding_window() {
    use weir::nexmark::q5::{q5, HotItem};
    // Batch: every 10 s window starting at a multiple of 2 s that holds a bid, counts per auction,
    // then the auctions whose count is the window's maximum.
    let mut counts: BTreeMap<(i64, u64), u64> = BTreeMap::new();
    for bid in batch_bids() {
        let t = bid.date_time as i64;
        let mut start = t - t.rem_euclid(2_000);
        while start > t - 10_000 {
            *counts.entry((start, bid.auction)).or_default() += 1;
            start -= 2_000;
        }
    }
    let mut max: BTreeMap<i64, u64> = BTreeMap::new();
    for (&(start, _), &count) in &counts {
        let m = max.entry(start).or_default();
        *m = (*m).max(count);
    }
    let expected = sorted_with_times(counts.iter().filter(|((start, _), count)| max[start] == **count).map(
        |(&(start, auction), &count)| {
            (start as u64 + 12_000, HotItem { window_start: start, window_end: start + 10_000, auction, count })
        },
    ));
    // 20,000 events at 1,000/s span 20 s: 14 windows (some with ties).
    assert_eq!(max.len(), 14);
    assert!(expected.len() >= 14);
    for workers in [1, 3] {
        let rows = run_query(source(), workers, |ctx, events| q5(ctx, events).unwrap());
        assert_eq!(rows, expected, "{workers} worker(s)");
    }
}

#[test]
fn q7_reports_the_highest_bids_per_tumbling_window() {
    use weir::nexmark::q7::q7;
    // Batch: the maximum price per 10 s window, then the bids of the window with that price.
    let bids = batch_bids();
    let window = |b: &Bid| b.date_time - b.date_time % 10_000;
    let mut max: BTreeMap<u64, u64> = BTreeMap::new();
    for b in &bids {
        let m = max.entry(window(b)).or_default();
        *m = (*m).max(b.price);
    }
    let expected =
        sorted_with_times(bids.iter().filter(|b| max[&window(b)] == b.price).map(|b| (window(b) + 10_000, b.clone())));
    assert!(max.len() >= 2);
    assert!(expected.len() >= max.len());
    for workers in [1, 3] {
        assert_eq!(
            run_query(source(), workers, |ctx, events| q7(ctx, events).unwrap()),
            expected,
            "{workers} worker(s)"
        );
    }
}

#[test]
fn the_cli_runner_prints_the_settings_and_the_output_row_count() {
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["bench", "nexmark", "--query", "q2", "--events", "20000", "--seed", "42", "--rate", "1000"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let expected = batch_bids().iter().filter(|b| b.auction % 123 == 0).count() as u64;
    for workers in ["1", "2"] {
        let json: serde_json::Value = serde_json::from_str(run(&["-w", workers, "--json"]).trim()).unwrap();
        assert_eq!(json["output_rows"], expected, "{json}");
        assert_eq!(json["workers"], workers.parse::<u64>().unwrap());
        assert_eq!(
            (json["query"].as_str(), json["events"].as_u64(), json["seed"].as_u64()),
            (Some("q2"), Some(20000), Some(42))
        );
        assert!(json["events_per_second"].as_f64().unwrap() > 0.0);
        assert!(json["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
    let line = run(&["-w", "2"]);
    assert!(line.starts_with("nexmark q2 events=20000 workers=2") && line.contains("per worker"), "{line}");
    assert!(line.contains(&format!("output_rows={expected}")), "{line}");
}
