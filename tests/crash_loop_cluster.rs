//! Exactly-once across crashes in a **cluster of two processes** (`-n 2 -p 0/1 -h hostfile`,
//! one worker each, sharing one checkpoint directory and one output directory): the Kafka test
//! stream through `weir run window-count --checkpoint ... --sink files`, both processes SIGKILLed
//! at random moments and restarted again and again, then run to their end: the committed output
//! files hold exactly the windows a batch computation over the input gives, each once.
//!
//! Also: a process that does not see the same checkpoint directory as process 0 is refused with
//! a message saying that the directory must be shared.
//!
//! Needs `WEIR_KAFKA_BROKERS` (`scripts/test-env up`).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod support;
use support::crash::{committed_rows, KILLS};
use support::kafka::{brokers, consume_all, unique_topic, window_count_oracle, Isolation, Row};
use support::{check, weir, BINARY};

fn produce(brokers: &str, topic: &str) {
    check(&weir([
        "kafka",
        "produce-test-data",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--partitions",
        "3",
        "--records",
        "600000",
        "--keys",
        "50",
        "--step",
        "5ms",
        "--late-fraction",
        "0.02",
        "--late-by",
        "30s",
        "--seed",
        "11",
    ]));
}

/// `n` distinct free ports on 127.0.0.1 (held together while choosing, so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// A cluster of two processes: the hostfile and each process's arguments.
struct Cluster {
    dir: PathBuf,
    args: [Vec<String>; 2],
}

impl Cluster {
    /// `job` (without cluster flags) run as processes 0 and 1 of a two-process cluster, with one
    /// worker each, the coordinator at `coordinator` (or the default address when `None`).
    fn new(dir: &Path, job: &[String], ports: [u16; 2], coordinator: Option<u16>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let hostfile = dir.join("hostfile");
        std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).unwrap();
        let args = [0, 1].map(|process| {
            let mut args = job.to_vec();
            args.extend(["-w", "1", "-n", "2", "-p", &process.to_string(), "-h"].map(String::from));
            args.push(hostfile.display().to_string());
            if let Some(port) = coordinator {
                args.push("--checkpoint-coordinator".to_string());
                args.push(format!("127.0.0.1:{port}"));
            }
            args
        });
        Cluster { dir: dir.to_path_buf(), args }
    }

    fn log(&self, process: usize) -> PathBuf {
        self.dir.join(format!("process-{process}.log"))
    }

    /// Starts both processes (stderr to `process-<i>.log`, replaced each time).
    fn spawn(&self) -> [Child; 2] {
        [0, 1].map(|process| {
            Command::new(BINARY)
                .args(&self.args[process])
                .stdout(Stdio::null())
                .stderr(File::create(self.log(process)).unwrap())
                .spawn()
                .unwrap()
        })
    }

    fn logs(&self) -> String {
        (0..2)
            .map(|p| format!("--- process {p} ---\n{}", std::fs::read_to_string(self.log(p)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for both processes to end (at most `timeout`); if one fails or time runs out, kills
    /// the other and fails with both logs.
    fn wait(&self, children: &mut [Child; 2], timeout: Duration) -> [ExitStatus; 2] {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses: Vec<Option<ExitStatus>> = children.iter_mut().map(|c| c.try_wait().unwrap()).collect();
            if let [Some(a), Some(b)] = statuses[..] {
                return [a, b];
            }
            let failed = statuses.iter().flatten().any(|status| !status.success());
            if failed || Instant::now() >= deadline {
                for child in children.iter_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                assert!(!failed, "a process of the cluster failed:\n{}", self.logs());
                panic!("the cluster did not end within {timeout:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs the cluster again and again, SIGKILLing both processes after a random delay, until it has
/// been killed `KILLS` times (a run that ends before its kill is not counted), then once to its
/// end. Answers the runs killed and how many were killed with some, but not all, output visible.
fn crash_loop(cluster: &Cluster, seed: u64, progress: impl Fn() -> usize) -> (usize, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut killed, mut seen) = (0, Vec::new());
    for _ in 0..4 * KILLS {
        if killed == KILLS {
            break;
        }
        let mut children = cluster.spawn();
        std::thread::sleep(Duration::from_millis(rng.random_range(400..3000)));
        let running = children.iter_mut().all(|c| c.try_wait().unwrap().is_none());
        if running {
            // Both at once, as a machine failure or a supervisor's restart would.
            for child in children.iter_mut() {
                child.kill().unwrap(); // SIGKILL
            }
            for child in children.iter_mut() {
                child.wait().unwrap();
            }
            killed += 1;
            seen.push(progress());
        } else {
            let statuses = cluster.wait(&mut children, Duration::from_secs(120));
            assert!(statuses.iter().all(ExitStatus::success), "a run failed:\n{}", cluster.logs());
        }
    }
    let mut children = cluster.spawn();
    let statuses = cluster.wait(&mut children, Duration::from_secs(600));
    assert!(statuses.iter().all(ExitStatus::success), "the last run failed:\n{}", cluster.logs());
    let total = progress();
    eprintln!("visible output when each run was killed: {seen:?}; at the end: {total}");
    let mid_way = seen.iter().filter(|&&visible| visible > 0 && visible < total).count();
    (killed, mid_way)
}

/// The job's arguments: bounded read of `topic`, 10 s windows, 2 s watermark delay, checkpoints
/// every 20 ms, reading slowly enough (a cap per activation) to be killed mid-way ten times (a
/// cluster starts more slowly than one process: the kills come later than in `crash_loop.rs`).
fn job_args(brokers: &str, topic: &str, checkpoint: &Path, output: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "window-count",
        "--source",
        "kafka",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--ending-offsets",
        "latest",
        "--max-offsets-per-epoch",
        "200",
        "--window",
        "10s",
        "--watermark-delay",
        "2s",
        "--checkpoint-interval",
        "20ms",
        "--sink",
        "files",
        "--checkpoint",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(checkpoint.display().to_string());
    args.push("--output-dir".to_string());
    args.push(output.display().to_string());
    args
}

#[test]
fn exactly_once_file_output_of_a_two_process_cluster_survives_a_crash_loop() {
    let brokers = brokers();
    let topic = unique_topic("crash-loop-cluster");
    produce(&brokers, &topic);
    let (expected, late) =
        window_count_oracle(&consume_all(&brokers, &topic, Isolation::ReadUncommitted), 2_000, 10_000, false);
    assert!(late > 100, "the input has late records");
    let dir = std::env::temp_dir().join(unique_topic("crash-loop-cluster-dir"));
    let (checkpoint, output) = (dir.join("checkpoint"), dir.join("out"));
    let ports = free_ports(3);
    let cluster =
        Cluster::new(&dir, &job_args(&brokers, &topic, &checkpoint, &output), [ports[0], ports[1]], Some(ports[2]));
    let (killed, mid_way) =
        crash_loop(&cluster, 17, || if output.exists() { committed_rows(&output).len() } else { 0 });
    assert!(killed >= 10, "only {killed} runs were killed: the job finished too fast to test recovery");
    assert!(mid_way >= 3, "only {mid_way} runs were killed with part of the output committed");

    // Both processes wrote output (one worker each): the files of epochs carry the worker index.
    let workers: BTreeSet<usize> = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("part-"))
        .filter_map(|name| name.trim_end_matches(".jsonl").rsplit('-').next().and_then(|w| w.parse().ok()))
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]), "output of both processes' workers");

    let written = committed_rows(&output);
    let unique: BTreeSet<Row> = written.iter().cloned().collect();
    assert_eq!(written.len(), unique.len(), "a window was written twice");
    let missing: Vec<_> = expected.difference(&unique).take(3).collect();
    let extra: Vec<_> = unique.difference(&expected).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after {killed} crashes: {} windows expected, {} written; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        expected.len(),
        unique.len()
    );
    // The checkpoint was written by 2 workers in total, and inspect shows the epochs.
    let inspected = weir(["checkpoint", "inspect", checkpoint.to_str().unwrap()]);
    check(&inspected);
    assert!(String::from_utf8_lossy(&inspected.stdout).contains("committed"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ports `p` such that `p` and `p + 1000` (the default coordinator port) are free, for two processes.
fn ports_with_default_coordinator() -> [u16; 2] {
    let mut rng = SmallRng::seed_from_u64(std::process::id() as u64);
    loop {
        let base: u16 = rng.random_range(20_000..40_000);
        let wanted = [base, base + 1, base + 1_000];
        let free = wanted.iter().all(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok());
        if free {
            return [base, base + 1];
        }
    }
}

/// A bounded file input through a two-process cluster with checkpoints and the coordinator at its
/// default address: the committed output equals a single process's; a process whose
/// `--checkpoint` is another directory is refused, naming the shared-filesystem requirement.
#[test]
fn a_cluster_checkpoints_into_one_shared_directory() {
    let dir = std::env::temp_dir().join(unique_topic("cluster-checkpoint"));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("events.jsonl");
    let lines: Vec<String> = (0..3_000u64)
        .map(|i| format!("{{\"key\":\"k{}\",\"ts\":{}}}", i % 13, 1_700_000_000_000u64 + i * 97 - (i % 7) * 1_500))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let job = |checkpoint: &Path, output: &Path| -> Vec<String> {
        [
            "run",
            "window-count",
            "--input",
            input.to_str().unwrap(),
            "--window",
            "10s",
            "--watermark-delay",
            "2s",
            "--checkpoint-interval",
            "20ms",
            "--sink",
            "files",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--output-dir",
            output.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut single = job(&dir.join("single-checkpoint"), &dir.join("single-out"));
    single.extend(["-w", "2"].map(String::from));
    check(&weir(&single));
    let expected: BTreeSet<Row> = committed_rows(&dir.join("single-out")).into_iter().collect();
    assert!(expected.len() > 50);

    let cluster = Cluster::new(
        &dir.join("cluster"),
        &job(&dir.join("checkpoint"), &dir.join("out")),
        ports_with_default_coordinator(),
        None,
    );
    let mut children = cluster.spawn();
    let statuses = cluster.wait(&mut children, Duration::from_secs(120));
    assert!(statuses.iter().all(ExitStatus::success), "{}", cluster.logs());
    let written = committed_rows(&dir.join("out"));
    let unique: BTreeSet<Row> = written.iter().cloned().collect();
    assert_eq!(written.len(), unique.len(), "a window was written twice");
    assert_eq!(unique, expected, "the cluster's committed output differs from one process's");

    // Process 1 given a directory of its own: refused (process 0 then waits for it; killed).
    let mut cluster = Cluster::new(
        &dir.join("cluster-unshared"),
        &job(&dir.join("checkpoint-0"), &dir.join("out-2")),
        ports_with_default_coordinator(),
        None,
    );
    let own = dir.join("checkpoint-1").display().to_string();
    let position = cluster.args[1].iter().position(|a| a.ends_with("checkpoint-0")).unwrap();
    cluster.args[1][position] = own;
    let mut children = cluster.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = children[1].try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "process 1 was not refused:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = children[0].kill();
    let _ = children[0].wait();
    assert!(!status.success());
    let logs = cluster.logs();
    assert!(logs.contains("shared filesystem"), "{logs}");
    std::fs::remove_dir_all(&dir).unwrap();
}
