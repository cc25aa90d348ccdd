//! `weir run session-count` and `weir run dedup` end to end: random out-of-order JSON lines with
//! late records, ties and missing keys, run by the real binary with 1 and 2 workers, compared
//! with plain batch computations of the sessions, the passed records and the late records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod support;
use support::{check, iso, late_line, late_lines, parse_lines, tempdir, ts_of, weir, Arrival, PartitionClock, BINARY};

struct Case {
    lines: Vec<Value>,
    delay: i64,
}

/// Random events on a 100 ms grid: time moves forward with jumps back; keys are strings,
/// numbers, `7` beside `"7"`, or missing (null); times are integers or ISO strings; a `seq`
/// field makes most lines distinct, but some lines repeat exactly.
fn random_case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let len = rng.random_range(50..400);
    random_case_of(seed, len)
}

fn random_case_of(seed: u64, len: usize) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut now: i64 = 1_700_000_000_000;
    let mut lines: Vec<Value> = Vec::new();
    for seq in 0..len {
        if !lines.is_empty() && rng.random_bool(0.05) {
            let again = lines[rng.random_range(0..lines.len())].clone();
            lines.push(again);
            continue;
        }
        now += 100 * rng.random_range(0..8);
        let ts = now - if rng.random_bool(0.3) { 100 * rng.random_range(0..100) } else { 0 };
        let ts_value = if rng.random_bool(0.2) { json!(iso(ts)) } else { json!(ts) };
        let mut line = json!({"ts": ts_value, "seq": seq % 7});
        match rng.random_range(0..6) {
            0 => line["key"] = json!("alpha"),
            1 => line["key"] = json!("beta"),
            2 => line["key"] = json!(7),
            3 => line["key"] = json!("7"),
            4 => line["key"] = json!({"nested": 1}),
            _ => {} // no key: null
        }
        lines.push(line);
    }
    Case { lines, delay: [0, 1_000, 3_000][rng.random_range(0..3)] }
}

/// The key as the jobs define it: the JSON text of the field, `null` when missing.
fn key_of(line: &Value) -> String {
    line.get("key").cloned().unwrap_or(Value::Null).to_string()
}

/// Lateness by the definition (one file = one partition): the on-time lines with their times,
/// and the late lines as `{ts, watermark, record}` texts.
fn split_late(case: &Case) -> (Vec<(i64, &Value)>, Vec<String>) {
    let mut clock = PartitionClock::new(case.delay as u64);
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for line in &case.lines {
        let ts = ts_of(line);
        match clock.arrive(ts as u64) {
            Arrival::Late { watermark } => late.push(late_line(ts, watermark, line)),
            Arrival::OnTime { .. } => on_time.push((ts, line)),
        }
    }
    late.sort();
    (on_time, late)
}

/// Sessions per key: sorted times; a new session when a time is >= the previous one + gap.
fn session_oracle(case: &Case, gap: i64) -> (Vec<String>, Vec<String>) {
    let (on_time, late) = split_late(case);
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (ts, line) in on_time {
        by_key.entry(key_of(line)).or_default().push(ts);
    }
    let mut rows = Vec::new();
    for (key, mut times) in by_key {
        times.sort();
        let key: Value = serde_json::from_str(&key).unwrap();
        let mut session: Option<(i64, i64, u64)> = None;
        for t in times {
            match &mut session {
                Some((_, last, count)) if t < *last + gap => {
                    *last = t;
                    *count += 1;
                }
                _ => {
                    if let Some((first, last, count)) = session.replace((t, t, 1)) {
                        rows.push(json!({"window_start": first, "window_end": last + gap, "key": key, "count": count}));
                    }
                }
            }
        }
        if let Some((first, last, count)) = session {
            rows.push(json!({"window_start": first, "window_end": last + gap, "key": key, "count": count}));
        }
    }
    let mut rows: Vec<String> = rows.iter().map(Value::to_string).collect();
    rows.sort();
    (rows, late)
}

/// Dedup per key, in (event time, record text) order: a record is a duplicate iff it is less
/// than `within` after the key's last passed record (never, when `within` is `None`: unbounded,
/// so every record after the first is a duplicate).
fn dedup_oracle(case: &Case, within: Option<i64>) -> (Vec<String>, Vec<String>) {
    let (on_time, late) = split_late(case);
    let mut by_key: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (ts, line) in on_time {
        by_key.entry(key_of(line)).or_default().push((ts, spaced(line)));
    }
    let mut passed = Vec::new();
    for (_, mut records) in by_key {
        records.sort();
        let mut first: Option<i64> = None;
        for (ts, text) in records {
            let duplicate = match (first, within) {
                (Some(f), Some(w)) => ts < f + w,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !duplicate {
                first = Some(ts);
                passed.push(text);
            }
        }
    }
    passed.sort();
    (passed, late)
}

/// A line as written to the input file: with spaces after colons and commas, so that a job
/// that re-serializes records instead of passing them through unchanged is caught.
fn spaced(line: &Value) -> String {
    line.to_string().replace("\":", "\": ").replace(",\"", ", \"")
}

fn write_input(dir: &Path, case: &Case) -> PathBuf {
    let path = dir.join("events.jsonl");
    let text: String = case.lines.iter().map(|l| format!("{}\n", spaced(l))).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Every line of a file as written, sorted (duplicates kept).
fn read_raw_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    lines.sort();
    lines
}

/// Every line of a JSON-lines file, normalized and sorted (duplicates kept).
fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap().to_string()).collect();
    lines.sort();
    lines
}

fn read_late(path: &Path, operator: &str) -> Vec<String> {
    let mut late = late_lines(path, operator);
    late.sort();
    late
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn session_count_matches_the_oracle_with_one_and_two_workers() {
    let dir = tempdir("session-count");
    let (mut late_seen, mut multi) = (0, 0);
    for seed in 0..12 {
        let case = random_case(seed);
        let gap = [300, 1_000, 5_000][seed as usize % 3];
        let (expected, expected_late) = session_oracle(&case, gap);
        late_seen += expected_late.len();
        multi += expected.iter().filter(|r| !r.contains("\"count\":1}")).count();
        let input = write_input(&dir, &case);
        for workers in [1, 2] {
            let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
            let mut args = strings(&["run", "session-count", "--time-field", "ts", "--key-field", "key"]);
            args.extend(strings(&["--input", &input.display().to_string(), "--gap", &format!("{gap}ms")]));
            args.extend(strings(&["--watermark-delay", &format!("{}ms", case.delay), "--output-mode", "append"]));
            args.extend(strings(&["--output", &out.display().to_string()]));
            args.extend(strings(&["--late-output", &late.display().to_string(), "-w", &workers.to_string()]));
            check(&weir(&args));
            assert_eq!(read_lines(&out), expected, "seed {seed}, gap {gap}, {workers} workers: sessions differ");
            assert_eq!(
                read_late(&late, "session-count"),
                expected_late,
                "seed {seed}, {workers} workers: late records"
            );
        }
    }
    assert!(late_seen > 0, "no late record was generated");
    assert!(multi > 0, "no session of several records was generated");
}

/// Update mode: the last row of every final session is its final count, and every other row is
/// a narrower window of the same key (a session before it grew).
#[test]
fn session_count_update_mode_ends_with_the_final_sessions() {
    let dir = tempdir("session-update");
    for seed in 100..106 {
        let case = random_case(seed);
        let gap = 1_000;
        let (expected, _) = session_oracle(&case, gap);
        let input = write_input(&dir, &case);
        for workers in [1, 2] {
            let out = dir.join("out.jsonl");
            let args = strings(&[
                "run",
                "session-count",
                "--input",
                &input.display().to_string(),
                "--gap",
                "1s",
                "--watermark-delay",
                &format!("{}ms", case.delay),
                "--output-mode",
                "update",
                "--output",
                &out.display().to_string(),
                "-w",
                &workers.to_string(),
            ]);
            check(&weir(&args));
            // Rows are written epoch by epoch, so the last row per window is the latest.
            let text = std::fs::read_to_string(&out).unwrap();
            let mut last: BTreeMap<(i64, i64, String), u64> = BTreeMap::new();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                let window =
                    (v["window_start"].as_i64().unwrap(), v["window_end"].as_i64().unwrap(), v["key"].to_string());
                last.insert(window, v["count"].as_u64().unwrap());
            }
            let finals: BTreeMap<(i64, i64, String), u64> = expected
                .iter()
                .map(|r| {
                    let v: Value = serde_json::from_str(r).unwrap();
                    let window =
                        (v["window_start"].as_i64().unwrap(), v["window_end"].as_i64().unwrap(), v["key"].to_string());
                    (window, v["count"].as_u64().unwrap())
                })
                .collect();
            for (window, count) in &last {
                match finals.get(window) {
                    Some(want) => assert_eq!(count, want, "seed {seed}, {workers} workers: final count of {window:?}"),
                    None => {
                        assert!(
                            finals.keys().any(|(s, e, k)| *k == window.2 && *s <= window.0 && window.1 <= *e),
                            "seed {seed}, {workers} workers: {window:?} lies in no final session"
                        );
                    }
                }
            }
            assert!(
                finals.keys().all(|w| last.contains_key(w)),
                "seed {seed}, {workers} workers: a session was never emitted"
            );
        }
    }
    // A small file is read in one batch, so sessions rarely grow after being emitted here; the
    // operator tests (tests/session_oracle.rs) check superseded rows with small batches.
}

#[test]
fn dedup_matches_the_oracle_with_one_and_two_workers() {
    let dir = tempdir("dedup");
    let (mut late_seen, mut dropped) = (0, 0);
    for seed in 200..212 {
        let case = random_case(seed);
        let within = [(500, "500ms"), (2_000, "2s"), (60_000, "1m")][seed as usize % 3];
        let (expected, expected_late) = dedup_oracle(&case, Some(within.0));
        late_seen += expected_late.len();
        dropped += case.lines.len() - expected_late.len() - expected.len();
        let input = write_input(&dir, &case);
        for workers in [1, 2] {
            let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
            let mut args = strings(&["run", "dedup", "--input", &input.display().to_string(), "--time-field", "ts"]);
            args.extend(strings(&["--key-field", "key", "--within", within.1]));
            args.extend(strings(&["--watermark-delay", &format!("{}ms", case.delay)]));
            args.extend(strings(&["--output", &out.display().to_string()]));
            args.extend(strings(&["--late-output", &late.display().to_string(), "-w", &workers.to_string()]));
            check(&weir(&args));
            assert_eq!(
                read_raw_lines(&out),
                expected,
                "seed {seed}, within {}, {workers} workers: passed records",
                within.1
            );
            assert_eq!(read_late(&late, "dedup"), expected_late, "seed {seed}, {workers} workers: late records");
        }
    }
    assert!(late_seen > 0, "no late record was generated");
    assert!(dropped > 0, "no duplicate was generated");
}

#[test]
fn dedup_unbounded_passes_the_first_record_per_key() {
    let dir = tempdir("dedup-unbounded");
    for seed in 300..304 {
        let case = random_case(seed);
        let (expected, _) = dedup_oracle(&case, None);
        let input = write_input(&dir, &case);
        for workers in [1, 2] {
            let out = dir.join("out.jsonl");
            let args = strings(&[
                "run",
                "dedup",
                "--input",
                &input.display().to_string(),
                "--key-field",
                "key",
                "--unbounded",
                "--watermark-delay",
                &format!("{}ms", case.delay),
                "--output",
                &out.display().to_string(),
                "-w",
                &workers.to_string(),
            ]);
            let output = weir(&args);
            check(&output);
            assert!(String::from_utf8_lossy(&output.stderr).contains("without bound"), "the unbounded warning");
            assert_eq!(read_raw_lines(&out), expected, "seed {seed}, {workers} workers");
        }
    }
}

/// Progress reports show the state held falling back to 0 at the end, and dedup's keys counted.
#[test]
fn state_is_evicted_by_the_end_of_the_run() {
    let dir = tempdir("evicted");
    let input = write_input(&dir, &random_case(400));
    for job in [&["session-count", "--gap", "1s"][..], &["dedup", "--key-field", "key", "--within", "1s"][..]] {
        let progress = dir.join(format!("{}-progress.jsonl", job[0]));
        let _ = std::fs::remove_file(&progress);
        let mut args = strings(&["run"]);
        args.extend(strings(job));
        args.extend(strings(&[
            "--input",
            &input.display().to_string(),
            "--output",
            &dir.join("o.jsonl").display().to_string(),
        ]));
        args.extend(strings(&[
            "--progress-interval",
            "50ms",
            "--progress-log",
            &progress.display().to_string(),
            "-w",
            "2",
        ]));
        check(&weir(&args));
        let reports = parse_lines(&std::fs::read_to_string(&progress).unwrap());
        let last = reports.last().expect("a progress report");
        assert_eq!(last["stateOperators"][0]["operatorName"], job[0]);
        assert_eq!(last["stateOperators"][0]["numRowsTotal"], 0, "{}: state held after the run", job[0]);
        let updated: u64 = reports.iter().map(|r| r["stateOperators"][0]["numRowsUpdated"].as_u64().unwrap()).sum();
        assert!(updated > 0, "{}: no state was ever written", job[0]);
    }
}

#[test]
fn invalid_jobs_fail_with_clear_messages() {
    let dir = tempdir("session-dedup-invalid");
    let input = write_input(&dir, &random_case(1)).display().to_string();
    let fails = |args: &[&str]| {
        let output = Command::new(BINARY).args(["run"]).args(args).args(["--input", &input]).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    assert!(fails(&["session-count", "--gap", "0s"]).contains("session gap"));
    assert!(fails(&["session-count", "--gap", "1s", "--output-mode", "complete"]).contains("complete"));
    assert!(fails(&["session-count", "--gap", "1s", "--output-mode", "sometimes"]).contains("not an output mode"));
    assert!(fails(&["session-count"]).contains("--gap"));
    assert!(fails(&["dedup", "--key-field", "key"]).contains("--within is required"));
    assert!(fails(&["dedup", "--within", "0s"]).contains("zero"));
    assert!(fails(&["dedup", "--within", "1s", "--unbounded"]).contains("cannot be used with"));
}

/// Inputs longer than the file source's batch (65,536 lines) are read in several batches, so
/// sessions grow and keys recur across epochs; the results are still the oracle's.
#[test]
fn large_inputs_span_several_batches() {
    let dir = tempdir("large");
    let case = random_case_of(500, 150_000);
    let input = write_input(&dir, &case);
    let (sessions, sessions_late) = session_oracle(&case, 2_000);
    let (passed, passed_late) = dedup_oracle(&case, Some(3_000));
    for workers in [1, 2] {
        let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
        let common = |job: &[&str]| {
            let mut args = strings(&["run"]);
            args.extend(strings(job));
            args.extend(strings(&["--input", &input.display().to_string(), "--key-field", "key"]));
            args.extend(strings(&["--watermark-delay", &format!("{}ms", case.delay)]));
            args.extend(strings(&["--output", &out.display().to_string(), "--late-output"]));
            args.extend(strings(&[&late.display().to_string(), "-w", &workers.to_string()]));
            check(&weir(&args));
        };
        common(&["session-count", "--gap", "2s"]);
        assert_eq!(read_lines(&out), sessions, "{workers} workers: sessions differ");
        assert_eq!(read_late(&late, "session-count"), sessions_late, "{workers} workers: late records");
        common(&["dedup", "--within", "3s"]);
        assert_eq!(read_raw_lines(&out), passed, "{workers} workers: passed records differ");
        assert_eq!(read_late(&late, "dedup"), passed_late, "{workers} workers: late records");
    }
}
