//! `--metrics-addr`: the real binary serves Prometheus metrics over HTTP while a job runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `name{labels}` → value, from the text format (comments skipped).
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

fn scrape(address: &str) -> (String, BTreeMap<String, f64>) {
    let response = ureq::get(&format!("http://{address}/metrics")).call().expect("scrape");
    let content_type = response.header("Content-Type").unwrap_or_default().to_string();
    let text = response.into_string().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    (content_type, parse(&text))
}

#[test]
fn run_serves_prometheus_metrics_while_the_query_runs() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "window-count", "--source", "rate", "--rows-per-second", "2000", "--partitions", "2"])
        .args(["--keys", "10", "--window", "1s", "--watermark-delay", "500ms", "--output", "/dev/null"])
        .args(["-w", "2", "--progress-interval", "200ms", "--seconds", "20", "--metrics-addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start weir");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut address = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("weir: metrics on http://") {
            address = Some(rest.strip_suffix("/metrics").expect("…/metrics").to_string());
            break;
        }
        line.clear();
    }
    let address = address.unwrap_or_else(|| panic!("no metrics address on stderr (last line: {line})"));
    assert!(!address.ends_with(":0"), "the real port is printed: {address}");

    std::thread::sleep(Duration::from_millis(1500));
    let (content_type, first) = scrape(&address);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let source = "source=\"RateSource[rowsPerSecond=2000, rampUpTime=0ms, numPartitions=2]\"";
    let input = |m: &BTreeMap<String, f64>| m[&format!("weir_source_input_rows_total{{{source}}}")];
    let wait_until = Instant::now() + Duration::from_secs(10);
    let second = loop {
        std::thread::sleep(Duration::from_millis(500));
        let (_, next) = scrape(&address);
        if next.contains_key("weir_input_rows_per_second") || Instant::now() > wait_until {
            break next;
        }
    };
    assert!(input(&first) > 0.0, "{first:?}");
    assert!(input(&second) > input(&first), "the input counter grows: {first:?} then {second:?}");
    assert!(second["weir_input_rows_per_second"] > 0.0, "{second:?}");
    // The watermark trails the wall clock by about the delay (the rate source stamps rows at now).
    let lag = second[&format!("weir_source_watermark_lag_seconds{{{source}}}")];
    assert!(lag > 0.0 && lag < 10.0, "watermark lag {lag}");
    for partition in ["0", "1"] {
        let offset = second[&format!("weir_source_partition_offset{{{source},partition=\"{partition}\"}}")];
        assert!(offset > 0.0, "partition {partition} offset {offset}");
        assert!(second.contains_key(&format!(
            "weir_source_partition_watermark_lag_seconds{{{source},partition=\"{partition}\"}}"
        )));
    }
    let operator = "operator=\"window-count\"";
    assert!(second[&format!("weir_operator_rows_in_total{{{operator}}}")] > 0.0, "{second:?}");
    assert!(second[&format!("weir_operator_state_rows{{{operator}}}")] >= 0.0);
    assert!(second[&format!("weir_operator_state_bytes{{{operator}}}")] >= 0.0);
    assert!(second.contains_key(&format!("weir_operator_late_rows_total{{{operator}}}")));
    let sink = second.keys().find(|k| k.starts_with("weir_sink_output_rows_total{")).expect("a sink").clone();
    assert!(second[&sink] > 0.0, "windows closed and were written: {second:?}");
    assert!(second.keys().any(|k| k.starts_with("weir_sink_errors_total{")));
    assert_eq!(second.keys().filter(|k| k.starts_with("weir_query_info{")).count(), 1);

    let response = ureq::get(&format!("http://{address}/nope")).call();
    assert!(matches!(response, Err(ureq::Error::Status(404, _))));
    child.kill().ok();
    child.wait().ok();
}
