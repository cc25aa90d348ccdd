//! Keeps the registry in a compacted Kafka topic (`_schemas` by default) in Confluent Schema Registry's own
//! record layout, so the topic can be read (and written) by tools that know Confluent's:
//!
//! | record | key | value |
//! |---|---|---|
//! | a version | `{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}` | `{"subject":"s","version":1,"id":3,"schema":"...","deleted":false}` (tombstone: permanently deleted) |
//! | a compatibility level | `{"keytype":"CONFIG","subject":"s","magic":0}` (`"subject":null` = global) | `{"compatibilityLevel":"FULL"}` (tombstone: removed) |
//! | a mode | `{"keytype":"MODE","subject":"s","magic":0}` (`"subject":null` = global) | `{"mode":"READONLY"}` (tombstone: removed) |
//!
//! On start the topic is read from the beginning to its end and replayed (later records win, tombstones remove);
//! Confluent's `DELETE_SUBJECT` records (soft-delete every version up to `version`) are understood, `NOOP` and
//! unknown key types are skipped. Each change is written as the records that differ from the last saved state,
//! with an idempotent `acks=all` producer, and is answered only once the broker acknowledged them.
//!
//! One registry instance writes a topic at a time (no leader election). A schema whose every version was
//! permanently deleted stays readable by id after a restart as long as the topic still holds one of its
//! earlier records (compaction removes them eventually; then its id is gone, as in Confluent's registry).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use super::compatibility::{CompatibilityLevel, Mode};
use super::error::RegistryError;
use super::store::{RegistryState, RegistryStorage, VersionRecord};
use crate::kafka::admin::block_on;
use crate::kafka::KafkaOptions;

/// The topic Confluent's registry uses by default.
pub const DEFAULT_TOPIC: &str = "_schemas";

/// Collects delivery failures of the producer.
#[derive(Default)]
struct DeliveryErrors(Mutex<Vec<String>>);

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.0.lock().expect("delivery errors poisoned").push(error.to_string());
        }
    }
}

/// A [`RegistryStorage`] in a Kafka topic, in Confluent's layout (see the [module docs](self)).
pub struct KafkaStorage {
    options: KafkaOptions,
    topic: String,
    timeout: Duration,
    producer: BaseProducer<DeliveryErrors>,
    saved: Mutex<RegistryState>,
}

impl std::fmt::Debug for KafkaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStorage").field("options", &self.options).field("topic", &self.topic).finish()
    }
}

fn store_error(what: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store(what.to_string())
}

impl KafkaStorage {
    /// Storage in `topic` of the cluster of `options`; creates the topic (one partition, compacted) when it
    /// does not exist. Every broker operation waits at most `timeout`.
    pub fn connect(options: &KafkaOptions, topic: &str, timeout: Duration) -> Result<Self, RegistryError> {
        let timeout_ms = timeout.as_millis().to_string();
        let producer = options
            .client_config(&[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("linger.ms", "0"),
                ("message.timeout.ms", &timeout_ms),
            ])
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| store_error(format!("cannot create the Kafka producer for topic {topic}: {e}")))?;
        let storage = KafkaStorage {
            options: options.clone(),
            topic: topic.to_string(),
            timeout,
            producer,
            saved: Mutex::new(RegistryState::default()),
        };
        storage.ensure_topic()?;
        Ok(storage)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn ensure_topic(&self) -> Result<(), RegistryError> {
        let admin: AdminClient<DefaultClientContext> =
            self.options.client_config(&[]).create().map_err(|e| store_error(format!("Kafka admin client: {e}")))?;
        let new_topic = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let results = block_on(admin.create_topics([&new_topic], &options), self.timeout)
            .ok_or_else(|| {
                store_error(format!(
                    "cannot create topic {}: no answer from the Kafka brokers {} within {:?}",
                    self.topic, self.options.bootstrap_servers, self.timeout
                ))
            })?
            .map_err(|e| store_error(format!("cannot create topic {}: {e}", self.topic)))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(store_error(format!("cannot create topic {}: {code}", self.topic))),
            }
        }
        Ok(())
    }

    fn read_all(&self) -> Result<Vec<(Value, Option<Value>)>, RegistryError> {
        let consumer: BaseConsumer = self
            .options
            .client_config(&[("group.id", "weir-registry-loader"), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| store_error(format!("cannot create the Kafka consumer for topic {}: {e}", self.topic)))?;
        let deadline = Instant::now() + self.timeout;
        // The topic was just created: its metadata may take a moment to appear.
        let (low, high) = loop {
            match consumer.fetch_watermarks(&self.topic, 0, self.timeout) {
                Ok(marks) => break marks,
                Err(e) if Instant::now() >= deadline => {
                    return Err(store_error(format!("cannot read the end offset of topic {}: {e}", self.topic)))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let mut records = Vec::new();
        if high <= low {
            return Ok(records);
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, 0, Offset::Beginning)
            .map_err(|e| store_error(format!("cannot assign topic {}: {e}", self.topic)))?;
        consumer.assign(&assignment).map_err(|e| store_error(format!("cannot assign topic {}: {e}", self.topic)))?;
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(30));
        let mut next = low;
        while next < high {
            if Instant::now() >= deadline {
                return Err(store_error(format!("reading topic {} timed out at offset {next} of {high}", self.topic)));
            }
            let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
            let message = message.map_err(|e| store_error(format!("cannot read topic {}: {e}", self.topic)))?;
            next = message.offset() + 1;
            let key = match message.key().map(serde_json::from_slice::<Value>) {
                Some(Ok(key)) => key,
                _ => {
                    tracing::warn!(topic = %self.topic, offset = message.offset(), "skipping a record whose key is not JSON");
                    continue;
                }
            };
            let value = match message.payload() {
                None => None,
                Some(bytes) => Some(serde_json::from_slice::<Value>(bytes).map_err(|e| {
                    store_error(format!("topic {} offset {}: the value is not JSON: {e}", self.topic, message.offset()))
                })?),
            };
            records.push((key, value));
        }
        Ok(records)
    }

    fn produce(&self, records: &[(Value, Option<Value>)]) -> Result<(), RegistryError> {
        self.producer.context().0.lock().expect("delivery errors poisoned").clear();
        for (key, value) in records {
            let key = key.to_string();
            let value = value.as_ref().map(Value::to_string);
            let mut record = BaseRecord::to(&self.topic).key(&key).partition(0);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            self.producer
                .send(record)
                .map_err(|(e, _)| store_error(format!("cannot write to topic {}: {e}", self.topic)))?;
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| store_error(format!("cannot write to topic {}: {e}", self.topic)))?;
        let errors = self.producer.context().0.lock().expect("delivery errors poisoned").clone();
        match errors.first() {
            None => Ok(()),
            Some(first) => Err(store_error(format!("cannot write to topic {}: {first}", self.topic))),
        }
    }
}

fn schema_key(subject: &str, version: u32) -> Value {
    json!({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})
}

fn config_key(subject: Option<&str>) -> Value {
    json!({"keytype": "CONFIG", "subject": subject, "magic": 0})
}

fn mode_key(subject: Option<&str>) -> Value {
    json!({"keytype": "MODE", "subject": subject, "magic": 0})
}

/// The records that turn `old` into `new`.
fn diff(old: &RegistryState, new: &RegistryState) -> Vec<(Value, Option<Value>)> {
    let mut records = Vec::new();
    let versions = |state: &RegistryState| -> BTreeMap<(String, u32), VersionRecord> {
        state
            .subjects
            .iter()
            .flat_map(|(subject, versions)| versions.iter().map(move |v| ((subject.clone(), v.version), v.clone())))
            .collect()
    };
    let (old_versions, new_versions) = (versions(old), versions(new));
    for ((subject, version), record) in &new_versions {
        if old_versions.get(&(subject.clone(), *version)) != Some(record) {
            let schema = new.schemas.get(&record.id).cloned().unwrap_or_default();
            records.push((
                schema_key(subject, *version),
                Some(json!({"subject": subject, "version": version, "id": record.id, "schema": schema,
                            "deleted": record.deleted})),
            ));
        }
    }
    for (subject, version) in old_versions.keys() {
        if !new_versions.contains_key(&(subject.clone(), *version)) {
            records.push((schema_key(subject, *version), None));
        }
    }
    if old.compatibility != new.compatibility {
        records.push((config_key(None), Some(json!({"compatibilityLevel": new.compatibility}))));
    }
    if old.mode != new.mode {
        records.push((mode_key(None), Some(json!({"mode": new.mode}))));
    }
    for (subject, level) in &new.subject_compatibility {
        if old.subject_compatibility.get(subject) != Some(level) {
            records.push((config_key(Some(subject)), Some(json!({"compatibilityLevel": level}))));
        }
    }
    for subject in old.subject_compatibility.keys().filter(|s| !new.subject_compatibility.contains_key(*s)) {
        records.push((config_key(Some(subject)), None));
    }
    for (subject, mode) in &new.subject_modes {
        if old.subject_modes.get(subject) != Some(mode) {
            records.push((mode_key(Some(subject)), Some(json!({"mode": mode}))));
        }
    }
    for subject in old.subject_modes.keys().filter(|s| !new.subject_modes.contains_key(*s)) {
        records.push((mode_key(Some(subject)), None));
    }
    records
}

/// Replays the topic's records into a state.
fn replay(records: &[(Value, Option<Value>)]) -> Result<RegistryState, RegistryError> {
    let mut state = RegistryState::default();
    let mut versions: BTreeMap<(String, u32), VersionRecord> = BTreeMap::new();
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
    let number = |v: &Value, field: &str| v.get(field).and_then(Value::as_u64).map(|n| n as u32);
    let bad = |key: &Value, why: &str| store_error(format!("invalid registry record {key}: {why}"));
    for (key, value) in records {
        let subject = text(key, "subject");
        match key.get("keytype").and_then(Value::as_str) {
            Some("SCHEMA") => {
                let subject = subject.ok_or_else(|| bad(key, "no subject"))?;
                let version = number(key, "version").ok_or_else(|| bad(key, "no version"))?;
                match value {
                    None => {
                        versions.remove(&(subject, version));
                    }
                    Some(value) => {
                        let id = number(value, "id").ok_or_else(|| bad(key, "no id in the value"))?;
                        let schema = text(value, "schema").ok_or_else(|| bad(key, "no schema in the value"))?;
                        let deleted = value.get("deleted").and_then(Value::as_bool).unwrap_or(false);
                        state.schemas.insert(id, schema);
                        versions.insert((subject, version), VersionRecord { version, id, deleted });
                    }
                }
            }
            Some("CONFIG") => {
                let level = match value {
                    None => None,
                    Some(value) => Some(
                        serde_json::from_value::<CompatibilityLevel>(value["compatibilityLevel"].clone())
                            .map_err(|e| bad(key, &e.to_string()))?,
                    ),
                };
                match (subject, level) {
                    (None, level) => state.compatibility = level.unwrap_or_default(),
                    (Some(subject), Some(level)) => {
                        state.subject_compatibility.insert(subject, level);
                    }
                    (Some(subject), None) => {
                        state.subject_compatibility.remove(&subject);
                    }
                }
            }
            Some("MODE") => {
                let mode = match value {
                    None => None,
                    Some(value) => Some(
                        serde_json::from_value::<Mode>(value["mode"].clone()).map_err(|e| bad(key, &e.to_string()))?,
                    ),
                };
                match (subject, mode) {
                    (None, mode) => state.mode = mode.unwrap_or_default(),
                    (Some(subject), Some(mode)) => {
                        state.subject_modes.insert(subject, mode);
                    }
                    (Some(subject), None) => {
                        state.subject_modes.remove(&subject);
                    }
                }
            }
            Some("DELETE_SUBJECT") => {
                // Confluent: soft-deletes every version of the subject up to `version`.
                if let (Some(subject), Some(value)) = (subject, value) {
                    let up_to = number(value, "version").unwrap_or(u32::MAX);
                    for ((s, v), record) in versions.iter_mut() {
                        if *s == subject && *v <= up_to {
                            record.deleted = true;
                        }
                    }
                }
            }
            other => tracing::debug!(keytype = ?other, "skipping a registry record"),
        }
    }
    for ((subject, _), record) in versions {
        state.subjects.entry(subject).or_default().push(record);
    }
    Ok(state)
}

impl RegistryStorage for KafkaStorage {
    fn load(&self) -> Result<Option<RegistryState>, RegistryError> {
        let records = self.read_all()?;
        let state = replay(&records)?;
        tracing::info!(topic = %self.topic, records = records.len(), subjects = state.subjects.len(), "registry loaded from Kafka");
        *self.saved.lock().expect("saved state poisoned") = state.clone();
        Ok((!records.is_empty()).then_some(state))
    }

    fn save(&mut self, state: &RegistryState) -> Result<(), RegistryError> {
        let records = diff(&self.saved.lock().expect("saved state poisoned"), state);
        self.produce(&records)?;
        *self.saved.lock().expect("saved state poisoned") = state.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> RegistryState {
        let mut state = RegistryState::default();
        state.schemas.insert(1, r#""string""#.into());
        state.schemas.insert(2, r#""long""#.into());
        state.subjects.insert(
            "a-value".into(),
            vec![
                VersionRecord { version: 1, id: 1, deleted: false },
                VersionRecord { version: 2, id: 2, deleted: true },
            ],
        );
        state.subjects.insert("b-value".into(), vec![VersionRecord { version: 1, id: 2, deleted: false }]);
        state.compatibility = CompatibilityLevel::Full;
        state.subject_compatibility.insert("a-value".into(), CompatibilityLevel::None);
        state.mode = Mode::Readonly;
        state.subject_modes.insert("b-value".into(), Mode::Import);
        state
    }

    #[test]
    fn diff_then_replay_gives_the_state_back() {
        let full = state();
        let records = diff(&RegistryState::default(), &full);
        assert_eq!(replay(&records).unwrap(), full);
        // Removing things writes tombstones; replaying everything gives the smaller state.
        let mut smaller = full.clone();
        smaller.subjects.remove("b-value");
        smaller.schemas.remove(&2);
        smaller.subjects.get_mut("a-value").unwrap().pop();
        smaller.subject_compatibility.clear();
        smaller.subject_modes.clear();
        smaller.compatibility = CompatibilityLevel::Backward;
        let more = diff(&full, &smaller);
        assert!(more.iter().filter(|(_, v)| v.is_none()).count() >= 4, "{more:?}");
        let all: Vec<_> = records.into_iter().chain(more).collect();
        // The topic still holds schema 2 (in the tombstoned version's earlier record): its id stays readable,
        // and is never given to another schema.
        let mut expected = smaller.clone();
        expected.schemas.insert(2, r#""long""#.into());
        assert_eq!(replay(&all).unwrap(), expected);
        assert!(diff(&smaller, &smaller).is_empty());
    }

    #[test]
    fn confluent_key_and_value_layout() {
        let records = diff(&RegistryState::default(), &state());
        assert_eq!(records[0].0.to_string(), r#"{"keytype":"SCHEMA","subject":"a-value","version":1,"magic":1}"#);
        assert_eq!(
            records[0].1.as_ref().unwrap().to_string(),
            r#"{"subject":"a-value","version":1,"id":1,"schema":"\"string\"","deleted":false}"#
        );
        let global = records.iter().find(|(k, _)| k["keytype"] == "CONFIG" && k["subject"].is_null()).unwrap();
        assert_eq!(global.0.to_string(), r#"{"keytype":"CONFIG","subject":null,"magic":0}"#);
        assert_eq!(global.1.as_ref().unwrap().to_string(), r#"{"compatibilityLevel":"FULL"}"#);
        let mode = records.iter().find(|(k, _)| k["keytype"] == "MODE" && k["subject"] == "b-value").unwrap();
        assert_eq!(mode.1.as_ref().unwrap().to_string(), r#"{"mode":"IMPORT"}"#);
    }

    #[test]
    fn confluent_delete_subject_records_soft_delete() {
        let records = vec![
            (schema_key("s", 1), Some(json!({"subject":"s","version":1,"id":1,"schema":"\"int\"","deleted":false}))),
            (schema_key("s", 2), Some(json!({"subject":"s","version":2,"id":2,"schema":"\"long\"","deleted":false}))),
            (json!({"keytype":"DELETE_SUBJECT","subject":"s","magic":0}), Some(json!({"subject":"s","version":2}))),
            (json!({"keytype":"NOOP","magic":0}), None),
        ];
        let state = replay(&records).unwrap();
        assert!(state.subjects["s"].iter().all(|v| v.deleted));
    }
}
