//! `weir run dedup`: the flags and their translation into a [`DedupJob`].

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use weir::jobs::dedup::{Bound, DedupJob};

use super::{duration, start_and_wait, JsonInputArgs, JsonOutputArgs, RunFlags};

#[derive(Args, Debug)]
pub struct DedupArgs {
    #[command(flatten)]
    input: JsonInputArgs,
    /// Field with the key: its JSON text is the key (1 and "1" differ; a missing field is null).
    #[arg(long, default_value = "id")]
    key_field: String,
    /// Drop records of a key less than this (event time) after its last passed record, e.g. 1m.
    /// A key's state is evicted once the watermark is this far past it.
    #[arg(long, value_parser = duration, conflicts_with = "unbounded")]
    within: Option<Duration>,
    /// Instead of --within: pass only the first record per key ever. The state then keeps every
    /// key seen and grows without bound.
    #[arg(long)]
    unbounded: bool,
    #[command(flatten)]
    output: JsonOutputArgs,
    #[command(flatten)]
    run: RunFlags,
}

/// Runs `weir run dedup`.
pub fn run(args: DedupArgs) -> Result<()> {
    let bound = match (args.within, args.unbounded) {
        (Some(within), _) => Bound::Within(within),
        (None, true) => Bound::Unbounded,
        (None, false) => bail!(
            "--within is required (e.g. --within 1m): duplicates are dropped for that long after a key's first record. Use --unbounded to keep every key forever instead"
        ),
    };
    let job = DedupJob {
        input: args.input.input()?,
        key_field: args.key_field,
        bound,
        output: args.output.target(Some(&args.input))?,
        late_output: args.output.late_output,
        time_format: args.output.time_format,
    };
    start_and_wait(&args.run, "dedup", |query| job.start(query))
}
