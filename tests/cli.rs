//! `weir run window-count` end to end: random out-of-order JSON lines with late records, run by
//! the real binary with 1 and 2 workers and as a 2-process cluster on 127.0.0.1, compared with a
//! plain batch computation of the same windows and late records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod support;
use support::{
    check, iso, late_line, late_lines, parse_lines, tempdir, ts_of, write_lines, Arrival, PartitionClock, BINARY,
};

struct Case {
    lines: Vec<Value>,
    window: i64,
    slide: i64,
    delay: i64,
}

/// Random events: time moves forward with jitter backwards; keys are strings and numbers; times
/// are integers or ISO strings.
fn random_case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let base: i64 = 1_700_000_000_000;
    let mut now = base;
    let mut lines = Vec::new();
    for _ in 0..rng.random_range(50..400) {
        now += rng.random_range(0..800);
        let ts = now - if rng.random_bool(0.3) { rng.random_range(0..12_000) } else { 0 };
        let key = match rng.random_range(0..4) {
            0 => json!("alpha"),
            1 => json!("beta"),
            2 => json!(7),
            _ => json!("7"),
        };
        let ts_value = if rng.random_bool(0.2) { json!(iso(ts)) } else { json!(ts) };
        lines.push(json!({"ts": ts_value, "key": key, "payload": rng.random_range(0..1000)}));
    }
    let window = [2_000, 5_000, 10_000][rng.random_range(0..3)];
    let slide = if rng.random_bool(0.5) { window } else { window / 2 };
    let delay = [0, 1_000, 3_000][rng.random_range(0..3)];
    Case { lines, window, slide, delay }
}

/// The batch computation: lateness by the definition, then windows over the on-time records.
fn oracle(case: &Case) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut clock = PartitionClock::new(case.delay as u64);
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut late = BTreeSet::new();
    for line in &case.lines {
        let ts = ts_of(line);
        if let Arrival::Late { watermark } = clock.arrive(ts as u64) {
            late.insert(late_line(ts, watermark, line));
            continue;
        }
        let key = line["key"].to_string();
        let mut start = ts - ts.rem_euclid(case.slide);
        while start > ts - case.window {
            *counts.entry((start, key.clone())).or_default() += 1;
            start -= case.slide;
        }
    }
    let windows = counts
        .into_iter()
        .map(|((start, key), count)| {
            let key: Value = serde_json::from_str(&key).unwrap();
            json!({"window_start": start, "window_end": start + case.window, "key": key, "count": count}).to_string()
        })
        .collect();
    (windows, late)
}

fn write_input(dir: &Path, case: &Case) -> PathBuf {
    let path = dir.join("events.jsonl");
    write_lines(&path, &case.lines);
    path
}

fn job_args(input: &Path, case: &Case, output: &Path, late: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "window-count".into(),
        "--input".into(),
        input.display().to_string(),
        "--time-field".into(),
        "ts".into(),
        "--key-field".into(),
        "key".into(),
        "--window".into(),
        format!("{}ms", case.window),
        "--watermark-delay".into(),
        format!("{}ms", case.delay),
        "--output-mode".into(),
        "append".into(),
        "--output".into(),
        output.display().to_string(),
        "--late-output".into(),
        late.display().to_string(),
    ];
    if case.slide != case.window {
        args.extend(["--slide".into(), format!("{}ms", case.slide)]);
    }
    args
}

fn read_windows(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap().to_string()).collect();
    let set: BTreeSet<String> = lines.iter().cloned().collect();
    assert_eq!(set.len(), lines.len(), "a window was emitted twice in append mode");
    set
}

fn read_late(path: &Path) -> BTreeSet<String> {
    late_lines(path, "window-count").into_iter().collect()
}

#[test]
fn window_count_matches_the_oracle_with_one_and_two_workers() {
    let dir = tempdir("oracle");
    let mut late_seen = 0;
    for seed in 0..12 {
        let case = random_case(seed);
        let (expected_windows, expected_late) = oracle(&case);
        late_seen += expected_late.len();
        let input = write_input(&dir, &case);
        for workers in [1, 2] {
            let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
            let mut args = job_args(&input, &case, &out, &late);
            args.extend(["-w".into(), workers.to_string()]);
            check(&Command::new(BINARY).args(&args).output().unwrap());
            assert_eq!(read_windows(&out), expected_windows, "seed {seed}, {workers} workers: windows differ");
            assert_eq!(read_late(&late), expected_late, "seed {seed}, {workers} workers: late records differ");
        }
    }
    assert!(late_seen > 0, "the generated cases contain no late record, so lateness was not tested");
}

#[test]
fn stdin_and_stdout_work() {
    let case = random_case(99);
    let (expected, _) = oracle(&case);
    let input: String = case.lines.iter().map(|l| format!("{l}\n")).collect();
    let mut child = Command::new(BINARY)
        .args(["run", "window-count", "--input", "-", "--window", &format!("{}ms", case.window)])
        .args(["--watermark-delay", &format!("{}ms", case.delay)])
        .args(if case.slide != case.window { vec!["--slide".to_string(), format!("{}ms", case.slide)] } else { vec![] })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    check(&output);
    let got: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn two_process_cluster_equals_one_worker() {
    let dir = tempdir("cluster");
    let case = random_case(7);
    let (expected, expected_late) = oracle(&case);
    let input = write_input(&dir, &case);
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let hostfile = dir.join("hosts");
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let (out, late) = (dir.join("cluster-out.jsonl"), dir.join("cluster-late.jsonl"));
    let spawn = |process: usize| {
        let mut args = job_args(&input, &case, &out, &late);
        args.extend(
            ["-n", "2", "-p", &process.to_string(), "-h", &hostfile.display().to_string(), "-w", "2"].map(String::from),
        );
        Command::new(BINARY)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let second = spawn(1);
    let first = spawn(0);
    check(&first.wait_with_output().unwrap());
    check(&second.wait_with_output().unwrap());
    assert_eq!(read_windows(&out), expected, "cluster windows differ from the oracle");
    assert_eq!(read_late(&late), expected_late, "cluster late records differ from the oracle");
}

#[test]
fn invalid_jobs_fail_with_clear_messages() {
    let dir = tempdir("invalid");
    let input = write_input(&dir, &random_case(1));
    let run = |extra: &[&str]| {
        let output = Command::new(BINARY)
            .args(["run", "window-count", "--input", &input.display().to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{extra:?} should fail");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    assert!(run(&["--output-mode", "append"]).contains("never becomes final"));
    assert!(run(&["--window", "5s", "--slide", "10s"]).contains("longer than the window size"));
    assert!(run(&["--window", "0s"]).contains("zero milliseconds"));
    assert!(run(&["--window", "10s", "--output-mode", "sometimes"]).contains("not an output mode"));
    assert!(run(&["--window", "tenseconds"]).contains("cannot read duration"));

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"ts\": 1, \"key\": \"a\"}\n{\"ts\": 2, \"key\": \n").unwrap();
    let output = window_count(&bad, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");

    let untimed = dir.join("untimed.jsonl");
    std::fs::write(&untimed, "{\"ts\": 1, \"key\": \"a\"}\n{\"key\": \"b\"}\n").unwrap();
    let output = window_count(&untimed, &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("without a readable event time"));
    let output = window_count(&untimed, &["--drop-invalid-time"]);
    check(&output);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        r#"{"window_start":0,"window_end":10000,"key":"a","count":1}"#
    );
}

#[test]
fn rate_source_job_runs_bounded_and_reports_progress() {
    let dir = tempdir("rate");
    let progress = dir.join("progress.jsonl");
    let output = Command::new(BINARY)
        .args([
            "run",
            "window-count",
            "--source",
            "rate",
            "--rows-per-second",
            "10000",
            "--keys",
            "4",
            "--rows",
            "50000",
        ])
        .args(["--unthrottled", "--window", "1s", "--partitions", "3", "-w", "2", "--progress-interval", "50ms"])
        .args(["--progress-log", &progress.display().to_string()])
        .output()
        .unwrap();
    check(&output);
    let rows = parse_lines(&String::from_utf8_lossy(&output.stdout));
    // 50,000 rows at 10,000 rows/s of event time span 5 s (6 windows, as the start is not aligned);
    // value % 4 spreads every window evenly over the 4 keys, and full windows hold 2,500 per key.
    let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 50_000);
    let mut per_window: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for r in &rows {
        per_window.entry(r["window_start"].as_i64().unwrap()).or_default().push(r["count"].as_u64().unwrap());
    }
    assert!((5..=6).contains(&per_window.len()), "{rows:?}");
    for counts in per_window.values() {
        assert_eq!(counts.len(), 4);
        assert!(counts.iter().all(|c| c.abs_diff(counts[0]) <= 1), "{counts:?}");
    }
    let inner: Vec<&Vec<u64>> = per_window.values().skip(1).take(per_window.len() - 2).collect();
    assert!(inner.iter().all(|c| c.iter().all(|n| *n == 2_500)), "{rows:?}");
    let reports = parse_lines(&std::fs::read_to_string(&progress).unwrap());
    assert!(!reports.is_empty());
    let input_rows: u64 = reports.iter().map(|r| r["numInputRows"].as_u64().unwrap()).sum();
    assert_eq!(input_rows, 50_000, "progress reports must account for every row read");
    let output_rows: u64 = reports.iter().map(|r| r["sink"]["numOutputRows"].as_u64().unwrap()).sum();
    assert_eq!(output_rows, rows.len() as u64);
    let last = reports.last().unwrap();
    for field in
        ["id", "runId", "name", "timestamp", "batchId", "inputRowsPerSecond", "processedRowsPerSecond", "durationMs"]
    {
        assert!(last.get(field).is_some(), "progress report lacks {field}");
    }
    assert_eq!(last["stateOperators"][0]["numRowsTotal"], 0, "state must be evicted at the end");
}

/// Runs `weir run window-count` on `input` with 10 s windows and `extra` flags.
fn window_count(input: &Path, extra: &[&str]) -> Output {
    Command::new(BINARY)
        .args(["run", "window-count", "--input", &input.display().to_string(), "--window", "10s"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn throttled_rate_job_runs_for_the_given_seconds_and_stops_gracefully() {
    let started = std::time::Instant::now();
    let output = Command::new(BINARY)
        .args(["run", "window-count", "--source", "rate", "--rows-per-second", "2000", "--keys", "5"])
        .args(["--window", "1s", "--watermark-delay", "0s", "--seconds", "3.5"])
        .output()
        .unwrap();
    check(&output);
    let elapsed = started.elapsed();
    assert!(elapsed >= std::time::Duration::from_secs(3), "stopped after {elapsed:?}, before --seconds 3.5");
    let rows = parse_lines(&String::from_utf8_lossy(&output.stdout));
    // 2,000 rows/s over 5 keys: a full 1 s window holds 400 rows per key.
    let full = rows.iter().filter(|r| r["count"] == 400).count();
    assert!(full >= 5, "expected at least one full window of 5 keys, got {rows:?}");
}
