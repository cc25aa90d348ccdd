//! `weir run session-count`: the flags and their translation into a [`SessionCount`] job.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use weir::jobs::session_count::SessionCount;
use weir::prelude::*;

use super::{duration, start_and_wait, JsonInputArgs, JsonOutputArgs, RunFlags};

#[derive(Args, Debug)]
pub struct SessionCountArgs {
    #[command(flatten)]
    input: JsonInputArgs,
    /// Field with the key: its JSON text is the key (1 and "1" differ; a missing field is null).
    #[arg(long, default_value = "key")]
    key_field: String,
    /// Session gap, e.g. 30s: a record less than this after the previous one of its key joins
    /// its session; a session spans [first, last + gap).
    #[arg(long, value_parser = duration)]
    gap: Duration,
    /// append (each session once, when the watermark passes its end) or update (changed sessions
    /// at every epoch).
    #[arg(long, default_value = "append")]
    output_mode: String,
    #[command(flatten)]
    output: JsonOutputArgs,
    #[command(flatten)]
    run: RunFlags,
}

/// Runs `weir run session-count`.
pub fn run(args: SessionCountArgs) -> Result<()> {
    let job = SessionCount {
        input: args.input.input()?,
        key_field: args.key_field,
        gap: args.gap,
        output_mode: args.output_mode.parse::<OutputMode>()?,
        output: args.output.target(Some(&args.input))?,
        late_output: args.output.late_output,
        time_format: args.output.time_format,
    };
    start_and_wait(&args.run, "session-count", |query| job.start(query))
}
