//! The Kafka source: a fixed list of topic-partitions, each read by one worker, with starting and
//! ending offsets, a per-epoch offset cap and an explicit data-loss policy (Spark's Kafka source
//! options), run through [`event_source`] so that watermarks, lateness and idleness are tracked
//! per Kafka partition.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_connectors::kafka::{KafkaOptions, KafkaRecord, KafkaSource, StartingOffsets};
//! use weir_runtime::prelude::*;
//!
//! let source = KafkaSource::subscribe(KafkaOptions::new("127.0.0.1:9092"), ["orders"])
//!     .starting_offsets(StartingOffsets::Earliest)
//!     .max_offsets_per_epoch(100_000)
//!     .build()
//!     .expect("the topic exists and the settings are valid");
//! let query = Query::new("orders").workers(2).start(move |scope, ctx| {
//!     let events = source.clone().events(scope, ctx, KafkaRecord::event_time,
//!                                        WatermarkOptions::with_delay(Duration::from_secs(5)));
//!     let _ = events;
//!     Ok(())
//! });
//! ```
//!
//! Offsets are never committed to a consumer group (like Spark, they belong in checkpoints): each
//! worker runs one consumer that `assign`s its partitions with `enable.auto.commit=false` and
//! `auto.offset.reset=error`, so an offset that is no longer available is noticed, never skipped
//! over quietly.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Message, Offset, TopicPartitionList};
use timely::dataflow::Scope;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::EventStream;
use weir_runtime::source::{event_source, PartitionReader, ReadStatus, Source};
use weir_runtime::time::{parse_duration, EventTime};
use weir_runtime::watermark::WatermarkOptions;

use super::admin::{KafkaAdmin, TopicPartition, Watermarks};
use super::options::KafkaOptions;
use super::record::KafkaRecord;

/// Settings in the `kafka.*` namespace that Weir reads itself and does not pass to librdkafka.
pub const WEIR_SETTINGS: &[&str] = &[FAILURE_TIMEOUT_SETTING];

/// How long a source may see only broker errors, without any progress, before the query fails
/// (`kafka.source.failure.timeout`, a duration such as `60s`).
pub const FAILURE_TIMEOUT_SETTING: &str = "source.failure.timeout";

/// The default of [`FAILURE_TIMEOUT_SETTING`].
pub const DEFAULT_FAILURE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings the source owns; setting them through `kafka.*` is refused (as Spark does).
const REFUSED_SETTINGS: &[(&str, &str)] = &[
    (
        "auto.offset.reset",
        "use starting_offsets instead; the source sets auto.offset.reset=error so that lost data is noticed",
    ),
    ("enable.auto.commit", "offsets belong in the query's checkpoint, not in consumer-group commits"),
];

/// Which partitions the source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Every partition of these topics (Spark's `subscribe`).
    Topics(Vec<String>),
    /// Every partition of every topic whose whole name matches this regular expression
    /// (Spark's `subscribePattern`).
    Pattern(String),
    /// Exactly these partitions (Spark's `assign`).
    Assign(Vec<TopicPartition>),
}

/// Where each partition starts (used for a fresh start; a checkpoint's offsets win over it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The earliest offset still available.
    Earliest,
    /// The end of each partition when the query starts: only new records are read (the default,
    /// as in Spark's streaming queries).
    Latest,
    /// Per partition: an offset, or `-2` for earliest and `-1` for latest. Every partition read
    /// must be listed (as Spark requires). Parse Spark's JSON with [`StartingOffsets::from_json`].
    Offsets(BTreeMap<TopicPartition, i64>),
    /// Every partition starts at its first record with a timestamp at or after this time (ms);
    /// a partition with no such record starts at its end.
    Timestamp(i64),
    /// The same per partition; parse Spark's JSON with [`StartingOffsets::timestamps_from_json`].
    Timestamps(BTreeMap<TopicPartition, i64>),
}

impl StartingOffsets {
    /// Spark's `startingOffsets` JSON: `{"topic":{"0":23,"1":-2}}` (-2 earliest, -1 latest).
    pub fn from_json(text: &str) -> Result<Self, BuildError> {
        Ok(StartingOffsets::Offsets(parse_partition_json("starting_offsets", text)?))
    }

    /// Spark's `startingOffsetsByTimestamp` JSON: `{"topic":{"0":1700000000000}}` (ms).
    pub fn timestamps_from_json(text: &str) -> Result<Self, BuildError> {
        Ok(StartingOffsets::Timestamps(parse_partition_json("starting_offsets_by_timestamp", text)?))
    }
}

/// Where a bounded read ends (the first offset not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndingOffsets {
    /// The end of each partition, looked up once when the source is built.
    Latest,
    /// Per partition: an offset, or `-1` for latest. Every partition read must be listed.
    /// Parse Spark's JSON with [`EndingOffsets::from_json`].
    Offsets(BTreeMap<TopicPartition, i64>),
}

impl EndingOffsets {
    /// Spark's `endingOffsets` JSON: `{"topic":{"0":50,"1":-1}}` (-1 latest).
    pub fn from_json(text: &str) -> Result<Self, BuildError> {
        Ok(EndingOffsets::Offsets(parse_partition_json("ending_offsets", text)?))
    }
}

fn parse_partition_json(what: &str, text: &str) -> Result<BTreeMap<TopicPartition, i64>, BuildError> {
    let shape = "use Spark's form {\"topic\":{\"0\":23,\"1\":-2}}";
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| BuildError::invalid(what, format!("{text:?} is not JSON ({e})"), shape))?;
    let topics =
        value.as_object().ok_or_else(|| BuildError::invalid(what, format!("{text} is not an object"), shape))?;
    let mut parsed = BTreeMap::new();
    for (topic, partitions) in topics {
        let partitions = partitions.as_object().ok_or_else(|| {
            BuildError::invalid(what, format!("topic {topic:?} maps to {partitions}, not to an object"), shape)
        })?;
        for (partition, offset) in partitions {
            let partition: i32 = partition.parse().map_err(|_| {
                BuildError::invalid(what, format!("{partition:?} of topic {topic:?} is not a partition number"), shape)
            })?;
            let offset = offset.as_i64().ok_or_else(|| {
                BuildError::invalid(what, format!("{topic}-{partition} maps to {offset}, not to an integer"), shape)
            })?;
            parsed.insert(TopicPartition::new(topic.clone(), partition), offset);
        }
    }
    Ok(parsed)
}

/// Kafka offsets in Spark's shape: `{"topic":{"partition":offset}}`.
pub fn offsets_json<'a>(offsets: impl IntoIterator<Item = (&'a TopicPartition, i64)>) -> serde_json::Value {
    let mut topics = serde_json::Map::new();
    for (tp, offset) in offsets {
        let entry = topics.entry(tp.topic.clone()).or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(partitions) = entry {
            partitions.insert(tp.partition.to_string(), offset.into());
        }
    }
    serde_json::Value::Object(topics)
}

/// The settings of a Kafka source before it is resolved against the cluster. Start one with
/// [`KafkaSource::subscribe`], [`KafkaSource::subscribe_pattern`] or [`KafkaSource::assign`].
#[derive(Clone, Debug)]
pub struct KafkaSourceBuilder {
    options: KafkaOptions,
    subscription: Subscription,
    starting: StartingOffsets,
    ending: Option<EndingOffsets>,
    max_offsets_per_epoch: Option<u64>,
    fail_on_data_loss: bool,
    failure_timeout: Option<Duration>,
    metadata_timeout: Duration,
}

impl KafkaSourceBuilder {
    /// Where each partition starts (default [`StartingOffsets::Latest`]).
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// Makes the read bounded: each partition finishes at these offsets, and the source then ends
    /// (every window downstream flushes). Unbounded by default.
    pub fn ending_offsets(mut self, ending: EndingOffsets) -> Self {
        self.ending = Some(ending);
        self
    }

    /// Caps the offsets read per epoch (Spark's `maxOffsetsPerTrigger`): each partition reads at
    /// most `⌈max / partitions⌉` records per activation of the source, so one activation over all
    /// partitions reads about `max` records. Unlimited by default.
    pub fn max_offsets_per_epoch(mut self, max: u64) -> Self {
        self.max_offsets_per_epoch = Some(max);
        self
    }

    /// What to do when offsets are no longer available (deleted by retention, or out of range):
    /// `true` (the default) fails the query with an error naming the partition and offsets;
    /// `false` logs a warning, counts it ([`KafkaSource::data_loss_events`]) and continues from
    /// the earliest available offset.
    pub fn fail_on_data_loss(mut self, fail: bool) -> Self {
        self.fail_on_data_loss = fail;
        self
    }

    /// How long the source may see only broker errors without progress before the query fails
    /// (default 60 s, or `kafka.source.failure.timeout`).
    pub fn failure_timeout(mut self, timeout: Duration) -> Self {
        self.failure_timeout = Some(timeout);
        self
    }

    /// How long building waits for metadata and offsets from the cluster (default 10 s).
    pub fn metadata_timeout(mut self, timeout: Duration) -> Self {
        self.metadata_timeout = timeout;
        self
    }

    /// Checks the settings, resolves the partitions and their starting and ending offsets
    /// against the cluster (once, so every worker reads the same fixed list), and returns the
    /// source. Fails with a [`BuildError`] naming the problem before any record is read.
    pub fn build(self) -> Result<KafkaSource, BuildError> {
        for (key, why) in REFUSED_SETTINGS {
            if self.options.get(key).is_some() {
                return Err(BuildError::invalid(
                    format!("Kafka option kafka.{key}"),
                    "the Kafka source does not accept it",
                    format!("remove it: {why}"),
                ));
            }
        }
        let failure_timeout = match (self.failure_timeout, self.options.get(FAILURE_TIMEOUT_SETTING)) {
            (Some(timeout), _) => timeout,
            (None, Some(text)) => parse_duration(text).map_err(|e| {
                BuildError::invalid(
                    format!("kafka.{FAILURE_TIMEOUT_SETTING}"),
                    e.to_string(),
                    "use a duration like 60s",
                )
            })?,
            (None, None) => DEFAULT_FAILURE_TIMEOUT,
        };
        if self.max_offsets_per_epoch == Some(0) {
            return Err(BuildError::invalid("max_offsets_per_epoch", "0 would never read anything", "use at least 1"));
        }
        let admin = KafkaAdmin::connect(&self.options, self.metadata_timeout).map_err(|e| {
            BuildError::invalid(
                "Kafka options",
                e.message,
                "use librdkafka's property names and values (CONFIGURATION.md), with or without the kafka. prefix",
            )
        })?;
        let cluster = |e: super::admin::KafkaAdminError| {
            BuildError::invalid(
                format!("Kafka source on {}", self.options.bootstrap_servers),
                e.to_string(),
                "check that the brokers run, bootstrap.servers is right and the topics exist",
            )
        };
        let partitions = match &self.subscription {
            Subscription::Topics(topics) => {
                if topics.is_empty() {
                    return Err(BuildError::invalid("subscribe", "no topic given", "name at least one topic"));
                }
                admin.partitions_of(topics).map_err(cluster)?
            }
            Subscription::Pattern(pattern) => {
                let regex = regex::Regex::new(pattern).map_err(|e| {
                    BuildError::invalid(
                        "subscribe_pattern",
                        format!("{pattern:?} is not a regular expression: {e}"),
                        "fix the pattern",
                    )
                })?;
                let found = admin.partitions_matching(&regex).map_err(cluster)?;
                if found.is_empty() {
                    let topics = admin.all_partitions().map_err(cluster)?;
                    return Err(BuildError::invalid(
                        "subscribe_pattern",
                        format!(
                            "{pattern:?} matches no topic (topics: {})",
                            topics.keys().filter(|t| !t.starts_with("__")).cloned().collect::<Vec<_>>().join(", ")
                        ),
                        "create the topics first: the partition list is resolved once, when the source is built",
                    ));
                }
                found
            }
            Subscription::Assign(assigned) => {
                if assigned.is_empty() {
                    return Err(BuildError::invalid("assign", "no partition given", "assign at least one partition"));
                }
                let topics = admin.all_partitions().map_err(cluster)?;
                for tp in assigned {
                    if !topics.get(&tp.topic).is_some_and(|ps| ps.contains(&tp.partition)) {
                        return Err(BuildError::invalid(
                            "assign",
                            format!("partition {tp} does not exist on {}", self.options.bootstrap_servers),
                            "assign existing partitions (topic-partition numbers start at 0)",
                        ));
                    }
                }
                let mut sorted = assigned.clone();
                sorted.sort();
                sorted.dedup();
                sorted
            }
        };

        let mut watermarks = Vec::with_capacity(partitions.len());
        for tp in &partitions {
            watermarks.push(admin.watermarks(tp).map_err(cluster)?);
        }
        let data_loss = Arc::new(AtomicU64::new(0));
        let starts = resolve_starts(&admin, &self, &partitions, &watermarks, &data_loss)?;
        let ends = match &self.ending {
            None => None,
            Some(ending) => Some(resolve_ends(ending, &partitions, &watermarks, &starts)?),
        };
        let description = match &self.subscription {
            Subscription::Topics(topics) => format!("KafkaSource[Subscribe[{}]]", topics.join(",")),
            Subscription::Pattern(pattern) => format!("KafkaSource[SubscribePattern[{pattern}]]"),
            Subscription::Assign(_) => format!(
                "KafkaSource[Assign[{}]]",
                partitions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        for (i, tp) in partitions.iter().enumerate() {
            tracing::info!(
                source = %description,
                partition = %tp,
                offset = starts[i].0,
                reason = %starts[i].1,
                end = ?ends.as_ref().map(|e| e[i]),
                "Kafka partition starts"
            );
        }
        let no_input_hint = no_input_hint(&partitions, &watermarks, &starts);
        let per_read_cap = match self.max_offsets_per_epoch {
            Some(max) => (max.div_ceil(partitions.len() as u64)).max(1) as usize,
            None => usize::MAX,
        };
        Ok(KafkaSource {
            description,
            options: self.options,
            starts: starts.into_iter().map(|(offset, _)| offset).collect(),
            ends,
            partitions,
            per_read_cap,
            fail_on_data_loss: self.fail_on_data_loss,
            failure_timeout,
            data_loss,
            no_input_hint,
            consumer: OnceLock::new(),
        })
    }
}

/// The diagnosis hint for a source that reads nothing: which partitions started at their end
/// (the `latest` trap: the records already in the topic are never read) and how to read them.
fn no_input_hint(partitions: &[TopicPartition], watermarks: &[Watermarks], starts: &[(i64, String)]) -> Option<String> {
    let at_end: Vec<usize> = (0..partitions.len())
        .filter(|&i| starts[i].1.starts_with("latest") && starts[i].0 >= watermarks[i].high)
        .collect();
    if at_end.is_empty() {
        return None;
    }
    let skipped: i64 = at_end.iter().map(|&i| (starts[i].0 - watermarks[i].low).max(0)).sum();
    let which = if at_end.len() == partitions.len() {
        "every partition".to_string()
    } else {
        at_end.iter().map(|&i| partitions[i].to_string()).collect::<Vec<_>>().join(", ")
    };
    let by_time = at_end.iter().any(|&i| starts[i].1.contains("timestamp"));
    let existing = match skipped {
        0 => "the topic held no record when it started".to_string(),
        1 => "the 1 record already in the topic is not read".to_string(),
        n => format!("the {n} records already in the topic are not read"),
    };
    let fix = if by_time {
        "choose an earlier starting timestamp, or start at earliest (--starting-offsets earliest, StartingOffsets::Earliest)"
    } else {
        "start at earliest (--starting-offsets earliest on the command line, StartingOffsets::Earliest in a program; Spark's startingOffsets=earliest)"
    };
    Some(format!(
        "it started at the latest offsets ({which}{}), so it reads only records produced after the query started \
         (Spark's startingOffsets=latest trap); {existing}. To read the existing records, {fix}",
        if by_time { ", having no record at or after the starting timestamp" } else { "" }
    ))
}

/// The first offset of every partition and why it was chosen (for the startup log).
fn resolve_starts(
    admin: &KafkaAdmin,
    builder: &KafkaSourceBuilder,
    partitions: &[TopicPartition],
    watermarks: &[Watermarks],
    data_loss: &AtomicU64,
) -> Result<Vec<(i64, String)>, BuildError> {
    let check_listed = |what: &str, listed: &BTreeMap<TopicPartition, i64>| -> Result<(), BuildError> {
        let wanted: Vec<&TopicPartition> = partitions.iter().collect();
        let given: Vec<&TopicPartition> = listed.keys().collect();
        if wanted != given {
            return Err(BuildError::invalid(
                what,
                format!(
                    "it must list every partition read. Read: {}; listed: {}",
                    partitions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    given.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
                "list them all (use -1 for latest, -2 for earliest if you do not care), as Spark requires",
            ));
        }
        Ok(())
    };
    let mut starts = Vec::with_capacity(partitions.len());
    match &builder.starting {
        StartingOffsets::Earliest => starts.extend(watermarks.iter().map(|w| (w.low, "earliest".to_string()))),
        StartingOffsets::Latest => starts.extend(watermarks.iter().map(|w| (w.high, "latest".to_string()))),
        StartingOffsets::Offsets(offsets) => {
            check_listed("starting_offsets", offsets)?;
            for ((tp, w), offset) in partitions.iter().zip(watermarks).zip(offsets.values()) {
                let start = match *offset {
                    -2 => (w.low, "earliest (-2 in starting_offsets)".to_string()),
                    -1 => (w.high, "latest (-1 in starting_offsets)".to_string()),
                    n if n >= 0 => (n, "starting_offsets".to_string()),
                    n => {
                        return Err(BuildError::invalid(
                            "starting_offsets",
                            format!("{tp} has offset {n}"),
                            "use an offset >= 0, -1 for latest or -2 for earliest",
                        ))
                    }
                };
                starts.push(check_available(builder, tp, *w, start, data_loss)?);
            }
        }
        StartingOffsets::Timestamp(_) | StartingOffsets::Timestamps(_) => {
            let times: BTreeMap<TopicPartition, i64> = match &builder.starting {
                StartingOffsets::Timestamp(t) => partitions.iter().map(|tp| (tp.clone(), *t)).collect(),
                StartingOffsets::Timestamps(times) => {
                    check_listed("starting_offsets_by_timestamp", times)?;
                    times.clone()
                }
                _ => unreachable!(),
            };
            let found = admin.offsets_for_times(&times).map_err(|e| {
                BuildError::invalid("starting offsets by timestamp", e.to_string(), "check that the brokers run")
            })?;
            for (tp, w) in partitions.iter().zip(watermarks) {
                let time = times[tp];
                starts.push(match found.get(tp).copied().flatten() {
                    Some(offset) => (offset, format!("first record at or after timestamp {time}")),
                    None => (w.high, format!("latest: no record at or after timestamp {time}")),
                });
            }
        }
    }
    Ok(starts)
}

/// Applies the data-loss policy to a starting offset outside `low..=high`.
fn check_available(
    builder: &KafkaSourceBuilder,
    tp: &TopicPartition,
    w: Watermarks,
    (offset, reason): (i64, String),
    data_loss: &AtomicU64,
) -> Result<(i64, String), BuildError> {
    if offset >= w.low && offset <= w.high {
        return Ok((offset, reason));
    }
    let message = data_loss_message(tp, offset, w);
    if builder.fail_on_data_loss {
        return Err(BuildError::invalid("starting offset", message, DATA_LOSS_FIX));
    }
    data_loss.fetch_add(1, Ordering::Relaxed);
    let resumed = if offset < w.low { w.low } else { w.high };
    tracing::warn!("{message}; fail_on_data_loss is false, so partition {tp} starts at {resumed} instead");
    Ok((resumed, format!("{reason} {offset} was not available (data loss), moved to {resumed}")))
}

const DATA_LOSS_FIX: &str = "if losing these records is acceptable, set fail_on_data_loss(false) (Spark's failOnDataLoss=false) to continue from the earliest available offset; otherwise choose offsets that still exist (e.g. starting_offsets earliest)";

fn data_loss_message(tp: &TopicPartition, offset: i64, w: Watermarks) -> String {
    if offset < w.low {
        format!(
            "topic {:?} partition {}: offset {offset} was expected but is no longer available: the earliest available offset is {} (latest {}). Some data may have been lost (deleted by retention or DeleteRecords before it was read)",
            tp.topic, tp.partition, w.low, w.high
        )
    } else {
        format!(
            "topic {:?} partition {}: offset {offset} was expected but the partition ends at {} (earliest available {}). The topic may have been deleted and recreated, so some data may have been lost",
            tp.topic, tp.partition, w.high, w.low
        )
    }
}

fn resolve_ends(
    ending: &EndingOffsets,
    partitions: &[TopicPartition],
    watermarks: &[Watermarks],
    starts: &[(i64, String)],
) -> Result<Vec<i64>, BuildError> {
    let mut ends = Vec::with_capacity(partitions.len());
    for (i, (tp, w)) in partitions.iter().zip(watermarks).enumerate() {
        let end = match ending {
            EndingOffsets::Latest => w.high,
            EndingOffsets::Offsets(offsets) => match offsets.get(tp) {
                Some(-1) => w.high,
                Some(&n) if n >= 0 => n,
                Some(n) => {
                    return Err(BuildError::invalid(
                        "ending_offsets",
                        format!("{tp} has offset {n}"),
                        "use an offset >= 0 or -1 for latest (earliest makes no sense as an end)",
                    ))
                }
                None => {
                    return Err(BuildError::invalid(
                        "ending_offsets",
                        format!("partition {tp} is read but not listed"),
                        "list every partition read (use -1 for latest), as Spark requires",
                    ))
                }
            },
        };
        if end < starts[i].0 {
            return Err(BuildError::invalid(
                "ending_offsets",
                format!("{tp} would end at {end}, before its starting offset {}", starts[i].0),
                "choose an ending offset at or after the starting offset",
            ));
        }
        ends.push(end);
    }
    if let EndingOffsets::Offsets(offsets) = ending {
        if let Some(extra) = offsets.keys().find(|tp| !partitions.contains(tp)) {
            return Err(BuildError::invalid(
                "ending_offsets",
                format!("it lists {extra}, which is not read"),
                "list only the partitions the source reads",
            ));
        }
    }
    Ok(ends)
}

/// A Kafka source resolved against the cluster: a fixed, sorted list of topic-partitions with
/// their starting (and, for bounded runs, ending) offsets. Partition `i` of the list is read by
/// worker `i % peers`, which spreads the partitions over every worker of every process.
///
/// Build it with [`KafkaSource::subscribe`], [`KafkaSource::subscribe_pattern`] or
/// [`KafkaSource::assign`], then run it with [`KafkaSource::events`] (or [`event_source`]).
/// Clone it into each worker: each clone opens its own consumer.
#[derive(Debug)]
pub struct KafkaSource {
    description: String,
    options: KafkaOptions,
    partitions: Vec<TopicPartition>,
    starts: Vec<i64>,
    ends: Option<Vec<i64>>,
    per_read_cap: usize,
    fail_on_data_loss: bool,
    failure_timeout: Duration,
    data_loss: Arc<AtomicU64>,
    no_input_hint: Option<String>,
    /// This worker's consumer, created when the first partition is opened (never cloned).
    consumer: OnceLock<Arc<WorkerConsumer>>,
}

impl Clone for KafkaSource {
    fn clone(&self) -> Self {
        KafkaSource {
            description: self.description.clone(),
            options: self.options.clone(),
            partitions: self.partitions.clone(),
            starts: self.starts.clone(),
            ends: self.ends.clone(),
            per_read_cap: self.per_read_cap,
            fail_on_data_loss: self.fail_on_data_loss,
            failure_timeout: self.failure_timeout,
            data_loss: self.data_loss.clone(),
            no_input_hint: self.no_input_hint.clone(),
            consumer: OnceLock::new(),
        }
    }
}

impl KafkaSource {
    fn builder(options: KafkaOptions, subscription: Subscription) -> KafkaSourceBuilder {
        KafkaSourceBuilder {
            options,
            subscription,
            starting: StartingOffsets::Latest,
            ending: None,
            max_offsets_per_epoch: None,
            fail_on_data_loss: true,
            failure_timeout: None,
            metadata_timeout: Duration::from_secs(10),
        }
    }

    /// Reads every partition of `topics`.
    pub fn subscribe<I, T>(options: KafkaOptions, topics: I) -> KafkaSourceBuilder
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::builder(options, Subscription::Topics(topics.into_iter().map(Into::into).collect()))
    }

    /// Reads every partition of the topics whose whole name matches `pattern` when the source is
    /// built (topics created later are not picked up: the partition list is fixed).
    pub fn subscribe_pattern(options: KafkaOptions, pattern: impl Into<String>) -> KafkaSourceBuilder {
        Self::builder(options, Subscription::Pattern(pattern.into()))
    }

    /// Reads exactly `partitions`.
    pub fn assign(options: KafkaOptions, partitions: impl IntoIterator<Item = TopicPartition>) -> KafkaSourceBuilder {
        Self::builder(options, Subscription::Assign(partitions.into_iter().collect()))
    }

    /// The partitions read, in the order that decides which worker reads which.
    pub fn topic_partitions(&self) -> &[TopicPartition] {
        &self.partitions
    }

    /// The resolved starting offsets in Spark's JSON shape.
    pub fn starting_offsets_json(&self) -> serde_json::Value {
        offsets_json(self.partitions.iter().zip(self.starts.iter().copied()))
    }

    /// The resolved ending offsets in Spark's JSON shape, for a bounded source.
    pub fn ending_offsets_json(&self) -> Option<serde_json::Value> {
        self.ends.as_ref().map(|ends| offsets_json(self.partitions.iter().zip(ends.iter().copied())))
    }

    /// How many times offsets were found missing and skipped (with `fail_on_data_loss(false)`),
    /// over all clones of this source in this process.
    pub fn data_loss_events(&self) -> u64 {
        self.data_loss.load(Ordering::Relaxed)
    }

    /// Runs the source through [`event_source`]: `time_of` gives each record's event time (use
    /// [`KafkaRecord::event_time`] for the Kafka timestamp), `options` the watermark delay,
    /// idleness and invalid-time policy, applied per Kafka partition.
    pub fn events<'scope>(
        self,
        scope: Scope<'scope, EventTime>,
        ctx: &QueryContext,
        time_of: impl Fn(&KafkaRecord) -> Option<EventTime> + 'static,
        options: WatermarkOptions,
    ) -> EventStream<'scope, KafkaRecord> {
        event_source(scope, ctx, self, time_of, options)
    }

    fn source_error(&self, message: impl Into<String>) -> QueryError {
        QueryError::Source { source_name: self.description.clone(), message: message.into() }
    }

    /// Opens partition `index` at offset `start` through this worker's consumer.
    fn open_from(&self, index: usize, start: i64) -> Result<KafkaPartitionReader, QueryError> {
        let shared = self.worker_consumer()?;
        let tp = self.partitions[index].clone();
        // Split the partition's queue off before assigning it, so no message reaches the main queue.
        let queue = shared
            .consumer
            .split_partition_queue(&tp.topic, tp.partition)
            .ok_or_else(|| self.source_error(format!("cannot open a queue for partition {tp}")))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(start))
            .and_then(|_| shared.consumer.incremental_assign(&list))
            .map_err(|e| self.source_error(format!("cannot assign partition {tp} at offset {start}: {e}")))?;
        shared.health.lock().unwrap().probe.get_or_insert_with(|| tp.clone());
        Ok(KafkaPartitionReader {
            topic_c: CString::new(tp.topic.clone()).unwrap_or_default(),
            tp,
            shared,
            queue,
            next_offset: start,
            end_offset: self.ends.as_ref().map(|ends| ends[index]),
            per_read_cap: self.per_read_cap,
            fail_on_data_loss: self.fail_on_data_loss,
            data_loss: self.data_loss.clone(),
        })
    }

    fn worker_consumer(&self) -> Result<Arc<WorkerConsumer>, QueryError> {
        if let Some(consumer) = self.consumer.get() {
            return Ok(consumer.clone());
        }
        static CONSUMERS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let group =
            format!("weir-kafka-source-{}-{nanos:x}-{}", std::process::id(), CONSUMERS.fetch_add(1, Ordering::Relaxed));
        let mut config = self.options.client_config(&[
            ("group.id", group.as_str()),
            ("enable.partition.eof", "false"),
            ("enable.auto.offset.store", "false"),
        ]);
        for key in WEIR_SETTINGS {
            config.remove(key);
        }
        config.set("enable.auto.commit", "false").set("auto.offset.reset", "error");
        let consumer: BaseConsumer =
            config.create().map_err(|e| self.source_error(format!("cannot create the Kafka consumer: {e}")))?;
        let shared = Arc::new(WorkerConsumer {
            consumer: Arc::new(consumer),
            description: self.description.clone(),
            bootstrap: self.options.bootstrap_servers.clone(),
            failure_timeout: self.failure_timeout,
            health: Mutex::new(Health::default()),
            stray: Mutex::new(HashMap::new()),
        });
        let _ = self.consumer.set(shared.clone());
        Ok(shared)
    }
}

impl Source for KafkaSource {
    type Record = KafkaRecord;
    type Reader = KafkaPartitionReader;

    fn description(&self) -> String {
        self.description.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn nested_offsets(&self) -> bool {
        true
    }

    fn no_input_hint(&self) -> Option<String> {
        self.no_input_hint.clone()
    }

    fn open(&self, index: usize) -> Result<KafkaPartitionReader, QueryError> {
        self.open_from(index, self.starts[index])
    }

    /// Resumes at the offset a checkpoint recorded, in the reader's own position shape
    /// `{"topic":{"partition":offset}}`; the starting offsets do not apply. An offset that is no
    /// longer available (deleted by retention, or beyond the partition's end after the topic was
    /// recreated) is handled as at the start: with `fail_on_data_loss` (the default) the query
    /// fails naming the partition and offsets, otherwise the partition continues at the earliest
    /// (or latest) available offset and the loss is counted ([`KafkaSource::data_loss_events`]).
    fn open_at(&self, index: usize, position: &serde_json::Value) -> Result<KafkaPartitionReader, QueryError> {
        let tp = self.partitions.get(index).ok_or_else(|| {
            self.source_error(format!("there is no partition {index}: the source reads {}", self.partitions.len()))
        })?;
        let offset = position
            .get(&tp.topic)
            .and_then(|partitions| partitions.get(tp.partition.to_string()))
            .and_then(serde_json::Value::as_i64)
            .filter(|offset| *offset >= 0)
            .ok_or_else(|| {
                self.source_error(format!(
                    "partition {tp} cannot resume at {position}: it holds no offset for {tp} (a Kafka position is {{\"topic\":{{\"partition\":offset}}}}). The checkpoint belongs to a source reading other partitions"
                ))
            })?;
        let shared = self.worker_consumer()?;
        let w = shared
            .consumer
            .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10))
            .map(|(low, high)| Watermarks { low, high })
            .map_err(|e| {
                self.source_error(format!("partition {tp}: cannot read its offsets to resume at {offset}: {e}"))
            })?;
        let start = if offset >= w.low && offset <= w.high {
            offset
        } else {
            let message = data_loss_message(tp, offset, w);
            if self.fail_on_data_loss {
                return Err(self.source_error(format!("resuming from the checkpoint: {message}. {DATA_LOSS_FIX}")));
            }
            self.data_loss.fetch_add(1, Ordering::Relaxed);
            let resumed = if offset < w.low { w.low } else { w.high };
            tracing::warn!(source = %self.description, "resuming from the checkpoint: {message}; fail_on_data_loss is false, so partition {tp} continues at {resumed}");
            resumed
        };
        tracing::info!(source = %self.description, partition = %tp, offset = start, "Kafka partition resumes from the checkpoint");
        self.open_from(index, start)
    }
}

/// What a worker's consumer has seen of the brokers' health.
#[derive(Debug, Default)]
struct Health {
    /// When errors started without progress since.
    error_since: Option<Instant>,
    /// The latest error message.
    last_error: String,
    /// When the brokers were last asked directly whether they answer.
    last_probe: Option<Instant>,
    /// A partition to ask about.
    probe: Option<TopicPartition>,
}

/// The one consumer of a worker, shared by the readers of its partitions.
struct WorkerConsumer {
    consumer: Arc<BaseConsumer>,
    description: String,
    bootstrap: String,
    failure_timeout: Duration,
    health: Mutex<Health>,
    /// Messages that reached the main queue instead of their partition's queue.
    stray: Mutex<HashMap<(String, i32), Vec<KafkaRecord>>>,
}

impl std::fmt::Debug for WorkerConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConsumer").field("description", &self.description).finish()
    }
}

impl WorkerConsumer {
    /// Serves the main queue without blocking: errors are noted; a message (which should not
    /// arrive there) is kept for its partition's reader.
    fn poll_main(&self) {
        while let Some(result) = self.consumer.poll(Duration::ZERO) {
            match result {
                Ok(message) => {
                    let record = KafkaRecord::from_message(&message);
                    self.stray
                        .lock()
                        .unwrap()
                        .entry((record.topic.clone(), record.partition))
                        .or_default()
                        .push(record);
                }
                Err(error) => self.note_error(error.to_string()),
            }
        }
    }

    fn note_error(&self, message: String) {
        tracing::warn!(source = %self.description, "Kafka error: {message}");
        let mut health = self.health.lock().unwrap();
        health.error_since.get_or_insert_with(Instant::now);
        health.last_error = message;
    }

    fn note_progress(&self) {
        let mut health = self.health.lock().unwrap();
        if health.error_since.take().is_some() {
            tracing::info!(source = %self.description, "Kafka reads progress again");
        }
    }

    /// While errors persist without progress, asks a broker directly (at most once a second)
    /// whether it answers; fails once errors have lasted the failure timeout.
    fn check(&self) -> Result<(), String> {
        let mut health = self.health.lock().unwrap();
        let Some(since) = health.error_since else { return Ok(()) };
        let due = health.last_probe.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due {
            health.last_probe = Some(Instant::now());
            let probe = health.probe.clone();
            drop(health);
            let answer = match &probe {
                Some(tp) => {
                    self.consumer.fetch_watermarks(&tp.topic, tp.partition, Duration::from_millis(500)).map(|_| ())
                }
                None => self.consumer.fetch_metadata(None, Duration::from_millis(500)).map(|_| ()),
            };
            health = self.health.lock().unwrap();
            match answer {
                Ok(()) => {
                    health.error_since = None;
                    return Ok(());
                }
                Err(error) => {
                    if !health.last_error.contains(&error.to_string()) {
                        health.last_error = format!("{}; asking the broker directly: {error}", health.last_error);
                    }
                }
            }
        }
        if since.elapsed() >= self.failure_timeout {
            return Err(format!(
                "no progress for {:?} while the Kafka brokers at {} keep failing: {}. Check that the brokers run and are reachable; set kafka.{FAILURE_TIMEOUT_SETTING} (or failure_timeout) to wait longer",
                since.elapsed(), self.bootstrap, health.last_error
            ));
        }
        Ok(())
    }

    /// librdkafka's cached low/high watermarks of a partition (from the latest fetch), if known.
    fn cached_watermarks(&self, topic: &CString, partition: i32) -> Option<(i64, i64)> {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives; the call only reads
        // librdkafka's cached values into the two locals.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
    }
}

/// Reads one Kafka partition through its own queue of the worker's consumer.
pub struct KafkaPartitionReader {
    tp: TopicPartition,
    topic_c: CString,
    shared: Arc<WorkerConsumer>,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<rdkafka::consumer::DefaultConsumerContext>,
    next_offset: i64,
    end_offset: Option<i64>,
    per_read_cap: usize,
    fail_on_data_loss: bool,
    data_loss: Arc<AtomicU64>,
}

impl KafkaPartitionReader {
    fn error(&self, message: String) -> QueryError {
        QueryError::Source { source_name: self.shared.description.clone(), message }
    }

    fn ended(&self) -> bool {
        self.end_offset.is_some_and(|end| self.next_offset >= end)
    }

    /// An offset that is not available: fail, or skip to what is available.
    fn on_lost_offset(&mut self, cause: &KafkaError) -> Result<(), QueryError> {
        let w = self
            .shared
            .consumer
            .fetch_watermarks(&self.tp.topic, self.tp.partition, Duration::from_secs(5))
            .map(|(low, high)| Watermarks { low, high })
            .map_err(|e| self.error(format!("partition {}: {cause}; reading its offsets failed too: {e}", self.tp)))?;
        let message = format!("{} ({cause})", data_loss_message(&self.tp, self.next_offset, w));
        if self.fail_on_data_loss {
            return Err(self.error(format!("{message}. {DATA_LOSS_FIX}")));
        }
        let resume = if self.next_offset < w.low { w.low } else { w.high };
        tracing::warn!(source = %self.shared.description, "{message}; fail_on_data_loss is false, so reading continues at {resume}");
        self.data_loss.fetch_add(1, Ordering::Relaxed);
        // librdkafka refuses to seek a partition stopped by auto.offset.reset=error: assign it
        // again at the new offset, through a fresh queue.
        let consumer = &self.shared.consumer;
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.tp.topic, self.tp.partition);
        let restart = consumer.incremental_unassign(&list).and_then(|_| {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&self.tp.topic, self.tp.partition, Offset::Offset(resume))?;
            Ok(list)
        });
        let list = restart
            .map_err(|e| self.error(format!("partition {}: cannot continue at offset {resume}: {e}", self.tp)))?;
        self.queue = consumer
            .split_partition_queue(&self.tp.topic, self.tp.partition)
            .ok_or_else(|| self.error(format!("cannot open a queue for partition {}", self.tp)))?;
        consumer
            .incremental_assign(&list)
            .map_err(|e| self.error(format!("partition {}: cannot continue at offset {resume}: {e}", self.tp)))?;
        self.next_offset = resume;
        Ok(())
    }

    /// Whether a bounded partition has nothing left to read although offsets before its end were
    /// never delivered (transaction markers and compacted records occupy offsets).
    fn ended_by_position(&self) -> bool {
        let Some(end) = self.end_offset else { return false };
        if self.shared.cached_watermarks(&self.topic_c, self.tp.partition).is_none_or(|(_, high)| high < end) {
            return false;
        }
        let Ok(positions) = self.shared.consumer.position() else { return false };
        matches!(
            positions.find_partition(&self.tp.topic, self.tp.partition).map(|e| e.offset()),
            Some(Offset::Offset(position)) if position >= end
        )
    }
}

impl PartitionReader for KafkaPartitionReader {
    type Record = KafkaRecord;

    fn read(&mut self, out: &mut Vec<KafkaRecord>, max: usize) -> Result<ReadStatus, QueryError> {
        self.shared.poll_main();
        if self.ended() {
            return Ok(ReadStatus::Finished);
        }
        let mut limit = max.min(self.per_read_cap);
        if let Some(end) = self.end_offset {
            limit = limit.min((end - self.next_offset).max(0) as usize);
        }
        let before = out.len();
        if let Some(stray) = self.shared.stray.lock().unwrap().remove(&(self.tp.topic.clone(), self.tp.partition)) {
            for record in stray {
                if record.offset >= self.next_offset && self.end_offset.is_none_or(|end| record.offset < end) {
                    self.next_offset = record.offset + 1;
                    out.push(record);
                }
            }
        }
        while out.len() - before < limit {
            match self.queue.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    let offset = message.offset();
                    if offset < self.next_offset {
                        continue;
                    }
                    if self.end_offset.is_some_and(|end| offset >= end) {
                        self.next_offset = self.end_offset.unwrap_or(offset);
                        break;
                    }
                    out.push(KafkaRecord::from_message(&message));
                    self.next_offset = offset + 1;
                }
                Some(Err(error)) => match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::OffsetOutOfRange) | Some(RDKafkaErrorCode::AutoOffsetReset) => {
                        self.on_lost_offset(&error)?
                    }
                    _ => {
                        self.shared.note_error(format!("partition {}: {error}", self.tp));
                        break;
                    }
                },
            }
        }
        let read = out.len() - before;
        if read > 0 {
            self.shared.note_progress();
        }
        if self.ended() || (read == 0 && self.ended_by_position()) {
            return Ok(ReadStatus::Finished);
        }
        if read > 0 {
            return Ok(ReadStatus::Ready);
        }
        self.shared.check().map_err(|message| self.error(message))?;
        Ok(ReadStatus::Wait(Duration::from_millis(5)))
    }

    fn position(&self) -> serde_json::Value {
        offsets_json([(&self.tp, self.next_offset)])
    }

    fn latest(&self) -> Option<serde_json::Value> {
        let (_, high) = self.shared.cached_watermarks(&self.topic_c, self.tp.partition)?;
        Some(offsets_json([(&self.tp, high.max(self.next_offset))]))
    }
}
