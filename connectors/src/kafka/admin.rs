//! Blocking admin helpers on librdkafka: create topics, list the partitions of topics or of a
//! topic pattern, read low/high watermarks, find offsets for timestamps, delete records.
//!
//! Used by the Kafka source at build time (to resolve its fixed partition list and its starting
//! and ending offsets), by tests, and by tools that need a topic to exist. Every call takes a
//! timeout and returns a [`KafkaAdminError`] that names the operation and the broker's message.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::options::KafkaOptions;

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition number within the topic.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// An admin operation that failed: what was attempted, and the broker's or client's message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("Kafka {operation} failed: {message}")]
pub struct KafkaAdminError {
    /// What was attempted, e.g. `create topic "orders"`.
    pub operation: String,
    /// Why it failed (librdkafka's or the broker's message, and what to check).
    pub message: String,
    /// The Kafka error code, when the broker returned one.
    pub code: Option<RDKafkaErrorCode>,
}

impl KafkaAdminError {
    fn new(operation: impl Into<String>, message: impl Into<String>) -> Self {
        KafkaAdminError { operation: operation.into(), message: message.into(), code: None }
    }

    fn from_kafka(operation: impl Into<String>, error: rdkafka::error::KafkaError) -> Self {
        KafkaAdminError { operation: operation.into(), message: error.to_string(), code: error.rdkafka_error_code() }
    }
}

/// The earliest and the next offset of a partition (`low..high` holds the readable records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// The earliest offset still available (the log start).
    pub low: i64,
    /// The offset the next record will get (the log end).
    pub high: i64,
}

/// A connection for admin operations: an admin client and a metadata consumer (no group, no
/// subscription) on the same settings.
pub struct KafkaAdmin {
    options: KafkaOptions,
    admin: AdminClient<DefaultClientContext>,
    consumer: BaseConsumer,
    timeout: Duration,
}

impl fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaAdmin").field("options", &self.options).field("timeout", &self.timeout).finish()
    }
}

impl KafkaAdmin {
    /// Connects (lazily, as librdkafka does) to the cluster of `options`; each operation waits at
    /// most `timeout` for the brokers. Fails at once on an invalid librdkafka setting.
    pub fn connect(options: &KafkaOptions, timeout: Duration) -> Result<Self, KafkaAdminError> {
        let mut config = options.client_config(&[]);
        for key in super::source::WEIR_SETTINGS {
            config.remove(key);
        }
        let admin = config
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|e| KafkaAdminError::from_kafka("client configuration", e))?;
        let consumer = config
            .clone()
            .set("enable.auto.commit", "false")
            .create::<BaseConsumer>()
            .map_err(|e| KafkaAdminError::from_kafka("client configuration", e))?;
        Ok(KafkaAdmin { options: options.clone(), admin, consumer, timeout })
    }

    /// The settings this connection was made with.
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1 unless `replication`
    /// says otherwise) and waits until the cluster's metadata shows all of its partitions.
    /// A topic that already exists is an error with code `TopicAlreadyExists`.
    pub fn create_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<(), KafkaAdminError> {
        let operation = format!("create topic {topic:?} with {partitions} partitions");
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        let options = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let results = block_on(self.admin.create_topics([&new_topic], &options), self.timeout)
            .ok_or_else(|| KafkaAdminError::new(&operation, self.unreachable()))?
            .map_err(|e| KafkaAdminError::from_kafka(&operation, e))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(KafkaAdminError { operation, message: code.to_string(), code: Some(code) });
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.partitions_of(&[topic.to_string()]) {
                Ok(found) if found.len() == partitions as usize => return Ok(()),
                _ if Instant::now() >= deadline => {
                    return Err(KafkaAdminError::new(
                        operation,
                        format!("the topic was created but its {partitions} partitions did not appear in the metadata within {:?}", self.timeout),
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Every partition of `topics`, sorted by topic and partition. A topic that does not exist
    /// (or has no partitions yet) is an error naming it.
    pub fn partitions_of(&self, topics: &[String]) -> Result<Vec<TopicPartition>, KafkaAdminError> {
        let all = self.all_partitions()?;
        let mut found = Vec::new();
        for topic in topics {
            match all.get(topic) {
                Some(partitions) if !partitions.is_empty() => {
                    found.extend(partitions.iter().map(|p| TopicPartition::new(topic.clone(), *p)))
                }
                _ => {
                    return Err(KafkaAdminError {
                        operation: format!("look up topic {topic:?}"),
                        message: format!(
                        "topic {topic:?} does not exist on {} (topics there: {}). Create it first, or check the name",
                        self.options.bootstrap_servers,
                        list_names(all.keys())
                    ),
                        code: Some(RDKafkaErrorCode::UnknownTopicOrPartition),
                    })
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Every partition of every topic whose whole name matches `pattern` (a regular expression,
    /// like Spark's `subscribePattern`), sorted. Internal topics starting with `__` are skipped.
    pub fn partitions_matching(&self, pattern: &regex::Regex) -> Result<Vec<TopicPartition>, KafkaAdminError> {
        let mut found = Vec::new();
        for (topic, partitions) in self.all_partitions()? {
            let whole = pattern.find(&topic).is_some_and(|m| m.start() == 0 && m.end() == topic.len());
            if whole && !topic.starts_with("__") {
                found.extend(partitions.into_iter().map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Topic name → its partition numbers, for every topic in the cluster's metadata.
    pub fn all_partitions(&self) -> Result<BTreeMap<String, Vec<i32>>, KafkaAdminError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, self.timeout)
            .map_err(|e| KafkaAdminError::new("fetch metadata", format!("{e}. {}", self.unreachable())))?;
        let mut topics = BTreeMap::new();
        for topic in metadata.topics() {
            if topic.error().is_some() {
                continue;
            }
            let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            topics.insert(topic.name().to_string(), partitions);
        }
        Ok(topics)
    }

    /// The low and high watermark of a partition, asked from its leader (ListOffsets).
    pub fn watermarks(&self, partition: &TopicPartition) -> Result<Watermarks, KafkaAdminError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&partition.topic, partition.partition, self.timeout)
            .map_err(|e| KafkaAdminError::from_kafka(format!("read the offsets of {partition}"), e))?;
        Ok(Watermarks { low, high })
    }

    /// For each partition, the earliest offset whose record timestamp is at or after the given
    /// time (ms), or `None` when no record is that recent (Kafka's `offsetsForTimes`).
    pub fn offsets_for_times(
        &self,
        times: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, KafkaAdminError> {
        let operation = "find offsets for timestamps";
        let mut list = TopicPartitionList::new();
        for (tp, time) in times {
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*time))
                .map_err(|e| KafkaAdminError::from_kafka(operation, e))?;
        }
        let found = self
            .consumer
            .offsets_for_times(list, self.timeout)
            .map_err(|e| KafkaAdminError::from_kafka(operation, e))?;
        let mut offsets = BTreeMap::new();
        for element in found.elements() {
            if let Err(e) = element.error() {
                return Err(KafkaAdminError::from_kafka(
                    format!("{operation} for {}-{}", element.topic(), element.partition()),
                    e,
                ));
            }
            let offset = match element.offset() {
                Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            };
            offsets.insert(TopicPartition::new(element.topic(), element.partition()), offset);
        }
        Ok(offsets)
    }

    /// Deletes the records of each partition below the given offset (Kafka's `DeleteRecords`),
    /// moving its low watermark there.
    pub fn delete_records(&self, before: &BTreeMap<TopicPartition, i64>) -> Result<(), KafkaAdminError> {
        let operation = "delete records";
        let mut list = TopicPartitionList::new();
        for (tp, offset) in before {
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                .map_err(|e| KafkaAdminError::from_kafka(operation, e))?;
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let result = block_on(self.admin.delete_records(&list, &options), self.timeout)
            .ok_or_else(|| KafkaAdminError::new(operation, self.unreachable()))?
            .map_err(|e| KafkaAdminError::from_kafka(operation, e))?;
        for element in result.elements() {
            element.error().map_err(|e| {
                KafkaAdminError::from_kafka(format!("{operation} of {}-{}", element.topic(), element.partition()), e)
            })?;
        }
        Ok(())
    }

    fn unreachable(&self) -> String {
        format!(
            "no answer from {} within {:?}: check that the brokers run and that bootstrap.servers is right",
            self.options.bootstrap_servers, self.timeout
        )
    }
}

fn list_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).filter(|n| !n.starts_with("__")).take(20).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on this thread until it completes or `timeout` passes (then `None`): rdkafka's
/// admin calls are futures, and Weir's connectors call them from plain threads.
pub(crate) fn block_on<F: Future>(future: F, timeout: Duration) -> Option<F::Output> {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let deadline = Instant::now() + timeout + Duration::from_secs(1);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout((deadline - now).min(Duration::from_millis(100)));
    }
}
