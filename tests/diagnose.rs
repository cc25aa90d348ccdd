//! The `diagnose` section of progress reports: each reason for "no output" is reproduced with a
//! test source and named by the report that ends the second interval without output (or at once,
//! for a failing sink).

use std::sync::atomic::Ordering;
use std::time::Duration;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use weir::prelude::*;
use weir::runtime::diagnose::{Reason, QUIET_INTERVALS};
use weir::runtime::source::{event_source, PartitionReader, ReadStatus, Source};

const INTERVAL: Duration = Duration::from_millis(150);

/// What one partition of the test source does.
#[derive(Clone, Copy, Debug)]
enum Partition {
    /// Never produces anything, and stays at this offset.
    Empty { offset: u64 },
    /// Produces `per_read` records per read, times going up by 100 ms from `start` ms.
    Ticking { start: u64 },
    /// One record at `start` ms, then records far older than it: late.
    Late { start: u64 },
}

#[derive(Clone)]
struct TestSource(Vec<Partition>);

struct Reader {
    kind: Partition,
    next: u64,
}

impl PartitionReader for Reader {
    type Record = u64;
    fn read(&mut self, out: &mut Vec<u64>, _max: usize) -> Result<ReadStatus, QueryError> {
        match self.kind {
            Partition::Empty { .. } => return Ok(ReadStatus::Wait(Duration::from_millis(10))),
            Partition::Ticking { start } => {
                for _ in 0..10 {
                    out.push(start + self.next * 100);
                    self.next += 1;
                }
            }
            Partition::Late { start } => {
                out.push(if self.next == 0 { start } else { start - 600_000 + self.next });
                self.next += 1;
            }
        }
        Ok(ReadStatus::Wait(Duration::from_millis(20)))
    }
    fn position(&self) -> serde_json::Value {
        match self.kind {
            Partition::Empty { offset } => offset.into(),
            _ => self.next.into(),
        }
    }
}

impl Source for TestSource {
    type Record = u64;
    type Reader = Reader;
    fn description(&self) -> String {
        "test".to_string()
    }
    fn partitions(&self) -> usize {
        self.0.len()
    }
    fn open(&self, partition: usize) -> Result<Reader, QueryError> {
        Ok(Reader { kind: self.0[partition], next: 0 })
    }
}

/// Runs source → 1-hour tumbling count → sink for a few intervals; the sink fails on its first
/// record if `failing_sink`. Returns the progress reports.
fn run(partitions: Vec<Partition>, failing_sink: bool) -> (Vec<StreamingQueryProgress>, Option<QueryError>) {
    let source = TestSource(partitions);
    let handle = Query::new("diagnose")
        .workers(2)
        .progress_interval(INTERVAL)
        .operator_frontiers()
        .start(move |scope, ctx| {
            let events = event_source(
                scope,
                ctx,
                source.clone(),
                |t: &u64| Some(EventTime::from_millis(*t)),
                WatermarkOptions::default(),
            );
            let window = if failing_sink { Duration::from_millis(100) } else { Duration::from_secs(3600) };
            let counts =
                events.window_count(ctx, "counts", Windowing::tumbling(window), OutputMode::Append, |t: &u64| t % 3)?;
            if failing_sink {
                let (ctx, metrics) = (ctx.clone(), ctx.metrics().sink("broken"));
                counts.results.sink(Pipeline, "Sink[broken]", move |(input, _)| {
                    input.for_each_time(|_, _| {
                        metrics.errors.fetch_add(1, Ordering::Relaxed);
                        ctx.fail(QueryError::Sink { sink: "broken".into(), message: "disk full".into() });
                    });
                });
            } else {
                Collector::new().attach(counts.results, ctx, "out");
            }
            Ok(())
        })
        .unwrap();
    let ended = handle.await_termination(Some(INTERVAL * (QUIET_INTERVALS + 2))).err();
    if ended.is_none() {
        handle.stop().unwrap();
    }
    (handle.recent_progress(), ended)
}

/// The causes named by the report that closes the QUIET_INTERVALS-th interval without output.
fn causes_when_due(reports: &[StreamingQueryProgress]) -> Vec<weir::runtime::diagnose::Cause> {
    let due = &reports[QUIET_INTERVALS as usize - 1];
    for early in &reports[..QUIET_INTERVALS as usize - 1] {
        assert!(early.diagnose.is_none(), "diagnosed too early: {}", early.pretty_json());
    }
    let diagnosis = due.diagnose.clone().unwrap_or_else(|| panic!("no diagnosis in {}", due.pretty_json()));
    assert_eq!(diagnosis.intervals_without_output, QUIET_INTERVALS);
    diagnosis.causes
}

#[test]
fn no_input_since_start_names_the_starting_offsets() {
    let (reports, failure) = run(vec![Partition::Empty { offset: 42 }, Partition::Empty { offset: 7 }], false);
    assert!(failure.is_none());
    let causes = causes_when_due(&reports);
    let cause = causes.iter().find(|c| c.reason == Reason::NoInputSinceStart).expect("noInputSinceStart");
    assert_eq!(cause.source.as_deref(), Some("test"));
    assert_eq!(cause.details["startOffsets"], serde_json::json!({"0": 42, "1": 7}), "{}", cause.message);
    assert!(cause.message.contains(r#"{"0":42,"1":7}"#), "{}", cause.message);
    let json = reports[QUIET_INTERVALS as usize - 1].json();
    assert!(
        json.contains(r#""diagnose":{"intervalsWithoutOutput":2,"causes":[{"reason":"noInputSinceStart""#),
        "{json}"
    );
}

#[test]
fn stuck_watermark_names_the_partition_holding_it_back() {
    let (reports, _) = run(
        vec![
            Partition::Ticking { start: 1_000_000 },
            Partition::Ticking { start: 1_000_000 },
            Partition::Empty { offset: 0 },
        ],
        false,
    );
    let causes = causes_when_due(&reports);
    let cause = causes.iter().find(|c| c.reason == Reason::WatermarkStuck).unwrap_or_else(|| panic!("{causes:?}"));
    assert_eq!(cause.partition, Some(2), "{}", cause.message);
    assert!(cause.message.contains("partition 2 has received no data"), "{}", cause.message);
    assert!(cause.message.contains("idle timeout"), "{}", cause.message);
    assert!(reports[1].num_input_rows > 0, "records arrive: {}", reports[1].pretty_json());
    // The window's frontier is its source's watermark, held at the start by the empty partition.
    let source_watermark = reports[1].sources[0].watermark.clone();
    assert_eq!(source_watermark.as_deref(), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(reports[1].operators[0].watermark, source_watermark);
}

#[test]
fn all_records_late_gives_the_lateness() {
    let (reports, _) = run(vec![Partition::Late { start: 1_000_000 }], false);
    let causes = causes_when_due(&reports);
    let cause = causes.iter().find(|c| c.reason == Reason::AllRecordsLate).unwrap_or_else(|| panic!("{causes:?}"));
    let lateness = cause.details["minLatenessMs"].as_u64().expect("lateness");
    assert!(lateness > 590_000 && lateness <= 600_000, "{}", cause.message);
    assert!(cause.details["lateRowsByOperator"]["counts"].as_u64().unwrap() > 0, "{:?}", cause.details);
    assert!(cause.message.contains("were late"), "{}", cause.message);
}

#[test]
fn failing_sink_is_named_at_once_with_its_message() {
    let (reports, failure) = run(vec![Partition::Ticking { start: 1_000_000 }], true);
    assert!(matches!(failure, Some(QueryError::Sink { .. })), "{failure:?}");
    let last = reports.last().expect("a final report");
    let diagnosis = last.diagnose.clone().unwrap_or_else(|| panic!("{}", last.pretty_json()));
    let cause = diagnosis.causes.iter().find(|c| c.reason == Reason::SinkErrors).expect("sinkErrors");
    assert_eq!(cause.operator.as_deref(), Some("broken"));
    assert!(cause.message.contains("disk full"), "{}", cause.message);
    assert!(last.status_line().contains("NO OUTPUT: sink broken failed to write"), "{}", last.status_line());
}

#[test]
fn status_line_shows_each_operator() {
    let (reports, _) = run(vec![Partition::Ticking { start: 1_000_000 }], false);
    let line = reports[1].status_line();
    assert!(line.starts_with("[diagnose] #1 in "), "{line}");
    let op = &reports[1].operators[0];
    assert_eq!(op.operator_name, "counts");
    assert!(op.num_rows_in > 0 && op.num_rows_total > 0 && op.memory_used_bytes > 0, "{op:?}");
    assert!(op.watermark.is_some(), "{op:?}");
    assert!(
        line.contains(&format!("| counts in {} out 0 late 0 state {} rows", op.num_rows_in, op.num_rows_total)),
        "{line}"
    );
    assert!(line.contains("NO OUTPUT: records arrive and the watermark moves"), "{line}");
}
