//! `weir run distinct-count` end to end: random out-of-order JSON lines with late records, run by
//! the real binary with 1 and 2 workers, compared with a plain batch computation: exactly for the
//! exact count, within the documented error (and identical across worker counts) for `--approx`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod support;
use support::{check, iso, late_line, late_lines, tempdir, ts_of, weir, write_lines, Arrival, PartitionClock};

struct Case {
    lines: Vec<Value>,
    window: i64,
    slide: i64,
    delay: i64,
    /// Whether the job gets `--key-field key` (else one group per window, key null).
    keyed: bool,
}

/// A window and key: (start, end, key as JSON text).
type Group = (i64, i64, String);

/// Random events: time moves forward with jitter backwards; times are integers or ISO strings;
/// keys are strings, numbers or missing; the counted `user` field is a string, a number, a
/// number-like string, null, a float, an object or missing (values differ by JSON text: 3 and "3"
/// are two values, a missing field and null are one). `users` is the size of the value domain.
fn random_case(seed: u64, records: std::ops::Range<usize>, step: i64, users: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let base: i64 = 1_700_000_000_000;
    let mut now = base;
    let mut lines = Vec::new();
    for _ in 0..rng.random_range(records) {
        now += rng.random_range(0..step);
        let ts = now - if rng.random_bool(0.3) { rng.random_range(0..12_000) } else { 0 };
        let ts_value = if rng.random_bool(0.2) { json!(iso(ts)) } else { json!(ts) };
        let mut line = json!({"ts": ts_value});
        match rng.random_range(0..10) {
            0 => {}
            1 | 2 => line["key"] = json!(7),
            3 => line["key"] = json!("7"),
            4..=6 => line["key"] = json!("alpha"),
            _ => line["key"] = json!("beta"),
        }
        let u = rng.random_range(0..users);
        match rng.random_range(0..12) {
            0 => {}
            1 => line["user"] = Value::Null,
            2 => line["user"] = json!(u),
            3 => line["user"] = json!(u.to_string()),
            4 => line["user"] = json!(u as f64 + 0.5),
            5 => line["user"] = json!({"id": u % 5}),
            _ => line["user"] = json!(format!("user-{u}")),
        }
        lines.push(line);
    }
    let window = [2_000, 5_000, 10_000][rng.random_range(0..3)];
    let slide = if rng.random_bool(0.5) { window } else { window / 2 };
    let delay = [0, 1_000, 3_000][rng.random_range(0..3)];
    Case { lines, window, slide, delay, keyed: rng.random_bool(0.7) }
}

fn text_of(line: &Value, field: &str) -> String {
    line.get(field).map_or_else(|| "null".to_string(), Value::to_string)
}

/// The batch computation: lateness by the definition (a record is late when its time is below
/// the max time seen before it minus the delay), then the distinct `user` texts per window and key.
/// Also returns how often a value came again within its group (so that distinctness mattered).
fn oracle(case: &Case) -> (BTreeMap<Group, BTreeSet<String>>, BTreeSet<String>, usize) {
    let mut clock = PartitionClock::new(case.delay as u64);
    let mut groups: BTreeMap<Group, BTreeSet<String>> = BTreeMap::new();
    let mut late = BTreeSet::new();
    let mut repeats = 0;
    for line in &case.lines {
        let ts = ts_of(line);
        if let Arrival::Late { watermark } = clock.arrive(ts as u64) {
            late.insert(late_line(ts, watermark, line));
            continue;
        }
        let key = if case.keyed { text_of(line, "key") } else { "null".to_string() };
        let mut start = ts - ts.rem_euclid(case.slide);
        while start > ts - case.window {
            let group = groups.entry((start, start + case.window, key.clone())).or_default();
            repeats += usize::from(!group.insert(text_of(line, "user")));
            start -= case.slide;
        }
    }
    (groups, late, repeats)
}

fn write_input(dir: &Path, case: &Case) -> PathBuf {
    let path = dir.join("events.jsonl");
    write_lines(&path, &case.lines);
    path
}

fn job_args(input: &Path, case: &Case, output: &Path, late: &Path, workers: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "distinct-count", "--input"].map(String::from).to_vec();
    args.push(input.display().to_string());
    args.extend(["--time-field", "ts", "--value-field", "user"].map(String::from));
    args.extend(["--window".into(), format!("{}ms", case.window)]);
    args.extend(["--watermark-delay".into(), format!("{}ms", case.delay)]);
    args.extend(["--output".into(), output.display().to_string(), "--late-output".into(), late.display().to_string()]);
    args.extend(["-w".into(), workers.to_string()]);
    if case.slide != case.window {
        args.extend(["--slide".into(), format!("{}ms", case.slide)]);
    }
    if case.keyed {
        args.extend(["--key-field".into(), "key".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The result lines as (group → count); panics if a group appears twice (append mode).
fn read_counts(path: &Path) -> BTreeMap<Group, u64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["window_start", "window_end", "key", "count"], "output line {line}");
        let group = (v["window_start"].as_i64().unwrap(), v["window_end"].as_i64().unwrap(), v["key"].to_string());
        assert!(counts.insert(group, v["count"].as_u64().unwrap()).is_none(), "a window was emitted twice: {line}");
    }
    counts
}

fn read_late(path: &Path) -> BTreeSet<String> {
    late_lines(path, "distinct-count").into_iter().collect()
}

/// Runs the job with 1 and 2 workers; checks the late records exactly and returns both outputs.
fn run_both(dir: &Path, case: &Case, extra: &[&str], label: &str) -> [BTreeMap<Group, u64>; 2] {
    let (_, expected_late, _) = oracle(case);
    let input = write_input(dir, case);
    [1, 2].map(|workers| {
        let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
        check(&weir(job_args(&input, case, &out, &late, workers, extra)));
        assert_eq!(read_late(&late), expected_late, "{label}, {workers} workers: late records differ");
        read_counts(&out)
    })
}

/// Checks approximate counts: the oracle's groups, each within 4 standard errors of its exact
/// count (exact or off by one below 100), and identical results with 1 and 2 workers.
fn check_approx(label: &str, got: &[BTreeMap<Group, u64>; 2], groups: &BTreeMap<Group, BTreeSet<String>>, p: u8) {
    assert_eq!(got[0], got[1], "{label}: 1 and 2 workers give different estimates");
    let sigma = 1.04 / ((1u64 << p) as f64).sqrt();
    assert_eq!(got[0].keys().collect::<Vec<_>>(), groups.keys().collect::<Vec<_>>(), "{label}: groups differ");
    for (group, values) in groups {
        let (exact, estimate) = (values.len() as f64, got[0][group] as f64);
        let allowed = if exact < 100.0 { 1.0 } else { 4.0 * sigma * exact };
        assert!((estimate - exact).abs() <= allowed, "{label}: {group:?}: {estimate} for {exact} (±{allowed:.0})");
    }
}

#[test]
fn exact_distinct_count_matches_the_oracle_with_one_and_two_workers() {
    let dir = tempdir("distinct-exact");
    let (mut late_seen, mut repeats) = (0, 0);
    for seed in 0..12 {
        let case = random_case(seed, 50..400, 800, 25);
        let (groups, late, repeated) = oracle(&case);
        late_seen += late.len();
        repeats += repeated;
        let expected: BTreeMap<Group, u64> = groups.iter().map(|(g, v)| (g.clone(), v.len() as u64)).collect();
        let label = format!("seed {seed}");
        for (workers, got) in [1, 2].into_iter().zip(run_both(&dir, &case, &[], &label)) {
            assert_eq!(got, expected, "{label}, {workers} workers: counts differ");
        }
    }
    assert!(late_seen > 0, "the generated cases contain no late record, so lateness was not tested");
    assert!(repeats > 100, "values rarely repeated within windows, so distinctness was barely tested");
}

#[test]
fn approx_distinct_count_is_within_the_error_bound() {
    let dir = tempdir("distinct-approx");
    // Small groups: exact or off by one, default rsd.
    for seed in 100..106 {
        let case = random_case(seed, 50..400, 800, 25);
        let (groups, _, _) = oracle(&case);
        let got = run_both(&dir, &case, &["--approx"], &format!("approx seed {seed}"));
        check_approx(&format!("approx seed {seed}"), &got, &groups, 9);
    }
    // Large groups (thousands of distinct users): dense sketches, at rsd 0.05 (p = 9), p = 12 and
    // rsd 0.01 (p = 14).
    let mut largest = 0;
    for (seed, flags, p) in [
        (200, vec!["--approx"], 9),
        (201, vec!["--approx", "--rsd", "0.05"], 9),
        (202, vec!["--approx", "--precision", "12"], 12),
        (203, vec!["--approx", "--rsd", "0.01"], 14),
    ] {
        let case = random_case(seed, 15_000..20_000, 3, 1_000_000);
        let (groups, _, _) = oracle(&case);
        largest = largest.max(groups.values().map(BTreeSet::len).max().unwrap_or(0));
        let label = format!("large seed {seed} {flags:?}");
        check_approx(&label, &run_both(&dir, &case, &flags, &label), &groups, p);
    }
    assert!(largest > 1_000, "the large groups stayed small ({largest} distinct values)");
}

#[test]
fn invalid_flags_are_rejected_with_a_reason() {
    let dir = tempdir("distinct-flags");
    let case = random_case(1, 5..10, 800, 5);
    let input = write_input(&dir, &case);
    let (out, late) = (dir.join("out.jsonl"), dir.join("late.jsonl"));
    for (extra, mention) in [
        (vec!["--rsd", "0.05"], "--approx"),
        (vec!["--approx", "--rsd", "0.9"], "rsd"),
        (vec!["--approx", "--rsd", "0"], "rsd"),
        (vec!["--approx", "--precision", "19"], "precision"),
        (vec!["--approx", "--precision", "9", "--rsd", "0.05"], "--rsd"),
    ] {
        let output = weir(job_args(&input, &case, &out, &late, 1, &extra));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(mention), "{extra:?}: the error should mention {mention}: {stderr}");
    }
}
