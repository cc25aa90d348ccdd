//! Kafka: a partitioned source with per-partition watermarks and a sink with at-least-once,
//! idempotent and transactional (exactly-once) delivery, on librdkafka (`rdkafka`).
//!
//! [`KafkaOptions`] is what both share: the bootstrap servers and any librdkafka setting passed
//! through unchanged (Spark's `kafka.*` options).

pub mod admin;
pub mod dead_letter;
pub mod options;
pub mod record;
pub mod sink;
pub mod source;
pub mod transaction;

pub use admin::{KafkaAdmin, KafkaAdminError, TopicPartition, Watermarks};
pub use options::KafkaOptions;
pub use record::{KafkaHeader, KafkaRecord, TimestampType};
pub use sink::{Delivery, KafkaSink, ProducerRecord};
pub use source::{EndingOffsets, KafkaPartitionReader, KafkaSource, KafkaSourceBuilder, StartingOffsets, Subscription};
