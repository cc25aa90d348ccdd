//! A schema registry speaking Confluent Schema Registry's REST API for AVRO schemas, so that clients Weir did not
//! write (serializers, `kafka-avro-console-producer`, ...) get Confluent's answers from `weir registry serve`.
//!
//! - [`store`]: subjects, versions and global ids ([`Registry`]), kept by a [`RegistryStorage`] (a JSON file
//!   replaced atomically, [`JsonFileStorage`]; a Kafka `_schemas` topic can be added behind the same trait);
//! - [`compatibility`]: `BACKWARD`, `FORWARD`, `FULL`, their `_TRANSITIVE` forms and `NONE`, checked with
//!   apache-avro's schema resolution rules;
//! - [`server`]: the HTTP routes;
//! - [`error`]: typed errors with Confluent's status and `error_code`.

pub mod compatibility;
pub mod error;
pub mod server;
pub mod store;

pub use compatibility::{CompatibilityLevel, Mode};
pub use error::RegistryError;
pub use server::RegistryServer;
pub use store::{JsonFileStorage, MemoryStorage, Registry, RegistryStorage};
