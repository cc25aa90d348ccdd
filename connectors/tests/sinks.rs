//! The ordered sinks (JSON lines, console, for_each_epoch) and the collector.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::{Input, Map};
use weir_connectors::{for_each_epoch, Collector, ConsoleSink, JsonLinesSink};
use weir_runtime::context::QueryContext;
use weir_runtime::error::BuildError;
use weir_runtime::time::EventTime;

use common::{run_workers, temp_dir, SharedBuffer};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Rec {
    key: String,
    n: u64,
}

const EPOCHS: [u64; 3] = [10, 20, 35];

/// What worker `worker` sends at `epoch`, in two rounds (the sink must wait for both). Worker 2
/// and up send nothing at the last epoch, and worker 1 nothing at all at the first.
fn records(worker: usize, epoch: u64, round: u64) -> Vec<Rec> {
    if (worker >= 2 && epoch == 35) || (worker == 1 && epoch == 10) {
        return Vec::new();
    }
    (0..3)
        .map(|i| Rec {
            key: format!("k{}", (worker as u64 * 7 + i * 3 + epoch) % 5),
            n: epoch * 1000 + round * 100 + worker as u64 * 10 + i,
        })
        .collect()
}

fn expected(workers: usize, epoch: u64) -> Vec<Rec> {
    let mut all: Vec<Rec> = (0..workers).flat_map(|w| (0..2).flat_map(move |r| records(w, epoch, r))).collect();
    all.sort();
    all
}

/// Builds `attach` on every worker over an input of [`Rec`], then feeds every epoch in two
/// rounds, stepping in between so that a sink emitting too early would split an epoch.
fn feed<F>(workers: usize, attach: F)
where
    F: for<'scope> Fn(timely::dataflow::StreamVec<'scope, EventTime, Rec>, usize) + Send + Sync + 'static,
{
    run_workers(workers, move |worker| {
        let index = worker.index();
        let mut input = worker.dataflow::<EventTime, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Rec>();
            attach(stream, index);
            input
        });
        for epoch in EPOCHS {
            input.advance_to(EventTime::from_millis(epoch));
            for round in 0..2 {
                for record in records(index, epoch, round) {
                    input.send(record);
                }
                for _ in 0..5 {
                    worker.step();
                }
            }
        }
        input.close();
    });
}

/// What the closure saw: the worker it ran on, the epoch and its sorted batch.
type Seen = (usize, EventTime, Vec<Rec>);

#[test]
fn for_each_epoch_sees_complete_epochs_in_order_on_worker_0() {
    for workers in [1, 3] {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let ctx = QueryContext::ephemeral("foreach-test");
        let (sink_seen, sink_ctx) = (seen.clone(), ctx.clone());
        feed(workers, move |stream, index| {
            let seen = sink_seen.clone();
            for_each_epoch(stream, &sink_ctx, "each", move |epoch, mut batch: Vec<Rec>| {
                batch.sort();
                seen.lock().unwrap().push((index, epoch, batch));
            });
        });
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.iter().map(|(_, e, _)| e.as_millis()).collect::<Vec<_>>(),
            EPOCHS.to_vec(),
            "{workers} workers"
        );
        for (index, epoch, batch) in seen {
            assert_eq!(index, 0, "the closure runs on worker 0");
            assert_eq!(batch, expected(workers, epoch.as_millis()), "epoch {epoch:?} complete");
        }
        let total: usize = EPOCHS.iter().map(|e| expected(workers, *e).len()).sum();
        assert_eq!(ctx.metrics().sinks()[0].output_rows.load(Ordering::Relaxed), total as u64);
    }
}

#[test]
fn jsonl_sink_writes_sorted_epochs_in_order() {
    for workers in [1, 3] {
        let path = temp_dir("jsonl").join("out.jsonl");
        std::fs::write(&path, "stale content\n").unwrap();
        let ctx = QueryContext::ephemeral("jsonl-test");
        let (sink_ctx, target) = (ctx.clone(), path.display().to_string());
        feed(workers, move |stream, _| {
            JsonLinesSink::new(&target).write(stream, &sink_ctx, "out").expect("the file can be created");
        });
        assert!(ctx.failure().is_none());
        let expected: Vec<String> =
            EPOCHS.iter().flat_map(|e| expected(workers, *e)).map(|r| serde_json::to_string(&r).unwrap()).collect();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().collect::<Vec<_>>(), expected, "{workers} workers");
        assert!(written.ends_with('\n'));
        assert_eq!(ctx.metrics().sinks()[0].output_rows.load(Ordering::Relaxed), expected.len() as u64);
    }
}

#[test]
fn jsonl_sink_writes_preformatted_lines() {
    let path = temp_dir("jsonl-lines").join("lines.txt");
    let ctx = QueryContext::ephemeral("jsonl-lines");
    let (sink_ctx, target) = (ctx.clone(), path.display().to_string());
    feed(3, move |stream, _| {
        let lines = stream.map(|r| format!("{}={}", r.key, r.n));
        JsonLinesSink::new(&target).write_lines(lines, &sink_ctx, "lines").unwrap();
    });
    let expected: Vec<String> = EPOCHS
        .iter()
        .flat_map(|e| {
            let mut lines: Vec<String> = expected(3, *e).iter().map(|r| format!("{}={}", r.key, r.n)).collect();
            lines.sort();
            lines
        })
        .collect();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().collect::<Vec<_>>(), expected);
}

#[test]
fn jsonl_sink_reports_a_path_it_cannot_create() {
    let path = temp_dir("jsonl-bad").join("no-such-dir").join("out.jsonl");
    let ctx = QueryContext::ephemeral("jsonl-bad");
    let target = path.display().to_string();
    let result = timely::execute_directly(move |worker| {
        worker.dataflow::<EventTime, _, _>(|scope| {
            let (_input, stream) = scope.new_input::<Rec>();
            JsonLinesSink::new(&target).write(stream, &ctx, "out")
        })
    });
    match result {
        Err(BuildError::Invalid { what, why, fix }) => {
            assert!(what.contains(&path.display().to_string()), "{what}");
            assert!(why.contains("cannot be created"), "{why}");
            assert!(!fix.is_empty());
        }
        Ok(()) => panic!("a file in a missing directory cannot be created"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct WordCount {
    word: String,
    count: u64,
}

#[test]
fn console_sink_prints_spark_tables() {
    let buffer = SharedBuffer::default();
    let ctx = QueryContext::ephemeral("console-test");
    let (sink_buffer, sink_ctx) = (buffer.clone(), ctx.clone());
    run_workers(2, move |worker| {
        let index = worker.index();
        let sink = ConsoleSink::new().num_rows(2).to_writer(Box::new(sink_buffer.clone()));
        let mut input = worker.dataflow::<EventTime, _, _>(|scope| {
            let (input, stream) = scope.new_input::<WordCount>();
            sink.write(stream, &sink_ctx, "console").unwrap();
            input
        });
        input.advance_to(EventTime::from_millis(5));
        if index == 1 {
            input.send(WordCount { word: "cat".into(), count: 1 });
        }
        input.advance_to(EventTime::from_millis(9));
        if index == 0 {
            input.send(WordCount { word: "dog".into(), count: 12 });
            input.send(WordCount { word: "a very long word for a cell".into(), count: 3 });
        } else {
            input.send(WordCount { word: "bird".into(), count: 2 });
        }
        input.close();
    });
    let expected = "\
-------------------------------------------
Batch: 0
-------------------------------------------
+----+-----+
|word|count|
+----+-----+
| cat|    1|
+----+-----+

-------------------------------------------
Batch: 1
-------------------------------------------
+--------------------+-----+
|                word|count|
+--------------------+-----+
|a very long word ...|    3|
|                bird|    2|
+--------------------+-----+
only showing top 2 rows

";
    assert_eq!(buffer.text(), expected);
    assert_eq!(ctx.metrics().sinks()[0].output_rows.load(Ordering::Relaxed), 4);
}

#[test]
fn collector_keeps_times_and_records_from_every_worker() {
    let collector: Collector<Rec> = Collector::new();
    let ctx = QueryContext::ephemeral("collector-test");
    let (sink, sink_ctx) = (collector.clone(), ctx.clone());
    feed(3, move |stream, _| sink.attach(stream, &sink_ctx, "mem"));
    let snapshot = collector.snapshot();
    assert_eq!(snapshot.len(), collector.len());
    let mut got = collector.take();
    assert!(collector.is_empty());
    got.sort();
    let mut want: Vec<(EventTime, Rec)> =
        EPOCHS.iter().flat_map(|e| expected(3, *e).into_iter().map(move |r| (EventTime::from_millis(*e), r))).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ctx.metrics().sinks()[0].output_rows.load(Ordering::Relaxed), want.len() as u64);
}
