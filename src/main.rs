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
    WindowCount(cli::window_count::WindowCountArgs),
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
        Command::Run(Job::WindowCount(args)) => cli::window_count::run(args),
    }
}


