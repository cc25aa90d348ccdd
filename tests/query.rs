//! The query handle (Spark's `StreamingQuery`): lifecycle, progress, failure, and idle partitions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Inspect;
use weir::prelude::*;
use weir::runtime::source::{event_source, PartitionReader, ReadStatus, Source};

#[test]
fn handle_reports_progress_and_stops_gracefully() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let pushed = reports.clone();
    let handle = Query::new("lifecycle")
        .workers(2)
        .progress_interval(Duration::from_millis(100))
        .on_progress(move |p: &StreamingQueryProgress| pushed.lock().unwrap().push(p.clone()))
        .start(|scope, ctx| {
            let events = RateSource::new(5_000).num_partitions(2).events(scope, ctx, WatermarkOptions::default());
            let counts = events.window_count(
                ctx,
                "counts",
                Windowing::tumbling(Duration::from_millis(200)),
                OutputMode::Append,
                |r: &RateRow| r.value % 3,
            )?;
            Collector::new().attach(counts.results, ctx, "memory");
            Ok(())
        })
        .unwrap();
    assert!(handle.is_active());
    assert!(!handle.id().is_empty() && handle.id() != handle.run_id());
    assert_eq!(handle.name(), "lifecycle");
    assert!(!handle.await_termination(Some(Duration::from_millis(700))).unwrap(), "still running");
    let last = handle.last_progress().expect("a progress report after 700 ms");
    assert!(last.num_input_rows > 0, "{}", last.pretty_json());
    assert_eq!(handle.status().message, "Processing new data");
    assert!(handle.recent_progress().len() >= 3);
    handle.stop().unwrap();
    assert!(!handle.is_active());
    assert!(handle.exception().is_none());
    assert_eq!(handle.status().message, "Stopped");
    let reports = reports.lock().unwrap();
    let ids: Vec<u64> = reports.iter().map(|p| p.batch_id).collect();
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>(), "batch ids count up from 0");
    assert!(reports.iter().all(|p| p.id == handle.id() && p.run_id == handle.run_id()));
    let json: serde_json::Value = serde_json::from_str(&reports[1].json()).unwrap();
    for field in [
        "numInputRows",
        "inputRowsPerSecond",
        "processedRowsPerSecond",
        "durationMs",
        "eventTime",
        "stateOperators",
        "sources",
        "sink",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert!(json["eventTime"].get("watermark").is_some());
    assert_eq!(json["stateOperators"][0]["operatorName"], "counts");
}

#[test]
fn a_failing_source_fails_the_query_with_its_message() {
    let dir = std::env::temp_dir().join(format!("weir-query-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.jsonl");
    std::fs::write(&path, "{\"ts\": 1}\nnot json\n").unwrap();
    let handle = Query::new("failing")
        .start(move |scope, ctx| {
            let events = JsonLinesSource::<serde_json::Value>::files(vec![path.clone()]).events(
                scope,
                ctx,
                |v| v["ts"].as_u64().map(EventTime::from_millis),
                WatermarkOptions::default(),
            );
            let counts = events.window_count(
                ctx,
                "c",
                Windowing::tumbling(Duration::from_secs(1)),
                OutputMode::Append,
                |_| 0u8,
            )?;
            Collector::new().attach(counts.results, ctx, "memory");
            Ok(())
        })
        .unwrap();
    let error = handle.await_termination(Some(Duration::from_secs(10))).unwrap_err();
    assert!(error.to_string().contains("line 2"), "{error}");
    assert_eq!(handle.exception(), Some(error));
    assert!(!handle.is_active());
}

/// A partition that delivers its records and then waits for more forever (a live stream), or
/// never delivers anything (an idle partition).
#[derive(Clone)]
struct Live(Vec<Vec<u64>>);
struct LiveReader(Vec<u64>, usize);
impl PartitionReader for LiveReader {
    type Record = u64;
    fn read(&mut self, out: &mut Vec<u64>, max: usize) -> Result<ReadStatus, QueryError> {
        let end = (self.1 + max).min(self.0.len());
        out.extend_from_slice(&self.0[self.1..end]);
        self.1 = end;
        Ok(ReadStatus::Wait(Duration::from_millis(5)))
    }
    fn position(&self) -> serde_json::Value {
        self.1.into()
    }
}
impl Source for Live {
    type Record = u64;
    type Reader = LiveReader;
    fn description(&self) -> String {
        "Live".into()
    }
    fn partitions(&self) -> usize {
        self.0.len()
    }
    fn open(&self, partition: usize) -> Result<LiveReader, QueryError> {
        Ok(LiveReader(self.0[partition].clone(), 0))
    }
}

/// Runs a live source with one busy and one silent partition for `run`, returning the windows emitted.
fn windows_with_idle_partition(idle_timeout: Option<Duration>, workers: usize) -> Vec<(i64, u64)> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let handle = Query::new("idle")
        .workers(workers)
        .start(move |scope, ctx| {
            let busy: Vec<u64> = (0..50).map(|i| 1_000 * i).collect();
            let mut options = WatermarkOptions::default();
            if let Some(timeout) = idle_timeout {
                options = options.idle_timeout(timeout);
            }
            let events =
                event_source(scope, ctx, Live(vec![busy, vec![]]), |t| Some(EventTime::from_millis(*t)), options);
            let counts = events.window_count(
                ctx,
                "c",
                Windowing::tumbling(Duration::from_secs(10)),
                OutputMode::Append,
                |_| 0u8,
            )?;
            let sink = sink.clone();
            counts.results.inspect(move |r| sink.lock().unwrap().push((r.window_start, r.value)));
            Ok(())
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(800);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop().unwrap();
    let mut windows = out.lock().unwrap().clone();
    windows.sort();
    windows
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    // Without idleness the silent partition keeps the watermark at the epoch: nothing is final.
    assert_eq!(windows_with_idle_partition(None, 1), vec![]);
    // With a 100 ms idle timeout the busy partition alone moves it: windows up to 40 s close.
    let expected = vec![(0, 10), (10_000, 10), (20_000, 10), (30_000, 10)];
    assert_eq!(windows_with_idle_partition(Some(Duration::from_millis(100)), 1), expected);
    // The same when the silent partition lives on another worker (it follows the busy one).
    assert_eq!(windows_with_idle_partition(Some(Duration::from_millis(100)), 2), expected);
}
