//! The pieces every `weir run` job shares: worker and cluster flags, progress output, the JSON
//! input and output flags, and waiting for the query to end. One file per job beside this one.

pub mod attribution;
pub mod bench;
pub mod checkpoint;
pub mod debug;
pub mod dedup;
pub mod distinct_count;
pub mod explain;
pub mod interval_join;
pub mod kafka;
pub mod kafka_args;
pub mod registry;
pub mod session_count;
pub mod window_count;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use weir::jobs::json_fields::TimeFormat;
use weir::jobs::json_input::JsonInput;
use weir::jobs::json_output::OutputTarget;
use weir::prelude::*;
use weir_runtime::time::parse_duration;

/// Flags shared by every job: workers, cluster, progress.
#[derive(Args, Debug, Clone)]
pub struct RunFlags {
    /// Worker threads in this process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster (0 .. n-1).
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// File listing every process's host:port, one per line, in process order.
    #[arg(short = 'h', long = "hostfile")]
    pub hostfile: Option<PathBuf>,
    /// Print each progress report (Spark's JSON) on stderr.
    #[arg(long)]
    pub progress: bool,
    /// Print one status line per progress interval on stderr: rows in/out, watermark, and per
    /// operator rows in/out, late drops, state rows and bytes and its frontier; and, when nothing
    /// has been written for a while, why (see the `diagnose` field of progress reports).
    #[arg(long)]
    pub status: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464; port 0 picks a free port,
    /// printed on stderr as `weir: metrics on http://ADDR/metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Append each progress report as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub progress_log: Option<PathBuf>,
    /// How often a progress report is made.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub progress_interval: Duration,
    /// Stop gracefully after this many seconds (default: run until the input ends or Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// The query's name (in progress reports).
    #[arg(long)]
    pub name: Option<String>,
    /// Checkpoint into this directory: each epoch's offsets, state and output are committed
    /// together, and a restart resumes after the last committed epoch.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// How often a checkpoint epoch ends.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub checkpoint_interval: Duration,
    /// Also end a checkpoint epoch after this many input records (whichever comes first with
    /// --checkpoint-interval).
    #[arg(long, value_name = "N", requires = "checkpoint")]
    pub checkpoint_records: Option<u64>,
    /// How many committed checkpoint epochs to keep in --checkpoint (older ones are deleted).
    #[arg(long, value_name = "K", default_value_t = 2, requires = "checkpoint")]
    pub keep_checkpoints: usize,
    /// Delete the checkpoint in --checkpoint first and start fresh, on purpose.
    #[arg(long, requires = "checkpoint")]
    pub reset_checkpoint: bool,
    /// In a cluster (-n): where process 0 serves the checkpoint coordinator, HOST:PORT (default:
    /// process 0's host in the hostfile, its port + 1000). Every process's --checkpoint must be
    /// the same directory on shared storage.
    #[arg(long, value_name = "HOST:PORT", requires = "checkpoint")]
    pub checkpoint_coordinator: Option<String>,
    /// Where stateful operators keep their state: memory (default) or rocksdb (under --state-dir).
    #[arg(long, value_enum, default_value_t = StateBackendKind::Memory)]
    pub state_backend: StateBackendKind,
    /// Directory of the RocksDB state stores (with --state-backend rocksdb; default: `weir-state`
    /// under the system's temp directory). Each store lives in `DIR/<query id>/<operator>/worker-N`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A stable query id (default: a fresh one per run). An exactly-once Kafka sink derives its
    /// transactional ids from it, so a restart with the same id fences the previous run.
    #[arg(long)]
    pub id: Option<String>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Where stateful operators keep their state (`--state-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StateBackendKind {
    /// A hash map per operator and worker: fastest, bounded by memory.
    Memory,
    /// A RocksDB database per operator and worker under --state-dir: state can exceed memory.
    Rocksdb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// JSON lines from --input (a file, or - for stdin).
    File,
    /// Spark's rate source: rows (timestamp, value), key = value % --keys.
    Rate,
    /// Kafka records from --topic on --brokers (values JSON, or Avro with --format avro).
    Kafka,
}

/// Where the JSON jobs read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputKind {
    /// JSON lines from --input (a file, or - for stdin).
    File,
    /// Kafka records from --topic on --brokers (values JSON, or Avro with --format avro).
    Kafka,
}

/// Where the JSON jobs write to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputKind {
    /// JSON lines to --output (a file, or - for stdout).
    Jsonl,
    /// One Kafka record per result line, to --output-topic.
    Kafka,
    /// Exactly-once JSON-lines files in --output-dir, one per checkpoint epoch and worker,
    /// visible once the epoch is committed (needs --checkpoint).
    Files,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// JSON lines to --output (a file, or - for stdout).
    Jsonl,
    /// Spark-style console tables on stdout, one per epoch.
    Console,
    /// One Kafka record per result row, to --output-topic.
    Kafka,
    /// Exactly-once JSON-lines files in --output-dir, one per checkpoint epoch and worker,
    /// visible once the epoch is committed (needs --checkpoint).
    Files,
}

/// The input flags of the JSON-lines jobs: file, event-time field, watermark.
#[derive(Args, Debug, Clone)]
pub struct JsonInputArgs {
    /// Where records come from.
    #[arg(long, value_enum, default_value_t = InputKind::File)]
    pub source: InputKind,
    /// JSON-lines input file, or - for stdin (with --source file).
    #[arg(long, default_value = "-")]
    pub input: String,
    #[command(flatten)]
    pub kafka: kafka_args::KafkaSourceArgs,
    /// Field with the event time: integer ms since the epoch, or an ISO-8601 string.
    #[arg(long, default_value = "ts")]
    pub time_field: String,
    /// Allowed lateness: watermark = max event time seen - delay.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub watermark_delay: Duration,
    /// A partition with no data for this long stops holding the watermark back.
    #[arg(long, value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    /// Drop and count records whose event time is missing or unreadable, instead of failing.
    #[arg(long)]
    pub drop_invalid_time: bool,
}

impl JsonInputArgs {
    /// The job input these flags describe.
    pub fn input(&self) -> Result<JsonInput> {
        Ok(JsonInput {
            path: self.input.clone(),
            kafka: match self.source {
                InputKind::File => None,
                InputKind::Kafka => Some(self.kafka.input()?),
            },
            time_field: self.time_field.clone(),
            watermark_delay: self.watermark_delay,
            idle_timeout: self.idle_timeout,
            drop_invalid_time: self.drop_invalid_time,
        })
    }
}

/// The output flags of the JSON-lines jobs.
#[derive(Args, Debug, Clone)]
pub struct JsonOutputArgs {
    /// Where results go.
    #[arg(long, value_enum, default_value_t = OutputKind::Jsonl)]
    pub sink: OutputKind,
    /// JSON-lines output file, or - for stdout (with --sink jsonl).
    #[arg(long, default_value = "-")]
    pub output: String,
    /// Directory of the exactly-once files (with --sink files).
    #[arg(long)]
    pub output_dir: Option<String>,
    #[command(flatten)]
    pub kafka: kafka_args::KafkaSinkArgs,
    /// Write late records (with watermark and lateness) as JSON lines here.
    #[arg(long)]
    pub late_output: Option<String>,
    /// How times are written: ms (integers) or iso (ISO-8601 strings).
    #[arg(long, value_enum, default_value_t = TimeFormat::Ms)]
    pub time_format: TimeFormat,
}

impl JsonOutputArgs {
    /// Where the results go; a Kafka sink defaults to the Kafka input's brokers and settings.
    pub fn target(&self, input: Option<&JsonInputArgs>) -> Result<OutputTarget> {
        match self.sink {
            OutputKind::Jsonl => Ok(OutputTarget::JsonLines(self.output.clone())),
            OutputKind::Files => match &self.output_dir {
                Some(dir) => Ok(OutputTarget::Files(dir.clone())),
                None => anyhow::bail!("--sink files needs --output-dir DIR"),
            },
            OutputKind::Kafka => {
                let brokers = input.and_then(|i| i.kafka.brokers.as_deref());
                let settings = input.map_or(&[][..], |i| &i.kafka.settings[..]);
                self.kafka.target(brokers, settings)
            }
        }
    }
}

pub fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// The query settings shared by every job: workers, cluster, progress output.
pub fn query_for(flags: &RunFlags, default_name: &str) -> Result<Query> {
    let execution = Execution::from_flags(flags.workers, flags.processes, flags.process, flags.hostfile.as_deref())?;
    let mut query = Query::new(flags.name.clone().unwrap_or_else(|| default_name.to_string()))
        .execution(execution)
        .progress_interval(flags.progress_interval);
    if let Some(id) = &flags.id {
        query = query.id(id.clone());
    }
    if flags.state_backend == StateBackendKind::Rocksdb {
        let dir = flags.state_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("weir-state"));
        query = query.state_backend(StateBackend::rocksdb(dir));
    }
    if let Some(dir) = &flags.checkpoint {
        query = query.checkpoint(dir, flags.checkpoint_interval);
        query = query.keep_checkpoints(flags.keep_checkpoints);
        if let Some(records) = flags.checkpoint_records {
            query = query.checkpoint_every_records(records);
        }
        if let Some(address) = &flags.checkpoint_coordinator {
            query = query.checkpoint_coordinator(address.clone());
        }
        if flags.reset_checkpoint {
            query = query.reset_checkpoint();
        }
    }
    if flags.progress {
        query = query.on_progress(|p: &StreamingQueryProgress| eprintln!("{}", p.pretty_json()));
    }
    if flags.status {
        query = query.operator_frontiers().on_progress(|p: &StreamingQueryProgress| eprintln!("{}", p.status_line()));
    }
    if let Some(path) = &flags.progress_log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the progress log {}", path.display()))?;
        let file = std::sync::Mutex::new(file);
        query = query.on_progress(move |p: &StreamingQueryProgress| {
            use std::io::Write;
            let _ = writeln!(file.lock().unwrap(), "{}", p.json());
        });
    }
    Ok(query)
}

/// Waits for the query to end (input exhausted, --seconds elapsed, or Ctrl-C).
pub fn wait(handle: QueryHandle, seconds: Option<Duration>) -> Result<()> {
    weir::signals::stop_on_signal(handle.stopper());
    if let Some(limit) = seconds {
        if !handle.await_termination(Some(limit))? {
            handle.stop()?;
        }
        return Ok(());
    }
    handle.await_termination(None)?;
    Ok(())
}

/// Starts a job with `start` as the query `flags` describe (named `job` unless `--name` says
/// otherwise), then [`wait`]s for it, for as long as `--seconds` allows.
pub fn start_and_wait(
    flags: &RunFlags,
    job: &str,
    start: impl FnOnce(Query) -> Result<QueryHandle, BuildError>,
) -> Result<()> {
    let mut query = query_for(flags, job)?;
    if let Some(format) = explain::explaining() {
        let handle = start(query.explain_only()).with_context(|| format!("cannot build {job}"))?;
        return explain::print_plan(&handle, format);
    }
    let last_progress = weir::metrics_endpoint::LastProgress::default();
    if flags.metrics_addr.is_some() {
        let last = last_progress.clone();
        query = query.on_progress(move |p: &StreamingQueryProgress| *last.lock().unwrap() = Some(p.clone()));
    }
    let handle = start(query).with_context(|| format!("cannot start {job}"))?;
    // Served until the query ends (dropped when this function returns).
    let _endpoint = match &flags.metrics_addr {
        Some(address) => {
            let endpoint =
                weir::metrics_endpoint::MetricsEndpoint::serve(address, handle.context().clone(), last_progress)
                    .with_context(|| format!("cannot serve metrics on {address}"))?;
            eprintln!("weir: metrics on http://{}/metrics", endpoint.address());
            Some(endpoint)
        }
        None => None,
    };
    wait(handle, flags.seconds.map(Duration::from_secs_f64))
}
