//! The diagnosis of a Kafka source that reads nothing, against a real broker (nisshi 0.8.1,
//! `WEIR_KAFKA_BROKERS`): the `noInputSinceStart` cause names the offsets the source started from
//! and, when it started at `latest`, says that only records produced after the start are read,
//! how many existing records that skips, and how to read them (`--starting-offsets earliest`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use weir::prelude::*;
use weir::runtime::diagnose::{Cause, Reason, QUIET_INTERVALS};
use weir_connectors::kafka::{KafkaOptions, KafkaRecord, KafkaSource, StartingOffsets};

mod support;
use support::kafka::{brokers, create_topic, produce, unique_topic, TestRecord};

const INTERVAL: Duration = Duration::from_millis(300);
/// Intervals a query runs before it is stopped.
const RUN_INTERVALS: u32 = QUIET_INTERVALS + 2;
const BASE: i64 = 1_700_000_000_000;

/// `counts[p]` records in partition `p`.
fn fill(topic: &str, counts: &[i64]) {
    let mut records = Vec::new();
    for (p, &n) in counts.iter().enumerate() {
        records.extend((0..n).map(|i| TestRecord::new(p as i32, BASE + i * 1000, format!("{p}-{i}"))));
    }
    produce(&brokers(), topic, &records);
}

/// Runs source → 1-hour tumbling count → collector for RUN_INTERVALS intervals on 2
/// workers, and returns the reports and the rows read.
fn run(source: KafkaSource) -> (Vec<StreamingQueryProgress>, u64) {
    let reports: Arc<Mutex<Vec<StreamingQueryProgress>>> = Arc::default();
    let into = reports.clone();
    let handle = Query::new("kafka-diagnose")
        .workers(2)
        .progress_interval(INTERVAL)
        .on_progress(move |p: &StreamingQueryProgress| into.lock().unwrap().push(p.clone()))
        .start(move |scope, ctx| {
            let events = source.clone().events(scope, ctx, KafkaRecord::event_time, WatermarkOptions::default());
            let counts = events.window_count(
                ctx,
                "counts",
                Windowing::tumbling(Duration::from_secs(3600)),
                OutputMode::Append,
                |r: &KafkaRecord| r.partition,
            )?;
            Collector::new().attach(counts.results, ctx, "out");
            Ok(())
        })
        .expect("the query starts");
    let ended = handle.await_termination(Some(INTERVAL * RUN_INTERVALS));
    assert!(matches!(ended, Ok(false)), "the query should still run: {ended:?}");
    handle.stop().unwrap();
    let reports = reports.lock().unwrap().clone();
    let read = reports.iter().map(|r| r.num_input_rows).sum();
    (reports, read)
}

/// The `noInputSinceStart` cause of the report that closes the QUIET_INTERVALS-th quiet interval.
fn no_input_cause(reports: &[StreamingQueryProgress]) -> Cause {
    let due = reports.get(QUIET_INTERVALS as usize - 1).expect("enough reports");
    let diagnosis = due.diagnose.clone().unwrap_or_else(|| panic!("no diagnosis in {}", due.pretty_json()));
    diagnosis
        .causes
        .into_iter()
        .find(|c| c.reason == Reason::NoInputSinceStart)
        .unwrap_or_else(|| panic!("no noInputSinceStart cause in {}", due.pretty_json()))
}

#[test]
fn starting_at_latest_names_the_offsets_the_skipped_records_and_the_fix() {
    let topic = unique_topic("diag-latest");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, &[5, 3]);
    let source = KafkaSource::subscribe(KafkaOptions::new(brokers()), [topic.as_str()])
        .starting_offsets(StartingOffsets::Latest)
        .build()
        .unwrap();
    let (reports, read) = run(source);
    assert_eq!(read, 0, "nothing was produced after the start");
    let cause = no_input_cause(&reports);
    let started = json!({ topic.clone(): {"0": 5, "1": 3} });
    assert_eq!(cause.source.as_deref(), Some(format!("KafkaSource[Subscribe[{topic}]]").as_str()));
    assert_eq!(cause.details["startOffsets"], started, "{}", cause.message);
    assert_eq!(cause.details["latestOffsets"], started, "{}", cause.message);
    for needle in [
        &format!("from offsets {started}") as &str,
        "it started at the latest offsets (every partition)",
        "reads only records produced after the query started",
        "the 8 records already in the topic are not read",
        "--starting-offsets earliest",
        "StartingOffsets::Earliest",
    ] {
        assert!(cause.message.contains(needle), "{needle:?} missing from: {}", cause.message);
    }
    assert!(cause.details["hint"].as_str().is_some_and(|h| cause.message.ends_with(h)), "{:?}", cause.details);
}

#[test]
fn only_the_partitions_started_at_latest_are_named() {
    let topic = unique_topic("diag-mixed");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, &[4, 0]);
    // Partition 0 at latest (-1), partition 1 at earliest (-2) but empty.
    let starting = StartingOffsets::from_json(&format!(r#"{{"{topic}":{{"0":-1,"1":-2}}}}"#)).unwrap();
    let source = KafkaSource::subscribe(KafkaOptions::new(brokers()), [topic.as_str()])
        .starting_offsets(starting)
        .build()
        .unwrap();
    let (reports, read) = run(source);
    assert_eq!(read, 0);
    let cause = no_input_cause(&reports);
    assert_eq!(cause.details["startOffsets"], json!({ topic.clone(): {"0": 4, "1": 0} }), "{}", cause.message);
    let only_p0 = format!("it started at the latest offsets ({topic}-0)");
    assert!(cause.message.contains(&only_p0), "{only_p0:?} missing from: {}", cause.message);
    assert!(cause.message.contains("the 4 records already in the topic are not read"), "{}", cause.message);
}

#[test]
fn starting_at_earliest_on_an_empty_topic_says_nothing_was_produced_not_latest() {
    let topic = unique_topic("diag-empty");
    create_topic(&brokers(), &topic, 1);
    let source = KafkaSource::subscribe(KafkaOptions::new(brokers()), [topic.as_str()])
        .starting_offsets(StartingOffsets::Earliest)
        .build()
        .unwrap();
    let (reports, _) = run(source);
    let cause = no_input_cause(&reports);
    assert_eq!(cause.details["startOffsets"], json!({ topic.clone(): {"0": 0} }));
    assert!(
        cause.details.get("hint").is_none(),
        "no latest hint for a source started at earliest: {:?}",
        cause.details
    );
    assert!(!cause.message.contains("--starting-offsets"), "{}", cause.message);
    assert!(cause.message.contains("nothing has been written to it since"), "{}", cause.message);
}

#[test]
fn records_produced_after_a_latest_start_are_read_and_not_diagnosed() {
    let topic = unique_topic("diag-new");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, &[3]);
    let source = KafkaSource::subscribe(KafkaOptions::new(brokers()), [topic.as_str()])
        .starting_offsets(StartingOffsets::Latest)
        .build()
        .unwrap();
    let producer_topic = topic.clone();
    let producer = std::thread::spawn(move || {
        produce(&brokers(), &producer_topic, &[TestRecord::new(0, BASE + 10_000, "new")]);
    });
    let (reports, read) = run(source);
    producer.join().unwrap();
    assert_eq!(read, 1, "only the record produced after the start is read");
    // Producing may take longer than the quiet intervals, so the cause may be named before the
    // record arrives; from the report that counts it on, it must be gone.
    let first_input = reports.iter().position(|r| r.num_input_rows > 0).unwrap();
    let named: Vec<&Cause> = reports[first_input..]
        .iter()
        .filter_map(|r| r.diagnose.as_ref())
        .flat_map(|d| &d.causes)
        .filter(|c| c.reason == Reason::NoInputSinceStart)
        .collect();
    assert!(named.is_empty(), "input arrived, yet: {named:?}");
}

#[test]
fn the_cli_status_line_names_the_latest_trap_and_the_flag() {
    let topic = unique_topic("diag-cli");
    create_topic(&brokers(), &topic, 2);
    fill(&topic, &[2, 2]);
    let brokers = brokers();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "window-count", "--source", "kafka", "--brokers", &brokers, "--topic", &topic])
        .args(["--starting-offsets", "latest", "--window", "10s", "--output", "-", "-w", "2"])
        .args(["--status", "--progress-interval", "300ms", "--seconds", "1.5"])
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "weir failed: {stderr}");
    assert!(output.stdout.is_empty(), "nothing should be written: {}", String::from_utf8_lossy(&output.stdout));
    let line = stderr
        .lines()
        .find(|l| l.contains("NO OUTPUT"))
        .unwrap_or_else(|| panic!("no status line names why nothing is written: {stderr}"));
    for needle in [
        format!("from offsets {}", json!({ topic.clone(): {"0": 2, "1": 2} })),
        "it started at the latest offsets".to_string(),
        "the 4 records already in the topic are not read".to_string(),
        "--starting-offsets earliest".to_string(),
    ] {
        assert!(line.contains(&needle), "{needle:?} missing from: {line}");
    }
}
