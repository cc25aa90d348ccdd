//! The crash-loop harness (EXACTLY_ONCE.md): run a job, SIGKILL it at a random moment, restart it,
//! again and again, then once to its end; stop and resume an in-process query the same way; and
//! read what an exactly-once file sink committed.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_runtime::prelude::{BuildError, QueryHandle};

use super::kafka::{row, unique_topic, Row};
use super::BINARY;

/// How many runs are killed (SIGKILL) before the last one runs to its end.
pub const KILLS: usize = 10;

// ---------------------------------------------------------------------------------------------
// One run: the processes of a job
// ---------------------------------------------------------------------------------------------

/// One run of a job: its processes (one, or one per process of a cluster), each with its stderr
/// in a log file (a file, not a pipe: nobody reads a pipe while the run works, and a full pipe
/// would stall it).
pub struct Run {
    pub children: Vec<Child>,
    pub logs: Vec<PathBuf>,
}

impl Run {
    /// Starts `commands` (stdout discarded), the stderr of the `i`-th to `logs[i]` (replaced;
    /// its directory is created if missing).
    pub fn spawn(commands: Vec<Command>, logs: Vec<PathBuf>) -> Run {
        assert_eq!(commands.len(), logs.len(), "one log per process");
        let children = commands
            .into_iter()
            .zip(&logs)
            .map(|(mut command, log)| {
                std::fs::create_dir_all(log.parent().unwrap()).unwrap();
                command.stdout(Stdio::null()).stderr(File::create(log).unwrap()).spawn().unwrap()
            })
            .collect();
        Run { children, logs }
    }

    /// The `weir` binary with `args`, its stderr to `log`.
    pub fn weir(args: &[String], log: PathBuf) -> Run {
        let mut command = Command::new(BINARY);
        command.args(args);
        Run::spawn(vec![command], vec![log])
    }

    /// Whether every process of the run is still running.
    pub fn all_running(&mut self) -> bool {
        self.children.iter_mut().all(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGKILLs every process at once (as a machine failure or a supervisor's restart would)
    /// and waits for them.
    pub fn kill(&mut self) {
        for child in self.children.iter_mut() {
            let _ = child.kill(); // SIGKILL
        }
        for child in self.children.iter_mut() {
            child.wait().unwrap();
        }
    }

    /// What the processes wrote to stderr, one section per process.
    pub fn logs(&self) -> String {
        let text = |log: &PathBuf| std::fs::read_to_string(log).unwrap_or_default();
        match &self.logs[..] {
            [one] => text(one),
            logs => logs
                .iter()
                .enumerate()
                .map(|(p, log)| format!("--- process {p} ---\n{}", text(log)))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Waits for every process to end (at most `timeout`, when given); if one fails or time
    /// runs out, kills the others and answers an error with the logs.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<(), String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let statuses: Vec<Option<ExitStatus>> = self.children.iter_mut().map(|c| c.try_wait().unwrap()).collect();
            let failed = statuses.iter().flatten().any(|status| !status.success());
            if statuses.iter().all(Option::is_some) && !failed {
                return Ok(());
            }
            let late = deadline.is_some_and(|d| Instant::now() >= d);
            if failed || late {
                self.kill();
                return Err(if failed {
                    format!(
                        "{}\n{}",
                        statuses.iter().flatten().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
                        self.logs()
                    )
                } else {
                    format!("did not end within {:?}:\n{}", timeout.unwrap(), self.logs())
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The crash loop
// ---------------------------------------------------------------------------------------------

/// When the crash loop kills a run.
#[derive(Clone, Debug)]
pub enum KillAt {
    /// A random number of milliseconds in the range after the run starts.
    AfterStart(Range<u64>),
    /// A random number of milliseconds in `after_ms` after the run has committed a new epoch to
    /// `checkpoint` (or has ended). For runs that are slow to start (RocksDB restores its stores
    /// and snapshots every store per epoch, so a restart can take seconds before its first commit
    /// on a loaded machine, and a fixed delay either kills every run before it commits or lets
    /// the job end before the tenth kill). If no commit comes within `wait`, the run is killed
    /// anyway, or, with `must_commit`, the loop fails with the run's stderr.
    AfterFirstCommit { checkpoint: PathBuf, after_ms: Range<u64>, wait: Duration, must_commit: bool },
}

/// How a crash loop runs.
#[derive(Clone, Debug)]
pub struct CrashLoop {
    /// Names the case in failure messages (may be empty).
    pub label: String,
    /// Seeds the random kill delays.
    pub seed: u64,
    /// When each run is killed.
    pub kill_at: KillAt,
    /// Runs to kill (`KILLS`) before the last run.
    pub kills: usize,
    /// Whether a run that ends before its kill ends the loop (otherwise the loop goes on, up to
    /// `4 * kills` runs).
    pub stop_when_a_run_ends: bool,
    /// How long the last run may take.
    pub last_run_limit: Option<Duration>,
}

impl CrashLoop {
    /// `KILLS` kills at `kill_at`, seeded by `seed`; a run that ends before its kill does not end
    /// the loop; the last run has no time limit.
    pub fn new(seed: u64, kill_at: KillAt) -> Self {
        CrashLoop {
            label: String::new(),
            seed,
            kill_at,
            kills: KILLS,
            stop_when_a_run_ends: false,
            last_run_limit: None,
        }
    }

    /// Starts the job (`start(n)` starts run `n`) again and again, killing it (SIGKILL) as
    /// `kill_at` says, until it has been killed `kills` times (a run that ends before its kill is
    /// not counted), then once to its end. `progress` says how much output is visible; answers the
    /// number of runs killed and how many of them were killed with some, but not all, output
    /// visible (killed in the middle of the work).
    pub fn run(&self, start: impl Fn(usize) -> Run, progress: impl Fn() -> usize) -> (usize, usize) {
        let prefix = prefix(&self.label);
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let mut seen = Vec::new();
        for n in 0..4 * self.kills {
            if seen.len() == self.kills {
                break;
            }
            let before = match &self.kill_at {
                KillAt::AfterFirstCommit { checkpoint, .. } => last_commit(checkpoint),
                KillAt::AfterStart(_) => None,
            };
            let mut run = start(n);
            let delay = match &self.kill_at {
                KillAt::AfterStart(range) => rng.random_range(range.clone()),
                KillAt::AfterFirstCommit { checkpoint, after_ms, wait, must_commit } => {
                    let waiting = Instant::now();
                    while last_commit(checkpoint) == before && run.all_running() {
                        if waiting.elapsed() >= *wait {
                            assert!(!must_commit, "{prefix}run {n} committed nothing in {wait:?}: {}", run.logs());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    rng.random_range(after_ms.clone())
                }
            };
            std::thread::sleep(Duration::from_millis(delay));
            if run.all_running() {
                run.kill();
                seen.push(progress());
            } else {
                if let Err(error) = run.wait(Some(Duration::from_secs(120))) {
                    panic!("{prefix}run {n} failed: {error}");
                }
                if self.stop_when_a_run_ends {
                    break;
                }
            }
        }
        let mut last = start(4 * self.kills);
        if let Err(error) = last.wait(self.last_run_limit) {
            panic!("{prefix}the last run failed: {error}");
        }
        let total = progress();
        eprintln!("{prefix}visible output when each run was killed: {seen:?}; at the end: {total}");
        let mid_way = seen.iter().filter(|&&visible| visible > 0 && visible < total).count();
        (seen.len(), mid_way)
    }
}

/// Starts the `weir` binary with `args` again and again, killing it (SIGKILL) 200 to 1200 ms after
/// each start (seeded by `seed`), until it has been killed `KILLS` times (a run that ends before
/// its kill is not counted), then once to its end. `progress` says how much output is visible;
/// answers the number of runs killed and how many of them were killed with some, but not all,
/// output visible (killed in the middle of the work).
pub fn crash_loop(args: &[String], seed: u64, progress: impl Fn() -> usize) -> (usize, usize) {
    weir_crash_loop(args, &CrashLoop::new(seed, KillAt::AfterStart(200..1200)), progress)
}

/// [`CrashLoop::run`] of the `weir` binary with `args` (each run's stderr in a scratch file,
/// shown if it fails, removed at the end).
pub fn weir_crash_loop(args: &[String], settings: &CrashLoop, progress: impl Fn() -> usize) -> (usize, usize) {
    let logs = std::env::temp_dir().join(unique_topic("crash-loop-logs"));
    let answer = settings.run(|n| Run::weir(args, logs.join(format!("run-{n}.err"))), progress);
    let _ = std::fs::remove_dir_all(&logs);
    answer
}

/// `label: `, or nothing for an empty label: the start of a failure message.
fn prefix(label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!("{label}: ")
    }
}

/// Asserts that a crash loop (its answer) killed at least `KILLS` runs, at least 3 of them
/// mid-way; `label` names the case.
pub fn assert_enough_kills(label: &str, (killed, mid_way): (usize, usize)) {
    let label = prefix(label);
    assert!(killed >= KILLS, "{label}only {killed} runs were killed: the job finished too fast to test recovery");
    assert!(mid_way >= 3, "{label}only {mid_way} runs were killed with part of the output committed");
}

/// The arguments of `weir run <job>` over Kafka as the crash loops run it: a bounded read
/// (`--ending-offsets latest`) from `brokers` of the topics `inputs` names (e.g. `["--topic", t]`),
/// at most `max_offsets` offsets per epoch (slowly enough to be killed mid-way), the job's own
/// `flags`, then checkpoints every 20 ms into `checkpoint` (the last flags, so that a test can cut
/// them off or change the interval).
pub fn kafka_job_args(
    job: &[&str],
    brokers: &str,
    inputs: &[&str],
    max_offsets: u32,
    flags: &[&str],
    checkpoint: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = ["run"].iter().chain(job).map(|s| s.to_string()).collect();
    args.extend(["--source", "kafka", "--brokers", brokers].map(String::from));
    args.extend(inputs.iter().map(|s| s.to_string()));
    args.extend(["--ending-offsets".to_string(), "latest".to_string()]);
    args.extend(["--max-offsets-per-epoch".to_string(), max_offsets.to_string()]);
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend(["--checkpoint-interval", "20ms", "--checkpoint"].map(String::from));
    args.push(checkpoint.display().to_string());
    args
}

/// The flags that keep a job's state in RocksDB under `dir/state`.
pub fn rocksdb_flags(dir: &Path) -> Vec<String> {
    let state = dir.join("state").display().to_string();
    vec!["--state-backend".to_string(), "rocksdb".to_string(), "--state-dir".to_string(), state]
}

// ---------------------------------------------------------------------------------------------
// Graceful stops in process
// ---------------------------------------------------------------------------------------------

/// How an in-process query is stopped and resumed.
#[derive(Clone, Debug)]
pub struct StopLoop {
    /// Seeds the random stop delays.
    pub seed: u64,
    /// Graceful stops before the run to the end.
    pub stops: usize,
    /// Runs started at most.
    pub runs: usize,
    /// Each run is stopped a random number of milliseconds in this range after its start.
    pub stop_after_ms: Range<u64>,
}

impl StopLoop {
    /// Starts the query (`start()` resumes it from its checkpoint) and stops it
    /// (`QueryHandle::stop`) at random moments until it has been stopped `stops` times (a run
    /// that ends before its stop is not counted and ends the loop), then lets a run end. Answers
    /// what `progress` (the output visible) showed after each stop.
    pub fn run(
        &self,
        label: &str,
        start: impl Fn() -> Result<QueryHandle, BuildError>,
        progress: impl Fn() -> usize,
    ) -> Vec<usize> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let mut seen = Vec::new();
        for _ in 0..self.runs {
            let handle = start().unwrap_or_else(|e| panic!("{label}: should build: {e}"));
            if seen.len() < self.stops {
                std::thread::sleep(Duration::from_millis(rng.random_range(self.stop_after_ms.clone())));
                if handle.is_active() {
                    handle.stop().unwrap_or_else(|e| panic!("{label}: the stopped query failed: {e}"));
                    seen.push(progress());
                    continue;
                }
            }
            handle.await_termination(None).unwrap_or_else(|e| panic!("{label}: the query failed: {e}"));
            break;
        }
        seen
    }
}

// ---------------------------------------------------------------------------------------------
// What was committed
// ---------------------------------------------------------------------------------------------

/// The last committed epoch of a checkpoint directory, if any.
pub fn last_commit(checkpoint: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(checkpoint.join("commits")).ok()?;
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok()).max()
}

/// The rows (window-count shape) of the committed `part-*` files of an exactly-once file sink's
/// directory, in file order.
pub fn committed_rows(dir: &Path) -> Vec<Row> {
    committed_lines(dir).iter().map(row).collect()
}

/// How many lines the exactly-once file sink's directory `dir` has committed (0 before it exists):
/// the progress of a crash loop.
pub fn committed_count(dir: &Path) -> usize {
    if dir.exists() {
        committed_lines(dir).len()
    } else {
        0
    }
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

/// Asserts that `written` holds every row of `expected` exactly once and nothing else; `what`
/// names a row in messages ("window", "row", …), `label` the case.
pub fn assert_each_once<T: Ord + Clone + Debug>(label: &str, what: &str, written: &[T], expected: &BTreeSet<T>) {
    let label = prefix(label);
    let unique: BTreeSet<T> = written.iter().cloned().collect();
    assert_eq!(written.len(), unique.len(), "{label}a {what} was written twice");
    let missing: Vec<_> = expected.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{label}{} {what}s expected, {} written; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        expected.len(),
        unique.len()
    );
}

/// The committed lines of the exactly-once file sink's directory `dir`, each parsed as an `R`,
/// sorted (to compare with an oracle's sorted rows by [`assert_same_rows`]).
pub fn committed_sorted<R: serde::de::DeserializeOwned + Ord>(dir: &Path) -> Vec<R> {
    let mut rows: Vec<R> = committed_lines(dir).into_iter().map(|line| serde_json::from_value(line).unwrap()).collect();
    rows.sort();
    rows
}

/// Asserts that `got` equals `expected` (both sorted), showing the first differences: rows
/// committed but not expected (or more often than expected) and rows missing.
pub fn assert_same_rows<R: Ord + Debug>(label: &str, got: &[R], expected: &[R]) {
    if got == expected {
        return;
    }
    let mut count: std::collections::BTreeMap<&R, i64> = std::collections::BTreeMap::new();
    for row in got {
        *count.entry(row).or_default() += 1;
    }
    for row in expected {
        *count.entry(row).or_default() -= 1;
    }
    let extra: Vec<_> = count.iter().filter(|(_, n)| **n > 0).take(8).collect();
    let missing: Vec<_> = count.iter().filter(|(_, n)| **n < 0).take(8).collect();
    panic!(
        "{label}: the committed output differs from the oracle: {} rows committed, {} expected\n\
         extra or duplicated (row, times): {extra:?}\nmissing (row, -times): {missing:?}",
        got.len(),
        expected.len()
    );
}
