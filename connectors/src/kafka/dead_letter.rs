//! A Kafka topic as a dead-letter target: each record that did not decode becomes one record of
//! the topic, its value the JSON envelope (raw bytes in base64, reason, topic, partition, offset),
//! its key `topic/partition` so one source partition's letters stay in order.

use std::io;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::admin::KafkaAdmin;
use super::options::KafkaOptions;
use crate::codec::dead_letter::{DeadLetter, DeadLetterTarget};
use weir_runtime::error::BuildError;

/// Writes dead letters to a Kafka topic; `write` returns once the broker acknowledged them
/// (acks=all, idempotent), so a record is never counted as handled before its letter exists.
pub struct KafkaDeadLetters {
    producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaDeadLetters({})", self.topic)
    }
}

impl KafkaDeadLetters {
    /// A target writing to `topic`, which must exist (checked now).
    pub fn new(options: &KafkaOptions, topic: &str) -> Result<Self, BuildError> {
        let what = "dead-letter topic";
        let admin = KafkaAdmin::connect(options, Duration::from_secs(10))
            .map_err(|e| BuildError::invalid(what, e.to_string(), "check the brokers"))?;
        admin
            .partitions_of(&[topic.to_string()])
            .map_err(|e| BuildError::invalid(what, format!("{topic}: {e}"), "create the dead-letter topic first"))?;
        let producer = options
            .client_config(&[("acks", "all"), ("enable.idempotence", "true"), ("linger.ms", "5")])
            .create()
            .map_err(|e| {
                BuildError::invalid(what, format!("cannot create the producer: {e}"), "check the kafka settings")
            })?;
        Ok(KafkaDeadLetters { producer, topic: topic.to_string(), timeout: Duration::from_secs(30) })
    }
}

impl DeadLetterTarget for KafkaDeadLetters {
    fn write(&self, letters: &[DeadLetter]) -> io::Result<()> {
        for letter in letters {
            let (key, value) = (letter.kafka_partition_key(), letter.kafka_value());
            let mut record = BaseRecord::to(&self.topic).key(&key).payload(&value);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        std::thread::sleep(Duration::from_millis(1));
                        record = back;
                    }
                    Err((error, _)) => {
                        return Err(io::Error::other(format!("dead letter to Kafka topic {}: {error}", self.topic)))
                    }
                }
            }
        }
        self.producer.flush(self.timeout).map_err(|error| {
            io::Error::other(format!("dead letters to Kafka topic {} not acknowledged: {error}", self.topic))
        })?;
        if self.producer.in_flight_count() > 0 {
            return Err(io::Error::other(format!("dead letters to Kafka topic {} were not delivered", self.topic)));
        }
        Ok(())
    }
}
