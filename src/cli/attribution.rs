//! `weir run attribution`: the flags and their translation into an [`Attribution`] job.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use weir::jobs::attribution::Attribution;

use super::{duration, start_and_wait, JsonInputArgs, JsonOutputArgs, RunFlags};

#[derive(Args, Debug)]
pub struct AttributionArgs {
    #[command(flatten)]
    input: JsonInputArgs,
    /// Field with the key impressions and clicks match on (ad, campaign, ...): its JSON text is
    /// the key (1 and "1" differ); records without it are ignored.
    #[arg(long, default_value = "key")]
    key_field: String,
    /// Field telling impressions from clicks; records of any other type are ignored.
    #[arg(long, default_value = "type")]
    type_field: String,
    /// The --type-field value of an impression.
    #[arg(long, default_value = "impression")]
    impression_type: String,
    /// The --type-field value of a click.
    #[arg(long, default_value = "click")]
    click_type: String,
    /// A click counts for the impressions of its key at most this long before it (event time), e.g. 30s.
    #[arg(long, value_parser = duration)]
    within: Duration,
    /// Count clicked impressions per key in tumbling windows of this size (of the click's time), e.g. 1m.
    #[arg(long, value_parser = duration)]
    window: Duration,
    #[command(flatten)]
    output: JsonOutputArgs,
    #[command(flatten)]
    run: RunFlags,
}

/// Runs `weir run attribution`.
pub fn run(args: AttributionArgs) -> Result<()> {
    let job = Attribution {
        input: args.input.input()?,
        key_field: args.key_field,
        type_field: args.type_field,
        impression_type: args.impression_type,
        click_type: args.click_type,
        within: args.within,
        window: args.window,
        output: args.output.target(Some(&args.input))?,
        late_output: args.output.late_output,
        time_format: args.output.time_format,
    };
    start_and_wait(&args.run, "attribution", |query| job.start(query))
}
