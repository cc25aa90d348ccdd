//! `weir run attribution` end to end: random out-of-order JSON-lines files with late records,
//! impressions, clicks and other events, run by the real binary with 1 and 2 workers (and on the
//! RocksDB state backend), compared with a batch computation written from the job's documented
//! behaviour (`src/jobs/attribution.rs`):
//!
//! * lateness per file: line `i` is late iff its time is below `max(time[0..i]) - delay`; late
//!   impressions and clicks (with a key) take no part and are written to `--late-output`, naming
//!   `attribution-join`, with the watermark they missed;
//! * the other lines are impressions (`type` = `impression`) and clicks (`type` = `click`) with a
//!   non-null `key`; an impression is its whole record (identical records are one impression);
//! * impression `i` is clicked by click `c` iff their keys have equal JSON text and
//!   `i.ts <= c.ts <= i.ts + within`; its first click is the earliest such click;
//! * the output has one line `{"window_start","window_end","key","count"}` per tumbling window
//!   (of the first click's time) and key: how many impressions of the key had their first click
//!   in the window; each such line once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod support;
use support::{check, iso, late_line, late_lines, parse_lines, tempdir, weir, write_lines, Arrival, PartitionClock};

/// A result row: (window_start, window_end, key as JSON text, count).
type Row = (i64, i64, String, u64);

struct Case {
    lines: Vec<Value>,
    times: Vec<i64>,
    delay: i64,
    within: i64,
    window: i64,
}

/// Random events: time moves forward with jitter backwards (some lines late); keys are strings,
/// the number 7 beside the string "7", null or missing; types are mostly impressions and clicks,
/// some other or missing; times are integers or ISO strings; a few impressions repeat exactly.
fn random_case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut now: i64 = 1_700_000_000_000 + rng.random_range(0..5_000);
    let (mut lines, mut times): (Vec<Value>, Vec<i64>) = (Vec::new(), Vec::new());
    for n in 0..rng.random_range(50..600) {
        now += rng.random_range(0..400);
        let ts = now - if rng.random_bool(0.3) { rng.random_range(0..6_000) } else { 0 };
        if rng.random_bool(0.03) && !lines.is_empty() {
            // An exact repeat of an earlier line (the same impression or click again).
            let i = rng.random_range(0..lines.len());
            lines.push(lines[i].clone());
            times.push(times[i]);
            continue;
        }
        let mut line = serde_json::Map::new();
        line.insert("ts".into(), if rng.random_bool(0.2) { json!(iso(ts)) } else { json!(ts) });
        match rng.random_range(0..12) {
            0..=3 => line.insert("key".into(), json!("ad-a")),
            4..=6 => line.insert("key".into(), json!("ad-b")),
            7..=8 => line.insert("key".into(), json!(7)),
            9 => line.insert("key".into(), json!("7")),
            10 => line.insert("key".into(), Value::Null),
            _ => None,
        };
        match rng.random_range(0..20) {
            0..=10 => line.insert("type".into(), json!("impression")),
            11..=17 => line.insert("type".into(), json!("click")),
            18 => line.insert("type".into(), json!("view")),
            _ => None,
        };
        line.insert("n".into(), json!(n));
        lines.push(Value::Object(line));
        times.push(ts);
    }
    Case {
        lines,
        times,
        delay: [0, 1_000, 3_000][rng.random_range(0..3)],
        within: [1_000, 3_000, 10_000][rng.random_range(0..3)],
        window: [2_000, 5_000, 10_000][rng.random_range(0..3)],
    }
}

/// The key's JSON text, or `None` for null / missing.
fn key(line: &Value) -> Option<String> {
    match line.get("key") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.to_string()),
    }
}

/// What the job must write: the result rows, and the late lines as [`late_line`] texts.
fn oracle(case: &Case) -> (Vec<Row>, BTreeSet<String>) {
    let mut clock = PartitionClock::new(case.delay as u64);
    let mut impressions: BTreeSet<(String, i64, String)> = BTreeSet::new(); // (key, ts, text)
    let mut clicks: Vec<(String, i64)> = Vec::new();
    let mut late = BTreeSet::new();
    for (line, &ts) in case.lines.iter().zip(&case.times) {
        let arrival = clock.arrive(ts as u64);
        let kind = line.get("type").and_then(Value::as_str);
        let (Some(key), Some(kind @ ("impression" | "click"))) = (key(line), kind) else { continue };
        if let Arrival::Late { watermark } = arrival {
            late.insert(late_line(ts, watermark, line));
            continue;
        }
        if kind == "impression" {
            impressions.insert((key, ts, line.to_string()));
        } else {
            clicks.push((key, ts));
        }
    }
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for (key, ts, _) in &impressions {
        let first =
            clicks.iter().filter(|(k, c)| k == key && *ts <= *c && *c <= ts + case.within).map(|(_, c)| *c).min();
        if let Some(click) = first {
            *counts.entry((click.div_euclid(case.window) * case.window, key.clone())).or_default() += 1;
        }
    }
    let rows = counts.into_iter().map(|((start, key), n)| (start, start + case.window, key, n)).collect();
    (rows, late)
}

fn rows_of(lines: &[Value]) -> Vec<Row> {
    let mut rows: Vec<Row> = lines
        .iter()
        .map(|v| {
            (
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["key"].to_string(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn run_case(dir: &Path, seed: u64, case: &Case, workers: &str, extra: &[&str]) -> (Vec<Row>, BTreeSet<String>) {
    let input = dir.join(format!("events-{seed}.jsonl"));
    write_lines(&input, &case.lines);
    let late_path = dir.join(format!("late-{seed}-{workers}.jsonl"));
    let _ = std::fs::remove_file(&late_path);
    let mut args = vec![
        "run".to_string(),
        "attribution".into(),
        "--input".into(),
        input.display().to_string(),
        "--within".into(),
        format!("{}ms", case.within),
        "--window".into(),
        format!("{}ms", case.window),
        "--watermark-delay".into(),
        format!("{}ms", case.delay),
        "--late-output".into(),
        late_path.display().to_string(),
        "-w".into(),
        workers.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = weir(&args);
    check(&out);
    let rows = rows_of(&parse_lines(&String::from_utf8(out.stdout).unwrap()));
    let late = if late_path.exists() { late_lines(&late_path, "attribution-join") } else { Vec::new() };
    let late_set: BTreeSet<String> = late.iter().cloned().collect();
    assert_eq!(late.len(), late_set.len(), "seed {seed}, -w {workers}: a late record was written twice");
    (rows, late_set)
}

#[test]
fn attribution_matches_the_batch_computation() {
    let dir = tempdir("attribution");
    let mut attributed = 0;
    for seed in 0..8 {
        let case = random_case(seed);
        let (expected, expected_late) = oracle(&case);
        attributed += expected.iter().map(|r| r.3).sum::<u64>();
        for workers in ["1", "2"] {
            let (rows, late) = run_case(&dir, seed, &case, workers, &[]);
            assert_eq!(
                rows, expected,
                "seed {seed}, -w {workers}, within {} ms, window {} ms, delay {} ms",
                case.within, case.window, case.delay
            );
            assert_eq!(late, expected_late, "seed {seed}, -w {workers}: late records");
        }
    }
    assert!(attributed > 200, "the cases attribute clicks ({attributed})");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn attribution_on_rocksdb_matches_the_batch_computation() {
    let dir = tempdir("attribution-rocksdb");
    let state = dir.join("state");
    for seed in 20..23 {
        let case = random_case(seed);
        let (expected, expected_late) = oracle(&case);
        let (rows, late) =
            run_case(&dir, seed, &case, "2", &["--state-backend", "rocksdb", "--state-dir", state.to_str().unwrap()]);
        assert_eq!(rows, expected, "seed {seed} on RocksDB");
        assert_eq!(late, expected_late, "seed {seed} on RocksDB: late records");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With `--checkpoint` (epochs of 5 ms) and the exactly-once file sink, on both state backends,
/// the committed rows are the oracle's; running the finished query again commits nothing more.
#[test]
fn attribution_with_a_checkpoint_commits_the_same_rows() {
    let dir = tempdir("attribution-checkpoint");
    for (seed, backend) in [(30, "memory"), (31, "rocksdb"), (32, "memory")] {
        let case = random_case(seed);
        let (expected, _) = oracle(&case);
        let (checkpoint, output) = (dir.join(format!("checkpoint-{seed}")), dir.join(format!("out-{seed}")));
        let state = dir.join("state");
        let extra = [
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--checkpoint-interval",
            "5ms",
            "--sink",
            "files",
            "--output-dir",
            output.to_str().unwrap(),
            "--state-backend",
            backend,
            "--state-dir",
            state.to_str().unwrap(),
        ];
        for run in ["first run", "run of the finished query"] {
            let (stdout_rows, _) = run_case(&dir, seed, &case, "2", &extra);
            assert!(stdout_rows.is_empty(), "seed {seed}: rows went to the files, not to stdout");
            let committed = rows_of(&support::crash::committed_lines(&output));
            assert_eq!(committed, expected, "seed {seed} on {backend}, {run}: committed rows");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first click counts, not the others: two impressions, three clicks, by hand.
#[test]
fn each_impression_counts_once_at_its_first_click() {
    let dir = tempdir("attribution-by-hand");
    let lines = [
        json!({"ts": 1_000, "key": "ad", "type": "impression", "id": 1}),
        json!({"ts": 4_000, "key": "ad", "type": "impression", "id": 2}),
        json!({"ts": 5_000, "key": "ad", "type": "click"}), // first click of both
        json!({"ts": 9_000, "key": "ad", "type": "click"}), // second click of 2: not counted
        json!({"ts": 15_000, "key": "ad", "type": "click"}), // too late for both
        json!({"ts": 12_600, "key": "other", "type": "click"}), // no impression of its key
        json!({"ts": 30_000, "key": "ad", "type": "view"}),
    ];
    let case = Case {
        times: lines.iter().map(support::ts_of).collect(),
        lines: lines.to_vec(),
        delay: 0,
        within: 10_000,
        window: 10_000,
    };
    let (rows, _) = run_case(&dir, 0, &case, "2", &[]);
    assert_eq!(rows, vec![(0, 10_000, "\"ad\"".to_string(), 2)]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_impression_and_click_type_is_refused() {
    let dir = tempdir("attribution-refused");
    let input = dir.join("events.jsonl");
    write_lines(&input, &[json!({"ts": 1, "key": "a", "type": "x"})]);
    let out = weir([
        "run",
        "attribution",
        "--input",
        input.to_str().unwrap(),
        "--within",
        "10s",
        "--window",
        "1m",
        "--impression-type",
        "x",
        "--click-type",
        "x",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--impression-type") && stderr.contains("cannot be told apart"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
