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

mod progress {
    //! Progress of a bounded run on stderr: a bar on a terminal, a plain line every few seconds
    //! otherwise (so logs of CI runs stay readable).

    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use indicatif::{ProgressBar, ProgressStyle};
    use weir::prelude::StreamingQueryProgress;

    /// The reporting interval and the listener that shows `events` being read by `query`.
    pub fn for_events(query: &str, events: u64) -> (Duration, impl Fn(&StreamingQueryProgress) + Send + Sync) {
        let read = AtomicU64::new(0);
        let started = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(events);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events {msg} eta {eta}",
                )
                .expect("a valid template"),
            );
            bar.set_prefix(format!("nexmark {query}"));
            bar
        });
        let interval = if bar.is_some() { Duration::from_millis(200) } else { Duration::from_secs(5) };
        let query = query.to_string();
        let listener = move |report: &StreamingQueryProgress| {
            let total = read.fetch_add(report.num_input_rows, Ordering::Relaxed) + report.num_input_rows;
            let done = report.sources.iter().all(|s| s.watermark.is_none()) && total >= events;
            match &bar {
                Some(bar) => {
                    bar.set_position(total.min(events));
                    bar.set_message(format!("({:.2} M/s)", report.input_rows_per_second / 1e6));
                    if done {
                        bar.finish_and_clear();
                    }
                }
                None => eprintln!(
                    "nexmark {query}: {total}/{events} events ({:.0}%) after {:.1}s, {:.0} events/s",
                    100.0 * total as f64 / events.max(1) as f64,
                    started.elapsed().as_secs_f64(),
                    report.input_rows_per_second
                ),
            }
        };
        (interval, listener)
    }
}

/// Runs a benchmark.
pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Nexmark(args) => {
            let run = NexmarkRun {
                query: args.query,
                events: args.events,
                workers: args.workers,
                rate: args.rate,
                seed: args.seed,
                out_of_order_group_size: args.out_of_order_group_size,
            };
            let (interval, progress) = progress::for_events(&run.query, run.events);
            let report = runner::run_with_progress(run, interval, progress).map_err(|e| anyhow!("{e}"))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.line());
            }
            Ok(())
        }
    }
}
