//! Nexmark q15 and q16 (bidding / channel statistics per day, exact and HyperLogLog++), run
//! through `Query` with 1 and 3 workers on the generator's events and compared with a batch
//! computation over `Generator::event(n)` written from the queries' definitions.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use support::nexmark::run_query;
use weir::nexmark::q15::{q15, q15_hll, BidStats, DayBidStats};
use weir::nexmark::q16::{q16, q16_hll, ChannelDayStats};
use weir::nexmark::{Bid, NexmarkSource};
use weir::prelude::*;

const EVENTS: u64 = 20_000;
const DAY: u64 = 86_400_000;
/// 10 s before a UTC midnight: at 1,000 events/s the 20 s of input span two days.
const BASE: u64 = 19_676 * DAY - 10_000;

fn source() -> NexmarkSource {
    NexmarkSource::new()
        .seed(42)
        .events(EVENTS)
        .rate(1_000)
        .out_of_order_group_size(16)
        .base_time(EventTime::from_millis(BASE))
}

fn batch_bids() -> Vec<Bid> {
    let generator = source().generator();
    (0..EVENTS).filter_map(|n| generator.event(n).into_bid()).collect()
}

/// The statistics of a group of bids, from the definition: rank 1 below 10,000 cents, rank 2
/// below 1,000,000, rank 3 the rest; index 0 is the total.
fn batch_stats<'a>(bids: impl IntoIterator<Item = &'a Bid>) -> BidStats {
    let mut counts = [0u64; 4];
    let mut bidders: [BTreeSet<u64>; 4] = Default::default();
    let mut auctions: [BTreeSet<u64>; 4] = Default::default();
    for b in bids {
        let rank = if b.price < 10_000 {
            1
        } else if b.price < 1_000_000 {
            2
        } else {
            3
        };
        for i in [0, rank] {
            counts[i] += 1;
            bidders[i].insert(b.bidder);
            auctions[i].insert(b.auction);
        }
    }
    BidStats { bids: counts, bidders: bidders.map(|s| s.len() as u64), auctions: auctions.map(|s| s.len() as u64) }
}

fn expected_q15() -> Vec<(EventTime, DayBidStats)> {
    let bids = batch_bids();
    let mut days: BTreeMap<u64, Vec<Bid>> = BTreeMap::new();
    for b in bids {
        days.entry(b.date_time - b.date_time % DAY).or_default().push(b);
    }
    days.into_iter()
        .map(|(day, bids)| {
            (EventTime::from_millis(day + DAY), DayBidStats { day_start: day, stats: batch_stats(&bids) })
        })
        .collect()
}

fn expected_q16() -> Vec<(EventTime, ChannelDayStats)> {
    let bids = batch_bids();
    let mut groups: BTreeMap<(u64, Arc<str>), Vec<Bid>> = BTreeMap::new();
    for b in bids {
        groups.entry((b.date_time - b.date_time % DAY, b.channel.clone())).or_default().push(b);
    }
    let mut rows: Vec<_> = groups
        .into_iter()
        .map(|((day, channel), bids)| {
            (EventTime::from_millis(day + DAY), ChannelDayStats { day_start: day, channel, stats: batch_stats(&bids) })
        })
        .collect();
    rows.sort();
    rows
}

/// HyperLogLog++ at precision 9 (rsd 1.04/√512 = 4.6 %): exact or off by one below 100 distinct
/// values, within 4 standard errors (18.4 %) above.
fn assert_close(estimate: u64, exact: u64, what: &str) {
    if exact < 100 {
        assert!(estimate.abs_diff(exact) <= 1, "{what}: estimate {estimate}, exact {exact}");
    } else {
        let error = estimate.abs_diff(exact) as f64 / exact as f64;
        assert!(error <= 4.0 * 0.046, "{what}: estimate {estimate}, exact {exact}, error {error:.3}");
    }
}

fn assert_stats_close(got: &BidStats, want: &BidStats, what: &str) {
    assert_eq!(got.bids, want.bids, "{what}: bid counts are exact");
    for i in 0..4 {
        assert_close(got.bidders[i], want.bidders[i], &format!("{what} bidders[{i}]"));
        assert_close(got.auctions[i], want.auctions[i], &format!("{what} auctions[{i}]"));
    }
}

#[test]
fn q15_reports_exact_bid_statistics_per_day() {
    let expected = expected_q15();
    assert_eq!(expected.len(), 2, "the input spans two days");
    for (_, row) in &expected {
        let s = row.stats;
        assert_eq!(s.bids[0], s.bids[1] + s.bids[2] + s.bids[3]);
        assert!(s.bids[1] > 0 && s.bids[2] > 0 && s.bids[3] > 0, "every rank occurs: {s:?}");
        assert!(s.bidders[0] > 100 && s.auctions[0] > 100, "distinct counts beyond HLL's exact range: {s:?}");
    }
    for workers in [1, 3] {
        assert_eq!(
            run_query(source(), workers, |ctx, events| q15(ctx, events).unwrap()),
            expected,
            "{workers} worker(s)"
        );
    }
}

#[test]
fn q15_hll_estimates_distinct_counts_within_the_error() {
    let expected = expected_q15();
    for workers in [1, 2] {
        let got = run_query(source(), workers, |ctx, events| q15_hll(ctx, events).unwrap());
        assert_eq!(got.len(), expected.len(), "{workers} worker(s)");
        for ((got_time, got), (want_time, want)) in got.iter().zip(&expected) {
            assert_eq!((got_time, got.day_start), (want_time, want.day_start));
            assert_stats_close(&got.stats, &want.stats, &format!("day {} with {workers} worker(s)", want.day_start));
        }
    }
}

#[test]
fn q16_reports_exact_bid_statistics_per_day_and_channel() {
    let expected = expected_q16();
    assert!(expected.len() > 100, "many channels");
    for workers in [1, 3] {
        assert_eq!(
            run_query(source(), workers, |ctx, events| q16(ctx, events).unwrap()),
            expected,
            "{workers} worker(s)"
        );
    }
}

#[test]
fn q16_hll_estimates_distinct_counts_per_channel_within_the_error() {
    let expected = expected_q16();
    for workers in [1, 2] {
        let got = run_query(source(), workers, |ctx, events| q16_hll(ctx, events).unwrap());
        assert_eq!(got.len(), expected.len(), "{workers} worker(s)");
        for ((got_time, got), (want_time, want)) in got.iter().zip(&expected) {
            assert_eq!((got_time, got.day_start, &got.channel), (want_time, want.day_start, &want.channel));
            assert_stats_close(&got.stats, &want.stats, &format!("day {} channel {}", want.day_start, want.channel));
        }
    }
}

#[test]
fn the_cli_runner_knows_the_statistics_queries() {
    for query in ["q15", "q15-hll", "q16", "q16-hll"] {
        assert!(weir::nexmark::QUERIES.contains(&query), "{query} is registered");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "nexmark", "--query", "q15-hll", "--events", "20000", "-w", "2", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["query"], "q15-hll");
    // 20,000 events at 10,000/s: 2 s, one day.
    assert_eq!(report["output_rows"], 1);
}

#[test]
fn q18_ends_with_the_last_bid_of_every_bidder_and_auction() {
    use weir::nexmark::q18::q18;
    // Batch: the bid with the greatest (time, bid) per (bidder, auction).
    let bids = batch_bids();
    let mut last: BTreeMap<(u64, u64), Bid> = BTreeMap::new();
    for b in &bids {
        let entry = last.entry((b.bidder, b.auction)).or_insert_with(|| b.clone());
        if (b.date_time, b) > (entry.date_time, &*entry) {
            *entry = b.clone();
        }
    }
    assert!(last.len() > 1_000 && last.len() < bids.len(), "keys with several bids exist");
    let input: BTreeSet<&Bid> = bids.iter().collect();
    for workers in [1, 3] {
        let rows = run_query(source(), workers, |ctx, events| q18(ctx, events).unwrap());
        // Each row is a bid of the input, at its own event time; the latest update of a key is its
        // last bid. (Rows are sorted by time here, so the emission order is not checked.)
        let mut seen: BTreeMap<(u64, u64), Bid> = BTreeMap::new();
        for (time, bid) in &rows {
            assert_eq!(time.as_millis(), bid.date_time);
            assert!(input.contains(bid), "{bid:?} is an input bid");
            let key = (bid.bidder, bid.auction);
            let keep = seen.get(&key).is_none_or(|p| (p.date_time, p) < (bid.date_time, bid));
            if keep {
                seen.insert(key, bid.clone());
            }
        }
        assert_eq!(seen, last, "{workers} worker(s)");
        assert!(rows.len() >= last.len());
    }
}

#[test]
fn q12_counts_every_bid_once_in_a_processing_time_window_of_its_bidder() {
    use weir::nexmark::q12::{q12_with, BidderCount};
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for b in batch_bids() {
        *expected.entry(b.bidder).or_default() += 1;
    }
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // 10 s as the query, and 3 ms so that windows close while bids still arrive.
    for (workers, size) in [(1, 10_000), (3, 10_000), (1, 3), (2, 3)] {
        let rows: Vec<(EventTime, BidderCount)> =
            run_query(source(), workers, move |ctx, events| q12_with(ctx, events, size).unwrap());
        let ended = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let mut counted: BTreeMap<u64, u64> = BTreeMap::new();
        let mut windows = BTreeSet::new();
        for (_, row) in &rows {
            assert!(row.bids > 0);
            assert_eq!(row.window_start % size, 0, "windows are aligned to the size in wall clock");
            assert_eq!(row.window_end, row.window_start + size);
            assert!(row.window_start + size > started && row.window_start <= ended, "a window of this run: {row:?}");
            assert!(windows.insert((row.bidder, row.window_start)), "one row per bidder and window: {row:?}");
            *counted.entry(row.bidder).or_default() += row.bids;
        }
        assert_eq!(counted, expected, "{workers} worker(s), {size} ms: every bid counted once");
        if size == 3 {
            assert!(windows.len() > expected.len(), "some bidder has several windows");
        }
    }
}
