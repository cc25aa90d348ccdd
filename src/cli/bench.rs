//! `weir bench nexmark`: run a Nexmark query over a bounded, unthrottled generator and print
//! events/s (total and per worker), output rows, peak memory and the settings.

use anyhow::{anyhow, Result};
use clap::{ArgAction, Args, Subcommand};
use weir::nexmark::runner::{self, NexmarkRun};

/// The benchmarks.
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// The Nexmark benchmark: generator + one query, run to the end of the input.
    #[command(disable_help_flag = true)]
    Nexmark(NexmarkArgs),
}

/// Flags of `weir bench nexmark`.
#[derive(Args, Debug, Clone)]
pub struct NexmarkArgs {
    /// The query: q0, q1, q2, q5 or q7.
    /// Also q15, q15-hll, q16, q16-hll (bidding/channel statistics per day, exact or HyperLogLog++ distinct counts).
    /// And q18 (last bid per bidder and auction, an update stream), q12 (bids per bidder per 10 s of processing time).
    /// And q3, q4, q8, q11 (local item suggestion, average closing price per category, new users, user sessions).
    #[arg(long, default_value = "q0")]
    pub query: String,
    /// Events to generate in total.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Worker threads (one generator partition each).
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Permute events within groups of this size (1 = in order).
    #[arg(long, default_value_t = 1)]
    pub out_of_order_group_size: u64,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Runs a benchmark.
pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Nexmark(args) => {
            let report = runner::run(NexmarkRun {
                query: args.query,
                events: args.events,
                workers: args.workers,
                rate: args.rate,
                seed: args.seed,
                out_of_order_group_size: args.out_of_order_group_size,
            })
            .map_err(|e| anyhow!("{e}"))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.line());
            }
            Ok(())
        }
    }
}
