//! Kafka: a partitioned source with per-partition watermarks and a sink with at-least-once,
//! idempotent and transactional (exactly-once) delivery, on librdkafka (`rdkafka`).
//!
//! [`KafkaOptions`] is what both share: the bootstrap servers and any librdkafka setting passed
//! through unchanged (Spark's `kafka.*` options).

pub mod options;

pub use options::KafkaOptions;
