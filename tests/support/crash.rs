//! The crash-loop harness (EXACTLY_ONCE.md): run a job, SIGKILL it at a random moment, restart it,
//! again and again, then once to its end; and read what an exactly-once file sink committed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::kafka::{row, Row};
use super::BINARY;

/// How many runs are killed (SIGKILL) before the last one runs to its end.
pub const KILLS: usize = 10;

/// Starts the job again and again, killing it (SIGKILL) after a random delay, until it has been
/// killed `KILLS` times (a run that ends before its kill is not counted), then once to its end.
/// `progress` says how much output is visible; answers the number of runs killed and how many of
/// them were killed with some, but not all, output visible (killed in the middle of the work).
pub fn crash_loop(args: &[String], seed: u64, progress: impl Fn() -> usize) -> (usize, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut killed, mut mid_way) = (0, 0);
    let mut seen = Vec::new();
    for _ in 0..4 * KILLS {
        if killed == KILLS {
            break;
        }
        let mut child = Command::new(BINARY).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1200)));
        match child.try_wait().unwrap() {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
                seen.push(progress());
            }
            Some(status) => {
                let output = child.wait_with_output().unwrap();
                assert!(status.success(), "a run failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
    }
    let last = Command::new(BINARY).args(args).output().unwrap();
    assert!(last.status.success(), "the last run failed: {}", String::from_utf8_lossy(&last.stderr));
    let total = progress();
    for visible in seen {
        if visible > 0 && visible < total {
            mid_way += 1;
        }
    }
    (killed, mid_way)
}

/// The rows (window-count shape) of the committed `part-*` files of an exactly-once file sink's
/// directory, in file order.
pub fn committed_rows(dir: &Path) -> Vec<Row> {
    committed_lines(dir).iter().map(row).collect()
}

/// The JSON lines of the committed `part-*` files of an exactly-once file sink's directory, in
/// file order (pending files of uncommitted epochs are not read).
pub fn committed_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("part-"))
        .collect();
    files.sort();
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            rows.push(serde_json::from_str(line).unwrap());
        }
    }
    rows
}
