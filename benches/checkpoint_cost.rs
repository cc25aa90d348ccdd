//! The cost of checkpointing (issue 5): the windowed Kafka → Kafka job (10 s tumbling count per
//! key) without checkpoints and at-least-once, then with checkpoints every 1 s and every 10 s,
//! at-least-once and exactly-once (the Kafka sink's transactions committed on the checkpoint's
//! epochs), and with the exactly-once file sink. Reports records/s per worker and the epoch
//! commit latency p50/p99: from an epoch's end (its boundary published) to its commit
//! (`commits/N` durable), as `LiveCheckpoint::commit_latencies` measures it.
//!
//! Reading a backlog, an epoch's commit waits until every source instance has stamped past its
//! boundary, which is chosen above the fastest instance: the latency then measures how far the
//! instances drift apart in event time. So the bench also runs live input (the rate source at a
//! fixed rate, event time = wall clock), where the latency is the protocol's own.
//!
//! `WEIR_BENCH_ROWS` test-stream records (default 2,000,000; 1,000 keys, 1 ms of event time
//! apart, out of order, no late records) are produced once into a 4-partition topic on
//! `WEIR_KAFKA_BROKERS` with `weir kafka produce-test-data`; every run reads them to the end.
//! Exactly-once Kafka output goes to `WEIR_KAFKA_TXN_BROKERS` (the broker here with
//! transactions). One run per configuration (runs are long, and a 10 s interval needs them to
//! be). Everything, brokers included, runs on this machine.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir::jobs::json_output::KafkaOutput;
use weir::jobs::kafka_input::{KafkaInput, ValueFormat};
use weir::jobs::window_count::{Input, Output, WindowCount};
use weir::prelude::*;
use weir_connectors::kafka::sink::Delivery;
use weir_connectors::kafka::{KafkaAdmin, KafkaOptions};

mod common;

const PARTITIONS: i32 = 4;
const WORKERS: usize = 2;

/// One configuration of the job.
#[derive(Clone, Copy, Debug)]
enum Sink {
    /// At-least-once Kafka output.
    KafkaAtLeastOnce,
    /// Exactly-once Kafka output (transactions on the checkpoint epochs).
    KafkaExactlyOnce,
    /// The exactly-once file sink.
    Files,
}

struct Outcome {
    elapsed: Duration,
    rows_out: u64,
    latencies: Vec<Duration>,
}

fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("weir-bench-{label}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn run(input: Input, brokers: &str, txn_brokers: &str, sink: Sink, interval: Option<Duration>) -> Outcome {
    let scratch = std::env::temp_dir().join(unique("checkpoint-cost"));
    let output = match sink {
        Sink::Files => Output::Files(scratch.join("out").display().to_string()),
        Sink::KafkaAtLeastOnce | Sink::KafkaExactlyOnce => {
            let (brokers, delivery) = match sink {
                Sink::KafkaExactlyOnce => (txn_brokers, Delivery::ExactlyOnce),
                _ => (brokers, Delivery::AtLeastOnce),
            };
            let topic = unique("counts");
            KafkaAdmin::connect(&KafkaOptions::new(brokers), Duration::from_secs(10))
                .and_then(|admin| admin.create_topic(&topic, 1, 1))
                .expect("output topic");
            Output::Kafka(KafkaOutput {
                brokers: brokers.to_string(),
                topic,
                delivery,
                commit_interval: interval.unwrap_or(Duration::from_secs(1)),
                settings: Vec::new(),
                epoch_headers: false,
            })
        }
    };
    let job = WindowCount {
        input,
        windowing: Windowing::tumbling(Duration::from_secs(10)),
        watermark_delay: Duration::from_secs(2),
        idle_timeout: None,
        output_mode: OutputMode::Append,
        output,
        late_output: None,
        time_format: weir::jobs::json_fields::TimeFormat::Ms,
        drop_invalid_time: false,
    };
    let mut query = Query::new("checkpoint-cost").workers(WORKERS);
    if let Some(interval) = interval {
        query = query.checkpoint(scratch.join("checkpoint"), interval);
    }
    let started = Instant::now();
    let handle = job.start(query).expect("job starts");
    handle.await_termination(None).expect("job ends");
    let elapsed = started.elapsed();
    if let Some(error) = handle.exception() {
        panic!("bench job failed: {error}");
    }
    let rows_out = handle.context().metrics().sinks().iter().map(|s| s.output_rows.load(Ordering::Relaxed)).sum();
    let latencies = handle.context().checkpoint().map(|live| live.commit_latencies()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);
    Outcome { elapsed, rows_out, latencies }
}

/// The `q` quantile (0..=1) of `values`, by the nearest-rank method.
fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    if common::listing("checkpoint_cost") {
        return;
    }
    let (Ok(brokers), Ok(txn_brokers)) = (std::env::var("WEIR_KAFKA_BROKERS"), std::env::var("WEIR_KAFKA_TXN_BROKERS"))
    else {
        panic!("no Kafka brokers: set WEIR_KAFKA_BROKERS and WEIR_KAFKA_TXN_BROKERS (`scripts/test-env up && source target/test-env/env.sh`)");
    };
    let rows = common::rows(2_000_000);
    let topic = unique("checkpoint-cost-input");
    let produced = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["kafka", "produce-test-data", "--brokers", &brokers, "--topic", &topic])
        .args(["--partitions", &PARTITIONS.to_string(), "--records", &rows.to_string(), "--keys", "1000"])
        .args(["--step", "1ms", "--late-fraction", "0"])
        .output()
        .expect("weir kafka produce-test-data");
    assert!(produced.status.success(), "producing the input failed: {}", String::from_utf8_lossy(&produced.stderr));
    println!(
        "checkpoint_cost: {rows} test-stream records, {PARTITIONS} partitions, 1,000 keys, {WORKERS} workers, broker {brokers}; {}",
        common::machine()
    );
    let input = KafkaInput {
        brokers: brokers.clone(),
        topics: vec![topic],
        starting_offsets: "earliest".into(),
        ending_offsets: Some("latest".into()),
        max_offsets_per_epoch: None,
        format: ValueFormat::Json,
        registry: None,
        dead_letters: None,
        settings: Vec::new(),
    };
    let configurations = [
        ("at-least-once, no checkpoint", Sink::KafkaAtLeastOnce, None),
        ("at-least-once, checkpoint 1 s", Sink::KafkaAtLeastOnce, Some(Duration::from_secs(1))),
        ("at-least-once, checkpoint 10 s", Sink::KafkaAtLeastOnce, Some(Duration::from_secs(10))),
        ("exactly-once Kafka, checkpoint 1 s", Sink::KafkaExactlyOnce, Some(Duration::from_secs(1))),
        ("exactly-once Kafka, checkpoint 10 s", Sink::KafkaExactlyOnce, Some(Duration::from_secs(10))),
        ("exactly-once files, checkpoint 1 s", Sink::Files, Some(Duration::from_secs(1))),
        ("exactly-once files, checkpoint 10 s", Sink::Files, Some(Duration::from_secs(10))),
    ];
    let mut rows_out = None;
    for (label, sink, interval) in configurations {
        let kafka = Input::Kafka { kafka: input.clone(), time_field: "ts".into(), key_field: "key".into() };
        let outcome = run(kafka, &brokers, &txn_brokers, sink, interval);
        // Every configuration writes the same windows.
        assert!(outcome.rows_out > 0, "{label}: no windows written");
        if let Some(expected) = rows_out {
            assert_eq!(outcome.rows_out, expected, "{label}: wrote a different number of windows");
        }
        rows_out = Some(outcome.rows_out);
        common::report(label, rows, WORKERS, outcome.elapsed);
        if interval.is_some() {
            print_latencies(label, &outcome.latencies);
        }
    }

    // Live input: event time follows the wall clock (the rate source at a fixed rate), as in
    // production once a query has caught up. Throughput is the rate; what matters is latency.
    let live_rows = rows.min(2_000_000);
    println!("live: the rate source at {LIVE_RATE} rows/s (event time = wall clock), {live_rows} rows, 1,000 keys");
    for (label, sink, interval) in [
        ("live, exactly-once files, checkpoint 1 s", Sink::Files, Duration::from_secs(1)),
        ("live, exactly-once Kafka, checkpoint 1 s", Sink::KafkaExactlyOnce, Duration::from_secs(1)),
        ("live, exactly-once Kafka, checkpoint 10 s", Sink::KafkaExactlyOnce, Duration::from_secs(10)),
    ] {
        let rate = Input::Rate {
            rows_per_second: LIVE_RATE,
            keys: 1_000,
            partitions: PARTITIONS as usize,
            rows: Some(live_rows),
            unthrottled: false,
            max_skew: Duration::ZERO,
        };
        let outcome = run(rate, &brokers, &txn_brokers, sink, Some(interval));
        assert!(outcome.rows_out > 0, "{label}: no windows written");
        print_latencies(label, &outcome.latencies);
    }
}

/// Rows per second of the live runs.
const LIVE_RATE: u64 = 100_000;

/// Prints the epochs committed and their commit latency p50/p99.
fn print_latencies(label: &str, latencies: &[Duration]) {
    assert!(!latencies.is_empty(), "{label}: no epoch committed");
    println!(
        "  {label:<44} {} epochs committed; commit latency p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        quantile(latencies, 0.5).as_secs_f64() * 1e3,
        quantile(latencies, 0.99).as_secs_f64() * 1e3
    );
}
