//! `weir run interval-join`: the flags and their translation into an [`IntervalJoinJob`].

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use weir::jobs::interval_join::IntervalJoinJob;
use weir::jobs::json_input::JsonInput;
use weir::jobs::kafka_input::KafkaInput;
use weir::prelude::*;

use super::kafka_args::KafkaSourceArgs;
use super::{duration, start_and_wait, InputKind, JsonOutputArgs, RunFlags};

#[derive(Args, Debug)]
pub struct IntervalJoinArgs {
    /// Where both inputs come from: files (--left, --right) or Kafka topics (--left-topic,
    /// --right-topic on --brokers).
    #[arg(long, value_enum, default_value_t = InputKind::File)]
    source: InputKind,
    /// Left JSON-lines input file, or - for stdin (with --source file).
    #[arg(long)]
    left: Option<String>,
    /// Right JSON-lines input file, or - for stdin (with --source file).
    #[arg(long)]
    right: Option<String>,
    /// Topic of the left records (with --source kafka).
    #[arg(long)]
    left_topic: Option<String>,
    /// Topic of the right records (with --source kafka).
    #[arg(long)]
    right_topic: Option<String>,
    #[command(flatten)]
    kafka: KafkaSourceArgs,
    /// Field with the event time of both inputs: integer ms since the epoch, or an ISO-8601 string.
    #[arg(long, default_value = "ts")]
    time_field: String,
    /// Event-time field of the left input (default: --time-field).
    #[arg(long)]
    left_time_field: Option<String>,
    /// Event-time field of the right input (default: --time-field).
    #[arg(long)]
    right_time_field: Option<String>,
    /// Key field of both inputs: keys match by JSON text (1 and "1" differ); null or missing keys never match.
    #[arg(long, default_value = "key")]
    key_field: String,
    /// Key field of the left input (default: --key-field).
    #[arg(long)]
    left_key_field: Option<String>,
    /// Key field of the right input (default: --key-field).
    #[arg(long)]
    right_key_field: Option<String>,
    /// A right record matches a left one if right.time >= left.time + LOWER (may be negative, e.g. -5s).
    #[arg(long, allow_hyphen_values = true, value_parser = offset)]
    lower: Option<TimeOffset>,
    /// A right record matches a left one if right.time <= left.time + UPPER (e.g. 10s).
    #[arg(long, allow_hyphen_values = true, value_parser = offset)]
    upper: Option<TimeOffset>,
    /// Instead of --lower/--upper: match on the key alone. The state then keeps every record
    /// until an input ends and grows without bound.
    #[arg(long, conflicts_with_all = ["lower", "upper"])]
    unbounded: bool,
    /// inner, left-outer, right-outer, full-outer, left-semi or left-anti (Spark's spellings work too).
    #[arg(long, default_value = "inner", value_parser = join_type)]
    join_type: JoinType,
    /// Allowed lateness of both inputs: watermark = max event time seen - delay.
    #[arg(long, default_value = "0s", value_parser = duration)]
    watermark_delay: Duration,
    /// Allowed lateness of the left input (default: --watermark-delay).
    #[arg(long, value_parser = duration)]
    left_watermark_delay: Option<Duration>,
    /// Allowed lateness of the right input (default: --watermark-delay).
    #[arg(long, value_parser = duration)]
    right_watermark_delay: Option<Duration>,
    /// An input with no data for this long stops holding the watermark back.
    #[arg(long, value_parser = duration)]
    idle_timeout: Option<Duration>,
    /// Drop and count records whose event time is missing or unreadable, instead of failing.
    #[arg(long)]
    drop_invalid_time: bool,
    #[command(flatten)]
    output: JsonOutputArgs,
    #[command(flatten)]
    run: RunFlags,
}

fn offset(text: &str) -> Result<TimeOffset, String> {
    TimeOffset::parse(text).map_err(|e| e.to_string())
}

fn join_type(text: &str) -> Result<JoinType, String> {
    text.parse().map_err(|e: weir::operators::join_type::ParseJoinTypeError| e.to_string())
}

/// Runs `weir run interval-join`.
pub fn run(args: IntervalJoinArgs) -> Result<()> {
    let bounds = match (args.lower, args.upper, args.unbounded) {
        (Some(lower), Some(upper), _) => Some((lower, upper)),
        (None, None, true) => None,
        _ => bail!(
            "--lower and --upper are both required (e.g. --lower -5s --upper 10s): a right record matches a left \
             one if left.time + lower <= right.time <= left.time + upper. Use --unbounded to match on the key \
             alone, with state that grows without bound"
        ),
    };
    let (left, right) = match args.source {
        InputKind::File => {
            let (Some(left), Some(right)) = (args.left.clone(), args.right.clone()) else {
                bail!("--source file needs --left FILE and --right FILE (- for stdin)")
            };
            ((left, None), (right, None))
        }
        InputKind::Kafka => {
            let (Some(left_topic), Some(right_topic)) = (&args.left_topic, &args.right_topic) else {
                bail!("--source kafka needs --left-topic TOPIC and --right-topic TOPIC")
            };
            if !args.kafka.topics.is_empty() {
                bail!("interval-join reads --left-topic and --right-topic; --topic does not apply")
            }
            if left_topic == right_topic {
                bail!("--left-topic and --right-topic are both {left_topic}: give two different topics")
            }
            // One input (and dead-letter target) for both sides, each reading its own topic.
            let mut kafka = args.kafka.clone();
            kafka.topics = vec![left_topic.clone()];
            let left = kafka.input()?;
            let right = KafkaInput { topics: vec![right_topic.clone()], ..left.clone() };
            (("-".to_string(), Some(left)), ("-".to_string(), Some(right)))
        }
    };
    let input =
        |(path, kafka): (String, Option<KafkaInput>), time_field: Option<String>, delay: Option<Duration>| JsonInput {
            path,
            kafka,
            time_field: time_field.unwrap_or_else(|| args.time_field.clone()),
            watermark_delay: delay.unwrap_or(args.watermark_delay),
            idle_timeout: args.idle_timeout,
            drop_invalid_time: args.drop_invalid_time,
        };
    let job = IntervalJoinJob {
        left: input(left, args.left_time_field.clone(), args.left_watermark_delay),
        right: input(right, args.right_time_field.clone(), args.right_watermark_delay),
        left_key_field: args.left_key_field.clone().unwrap_or_else(|| args.key_field.clone()),
        right_key_field: args.right_key_field.clone().unwrap_or_else(|| args.key_field.clone()),
        bounds,
        join_type: args.join_type,
        output: args.output.target(None)?,
        late_output: args.output.late_output.clone(),
        time_format: args.output.time_format,
    };
    start_and_wait(&args.run, "interval-join", |query| job.start(query))
}
