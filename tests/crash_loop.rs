//! Exactly-once across crashes (EXACTLY_ONCE.md): a Kafka test stream (3 partitions, out of order,
//! with late records) through `weir run window-count --checkpoint ... --sink files` on 2 workers,
//! SIGKILLed at random moments and restarted again and again, then run to its end: the committed
//! output files hold exactly the windows a batch computation over the input gives, each once.
//! The same loop with an at-least-once Kafka sink writes windows more than once, which shows
//! that the harness can fail.
//!
//! Needs `WEIR_KAFKA_BROKERS` (`scripts/test-env up`).

use std::collections::BTreeSet;
use std::path::Path;

mod support;
use support::crash::{
    assert_each_once, assert_enough_kills, committed_count, committed_rows, crash_loop, kafka_job_args,
};
use support::kafka::{
    brokers, consume_all, create_topic, produce_test_stream, rows_of, unique_topic, window_count_oracle, Isolation,
    Row, TestStream,
};
use support::{check, weir};

/// The job's arguments: bounded read of `topic`, 10 s windows, 2 s watermark delay, 2 workers,
/// checkpoints every 20 ms, reading slowly enough (a cap per activation) to be killed mid-way.
fn job_args(brokers: &str, topic: &str, checkpoint: &Path, sink: &[String]) -> Vec<String> {
    let flags = ["--window", "10s", "--watermark-delay", "2s", "-w", "2"];
    let mut args = kafka_job_args(&["window-count"], brokers, &["--topic", topic], 300, &flags, checkpoint);
    args.extend(sink.iter().cloned());
    args
}

#[test]
fn exactly_once_file_output_survives_a_crash_loop() {
    let brokers = brokers();
    let topic = unique_topic("crash-loop");
    produce_test_stream(&brokers, &topic, TestStream::new(600_000, 50, 11));
    let (expected, late) =
        window_count_oracle(&consume_all(&brokers, &topic, Isolation::ReadUncommitted), 2_000, 10_000, false);
    assert!(late > 100, "the input has late records");
    let dir = std::env::temp_dir().join(unique_topic("crash-loop-dir"));
    let (checkpoint, output) = (dir.join("checkpoint"), dir.join("out"));
    let sink = ["--sink".to_string(), "files".to_string(), "--output-dir".to_string(), output.display().to_string()];
    let (killed, mid_way) = crash_loop(&job_args(&brokers, &topic, &checkpoint, &sink), 7, || committed_count(&output));
    assert_enough_kills("", (killed, mid_way));
    assert_each_once(&format!("after {killed} crashes"), "window", &committed_rows(&output), &expected);
    // `weir checkpoint inspect` shows the epochs.
    let inspected = weir(["checkpoint", "inspect", checkpoint.to_str().unwrap()]);
    check(&inspected);
    assert!(String::from_utf8_lossy(&inspected.stdout).contains("committed"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn at_least_once_output_of_the_same_loop_has_duplicates() {
    let brokers = brokers();
    let topic = unique_topic("crash-loop-alo");
    produce_test_stream(&brokers, &topic, TestStream::new(600_000, 50, 11));
    let out_topic = unique_topic("crash-loop-alo-out");
    create_topic(&brokers, &out_topic, 1);
    let dir = std::env::temp_dir().join(unique_topic("crash-loop-alo-dir"));
    let sink = ["--sink", "kafka", "--output-topic", &out_topic, "--delivery", "at-least-once"].map(String::from);
    let kills = crash_loop(&job_args(&brokers, &topic, &dir.join("checkpoint"), &sink), 8, || {
        consume_all(&brokers, &out_topic, Isolation::ReadUncommitted).len()
    });
    assert_enough_kills("", kills);
    let written = rows_of(&brokers, &out_topic, Isolation::ReadUncommitted);
    let unique: BTreeSet<Row> = written.iter().cloned().collect();
    assert!(
        written.len() > unique.len(),
        "with at-least-once delivery the crash loop should have written some window twice ({} rows, {} distinct)",
        written.len(),
        unique.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A few JSON lines with keys and times, as a file.
fn small_input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("events.jsonl");
    let lines: Vec<String> =
        (0..200).map(|i| format!("{{\"key\":\"k{}\",\"ts\":{}}}", i % 7, 1_700_000_000_000u64 + i * 250)).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A restart with a changed window is refused before anything runs, naming the change;
/// `--reset-checkpoint` starts fresh on purpose; another job on the same checkpoint is refused,
/// naming the operators removed and added.
#[test]
fn incompatible_restarts_fail_clearly_and_reset_starts_fresh() {
    let dir = std::env::temp_dir().join(unique_topic("checkpoint-compat"));
    std::fs::create_dir_all(&dir).unwrap();
    let input = small_input(&dir);
    let (checkpoint, output) = (dir.join("checkpoint"), dir.join("out"));
    let run = |window: &str, extra: &[&str]| {
        let mut args = vec![
            "run".to_string(),
            "window-count".to_string(),
            "--input".to_string(),
            input.display().to_string(),
            "--window".to_string(),
            window.to_string(),
            "--checkpoint".to_string(),
            checkpoint.display().to_string(),
            "--sink".to_string(),
            "files".to_string(),
            "--output-dir".to_string(),
            output.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        weir(args)
    };
    check(&run("10s", &[]));
    let first = committed_rows(&output);
    assert!(!first.is_empty());

    let changed = run("5s", &[]);
    assert!(!changed.status.success());
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(stderr.contains("changed from") && stderr.contains("--reset-checkpoint"), "{stderr}");

    std::fs::remove_dir_all(&output).unwrap();
    check(&run("5s", &["--reset-checkpoint"]));
    let fresh = committed_rows(&output);
    assert!(fresh.iter().all(|(start, end, _, _)| end - start == 5_000), "the reset run counts 5 s windows");

    // Another job on the same checkpoint: the operators that came and went are named.
    let other_job = weir([
        "run",
        "dedup",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "key",
        "--within",
        "1m",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert!(!other_job.status.success());
    let stderr = String::from_utf8_lossy(&other_job.stderr);
    assert!(
        stderr.contains("`window-count`") && stderr.contains("was removed") && stderr.contains("`dedup`"),
        "{stderr}"
    );
    assert!(stderr.contains("--reset-checkpoint") && !stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
