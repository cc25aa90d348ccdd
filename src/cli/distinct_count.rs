//! `weir run distinct-count`: the flags and their translation into a [`DistinctCount`] job.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use weir::jobs::distinct_count::{Counting, DistinctCount};
use weir::operators::hll::{DEFAULT_PRECISION, DEFAULT_RSD};
use weir::prelude::*;

use super::{duration, start_and_wait, JsonInputArgs, JsonOutputArgs, RunFlags};

#[derive(Args, Debug)]
pub struct DistinctCountArgs {
    #[command(flatten)]
    input: JsonInputArgs,
    /// Field whose distinct values are counted. Values compare by their JSON text (1, 1.0 and "1"
    /// differ); a record without the field counts as null.
    #[arg(long)]
    value_field: String,
    /// Field with the key: one count per window and key (its JSON text; a missing field is null).
    /// Without it, one count per window, with key null.
    #[arg(long)]
    key_field: Option<String>,
    /// Window size, e.g. 10s.
    #[arg(long, value_parser = duration)]
    window: Duration,
    /// Window slide for sliding windows (default: tumbling).
    #[arg(long, value_parser = duration)]
    slide: Option<Duration>,
    /// Estimate with HyperLogLog++ (a few hundred bytes per window and key) instead of keeping
    /// every distinct value.
    #[arg(long)]
    approx: bool,
    /// With --approx: the target relative standard deviation (precision = ceil(2·log2(1.106/rsd)),
    /// as Spark's approx_count_distinct). Default 0.05, i.e. precision 9.
    #[arg(long, requires = "approx", conflicts_with = "precision")]
    rsd: Option<f64>,
    /// With --approx: the sketch precision p, 4..=18 (2^p registers, error 1.04/sqrt(2^p)).
    #[arg(long, requires = "approx")]
    precision: Option<u8>,
    /// append (final windows once), update (changed rows per epoch), complete (whole table per epoch).
    #[arg(long, default_value = "append")]
    output_mode: String,
    #[command(flatten)]
    output: JsonOutputArgs,
    #[command(flatten)]
    run: RunFlags,
}

/// Runs `weir run distinct-count`.
pub fn run(args: DistinctCountArgs) -> Result<()> {
    let windowing = match args.slide {
        Some(slide) => Windowing::sliding(args.window, slide),
        None => Windowing::tumbling(args.window),
    };
    let counting = match (args.approx, args.rsd, args.precision) {
        (false, _, _) => Counting::Exact,
        (true, Some(rsd), _) => Counting::approximate_rsd(rsd).map_err(BuildError::from)?,
        (true, None, Some(precision)) => Counting::Approximate { precision },
        (true, None, None) => {
            debug_assert_eq!(weir::operators::hll::precision_for_rsd(DEFAULT_RSD), Ok(DEFAULT_PRECISION));
            Counting::Approximate { precision: DEFAULT_PRECISION }
        }
    };
    let job = DistinctCount {
        input: args.input.input()?,
        key_field: args.key_field,
        value_field: args.value_field,
        windowing,
        output_mode: args.output_mode.parse::<OutputMode>()?,
        counting,
        output: args.output.target(Some(&args.input))?,
        late_output: args.output.late_output,
        time_format: args.output.time_format,
    };
    start_and_wait(&args.run, "distinct-count", |query| job.start(query))
}
