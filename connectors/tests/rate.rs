//! The rate source, through the event-time source operator and the memory collector.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_connectors::memory::Collector;
use weir_connectors::rate::{RateRow, RateSource};
use weir_runtime::context::QueryContext;
use weir_runtime::event::{Event, LateRecord};
use weir_runtime::source::{PartitionReader, ReadStatus, Source};
use weir_runtime::time::EventTime;
use weir_runtime::watermark::WatermarkOptions;

use common::run_workers;

const START: EventTime = EventTime::from_millis(1_700_000_000_000);

/// What a run collected: on-time and late records with their timely times.
type Collected = (Vec<(EventTime, Event<RateRow>)>, Vec<(EventTime, LateRecord<RateRow>)>);

/// Runs `source` on `workers` workers; returns the on-time and the late records, and the context.
fn run(source: RateSource, workers: usize, options: WatermarkOptions) -> (Collected, QueryContext) {
    let ctx = QueryContext::ephemeral("rate-test");
    let (records, late) = (Collector::new(), Collector::new());
    let (worker_ctx, worker_records, worker_late) = (ctx.clone(), records.clone(), late.clone());
    run_workers(workers, move |worker| {
        let (source, options) = (source.clone(), options.clone());
        worker.dataflow::<EventTime, _, _>(|scope| {
            let events = source.events(scope, &worker_ctx, options);
            worker_records.attach(events.records, &worker_ctx, "records");
            worker_late.attach(events.late, &worker_ctx, "late");
        });
    });
    ((records.take(), late.take()), ctx)
}

/// Per partition, the rows in the order they were collected.
fn by_partition(rows: impl IntoIterator<Item = RateRow>, partitions: u64) -> BTreeMap<u64, Vec<RateRow>> {
    let mut map: BTreeMap<u64, Vec<RateRow>> = BTreeMap::new();
    for row in rows {
        map.entry(row.value % partitions).or_default().push(row);
    }
    map
}

#[test]
fn row_limit_gives_exactly_the_values_on_one_and_three_workers() {
    for (workers, partitions) in [(1, 1), (1, 3), (3, 3), (3, 4), (3, 2)] {
        let source =
            RateSource::new(1_000).unthrottled().num_partitions(partitions).row_limit(20_000).start_time(START);
        let ((records, late), ctx) = run(source.clone(), workers, WatermarkOptions::default());
        assert!(late.is_empty(), "no skew, no late rows ({workers} workers, {partitions} partitions)");
        assert!(ctx.failure().is_none());
        let mut values: Vec<u64> = records.iter().map(|(_, e)| e.data.value).collect();
        values.sort_unstable();
        assert_eq!(values, (0..20_000).collect::<Vec<_>>(), "{workers} workers, {partitions} partitions");
        for (stamp, event) in &records {
            assert_eq!(event.time, event.data.timestamp);
            assert_eq!(event.data.timestamp, source.scheduled_time(event.data.value));
            assert!(*stamp <= event.time, "a batch is never stamped after its records' event time");
        }
        for (partition, rows) in by_partition(records.into_iter().map(|(_, e)| e.data), partitions as u64) {
            assert!(rows.windows(2).all(|w| w[0].value < w[1].value), "partition {partition} in value order");
            assert!(rows.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "partition {partition} monotone");
        }
        let metrics = &ctx.metrics().sources()[0];
        assert_eq!(metrics.input_rows.load(std::sync::atomic::Ordering::Relaxed), 20_000);
        assert!(metrics.finished());
    }
}

#[test]
fn skewed_timestamps_stay_within_the_skew_and_are_out_of_order() {
    let skew = Duration::from_millis(250);
    let source = RateSource::new(2_000)
        .unthrottled()
        .num_partitions(3)
        .row_limit(30_000)
        .max_skew(skew)
        .seed(7)
        .start_time(START);
    let ((records, late), ctx) = run(source.clone(), 3, WatermarkOptions::with_delay(Duration::from_millis(100)));
    assert!(ctx.failure().is_none());
    assert!(!late.is_empty(), "a 250 ms skew behind a 100 ms delay makes some rows late");
    let rows: Vec<RateRow> =
        records.into_iter().map(|(_, e)| e.data).chain(late.into_iter().map(|(_, l)| l.record)).collect();
    let mut values: Vec<u64> = rows.iter().map(|r| r.value).collect();
    values.sort_unstable();
    assert_eq!(values, (0..30_000).collect::<Vec<_>>(), "every row once, on time or late");
    for row in &rows {
        let scheduled = source.scheduled_time(row.value);
        assert!(row.timestamp <= scheduled && row.timestamp >= scheduled.saturating_sub(skew), "{row:?}");
        assert_eq!(row.timestamp, source.timestamp_of(row.value), "deterministic");
    }
    let ordered: Vec<RateRow> = {
        let mut sorted = rows.clone();
        sorted.sort_by_key(|r| r.value);
        sorted
    };
    assert!(ordered.windows(2).any(|w| w[0].timestamp > w[1].timestamp), "skew makes the stream out of order");
}

#[test]
fn throttled_reader_follows_the_wall_clock() {
    let source = RateSource::new(1_000).start_time(START);
    let mut reader = source.open(0).unwrap();
    let begin = Instant::now();
    let mut rows = Vec::new();
    while begin.elapsed() < Duration::from_millis(300) {
        match reader.read(&mut rows, 100_000).unwrap() {
            ReadStatus::Wait(d) => assert!(d <= Duration::from_millis(1), "next row is due within 1 ms, got {d:?}"),
            other => panic!("an unbounded throttled reader waits between rows, got {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let n = rows.len();
    assert!((200..=420).contains(&n), "about 300 rows in 300 ms at 1000 rows/s, got {n}");
    assert!(rows.iter().enumerate().all(|(i, r)| r.value == i as u64));

    // At 10 rows/s row 0 is due at once and row 1 after 100 ms.
    let mut slow = RateSource::new(10).start_time(START).open(0).unwrap();
    let mut out = Vec::new();
    match slow.read(&mut out, 100).unwrap() {
        ReadStatus::Wait(d) => assert!(d > Duration::from_millis(50) && d <= Duration::from_millis(100), "{d:?}"),
        other => panic!("expected a wait, got {other:?}"),
    }
    assert_eq!(out, vec![RateRow { timestamp: START, value: 0 }]);
}

#[test]
fn throttled_dataflow_takes_as_long_as_the_schedule() {
    // 400 rows at 1000 rows/s over 2 partitions: the last row is due 399 ms after the start.
    let source = RateSource::new(1_000).num_partitions(2).row_limit(400).start_time(START);
    let begin = Instant::now();
    let ((records, _), ctx) = run(source, 2, WatermarkOptions::default());
    let elapsed = begin.elapsed();
    assert!(ctx.failure().is_none());
    assert_eq!(records.len(), 400);
    assert!(elapsed >= Duration::from_millis(390), "throttled: took only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn ramp_up_slows_the_first_rows() {
    // 1000 rows/s after a 2 s ramp-up: the first 1000 rows take 2 s, then 1 row per ms.
    let source = RateSource::new(1_000).ramp_up_time(Duration::from_secs(2)).start_time(EventTime::from_millis(0));
    assert_eq!(source.scheduled_time(0), EventTime::from_millis(0));
    assert_eq!(source.scheduled_time(250), EventTime::from_millis(1_000));
    assert_eq!(source.scheduled_time(1_000), EventTime::from_millis(2_000));
    assert_eq!(source.scheduled_time(1_500), EventTime::from_millis(2_500));
}

#[test]
fn invalid_settings_fail_the_query() {
    let ((records, _), ctx) = run(RateSource::new(0).row_limit(10), 1, WatermarkOptions::default());
    assert!(records.is_empty());
    let failure = ctx.failure().expect("a zero rate fails").to_string();
    assert!(failure.contains("rowsPerSecond"), "{failure}");
}
