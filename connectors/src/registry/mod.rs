//! A schema registry speaking Confluent Schema Registry's REST API for AVRO schemas, so that clients Weir did not
//! write (serializers, `kafka-avro-console-producer`, ...) get Confluent's answers from `weir registry serve`.
//!
//! - [`store`]: subjects, versions and global ids ([`Registry`]), kept by a [`RegistryStorage`] (a JSON file
//!   replaced atomically, [`JsonFileStorage`]; a Kafka `_schemas` topic can be added behind the same trait);
//! - [`compatibility`]: `BACKWARD`, `FORWARD`, `FULL`, their `_TRANSITIVE` forms and `NONE`, checked with
//!   apache-avro's schema resolution rules;
//! - [`server`]: the HTTP routes;
//! - [`error`]: typed errors with Confluent's status and `error_code`;
//! - [`client`]: a blocking REST client ([`RegistryClient`]) for any Confluent-compatible registry;
//! - [`subject`]: subject name strategies (`TopicName`, `RecordName`, `TopicRecordName`).

pub mod client;
pub mod compatibility;
pub mod error;
pub mod kafka_storage;
pub mod server;
pub mod store;
pub mod subject;

pub use client::{RegistryClient, RegistryClientConfig, RegistryClientError, TlsSettings, VersionSelector};
pub use compatibility::{CompatibilityLevel, Mode};
pub use error::RegistryError;
pub use kafka_storage::KafkaStorage;
pub use server::RegistryServer;
pub use store::{JsonFileStorage, MemoryStorage, Registry, RegistryStorage};
pub use subject::{SchemaRole, SubjectNameStrategy};
