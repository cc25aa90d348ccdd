//! The `weir` command: run ready-made jobs without writing Rust.

mod cli;

use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand};

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

// Parsed once per process: boxing the large `Run(Job)` variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a ready-made job.
    #[command(subcommand)]
    Run(Job),
    /// Print a ready-made job's dataflow plan without running it: operators, what bounds their
    /// state (UNBOUNDED if nothing), which watermark each sees, output modes and exchanges
    /// (e.g. `weir explain window-count --window 10s --input events.jsonl`; --dot for Graphviz).
    Explain(cli::explain::ExplainArgs),
    /// Run a benchmark (e.g. `weir bench nexmark --query q1 --events 10000000 -w 2`).
    #[command(subcommand)]
    Bench(cli::bench::Bench),
    /// A schema registry speaking Confluent Schema Registry's REST API.
    #[command(subcommand)]
    Registry(cli::registry::RegistryCommand),
    /// Kafka helpers (e.g. `weir kafka produce-test-data --brokers 127.0.0.1:9092 --topic events`).
    #[command(subcommand)]
    Kafka(cli::kafka::KafkaCommand),
    /// Debugging helpers (e.g. `weir debug decode --brokers .. --topic .. --offset 42`).
    #[command(subcommand)]
    Debug(cli::debug::DebugCommand),
    /// Checkpoint directories (e.g. `weir checkpoint inspect /var/lib/weir/q1 --json`).
    #[command(subcommand)]
    Checkpoint(cli::checkpoint::CheckpointCommand),
}

#[derive(Subcommand, Debug)]
enum Job {
    /// Count records per key in event-time windows (tumbling, or sliding with --slide).
    #[command(disable_help_flag = true)]
    WindowCount(cli::window_count::WindowCountArgs),
    /// Count records per key in session windows (a session closes after --gap without records).
    #[command(disable_help_flag = true)]
    SessionCount(cli::session_count::SessionCountArgs),
    /// Drop duplicate records (same --key-field) within --within of event time.
    #[command(disable_help_flag = true)]
    Dedup(cli::dedup::DedupArgs),
    /// Count distinct values of a field per event-time window (and key): exact, or approximate
    /// with HyperLogLog++ (--approx).
    #[command(disable_help_flag = true)]
    DistinctCount(cli::distinct_count::DistinctCountArgs),
    /// Join two JSON-lines inputs on a key within event-time bounds (--lower/--upper), as inner,
    /// left/right/full outer, left semi or left anti join.
    #[command(disable_help_flag = true)]
    IntervalJoin(cli::interval_join::IntervalJoinArgs),
    /// Click attribution: join clicks to impressions of the same key at most --within before
    /// them, keep each impression's first click, count clicked impressions per key and --window.
    #[command(disable_help_flag = true)]
    Attribution(cli::attribution::AttributionArgs),
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // Where a checkpointed query resumes from is always said (target `weir::checkpoint`).
    let checkpoint_level = if verbose == 0 { tracing::Level::INFO } else { level };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("weir::checkpoint", checkpoint_level);
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
        .with(filter)
        .try_init();
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Bench(bench) => cli::bench::run(bench),
        Command::Explain(args) => {
            cli::explain::explain_instead_of_running(args.format());
            run(Command::Run(args.job))
        }
        Command::Run(Job::WindowCount(args)) => cli::window_count::run(args),
        Command::Run(Job::SessionCount(args)) => cli::session_count::run(args),
        Command::Run(Job::Dedup(args)) => cli::dedup::run(args),
        Command::Run(Job::DistinctCount(args)) => cli::distinct_count::run(args),
        Command::Run(Job::IntervalJoin(args)) => cli::interval_join::run(args),
        Command::Run(Job::Attribution(args)) => cli::attribution::run(args),
        Command::Registry(command) => cli::registry::run(command),
        Command::Kafka(command) => cli::kafka::run(command),
        Command::Debug(command) => cli::debug::run(command),
        Command::Checkpoint(command) => cli::checkpoint::run(command),
    }
}
