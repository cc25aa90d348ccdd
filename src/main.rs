//! The `weir` command: run ready-made jobs without writing Rust.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};
use weir::jobs::json_fields::TimeFormat;
use weir::jobs::window_count::{Input, Output, WindowCount};
use weir::prelude::*;
use weir_runtime::time::parse_duration;

/// Weir: event-time stream processing on timely dataflow.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a ready-made job.
    #[command(subcommand)]
    Run(Job),
}

#[derive(Subcommand, Debug)]
enum Job {
    /// Count records per key in event-time windows (tumbling, or sliding with --slide).
    #[command(disable_help_flag = true)]
    WindowCount(WindowCountArgs),
}

/// Flags shared by every job: workers, cluster, progress.
#[derive(Args, Debug, Clone)]
struct RunFlags {
    /// Worker threads in this process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster (0 .. n-1).
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File listing every process's host:port, one per line, in process order.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
    /// Print each progress report (Spark's JSON) on stderr.
    #[arg(long)]
    progress: bool,
    /// Append each progress report as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    progress_log: Option<PathBuf>,
    /// How often a progress report is made.
    #[arg(long, default_value = "1s", value_parser = duration)]
    progress_interval: Duration,
    /// Stop gracefully after this many seconds (default: run until the input ends or Ctrl-C).
    #[arg(long)]
    seconds: Option<f64>,
    /// The query's name (in progress reports).
    #[arg(long)]
    name: Option<String>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SourceKind {
    /// JSON lines from --input (a file, or - for stdin).
    File,
    /// Spark's rate source: rows (timestamp, value), key = value % --keys.
    Rate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SinkKind {
    /// JSON lines to --output (a file, or - for stdout).
    Jsonl,
    /// Spark-style console tables on stdout, one per epoch.
    Console,
}

#[derive(Args, Debug)]
struct WindowCountArgs {
    /// Where records come from.
    #[arg(long, value_enum, default_value_t = SourceKind::File)]
    source: SourceKind,
    /// JSON-lines input file, or - for stdin (with --source file).
    #[arg(long, default_value = "-")]
    input: String,
    /// Field with the event time: integer ms since the epoch, or an ISO-8601 string.
    #[arg(long, default_value = "ts")]
    time_field: String,
    /// Field with the key: a string or a number.
    #[arg(long, default_value = "key")]
    key_field: String,
    /// Rows per second of the rate source.
    #[arg(long, default_value_t = 1000)]
    rows_per_second: u64,
    /// Distinct keys of the rate source (key = value % keys).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Partitions of the rate source.
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// Stop the rate source after this many rows.
    #[arg(long)]
    rows: Option<u64>,
    /// Generate rate rows as fast as possible (event times still follow --rows-per-second).
    #[arg(long)]
    unthrottled: bool,
    /// Out-of-orderness of the rate source: timestamps move back by up to this much.
    #[arg(long, default_value = "0s", value_parser = duration)]
    max_skew: Duration,
    /// Window size, e.g. 10s.
    #[arg(long, value_parser = duration)]
    window: Option<Duration>,
    /// Window slide for sliding windows (default: tumbling).
    #[arg(long, value_parser = duration)]
    slide: Option<Duration>,
    /// Allowed lateness: watermark = max event time seen - delay.
    #[arg(long, default_value = "0s", value_parser = duration)]
    watermark_delay: Duration,
    /// A partition with no data for this long stops holding the watermark back.
    #[arg(long, value_parser = duration)]
    idle_timeout: Option<Duration>,
    /// append (final windows once), update (changed rows per epoch), complete (whole table per epoch).
    #[arg(long, default_value = "append")]
    output_mode: String,
    /// Where results go.
    #[arg(long, value_enum, default_value_t = SinkKind::Jsonl)]
    sink: SinkKind,
    /// JSON-lines output file, or - for stdout (with --sink jsonl).
    #[arg(long, default_value = "-")]
    output: String,
    /// Write late records (with watermark and lateness) as JSON lines here.
    #[arg(long)]
    late_output: Option<String>,
    /// How window times are written: ms (integers) or iso (ISO-8601 strings).
    #[arg(long, value_enum, default_value_t = TimeFormat::Ms)]
    time_format: TimeFormat,
    /// Drop and count records whose event time is missing or unreadable, instead of failing.
    #[arg(long)]
    drop_invalid_time: bool,
    /// Rows per console table.
    #[arg(long, default_value_t = 20)]
    num_rows: usize,
    /// Show long console cells in full.
    #[arg(long)]
    no_truncate: bool,
    #[command(flatten)]
    run: RunFlags,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let code = match run(cli.command) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("weir: error: {error:#}");
            1
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_target(false).try_init();
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Run(Job::WindowCount(args)) => run_window_count(args),
    }
}

fn run_window_count(args: WindowCountArgs) -> Result<()> {
    let Some(size) = args.window else {
        let mode: OutputMode = args.output_mode.parse()?;
        // Without a window the count is global per key; append cannot work there.
        mode.validate(&Windowing::global()).context("no --window was given")?;
        bail!("--window is required for window-count (e.g. --window 10s)");
    };
    let windowing = match args.slide {
        Some(slide) => Windowing::sliding(size, slide),
        None => Windowing::tumbling(size),
    };
    let input = match args.source {
        SourceKind::File => {
            Input::JsonLines { path: args.input.clone(), time_field: args.time_field, key_field: args.key_field }
        }
        SourceKind::Rate => Input::Rate {
            rows_per_second: args.rows_per_second,
            keys: args.keys,
            partitions: args.partitions.max(1),
            rows: args.rows,
            unthrottled: args.unthrottled,
            max_skew: args.max_skew,
        },
    };
    let output = match args.sink {
        SinkKind::Jsonl => Output::JsonLines(args.output),
        SinkKind::Console => Output::Console { num_rows: args.num_rows, truncate: !args.no_truncate },
    };
    let job = WindowCount {
        input,
        windowing,
        watermark_delay: args.watermark_delay,
        idle_timeout: args.idle_timeout,
        output_mode: args.output_mode.parse()?,
        output,
        late_output: args.late_output,
        time_format: args.time_format,
        drop_invalid_time: args.drop_invalid_time,
    };
    let query = query_for(&args.run, "window-count")?;
    let handle = job.start(query).context("cannot start window-count")?;
    wait(handle, args.run.seconds.map(Duration::from_secs_f64))
}

/// The query settings shared by every job: workers, cluster, progress output.
fn query_for(flags: &RunFlags, default_name: &str) -> Result<Query> {
    let execution = Execution::from_flags(flags.workers, flags.processes, flags.process, flags.hostfile.as_deref())?;
    let mut query = Query::new(flags.name.clone().unwrap_or_else(|| default_name.to_string()))
        .execution(execution)
        .progress_interval(flags.progress_interval);
    if flags.progress {
        query = query.on_progress(|p: &StreamingQueryProgress| eprintln!("{}", p.pretty_json()));
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
fn wait(handle: QueryHandle, seconds: Option<Duration>) -> Result<()> {
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
