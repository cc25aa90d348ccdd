//! The JSON-lines file source.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use weir_connectors::files::{JsonLinesInput, JsonLinesSource};
use weir_connectors::memory::Collector;
use weir_runtime::context::QueryContext;
use weir_runtime::error::QueryError;
use weir_runtime::event::Event;
use weir_runtime::source::Source;
use weir_runtime::time::EventTime;
use weir_runtime::watermark::WatermarkOptions;

use common::{run_workers, temp_dir};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn time_of(value: &Value) -> Option<EventTime> {
    value.get("ts").and_then(|t| EventTime::from_json(t).ok())
}

/// Reads `source` on `workers` workers; returns the on-time records and the context.
fn read<D>(source: JsonLinesSource<D>, workers: usize, time: fn(&D) -> Option<EventTime>) -> (Vec<D>, QueryContext)
where
    D: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + 'static,
{
    let ctx = QueryContext::ephemeral("files-test");
    let records: Collector<Event<D>> = Collector::new();
    let (worker_ctx, worker_records) = (ctx.clone(), records.clone());
    run_workers(workers, move |worker| {
        let source = source.clone();
        worker.dataflow::<EventTime, _, _>(|scope| {
            let events =
                source.events(scope, &worker_ctx, time, WatermarkOptions::with_delay(Duration::from_secs(3600)));
            worker_records.attach(events.records, &worker_ctx, "records");
        });
    });
    (records.take().into_iter().map(|(_, e)| e.data).collect(), ctx)
}

#[test]
fn two_files_are_two_partitions() {
    let dir = temp_dir("two-files");
    let a = write(
        &dir,
        "a.jsonl",
        "{\"ts\": 1000, \"id\": \"a1\"}\n\n   \n{\"ts\": 3000, \"id\": \"a2\"}\r\n{\"ts\": 2000, \"id\": \"a3\"}",
    );
    let b = write(
        &dir,
        "b.jsonl",
        "{\"ts\": \"1970-01-01T00:00:01.500Z\", \"id\": \"b1\"}\n{\"ts\": 2500, \"id\": \"b2\"}\n",
    );
    for workers in [1, 2] {
        let source = JsonLinesSource::<Value>::files(vec![a.clone(), b.clone()]);
        assert_eq!(source.partitions(), 2);
        let (records, ctx) = read(source, workers, time_of);
        assert!(ctx.failure().is_none(), "{:?}", ctx.failure());
        let mut ids: Vec<String> = records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        assert_eq!(ids, vec!["a1", "a2", "a3", "b1", "b2"], "{workers} workers");
        let metrics = &ctx.metrics().sources()[0];
        let offsets = metrics.offsets.lock().unwrap().clone();
        assert_eq!(offsets[&0], json!({ "file": a.display().to_string(), "line": 5 }));
        assert_eq!(offsets[&1], json!({ "file": b.display().to_string(), "line": 2 }));
        assert!(metrics.finished());
    }
}

#[test]
fn a_malformed_line_names_the_file_and_line() {
    let dir = temp_dir("malformed");
    let good = write(&dir, "good.jsonl", "{\"ts\": 1}\n");
    let bad = write(&dir, "bad.jsonl", "{\"ts\": 1, \"n\": 1}\n\n{\"ts\": 2, \"n\": }\n{\"ts\": 3}\n");
    let (_, ctx) = read(JsonLinesSource::<Value>::files(vec![good, bad.clone()]), 2, time_of);
    match ctx.failure() {
        Some(QueryError::Source { source_name, message }) => {
            assert!(source_name.starts_with("JsonLinesSource["), "{source_name}");
            assert!(message.contains(&bad.display().to_string()), "{message}");
            assert!(message.contains("line 3"), "{message}");
            assert!(message.contains(r#"{\"ts\": 2, \"n\": }"#), "quotes the line: {message}");
            assert!(message.contains("fix or remove"), "says what to do: {message}");
        }
        other => panic!("expected a source failure, got {other:?}"),
    }
}

#[derive(Clone, Debug, Deserialize)]
struct Click {
    user: String,
    ts: u64,
}

#[test]
fn typed_records_and_shape_errors() {
    let dir = temp_dir("typed");
    let path = write(&dir, "clicks.jsonl", "{\"user\": \"ann\", \"ts\": 5}\n{\"user\": \"bob\", \"ts\": 7}\n");
    let (records, ctx) = read(JsonLinesSource::<Click>::files(vec![path]), 1, |c| Some(EventTime::from_millis(c.ts)));
    assert!(ctx.failure().is_none());
    assert_eq!(records.iter().map(|c| c.user.as_str()).collect::<Vec<_>>(), vec!["ann", "bob"]);

    let long = "x".repeat(200);
    let path = write(&dir, "wrong.jsonl", &format!("{{\"user\": 3, \"ts\": 1, \"pad\": \"{long}\"}}\n"));
    let (_, ctx) = read(JsonLinesSource::<Click>::files(vec![path]), 1, |c| Some(EventTime::from_millis(c.ts)));
    let message = ctx.failure().expect("a record of the wrong shape fails").to_string();
    assert!(message.contains("wrong.jsonl, line 1"), "{message}");
    assert!(message.contains("invalid type"), "gives the serde error: {message}");
    assert!(!message.contains(&long), "quotes only the start of the line: {message}");
}

#[test]
fn a_missing_file_names_the_path() {
    let dir = temp_dir("missing");
    let missing = dir.join("nope.jsonl");
    let (records, ctx) = read(JsonLinesSource::<Value>::files(vec![missing.clone()]), 1, time_of);
    assert!(records.is_empty());
    let message = ctx.failure().expect("a missing file fails").to_string();
    assert!(message.contains(&missing.display().to_string()) && message.contains("cannot open"), "{message}");
}

#[test]
fn dash_means_stdin() {
    assert_eq!(JsonLinesSource::<Value>::from_arg("-").inputs(), &[JsonLinesInput::Stdin]);
    assert_eq!(JsonLinesSource::<Value>::from_arg("in.jsonl").inputs(), &[JsonLinesInput::File("in.jsonl".into())]);
}
