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
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod support;
use support::crash::{
    assert_each_once, assert_enough_kills, committed_count, committed_rows, kafka_job_args, CrashLoop, KillAt, Run,
};
use support::kafka::{
    brokers, consume_all, produce_test_stream, unique_topic, window_count_oracle, Isolation, Row, TestStream,
};
use support::{check, weir, BINARY};

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

    /// Starts both processes (stderr to `process-<i>.log`, replaced each time).
    fn spawn(&self) -> Run {
        let commands = [0, 1].map(|process| {
            let mut command = Command::new(BINARY);
            command.args(&self.args[process]);
            command
        });
        Run::spawn(commands.into(), (0..2).map(|p| self.dir.join(format!("process-{p}.log"))).collect())
    }
}

/// The job's arguments: bounded read of `topic`, 10 s windows, 2 s watermark delay, checkpoints
/// every 20 ms, reading slowly enough (a cap per activation) to be killed mid-way ten times (a
/// cluster starts more slowly than one process: the kills come later than in `crash_loop.rs`).
fn job_args(brokers: &str, topic: &str, checkpoint: &Path, output: &Path) -> Vec<String> {
    let flags = ["--window", "10s", "--watermark-delay", "2s", "--sink", "files"];
    let mut args = kafka_job_args(&["window-count"], brokers, &["--topic", topic], 200, &flags, checkpoint);
    args.push("--output-dir".to_string());
    args.push(output.display().to_string());
    args
}

#[test]
fn exactly_once_file_output_of_a_two_process_cluster_survives_a_crash_loop() {
    let brokers = brokers();
    let topic = unique_topic("crash-loop-cluster");
    produce_test_stream(&brokers, &topic, TestStream::new(600_000, 50, 11));
    let (expected, late) =
        window_count_oracle(&consume_all(&brokers, &topic, Isolation::ReadUncommitted), 2_000, 10_000, false);
    assert!(late > 100, "the input has late records");
    let dir = std::env::temp_dir().join(unique_topic("crash-loop-cluster-dir"));
    let (checkpoint, output) = (dir.join("checkpoint"), dir.join("out"));
    let ports = free_ports(3);
    let cluster =
        Cluster::new(&dir, &job_args(&brokers, &topic, &checkpoint, &output), [ports[0], ports[1]], Some(ports[2]));
    // Both processes killed at once, 0.4 to 3 s after their start (as a machine failure or a
    // supervisor's restart would); the last run has 10 minutes.
    let settings = CrashLoop {
        last_run_limit: Some(Duration::from_secs(600)),
        ..CrashLoop::new(17, KillAt::AfterStart(400..3000))
    };
    let (killed, mid_way) = settings.run(|_| cluster.spawn(), || committed_count(&output));
    assert_enough_kills("", (killed, mid_way));

    // Both processes wrote output (one worker each): the files of epochs carry the worker index.
    let workers: BTreeSet<usize> = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("part-"))
        .filter_map(|name| name.trim_end_matches(".jsonl").rsplit('-').next().and_then(|w| w.parse().ok()))
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]), "output of both processes' workers");

    assert_each_once(&format!("after {killed} crashes"), "window", &committed_rows(&output), &expected);
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
    let mut run = cluster.spawn();
    run.wait(Some(Duration::from_secs(120))).unwrap_or_else(|error| panic!("the cluster failed: {error}"));
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
    let mut run = cluster.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.children[1].try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "process 1 was not refused:\n{}", run.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    run.kill();
    assert!(!status.success());
    let logs = run.logs();
    assert!(logs.contains("shared filesystem"), "{logs}");
    std::fs::remove_dir_all(&dir).unwrap();
}
