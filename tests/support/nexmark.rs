//! Running a Nexmark query in a test: the generated events through `Query`, the query's rows
//! collected, sorted and checked (never stamped after their event time, nothing late).

use weir::nexmark::{Event, NexmarkSource};
use weir::prelude::*;

/// Runs `query` on `workers` workers over `source`'s events (one partition per worker) and
/// returns its records sorted, checking each is stamped no later than its event time and that no
/// record was late.
pub fn run_query<D, F>(source: NexmarkSource, workers: usize, query: F) -> Vec<(EventTime, D)>
where
    D: Clone + Send + Ord + std::fmt::Debug + 'static,
    F: for<'s> Fn(
            &QueryContext,
            weir::runtime::event::EventStream<'s, Event>,
        ) -> weir::runtime::event::EventStream<'s, D>
        + Send
        + Sync
        + 'static,
{
    let out: Collector<weir::runtime::event::Event<D>> = Collector::new();
    let late: Collector<weir::runtime::event::LateRecord<D>> = Collector::new();
    let (out2, late2) = (out.clone(), late.clone());
    let handle = Query::new("nexmark-test")
        .workers(workers)
        .start(move |scope, ctx| {
            let events = source.clone().partitions(workers).stream(scope, ctx);
            let result = query(ctx, events);
            out2.attach(result.records, ctx, "out");
            late2.attach(result.late, ctx, "late");
            Ok(())
        })
        .unwrap();
    handle.await_termination(None).unwrap();
    assert!(late.is_empty(), "no record is late with the source's watermark delay");
    let mut rows: Vec<(EventTime, D)> = out
        .take()
        .into_iter()
        .map(|(stamp, event)| {
            assert!(stamp <= event.time, "stamped after its event time");
            (event.time, event.data)
        })
        .collect();
    rows.sort();
    rows
}

/// Rows given as (ms, row), with typed times, sorted: the form `run_query` returns.
pub fn sorted_with_times<D: Ord>(rows: impl IntoIterator<Item = (u64, D)>) -> Vec<(EventTime, D)> {
    let mut rows: Vec<(EventTime, D)> = rows.into_iter().map(|(t, d)| (EventTime::from_millis(t), d)).collect();
    rows.sort();
    rows
}
