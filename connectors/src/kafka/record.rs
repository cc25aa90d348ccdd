//! One Kafka record as the source delivers it: owned, serializable and ordered, so it can flow
//! through timely (exchanges, windows) like any other record.

use serde::{Deserialize, Serialize};

use weir_runtime::time::EventTime;

/// What a record's Kafka timestamp means (Kafka's `timestampType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimestampType {
    /// Set by the producer (`CreateTime`, Kafka's default).
    CreateTime,
    /// Set by the broker when it appended the record (`LogAppendTime`).
    LogAppendTime,
    /// The record has no timestamp.
    NotAvailable,
}

/// One header of a record: a name and an optional value (Kafka allows null header values).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KafkaHeader {
    /// The header's name.
    pub key: String,
    /// The header's value; `None` for a null value.
    pub value: Option<Vec<u8>>,
}

/// A record read from Kafka, with everything Spark's Kafka source exposes: key, value, topic,
/// partition, offset, timestamp, timestamp type and headers.
///
/// Key and value are raw bytes (`None` for Kafka's null, e.g. a tombstone); decode them with a
/// codec stage. The derived order (topic, partition, offset first) is total, so records can be
/// sorted deterministically.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// The topic it was read from.
    pub topic: String,
    /// The partition within the topic.
    pub partition: i32,
    /// Its offset within the partition.
    pub offset: i64,
    /// The record's key, if any.
    pub key: Option<Vec<u8>>,
    /// The record's value; `None` for a null value (tombstone).
    pub value: Option<Vec<u8>>,
    /// The Kafka timestamp in milliseconds since the Unix epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// What the timestamp means.
    pub timestamp_type: TimestampType,
    /// The record's headers, in the order they were written.
    pub headers: Vec<KafkaHeader>,
}

impl KafkaRecord {
    /// The Kafka timestamp as an event time (`None` if the record has none or it is negative).
    /// Pass it as the `time_of` of [`weir_runtime::source::event_source`] to use Kafka's time:
    /// `KafkaSource::events(scope, ctx, KafkaRecord::event_time, options)`.
    pub fn event_time(&self) -> Option<EventTime> {
        self.timestamp.filter(|t| *t >= 0).map(|t| EventTime::from_millis(t as u64))
    }

    /// The value of the first header called `name` (`Some(None)` for a header with a null value).
    pub fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers.iter().find(|h| h.key == name).map(|h| h.value.as_deref())
    }

    /// The value as UTF-8 text, if it is present and valid UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        self.value.as_deref().and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key as UTF-8 text, if it is present and valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Copies a message borrowed from librdkafka into an owned record.
    pub fn from_message<M: rdkafka::Message>(message: &M) -> Self {
        use rdkafka::message::Headers;
        let (timestamp, timestamp_type) = match message.timestamp() {
            rdkafka::Timestamp::CreateTime(t) => (Some(t), TimestampType::CreateTime),
            rdkafka::Timestamp::LogAppendTime(t) => (Some(t), TimestampType::LogAppendTime),
            rdkafka::Timestamp::NotAvailable => (None, TimestampType::NotAvailable),
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| KafkaHeader { key: h.key.to_string(), value: h.value.map(<[u8]>::to_vec) })
                    .collect()
            })
            .unwrap_or_default();
        KafkaRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp,
            timestamp_type,
            headers,
        }
    }
}
