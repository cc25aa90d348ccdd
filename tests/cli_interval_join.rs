//! `weir run interval-join` end to end: random out-of-order JSON-lines files with late records on
//! both sides, run by the real binary with 1 and 2 workers for every join type, compared with a
//! batch computation written from the job's documented behaviour:
//!
//! * lateness per file: line `i` is late iff its time is below `max(time[0..i]) - delay` of that
//!   file (each side has its own delay here); late lines join nothing and are written to
//!   `--late-output` with `"side"`;
//! * `l` and `r` match iff their key fields have equal JSON text, neither is null or missing, and
//!   `l.time + lower <= r.time <= l.time + upper`;
//! * the output file is exactly the joined rows `{"left":..,"right":..}` sorted by (event time,
//!   line text), where a pair's time is the later of its two records' and an unmatched (padded,
//!   semi or anti) row's time is its record's; the late file is sorted by (watermark, line text).

use std::path::Path;
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use weir::prelude::JoinType;

mod support;
use support::{check, iso, parse_lines, tempdir, weir, write_lines, Arrival, PartitionClock, BINARY};

/// One side's records as written, with their event times.
struct SideInput {
    lines: Vec<Value>,
    times: Vec<i64>,
    delay: i64,
}

struct Case {
    left: SideInput,
    right: SideInput,
    /// `None`: `--unbounded`.
    bounds: Option<(i64, i64)>,
    join_type: JoinType,
}

/// Random records: time moves forward with jitter backwards; keys are strings, numbers, the string
/// "7" beside the number 7, null, or missing; times are integers or ISO strings. The left side uses
/// the fields `ts` / `key`, the right side `time` / `k`.
fn random_side(rng: &mut SmallRng, base: i64, time_field: &str, key_field: &str) -> SideInput {
    let mut now = base + rng.random_range(0..3_000);
    let (mut lines, mut times) = (Vec::new(), Vec::new());
    for i in 0..rng.random_range(20..250) {
        now += rng.random_range(0..600);
        let ts = now - if rng.random_bool(0.3) { rng.random_range(0..8_000) } else { 0 };
        let mut line = serde_json::Map::new();
        line.insert(time_field.into(), if rng.random_bool(0.2) { json!(iso(ts)) } else { json!(ts) });
        match rng.random_range(0..12) {
            0..=3 => line.insert(key_field.into(), json!("alpha")),
            4..=6 => line.insert(key_field.into(), json!("beta")),
            7..=8 => line.insert(key_field.into(), json!(7)),
            9 => line.insert(key_field.into(), json!("7")),
            10 => line.insert(key_field.into(), Value::Null),
            _ => None,
        };
        line.insert("n".into(), json!(i));
        lines.push(Value::Object(line));
        times.push(ts);
    }
    SideInput { lines, times, delay: [0, 1_000, 3_000][rng.random_range(0..3)] }
}

fn random_case(seed: u64, join_type: JoinType, unbounded: bool) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let base: i64 = 1_700_000_000_000;
    let left = random_side(&mut rng, base, "ts", "key");
    let right = random_side(&mut rng, base, "time", "k");
    let lower = [-5_000, -1_000, 0, 500][rng.random_range(0..4)];
    let bounds = (!unbounded).then(|| (lower, lower + [0, 1_000, 4_000, 10_000][rng.random_range(0..4)]));
    Case { left, right, bounds, join_type }
}

/// The key's JSON text, or `None` for null / missing (never matches).
fn key(line: &Value, field: &str) -> Option<String> {
    match line.get(field) {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.to_string()),
    }
}

/// Splits a side into on-time indices and late lines (as the job writes them, before sorting).
fn lateness(input: &SideInput, side: &str) -> (Vec<usize>, Vec<(i64, String)>) {
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    let mut clock = PartitionClock::new(input.delay as u64);
    for (i, &ts) in input.times.iter().enumerate() {
        if let Arrival::Late { watermark } = clock.arrive(ts as u64) {
            let watermark = watermark as i64;
            let line = json!({
                "record": input.lines[i],
                "event_time": ts,
                "watermark": watermark,
                "lateness_ms": watermark - ts,
                "operator": "interval-join",
                "side": side,
            });
            late.push((watermark, line.to_string()));
        } else {
            on_time.push(i);
        }
    }
    (on_time, late)
}

/// The expected output file and late file, as text.
fn oracle(case: &Case) -> (String, String) {
    let (lefts, mut late) = lateness(&case.left, "left");
    let (rights, late_right) = lateness(&case.right, "right");
    late.extend(late_right);
    let mut rows: Vec<(i64, String)> = Vec::new();
    let line = |l: Option<&Value>, r: Option<&Value>| {
        let text = |v: Option<&Value>| v.map_or("null".to_string(), |v| v.to_string());
        format!("{{\"left\":{},\"right\":{}}}", text(l), text(r))
    };
    let mut right_matched = vec![false; rights.len()];
    for &i in &lefts {
        let (l, lt) = (&case.left.lines[i], case.left.times[i]);
        let mut matched = false;
        for (j, &k) in rights.iter().enumerate() {
            let (r, rt) = (&case.right.lines[k], case.right.times[k]);
            let keys_match = key(l, "key").is_some_and(|a| key(r, "k").is_some_and(|b| a == b));
            let in_bounds = case.bounds.is_none_or(|(lower, upper)| lt + lower <= rt && rt <= lt + upper);
            if keys_match && in_bounds {
                matched = true;
                right_matched[j] = true;
                if case.join_type.emits_pairs() {
                    rows.push((lt.max(rt), line(Some(l), Some(r))));
                }
            }
        }
        let emit = match case.join_type {
            JoinType::LeftOuter | JoinType::FullOuter | JoinType::LeftAnti => !matched,
            JoinType::LeftSemi => matched,
            _ => false,
        };
        if emit {
            rows.push((lt, line(Some(l), None)));
        }
    }
    if case.join_type.emits_unmatched_right() {
        for (j, &k) in rights.iter().enumerate() {
            if !right_matched[j] {
                rows.push((case.right.times[k], line(None, Some(&case.right.lines[k]))));
            }
        }
    }
    rows.sort();
    late.sort();
    let text = |lines: Vec<(i64, String)>| lines.into_iter().map(|(_, l)| l + "\n").collect::<String>();
    (text(rows), text(late))
}

/// Writes the case's inputs and returns the job's arguments (without `-w`).
fn job_args(dir: &Path, case: &Case, out: &Path, late: &Path, equals_sign: bool) -> Vec<String> {
    let (left, right) = (dir.join("left.jsonl"), dir.join("right.jsonl"));
    write_lines(&left, &case.left.lines);
    write_lines(&right, &case.right.lines);
    let mut args: Vec<String> = ["run", "interval-join", "--left"].map(String::from).to_vec();
    args.push(left.display().to_string());
    args.extend(["--right".into(), right.display().to_string()]);
    args.extend(["--left-time-field", "ts", "--right-time-field", "time"].map(String::from));
    args.extend(["--left-key-field", "key", "--right-key-field", "k"].map(String::from));
    match case.bounds {
        // Both spellings of a negative bound: `--lower=-5000ms` and `--lower -5000ms`.
        Some((lower, upper)) if equals_sign => {
            args.extend([format!("--lower={lower}ms"), format!("--upper={upper}ms")]);
        }
        Some((lower, upper)) => {
            args.extend(["--lower".into(), format!("{lower}ms"), "--upper".into(), format!("{upper}ms")]);
        }
        None => args.push("--unbounded".into()),
    }
    args.extend(["--join-type".into(), case.join_type.to_string()]);
    args.extend(["--left-watermark-delay".into(), format!("{}ms", case.left.delay)]);
    args.extend(["--right-watermark-delay".into(), format!("{}ms", case.right.delay)]);
    args.extend(["--output".into(), out.display().to_string(), "--late-output".into(), late.display().to_string()]);
    args
}

fn run_case(name: &str, seed: u64, case: &Case) {
    let dir = tempdir(&format!("interval-join-{name}"));
    let (expected_rows, expected_late) = oracle(case);
    for workers in [1, 2] {
        let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
        let mut args = job_args(&dir, case, &out, &late, seed % 2 == 0);
        args.extend(["-w".into(), workers.to_string()]);
        check(&weir(&args));
        let label = format!("seed {seed}, {}, bounds {:?}, {workers} worker(s)", case.join_type, case.bounds);
        let got = std::fs::read_to_string(&out).unwrap();
        if got != expected_rows {
            let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), expected_rows.lines().collect());
            let missing: Vec<_> = w.iter().filter(|l| !g.contains(l)).take(5).collect();
            let extra: Vec<_> = g.iter().filter(|l| !w.contains(l)).take(5).collect();
            panic!(
                "{label}: output differs from the oracle ({} lines, expected {}); missing {missing:#?}; unexpected {extra:#?}",
                g.len(),
                w.len()
            );
        }
        assert_eq!(std::fs::read_to_string(&late).unwrap(), expected_late, "{label}: late records differ");
    }
}

#[test]
fn every_join_type_matches_the_oracle_with_one_and_two_workers() {
    let (mut rows, mut late) = (0, 0);
    for seed in 0..18u64 {
        let join_type = JoinType::ALL[seed as usize % 6];
        let case = random_case(seed, join_type, false);
        let (expected_rows, expected_late) = oracle(&case);
        rows += expected_rows.lines().count();
        late += expected_late.lines().count();
        run_case("oracle", seed, &case);
    }
    assert!(rows > 100 && late > 10, "the cases are too small to test anything ({rows} rows, {late} late)");
}

#[test]
fn unbounded_join_matches_the_oracle() {
    for (i, join_type) in [JoinType::Inner, JoinType::FullOuter, JoinType::LeftAnti].into_iter().enumerate() {
        run_case("unbounded", 100 + i as u64, &random_case(100 + i as u64, join_type, true));
    }
}

/// The progress reports show the join's state and its return to 0 once the inputs end.
#[test]
fn state_falls_back_to_zero_in_progress_reports() {
    let dir = tempdir("interval-join-progress");
    let case = random_case(7, JoinType::FullOuter, false);
    let (out, late, progress) = (dir.join("out.jsonl"), dir.join("late.jsonl"), dir.join("progress.jsonl"));
    let mut args = job_args(&dir, &case, &out, &late, false);
    args.extend(["-w", "2", "--progress-interval", "20ms", "--progress-log"].map(String::from));
    args.push(progress.display().to_string());
    check(&weir(&args));
    let reports = parse_lines(&std::fs::read_to_string(&progress).unwrap());
    let join = |report: &Value| {
        report["stateOperators"].as_array().unwrap().iter().find(|op| op["operatorName"] == "interval-join").cloned()
    };
    let last = join(reports.last().expect("progress reports")).expect("the join in stateOperators");
    assert_eq!(last["numRowsTotal"], 0, "{last}");
    assert_eq!(last["memoryUsedBytes"], 0, "{last}");
    let (late_left, late_right) = (lateness(&case.left, "left").1.len(), lateness(&case.right, "right").1.len());
    let dropped: u64 =
        reports.iter().filter_map(join).map(|op| op["numRowsDroppedByWatermark"].as_u64().unwrap()).sum();
    assert_eq!(dropped, (late_left + late_right) as u64, "late records counted by the join");
}

#[test]
fn stdin_and_stdout_work() {
    let dir = tempdir("interval-join-stdin");
    let case = random_case(42, JoinType::LeftOuter, false);
    let (expected, _) = oracle(&case);
    let (out, late) = (dir.join("unused.jsonl"), dir.join("late.jsonl"));
    let mut args = job_args(&dir, &case, &out, &late, true);
    let left_at = args.iter().position(|a| a == "--left").unwrap() + 1;
    args[left_at] = "-".into();
    let output_at = args.iter().position(|a| a == "--output").unwrap() + 1;
    args[output_at] = "-".into();
    let mut child = Command::new(BINARY)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = case.left.lines.iter().map(|l| format!("{l}\n")).collect();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    check(&output);
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
}

#[test]
fn invalid_jobs_fail_with_clear_messages() {
    let dir = tempdir("interval-join-invalid");
    let case = random_case(1, JoinType::Inner, false);
    let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
    job_args(&dir, &case, &out, &late, false);
    let (left, right) = (dir.join("left.jsonl").display().to_string(), dir.join("right.jsonl").display().to_string());
    let run_on = |right: &str, extra: &[&str]| {
        let output = Command::new(BINARY)
            .args(["run", "interval-join", "--left", &left, "--right", right])
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{extra:?} should fail");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let run = |extra: &[&str]| run_on(&right, extra);
    let error = run(&["--lower", "5s", "--upper", "-5s"]);
    assert!(error.contains("--lower") && error.contains("after --upper"), "{error}");
    let error = run(&["--upper", "5s"]);
    assert!(error.contains("--lower and --upper are both required") && error.contains("--unbounded"), "{error}");
    let error = run(&["--lower", "0s", "--upper", "5s", "--join-type", "cross"]);
    assert!(error.contains("not a join type"), "{error}");
    let error = run(&["--lower", "soon", "--upper", "5s"]);
    assert!(error.contains("cannot read duration"), "{error}");
    let error = run_on("/nonexistent/r.jsonl", &["--lower", "0s", "--upper", "5s"]);
    assert!(error.contains("--right") && error.contains("not a readable file"), "{error}");
}

#[test]
fn incomplete_inputs_fail_with_clear_messages() {
    let fails = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(["run", "interval-join", "--lower", "0s", "--upper", "5s"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let error = fails(&["--left", "l.jsonl"]);
    assert!(error.contains("--source file needs --left FILE and --right FILE"), "{error}");
    let error = fails(&["--source", "kafka", "--brokers", "127.0.0.1:1", "--left-topic", "a"]);
    assert!(error.contains("--source kafka needs --left-topic TOPIC and --right-topic TOPIC"), "{error}");
    let error = fails(&["--source", "kafka", "--brokers", "127.0.0.1:1", "--left-topic", "a", "--right-topic", "a"]);
    assert!(error.contains("give two different topics"), "{error}");
    let error = fails(&[
        "--source",
        "kafka",
        "--brokers",
        "127.0.0.1:1",
        "--left-topic",
        "a",
        "--right-topic",
        "b",
        "--topic",
        "c",
    ]);
    assert!(error.contains("--topic does not apply"), "{error}");
}
