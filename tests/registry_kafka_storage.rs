//! `weir registry serve --kafka-brokers B --topic T`: the registry kept in a Kafka topic in Confluent's
//! `_schemas` layout survives a restart (the REAL binary, against the test broker `WEIR_KAFKA_BROKERS`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use weir_connectors::registry::{CompatibilityLevel, RegistryClient};

fn brokers() -> String {
    match std::env::var("WEIR_KAFKA_BROKERS") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "no Kafka broker: WEIR_KAFKA_BROKERS is not set. Start one with `scripts/test-env up && source \
             target/test-env/env.sh`, or run the whole suite with scripts/test.sh"
        ),
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(brokers: &str, topic: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--kafka-brokers", brokers, "--topic", topic])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Server { base: base.to_string(), child }
    }

    fn get(&self, path: &str) -> Value {
        let response = match ureq::get(&format!("{}{path}", self.base)).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("GET {path}: {e}"),
        };
        serde_json::from_str(&response.into_string().unwrap()).unwrap()
    }

    fn put(&self, path: &str, body: Value) {
        ureq::put(&format!("{}{path}", self.base)).send_string(&body.to_string()).unwrap();
    }

    /// Everything a client can see, for comparing before and after a restart.
    fn snapshot(&self) -> Value {
        let mut subjects = serde_json::Map::new();
        for subject in self.get("/subjects?deleted=true").as_array().unwrap() {
            let subject = subject.as_str().unwrap();
            let versions = self.get(&format!("/subjects/{subject}/versions?deleted=true"));
            let answers: Vec<Value> = versions
                .as_array()
                .unwrap()
                .iter()
                .map(|v| self.get(&format!("/subjects/{subject}/versions/{v}?deleted=true")))
                .collect();
            subjects.insert(
                subject.to_string(),
                json!({
                    "live": self.get(&format!("/subjects/{subject}/versions")),
                    "versions": answers,
                    "config": self.get(&format!("/config/{subject}")),
                    "mode": self.get(&format!("/mode/{subject}")),
                }),
            );
        }
        json!({
            "subjects": self.get("/subjects"),
            "all": subjects,
            "config": self.get("/config"),
            "mode": self.get("/mode"),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn user(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"User","namespace":"weir.test","fields":[{fields}]}}"#)
}

/// Every record of the topic as (key, value) JSON.
fn read_topic(brokers: &str, topic: &str) -> Vec<(Value, Option<Value>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-registry-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    let mut next = 0;
    while next < high {
        assert!(Instant::now() < deadline, "timed out reading {topic} at {next} of {high}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.unwrap();
        next = message.offset() + 1;
        let key = serde_json::from_slice(message.key().unwrap()).unwrap();
        records.push((key, message.payload().map(|p| serde_json::from_slice(p).unwrap())));
    }
    records
}

#[test]
fn a_restarted_registry_recovers_its_subjects_from_the_topic() {
    let brokers = brokers();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let topic = format!("weir-registry-{}-{nanos}", std::process::id());
    let id_name = user(r#"{"name":"id","type":"long"},{"name":"name","type":"string","default":"x"}"#);

    let first = Server::start(&brokers, &topic);
    let client = RegistryClient::from_url(&first.base).unwrap();
    let id1 = client.register("users-value", &user(r#"{"name":"id","type":"long"}"#)).unwrap();
    let id2 = client.register("users-value", &id_name).unwrap();
    assert_eq!(client.register("orders-value", &id_name).unwrap(), id2);
    let id3 = client.register("gone-value", r#""string""#).unwrap();
    client.register("perm-value", r#""long""#).unwrap();
    client.set_compatibility(CompatibilityLevel::Full).unwrap();
    client.set_subject_compatibility("orders-value", CompatibilityLevel::None).unwrap();
    first.put("/mode/orders-value", json!({"mode": "READONLY"}));
    client.delete_subject("gone-value", false).unwrap();
    client.delete_subject("perm-value", false).unwrap();
    client.delete_subject("perm-value", true).unwrap();
    let before = first.snapshot();
    assert_eq!(before["subjects"], json!(["orders-value", "users-value"]));
    assert_eq!(before["all"]["gone-value"]["versions"][0]["id"], id3);
    drop(first);

    // The topic holds Confluent's layout.
    let records = read_topic(&brokers, &topic);
    assert_eq!(records[0].0, json!({"keytype": "SCHEMA", "subject": "users-value", "version": 1, "magic": 1}));
    let value = records[0].1.as_ref().unwrap();
    assert_eq!(
        (value["subject"].clone(), value["version"].clone(), value["id"].clone()),
        (json!("users-value"), json!(1), json!(id1))
    );
    assert_eq!(value["deleted"], false);
    assert!(records.contains(&(
        json!({"keytype": "CONFIG", "subject": null, "magic": 0}),
        Some(json!({"compatibilityLevel": "FULL"}))
    )));
    assert!(records.contains(&(
        json!({"keytype": "MODE", "subject": "orders-value", "magic": 0}),
        Some(json!({"mode": "READONLY"}))
    )));
    assert!(
        records.contains(&(json!({"keytype": "SCHEMA", "subject": "perm-value", "version": 1, "magic": 1}), None)),
        "a permanent delete is a tombstone"
    );

    // A new registry on the same topic answers exactly as the first did.
    let second = Server::start(&brokers, &topic);
    let after = second.snapshot();
    assert_eq!(after, before);
    let client = RegistryClient::from_url(&second.base).unwrap();
    assert_eq!(client.schema_by_id(id2).unwrap().id, id2);
    // New ids continue after the old ones.
    let id4 = client.register("new-value", r#""int""#).unwrap();
    assert!(id4 > id3, "{id4} after {id3}");
    drop(second);

    // And a third start sees that too.
    let third = Server::start(&brokers, &topic);
    let client = RegistryClient::from_url(&third.base).unwrap();
    assert_eq!(client.latest("new-value").unwrap().id, id4);
    assert_eq!(client.subjects().unwrap(), vec!["new-value", "orders-value", "users-value"]);
}
