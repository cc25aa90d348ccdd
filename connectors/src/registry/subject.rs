//! Subject name strategies: which registry subject a topic's key or value schema lives under.
//!
//! They are Confluent's (`io.confluent.kafka.serializers.subject.*Strategy`):
//!
//! | strategy | subject of a value | subject of a key |
//! |---|---|---|
//! | [`SubjectNameStrategy::TopicName`] (default) | `<topic>-value` | `<topic>-key` |
//! | [`SubjectNameStrategy::RecordName`] | `<record full name>` | `<record full name>` |
//! | [`SubjectNameStrategy::TopicRecordName`] | `<topic>-<record full name>` | `<topic>-<record full name>` |

use apache_avro::Schema;

/// Whether a schema describes a record's key or its value (only [`SubjectNameStrategy::TopicName`] tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaRole {
    /// The Kafka record key.
    Key,
    /// The Kafka record value.
    Value,
}

/// How a subject name is derived from a topic and a schema (Confluent's `key.subject.name.strategy` /
/// `value.subject.name.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SubjectNameStrategy {
    /// `<topic>-key` / `<topic>-value`: one schema lineage per topic (Confluent's default).
    #[default]
    TopicName,
    /// The record's full name (`namespace.Name`): one lineage per record type, shared by every topic.
    RecordName,
    /// `<topic>-<full name>`: several record types per topic, each with its own lineage.
    TopicRecordName,
}

/// A strategy that needs a record name was given a schema that is not a named type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {strategy:?} subject name strategy needs a named schema (record, enum or fixed), got {kind}")]
pub struct UnnamedSchemaError {
    /// The strategy that was asked.
    pub strategy: SubjectNameStrategy,
    /// What the schema is instead (e.g. `"string"`).
    pub kind: String,
}

impl SubjectNameStrategy {
    /// The subject for `schema` written to `topic` as its key or value.
    ///
    /// ```
    /// use weir_connectors::registry::subject::{SchemaRole, SubjectNameStrategy};
    /// let schema = apache_avro::Schema::parse_str(
    ///     r#"{"type":"record","name":"User","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#,
    /// ).unwrap();
    /// let subject = |s: SubjectNameStrategy, role| s.subject("users", role, &schema).unwrap();
    /// assert_eq!(subject(SubjectNameStrategy::TopicName, SchemaRole::Value), "users-value");
    /// assert_eq!(subject(SubjectNameStrategy::TopicName, SchemaRole::Key), "users-key");
    /// assert_eq!(subject(SubjectNameStrategy::RecordName, SchemaRole::Value), "shop.User");
    /// assert_eq!(subject(SubjectNameStrategy::TopicRecordName, SchemaRole::Value), "users-shop.User");
    /// ```
    pub fn subject(self, topic: &str, role: SchemaRole, schema: &Schema) -> Result<String, UnnamedSchemaError> {
        match self {
            SubjectNameStrategy::TopicName => Ok(match role {
                SchemaRole::Key => format!("{topic}-key"),
                SchemaRole::Value => format!("{topic}-value"),
            }),
            SubjectNameStrategy::RecordName => self.full_name(schema),
            SubjectNameStrategy::TopicRecordName => Ok(format!("{topic}-{}", self.full_name(schema)?)),
        }
    }

    fn full_name(self, schema: &Schema) -> Result<String, UnnamedSchemaError> {
        match schema.name() {
            Some(name) => Ok(name.fullname(None)),
            None => Err(UnnamedSchemaError {
                strategy: self,
                kind: serde_json::to_string(schema).unwrap_or_else(|_| format!("{schema:?}")),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_schema_is_refused_by_record_strategies() {
        let schema = Schema::parse_str(r#""string""#).unwrap();
        assert_eq!(SubjectNameStrategy::TopicName.subject("t", SchemaRole::Key, &schema).unwrap(), "t-key");
        let error = SubjectNameStrategy::RecordName.subject("t", SchemaRole::Value, &schema).unwrap_err();
        assert!(error.to_string().contains("needs a named schema"), "{error}");
        assert!(SubjectNameStrategy::TopicRecordName.subject("t", SchemaRole::Value, &schema).is_err());
    }

    #[test]
    fn record_without_namespace_uses_its_name() {
        let schema = Schema::parse_str(r#"{"type":"record","name":"Ping","fields":[]}"#).unwrap();
        assert_eq!(SubjectNameStrategy::RecordName.subject("t", SchemaRole::Value, &schema).unwrap(), "Ping");
        assert_eq!(SubjectNameStrategy::TopicRecordName.subject("t", SchemaRole::Key, &schema).unwrap(), "t-Ping");
    }
}
