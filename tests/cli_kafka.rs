//! The CLI against a real broker and registry: `weir kafka produce-test-data` writes a keyed,
//! out-of-order stream with late records into a 3-partition topic; `weir run window-count
//! --source kafka ... --sink kafka` (1 and 3 workers; JSON and Avro; at-least-once, idempotent
//! and exactly-once) must write exactly the windows a batch computation finds, and the late
//! records it sets aside must be exactly the late ones. The oracle reads the input back with its
//! partitions and applies the per-partition watermark rule of the specification.
//!
//! Needs `WEIR_KAFKA_BROKERS` and `WEIR_KAFKA_TXN_BROKERS` (`scripts/test-env up`); the
//! registry is the real `weir registry serve`, started here.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod support;
use support::kafka::{
    brokers, consume_all, create_topic, row, txn_brokers, unique_topic, window_count_oracle, Isolation, Row,
};
use support::{check, weir, BINARY};

const WINDOW_MS: i64 = 10_000;
const DELAY_MS: u64 = 2_000;

/// A `weir registry serve` on a free port, killed on drop.
struct Registry {
    child: Child,
    url: String,
}

impl Registry {
    fn start() -> Self {
        let mut child = Command::new(BINARY)
            .args(["registry", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start weir registry serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("listening line").to_string();
        Registry { child, url }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn produce_test_data(brokers: &str, topic: &str, extra: &[&str]) {
    let mut args = vec!["kafka", "produce-test-data", "--brokers", brokers, "--topic", topic, "--partitions", "3"];
    if !extra.contains(&"--records") {
        args.extend_from_slice(&["--records", "6000"]);
    }
    args.extend_from_slice(&["--keys", "40", "--late-fraction", "0.03", "--late-by", "30s"]);
    args.extend_from_slice(extra);
    check(&weir(args));
}

/// `weir run window-count` over the Avro topic `topic`, bounded, output discarded, plus `extra`.
fn avro_window_count(brokers: &str, topic: &str, registry: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        "window-count",
        "--source",
        "kafka",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--format",
        "avro",
        "--registry",
        registry,
        "--ending-offsets",
        "latest",
        "--window",
        "10s",
        "--watermark-delay",
        "2s",
        "--output",
        "/dev/null",
    ];
    args.extend_from_slice(extra);
    weir(args)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Runs window-count from `input_topic` into `output_topic` and checks the output against the oracle.
fn run_and_check(input_topic: &str, output_brokers: &str, workers: usize, delivery: &str, extra: &[&str], avro: bool) {
    let brokers = brokers();
    let output_topic = unique_topic("cli-out");
    create_topic(output_brokers, &output_topic, 2);
    let dir = std::env::temp_dir().join(unique_topic("cli-kafka"));
    std::fs::create_dir_all(&dir).unwrap();
    let late_path = dir.join("late.jsonl");
    let workers = workers.to_string();
    let mut args = vec![
        "run",
        "window-count",
        "--source",
        "kafka",
        "--brokers",
        &brokers,
        "--topic",
        input_topic,
        "--ending-offsets",
        "latest",
        "--window",
        "10s",
        "--watermark-delay",
        "2s",
        "--sink",
        "kafka",
        "--output-brokers",
        output_brokers,
        "--output-topic",
        &output_topic,
        "--delivery",
        delivery,
        "--late-output",
        late_path.to_str().unwrap(),
        "-w",
        &workers,
    ];
    args.extend_from_slice(extra);
    check(&weir(&args));

    let input = consume_all(&brokers, input_topic, Isolation::ReadUncommitted);
    let (expected, expected_late) = window_count_oracle(&input, DELAY_MS, WINDOW_MS, avro);
    let isolation = if delivery == "exactly-once" { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let written: Vec<Row> = consume_all(output_brokers, &output_topic, isolation)
        .iter()
        .map(|r| row(&serde_json::from_slice(r.value.as_deref().unwrap()).unwrap()))
        .collect();
    let got: BTreeSet<Row> = written.iter().cloned().collect();
    assert_eq!(written.len(), got.len(), "a window was written twice ({delivery}, {workers} workers)");
    let missing: Vec<_> = expected.difference(&got).take(3).collect();
    let extra_rows: Vec<_> = got.difference(&expected).take(3).collect();
    assert!(
        missing.is_empty() && extra_rows.is_empty(),
        "{delivery}, {workers} workers: {} rows expected, {} written; missing e.g. {missing:?}, unexpected e.g. {extra_rows:?}",
        expected.len(),
        got.len()
    );
    assert!(expected_late > 50, "the input has late records ({expected_late})");
    assert_eq!(lines(&late_path).len(), expected_late, "every late record is set aside, once");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_window_count_from_kafka_to_kafka_equals_the_oracle() {
    let brokers = brokers();
    let topic = unique_topic("cli-json");
    produce_test_data(&brokers, &topic, &["--seed", "3"]);
    run_and_check(&topic, &brokers, 1, "at-least-once", &[], false);
    run_and_check(&topic, &brokers, 3, "idempotent", &[], false);
}

#[test]
fn exactly_once_sink_from_the_cli_commits_the_oracle_windows() {
    let brokers = brokers();
    let topic = unique_topic("cli-eos");
    produce_test_data(&brokers, &topic, &["--seed", "4"]);
    // The transactional broker (nisshi 0.7.0) commits and aborts; read_committed here shows only
    // what was committed, but this broker would show aborted records too: this checks the
    // committed output, not the hiding of aborted data (see tests/kafka_sink.rs, gated on a real Kafka).
    let id = unique_topic("query-id");
    run_and_check(&topic, &txn_brokers(), 2, "exactly-once", &["--commit-interval", "100ms", "--id", &id], false);
}

#[test]
fn avro_window_count_with_dead_letters_equals_the_oracle() {
    let brokers = brokers();
    let registry = Registry::start();
    let topic = unique_topic("cli-avro");
    produce_test_data(&brokers, &topic, &["--seed", "5", "--format", "avro", "--registry", &registry.url]);
    // Three JSON records in the Avro topic: without a dead-letter file the run fails and names one.
    check(&weir([
        "kafka",
        "produce-test-data",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--records",
        "3",
        "--late-fraction",
        "0",
    ]));
    let failed = avro_window_count(&brokers, &topic, &registry.url, &[]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("expected magic byte 0x00, got 0x7B ('{'): this looks like JSON") && stderr.contains(&topic),
        "{stderr}"
    );
    // With one, they are set aside and the windows are those of the Avro records.
    let dead_letters = std::env::temp_dir().join(format!("{topic}-dead.jsonl"));
    let dead = dead_letters.to_str().unwrap().to_string();
    run_and_check(
        &topic,
        &brokers,
        2,
        "at-least-once",
        &["--format", "avro", "--registry", &registry.url, "--dead-letter", &dead],
        true,
    );
    let letters = lines(&dead_letters);
    assert_eq!(letters.len(), 3, "{letters:?}");
    for letter in &letters {
        assert_eq!(letter["topic"], topic.as_str());
        assert_eq!(letter["error_kind"], "wrong_magic_byte");
        assert!(letter["offset"].as_i64().is_some() && letter["raw"].is_string());
    }
    std::fs::remove_file(dead_letters).unwrap();
}

#[test]
fn debug_decode_shows_hex_text_and_the_decoded_value() {
    let brokers = brokers();
    let registry = Registry::start();
    let topic = unique_topic("cli-decode");
    check(&weir([
        "kafka",
        "produce-test-data",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--records",
        "2",
        "--format",
        "avro",
        "--registry",
        &registry.url,
    ]));
    let shown = weir([
        "debug",
        "decode",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--offset",
        "1",
        "--registry",
        &registry.url,
    ]);
    check(&shown);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("00000000  00 00 00 00 01"), "hex with the magic byte and schema id 1:\n{text}");
    assert!(text.contains("Avro, schema id 1: {\"key\":\"k"), "{text}");
    assert!(text.contains("\"value\":1}"), "the record at offset 1 is the second one:\n{text}");
}

#[test]
fn dead_letters_can_go_to_a_kafka_topic() {
    let brokers = brokers();
    let registry = Registry::start();
    let (topic, dlq) = (unique_topic("cli-dlq-in"), unique_topic("cli-dlq"));
    create_topic(&brokers, &dlq, 1);
    produce_test_data(
        &brokers,
        &topic,
        &["--seed", "6", "--records", "200", "--format", "avro", "--registry", &registry.url],
    );
    // Two records that are not Avro: JSON text in an Avro topic.
    check(&weir([
        "kafka",
        "produce-test-data",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--records",
        "2",
        "--late-fraction",
        "0",
    ]));
    let run = avro_window_count(&brokers, &topic, &registry.url, &["--dead-letter-topic", &dlq]);
    check(&run);
    let letters = consume_all(&brokers, &dlq, Isolation::ReadUncommitted);
    assert_eq!(letters.len(), 2, "one letter per bad record");
    for letter in letters {
        let value: Value = serde_json::from_slice(letter.value.as_deref().unwrap()).unwrap();
        assert_eq!(value["topic"], topic.as_str());
        assert_eq!(value["error_kind"], "wrong_magic_byte");
        let raw = value["raw"].as_str().unwrap();
        assert!(!raw.is_empty(), "the raw bytes are kept");
        let key = String::from_utf8(letter.key.unwrap()).unwrap();
        assert!(key.starts_with(&format!("{topic}/")), "{key}");
    }
    // A missing dead-letter topic is a clear error before anything is read.
    let missing = avro_window_count(&brokers, &topic, &registry.url, &["--dead-letter-topic", "weir-no-such-dlq"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("weir-no-such-dlq") && stderr.contains("dead-letter"), "{stderr}");
}
