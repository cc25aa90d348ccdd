//! `weir run window-count`: the flags and their translation into a [`WindowCount`] job.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use weir::jobs::json_fields::TimeFormat;
use weir::jobs::window_count::{Input, Output, WindowCount};
use weir::prelude::*;

use super::kafka_args::{KafkaSinkArgs, KafkaSourceArgs};
use super::{duration, start_and_wait, RunFlags, SinkKind, SourceKind};
use weir::jobs::json_output::OutputTarget;

#[derive(Args, Debug)]
pub struct WindowCountArgs {
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
    /// Directory of the exactly-once files (with --sink files).
    #[arg(long)]
    output_dir: Option<String>,
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
    kafka: KafkaSourceArgs,
    #[command(flatten)]
    kafka_sink: KafkaSinkArgs,
    #[command(flatten)]
    run: RunFlags,
}

/// Runs `weir run window-count`.
pub fn run(args: WindowCountArgs) -> Result<()> {
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
        SourceKind::Kafka => {
            Input::Kafka { kafka: args.kafka.input()?, time_field: args.time_field, key_field: args.key_field }
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
        SinkKind::Files => match &args.output_dir {
            Some(dir) => Output::Files(dir.clone()),
            None => bail!("--sink files needs --output-dir DIR"),
        },
        SinkKind::Kafka => match args.kafka_sink.target(args.kafka.brokers.as_deref(), &args.kafka.settings)? {
            OutputTarget::Kafka(kafka) => Output::Kafka(kafka),
            OutputTarget::JsonLines(path) => Output::JsonLines(path),
            OutputTarget::Files(dir) => Output::Files(dir),
        },
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
    start_and_wait(&args.run, "window-count", |query| job.start(query))
}
