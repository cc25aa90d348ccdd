//! The schema registry client, the Avro codecs (Confluent wire format) and dead letters, against the REAL
//! `weir registry serve` binary on port 0 (and a tiny stub server for the basic-auth header).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use weir_connectors::codec::avro::{AvroDecoder, AvroEncoder, AvroEncoderConfig, GenericAvroDecoder};
use weir_connectors::codec::dead_letter::{DeadLetterCollector, DeadLetterFile};
use weir_connectors::codec::json::JsonDecoder;
use weir_connectors::codec::wire::frame;
use weir_connectors::codec::{Decode, DecodeErrorKind, DecodeStage, Encode, EncodeError, OnDecodeError, RecordOrigin};
use weir_connectors::registry::client::{schema_json, RegistryClientConfig, VersionSelector};
use weir_connectors::registry::subject::SubjectNameStrategy;
use weir_connectors::registry::{CompatibilityLevel, RegistryClient, RegistryClientError};

/// A running `weir registry serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Server { base: base.to_string(), child }
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::from_url(&self.base).unwrap()
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

const ID: &str = r#"{"name":"id","type":"long"}"#;
const NAME: &str = r#"{"name":"name","type":"string"}"#;
const NAME_DEFAULT: &str = r#"{"name":"name","type":"string","default":"anonymous"}"#;

/// Version 1 of a user record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "User")]
#[avro(namespace = "weir.test")]
struct UserV1 {
    id: i64,
    name: String,
}

/// Version 2: adds an optional field with default null (a BACKWARD- and FORWARD-compatible change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "User")]
#[avro(namespace = "weir.test")]
struct UserV2 {
    id: i64,
    name: String,
    #[avro(default = "null")]
    email: Option<String>,
}

/// (Authorization, Accept) headers a stub saw.
type SeenHeaders = (Option<String>, Option<String>);

/// The dead-letter kind and a text the error must contain.
type Expected = (&'static str, String);

fn registry_code(error: &RegistryClientError) -> u32 {
    error.error_code().unwrap_or_else(|| panic!("not a registry answer: {error}"))
}

#[test]
fn every_client_call_against_the_server() {
    let server = Server::start();
    let client = server.client();
    assert_eq!(client.subjects().unwrap(), Vec::<String>::new());

    let v1 = user(ID);
    let id1 = client.register("users-value", &v1).unwrap();
    assert_eq!(client.register("users-value", &v1).unwrap(), id1, "the same schema answers the same id");
    // Reformatted JSON is the same schema.
    let v1_spaced = v1.replace(',', " , ");
    assert_eq!(client.register("users-value", &v1_spaced).unwrap(), id1);
    let id2 = client
        .register_schema("users-value", &Schema::parse_str(&user(&format!("{ID},{NAME_DEFAULT}"))).unwrap())
        .unwrap();
    assert_ne!(id1, id2);
    assert_eq!(client.register("other-value", &v1).unwrap(), id1, "ids are global");
    assert_eq!(client.subjects().unwrap(), vec!["other-value".to_string(), "users-value".to_string()]);
    assert_eq!(client.versions("users-value").unwrap(), vec![1, 2]);

    // By id: parsed, and cached.
    assert_eq!(client.cached_schemas(), 0);
    let fetched = client.schema_by_id(id1).unwrap();
    assert_eq!(fetched.id, id1);
    assert_eq!(fetched.schema, Schema::parse_str(&v1).unwrap());
    assert_eq!(client.cached_schemas(), 1);
    assert!(Arc::ptr_eq(&fetched, &client.schema_by_id(id1).unwrap()), "the second call is served by the cache");

    // Versions.
    let first = client.version("users-value", VersionSelector::Number(1)).unwrap();
    assert_eq!((first.subject.as_str(), first.version, first.id), ("users-value", 1, id1));
    assert_eq!(Schema::parse_str(&first.schema).unwrap(), Schema::parse_str(&v1).unwrap());
    let latest = client.latest("users-value").unwrap();
    assert_eq!((latest.version, latest.id), (2, id2));
    assert_eq!(client.version("users-value", 2.into()).unwrap(), latest);

    // Lookup.
    let found = client.lookup("users-value", &v1).unwrap().expect("registered");
    assert_eq!((found.version, found.id), (1, id1));
    assert_eq!(client.lookup("users-value", &user(&format!("{ID},{NAME}"))).unwrap(), None);
    assert_eq!(client.lookup("nobody-value", &v1).unwrap(), None);

    // Typed errors with Confluent's codes.
    let error = client.version("nobody-value", VersionSelector::Latest).unwrap_err();
    assert_eq!(registry_code(&error), 40401);
    assert!(error.is_not_found());
    assert!(error.to_string().contains("Subject 'nobody-value' not found."), "{error}");
    assert!(error.to_string().contains(&server.base), "{error}");
    assert_eq!(registry_code(&client.version("users-value", 9.into()).unwrap_err()), 40402);
    assert_eq!(registry_code(&client.schema_by_id(9999).unwrap_err()), 40403);
    assert_eq!(registry_code(&client.register("users-value", "{not avro").unwrap_err()), 42201);

    // Compatibility levels, global and per subject.
    assert_eq!(client.compatibility().unwrap(), CompatibilityLevel::Backward);
    client.set_compatibility(CompatibilityLevel::Full).unwrap();
    assert_eq!(client.compatibility().unwrap(), CompatibilityLevel::Full);
    assert_eq!(client.subject_compatibility("users-value").unwrap(), None);
    assert_eq!(client.effective_compatibility("users-value").unwrap(), CompatibilityLevel::Full);
    client.set_subject_compatibility("users-value", CompatibilityLevel::ForwardTransitive).unwrap();
    assert_eq!(client.subject_compatibility("users-value").unwrap(), Some(CompatibilityLevel::ForwardTransitive));
    assert_eq!(client.effective_compatibility("users-value").unwrap(), CompatibilityLevel::ForwardTransitive);
    client.delete_subject_compatibility("users-value").unwrap();
    assert_eq!(client.subject_compatibility("users-value").unwrap(), None);
    client.set_compatibility(CompatibilityLevel::Backward).unwrap();

    // Test compatibility: a field without default cannot be added under BACKWARD.
    let check = client
        .test_compatibility(
            "users-value",
            VersionSelector::Latest,
            &user(&format!("{ID},{NAME_DEFAULT},{}", r#"{"name":"age","type":"int"}"#)),
        )
        .unwrap();
    assert!(!check.is_compatible);
    assert!(!check.messages.is_empty());
    let check = client.test_compatibility("users-value", 1.into(), &user(ID)).unwrap();
    assert!(check.is_compatible, "{:?}", check.messages);

    // Deletes.
    assert_eq!(client.delete_subject("other-value", false).unwrap(), vec![1]);
    assert_eq!(client.subjects().unwrap(), vec!["users-value".to_string()]);
    assert_eq!(client.delete_subject("other-value", true).unwrap(), vec![1]);

    // Once the server is gone: cached ids still answer, others are unreachable (and name the URL).
    drop(server);
    assert_eq!(client.schema_by_id(id1).unwrap().id, id1);
    let error = client.schema_by_id(id2).unwrap_err();
    assert!(matches!(error, RegistryClientError::Unreachable { .. }), "{error}");
}

#[test]
fn next_url_is_tried_when_one_is_unreachable() {
    let server = Server::start();
    let config = RegistryClientConfig::new(["http://127.0.0.1:1".to_string(), server.base.clone()])
        .timeouts(Duration::from_secs(2), Duration::from_secs(5));
    let client = RegistryClient::new(config).unwrap();
    assert_eq!(client.register("a-value", &user(ID)).unwrap(), 1);
    assert_eq!(client.subjects().unwrap(), vec!["a-value".to_string()]);
}

#[test]
fn basic_auth_and_content_type_headers_are_sent() {
    let stub = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", stub.server_addr().to_ip().unwrap());
    let seen: Arc<Mutex<Vec<SeenHeaders>>> = Arc::default();
    let recorded = seen.clone();
    let thread = std::thread::spawn(move || {
        for _ in 0..2 {
            let request = stub.recv().unwrap();
            let header = |name: &'static str| {
                request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
            };
            let (authorization, accept) = (header("Authorization"), header("Accept"));
            recorded.lock().unwrap().push((authorization.clone(), accept));
            // "user:p@ss:word" in base64: a password may contain ':'.
            let response = if authorization.as_deref() == Some("Basic dXNlcjpwQHNzOndvcmQ=") {
                tiny_http::Response::from_string(r#"["s-value"]"#)
            } else {
                tiny_http::Response::from_string(r#"{"error_code":40101,"message":"Unauthorized"}"#)
                    .with_status_code(401)
            };
            request.respond(response).unwrap();
        }
    });
    let authed =
        RegistryClient::new(RegistryClientConfig::new([url.clone()]).basic_auth_user_info("user:p@ss:word").unwrap())
            .unwrap();
    assert_eq!(authed.subjects().unwrap(), vec!["s-value".to_string()]);
    let error = RegistryClient::from_url(&url).unwrap().subjects().unwrap_err();
    assert_eq!(registry_code(&error), 40101);
    assert!(matches!(error, RegistryClientError::Registry { status: 401, .. }));
    thread.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0.as_deref(), Some("Basic dXNlcjpwQHNzOndvcmQ="));
    assert_eq!(seen[1].0, None);
    for (_, accept) in seen.iter() {
        assert_eq!(accept.as_deref(), Some("application/vnd.schemaregistry.v1+json"));
    }
    // The password never shows in Debug output.
    assert!(!format!("{authed:?}").contains("p@ss"));
}

#[test]
fn subject_name_strategies() {
    let server = Server::start();
    let client = server.client();
    let auto = AvroEncoderConfig::default().auto_register(true);
    let cases = [
        (auto, "users-value"),
        (auto.key(), "users-key"),
        (auto.strategy(SubjectNameStrategy::RecordName), "weir.test.User"),
        (auto.strategy(SubjectNameStrategy::TopicRecordName), "users-weir.test.User"),
    ];
    for (config, subject) in cases {
        let encoder = AvroEncoder::<UserV1>::new(client.clone(), "users", config).unwrap();
        assert_eq!(encoder.subject(), subject);
        assert_eq!(
            client.lookup(subject, &schema_json(&UserV1::get_schema())).unwrap().unwrap().id,
            encoder.schema_id()
        );
    }
    let subjects: BTreeSet<String> = client.subjects().unwrap().into_iter().collect();
    assert_eq!(subjects, cases.iter().map(|(_, s)| s.to_string()).collect());
}

/// Confluent's documented rules, through the client: (level, existing versions, candidate, compatible?).
#[test]
fn compatibility_levels_accept_and_reject_as_confluent_documents() {
    use CompatibilityLevel::*;
    let server = Server::start();
    let client = server.client();
    let id_name = format!("{ID},{NAME}");
    let id_name_default = format!("{ID},{NAME_DEFAULT}");
    let age_int_default = r#"{"name":"age","type":"int","default":0}"#;
    let age_string_default = r#"{"name":"age","type":"string","default":"0"}"#;
    let cases: Vec<(CompatibilityLevel, Vec<String>, String, bool, &str)> = vec![
        (Backward, vec![user(&id_name)], user(ID), true, "delete a field"),
        (Backward, vec![user(ID)], user(&id_name_default), true, "add a field with a default"),
        (Backward, vec![user(ID)], user(&id_name), false, "add a field without a default"),
        (Forward, vec![user(ID)], user(&id_name), true, "add a field"),
        (Forward, vec![user(&id_name)], user(ID), false, "delete a field without a default"),
        (Forward, vec![user(&id_name_default)], user(ID), true, "delete a field with a default"),
        (Full, vec![user(ID)], user(&id_name_default), true, "add a field with a default"),
        (Full, vec![user(&id_name_default)], user(ID), true, "delete a field with a default"),
        (Full, vec![user(ID)], user(&id_name), false, "add a field without a default"),
        (Full, vec![user(&id_name)], user(ID), false, "delete a field without a default"),
        // Transitive: compatible with the latest version, not with the first.
        (Backward, vec![user(ID), user(&id_name_default)], user(&id_name), true, "latest only"),
        (BackwardTransitive, vec![user(ID), user(&id_name_default)], user(&id_name), false, "against v1 too"),
        (Forward, vec![user(&id_name), user(&id_name_default)], user(ID), true, "latest only"),
        (ForwardTransitive, vec![user(&id_name), user(&id_name_default)], user(ID), false, "against v1 too"),
        (
            Full,
            vec![user(&format!("{ID},{age_int_default}")), user(ID)],
            user(&format!("{ID},{age_string_default}")),
            true,
            "latest only",
        ),
        (
            FullTransitive,
            vec![user(&format!("{ID},{age_int_default}")), user(ID)],
            user(&format!("{ID},{age_string_default}")),
            false,
            "against v1 too",
        ),
        (None, vec![user(&id_name)], r#"{"type":"record","name":"Other","fields":[]}"#.to_string(), true, "anything"),
    ];
    for (n, (level, existing, candidate, compatible, what)) in cases.into_iter().enumerate() {
        let subject = format!("case{n}-value");
        client.set_subject_compatibility(&subject, None).unwrap();
        for schema in &existing {
            client.register(&subject, schema).unwrap();
        }
        client.set_subject_compatibility(&subject, level).unwrap();
        let check = client.test_compatibility_all(&subject, &candidate).unwrap();
        assert_eq!(check.is_compatible, compatible, "{level:?} {what}: {:?}", check.messages);
        let latest = client.test_compatibility(&subject, VersionSelector::Latest, &candidate).unwrap();
        if !level.to_string().contains("TRANSITIVE") {
            assert_eq!(latest.is_compatible, compatible, "{level:?} {what} against latest");
        } else {
            assert!(latest.is_compatible, "{level:?} {what}: compatible with the latest version alone");
        }
        match client.register(&subject, &candidate) {
            Ok(_) => assert!(compatible, "{level:?} {what}: registered although incompatible"),
            Err(error) => {
                assert!(!compatible, "{level:?} {what}: {error}");
                assert_eq!(registry_code(&error), 409, "{error}");
            }
        }
    }
}

#[test]
fn schema_evolution_v1_records_read_with_a_v2_reader() {
    let server = Server::start();
    let client = server.client();
    // The v2 field is optional with default null.
    let v2_schema = serde_json::to_value(UserV2::get_schema()).unwrap();
    assert_eq!(v2_schema["fields"][2]["default"], serde_json::Value::Null, "{v2_schema}");
    assert!(v2_schema["fields"][2].as_object().unwrap().contains_key("default"), "{v2_schema}");

    let id1 = client.register_schema("users-value", &UserV1::get_schema()).unwrap();
    let v1_encoder = AvroEncoder::<UserV1>::new(client.clone(), "users", AvroEncoderConfig::default()).unwrap();
    assert_eq!(v1_encoder.schema_id(), id1);
    let users: Vec<UserV1> = (0..20).map(|i| UserV1 { id: i, name: format!("user-{i}") }).collect();
    let v1_bytes: Vec<Vec<u8>> = users.iter().map(|u| v1_encoder.encode(u).unwrap()).collect();
    for bytes in &v1_bytes {
        assert_eq!(&bytes[..5], &[0, (id1 >> 24) as u8, (id1 >> 16) as u8, (id1 >> 8) as u8, id1 as u8]);
    }

    // v2 is registered (BACKWARD: it reads v1 data thanks to the default).
    let id2 = client.register_schema("users-value", &UserV2::get_schema()).unwrap();
    assert_ne!(id1, id2);
    let v2_encoder = AvroEncoder::<UserV2>::new(client.clone(), "users", AvroEncoderConfig::default()).unwrap();
    assert_eq!(v2_encoder.schema_id(), id2);

    // Typed: v1 records through the v2 reader get the default, with the writer's id.
    let v2_decoder = AvroDecoder::<UserV2>::new(client.clone());
    for (user, bytes) in users.iter().zip(&v1_bytes) {
        let decoded = v2_decoder.decode(bytes).unwrap();
        assert_eq!(decoded.schema_id, id1);
        assert_eq!(decoded.value, UserV2 { id: user.id, name: user.name.clone(), email: None });
    }
    let with_email = UserV2 { id: 7, name: "ana".into(), email: Some("ana@example.com".into()) };
    let v2_bytes = v2_encoder.encode(&with_email).unwrap();
    let decoded = v2_decoder.decode(&v2_bytes).unwrap();
    assert_eq!((decoded.value.clone(), decoded.schema_id), (with_email.clone(), id2));
    // And forward: the v1 reader ignores the new field.
    let decoded = AvroDecoder::<UserV1>::new(client.clone()).decode(&v2_bytes).unwrap();
    assert_eq!((decoded.value, decoded.schema_id), (UserV1 { id: 7, name: "ana".into() }, id2));

    // Generic values: in the writer's shape, or resolved against the v2 reader schema.
    let writer_shape = GenericAvroDecoder::new(client.clone()).decode(&v1_bytes[3]).unwrap();
    assert_eq!(writer_shape.schema_id, id1);
    assert_eq!(
        writer_shape.value,
        Value::Record(vec![("id".into(), Value::Long(3)), ("name".into(), Value::String("user-3".into()))])
    );
    let resolved =
        GenericAvroDecoder::with_reader_schema(client.clone(), UserV2::get_schema()).decode(&v1_bytes[3]).unwrap();
    assert_eq!(
        resolved.value,
        Value::Record(vec![
            ("id".into(), Value::Long(3)),
            ("name".into(), Value::String("user-3".into())),
            ("email".into(), Value::Union(0, Box::new(Value::Null))),
        ])
    );
    // Writer schemas were fetched once per id.
    assert_eq!(client.cached_schemas(), 2);
}

#[test]
fn encoder_preflight_fails_fast_until_the_schema_is_registered() {
    let server = Server::start();
    let client = server.client();
    let error = AvroEncoder::<UserV1>::new(client.clone(), "users", AvroEncoderConfig::default()).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, EncodeError::NotRegistered(_)), "{text}");
    for expected in [
        "schema weir.test.User is not registered under subject \"users-value\"",
        &server.base,
        "auto-register is off (the subject has no versions yet)",
        "register it first",
        "AvroEncoderConfig::auto_register(true)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from: {text}");
    }
    assert_eq!(client.subjects().unwrap(), Vec::<String>::new(), "the pre-flight registers nothing");

    // Another compatible version exists: still not registered, and the message says it would be compatible.
    client.register("users-value", &user(&format!("{ID},{NAME_DEFAULT}"))).unwrap();
    let text =
        AvroEncoder::<UserV1>::new(client.clone(), "users", AvroEncoderConfig::default()).unwrap_err().to_string();
    assert!(text.contains("it is compatible with the subject's existing versions"), "{text}");

    let id = client.register_schema("users-value", &UserV1::get_schema()).unwrap();
    let encoder = AvroEncoder::<UserV1>::new(client.clone(), "users", AvroEncoderConfig::default()).unwrap();
    assert_eq!(encoder.schema_id(), id);

    // Incompatible: even auto-register cannot help, and says why.
    client.register("clicks-value", &user(r#"{"name":"id","type":"string"}"#)).unwrap();
    let error = AvroEncoder::<UserV1>::new(client.clone(), "clicks", AvroEncoderConfig::default().auto_register(true))
        .unwrap_err();
    assert!(matches!(error, EncodeError::Incompatible(_)), "{error}");
    assert!(error.to_string().contains("incompatible with the subject's versions"), "{error}");

    // Auto-register on: registers under the subject.
    let encoder =
        AvroEncoder::<UserV2>::new(client.clone(), "new", AvroEncoderConfig::default().auto_register(true)).unwrap();
    assert_eq!(client.latest("new-value").unwrap().id, encoder.schema_id());
}

/// Every bad-bytes case: its error text (with topic/partition/offset), and with a dead-letter file its dead
/// letter (raw bytes, reason, origin); nothing is dropped silently.
#[test]
fn bad_bytes_give_clear_errors_and_dead_letters() {
    let server = Server::start();
    let client = server.client();
    let id = client.register_schema("users-value", &UserV1::get_schema()).unwrap();
    let encoder = AvroEncoder::<UserV1>::new(client.clone(), "users", AvroEncoderConfig::default()).unwrap();
    let good = encoder.encode(&UserV1 { id: 1, name: "ana".into() }).unwrap();

    let json = br#"{"id":1,"name":"ana"}"#.to_vec();
    let mut trailing = good.clone();
    trailing.push(0x02);
    // (payload, error kind, text the error must contain); None = decodes.
    let payloads: Vec<(Vec<u8>, Option<Expected>)> = vec![
        (good.clone(), None),
        (
            json.clone(),
            Some(("wrong_magic_byte", "expected magic byte 0x00, got 0x7B ('{'): this looks like JSON".into())),
        ),
        (vec![0x01, 0, 0, 0, 1, 2], Some(("wrong_magic_byte", "expected magic byte 0x00, got 0x01".into()))),
        (vec![], Some(("truncated_header", "empty payload".into()))),
        (
            vec![0, 0, 0],
            Some(("truncated_header", "truncated Confluent header: 3 byte(s), expected at least 5".into())),
        ),
        (
            frame(4242, &good[5..]),
            Some((
                "unknown_schema_id",
                format!("unknown schema id 4242: schema registry {} has no schema", server.base),
            )),
        ),
        (
            good[..good.len() - 2].to_vec(),
            Some(("truncated_body", format!("truncated Avro body: the {} byte(s)", good.len() - 7))),
        ),
        (frame(id, &[]), Some(("truncated_body", format!("record of writer schema id {id}")))),
        (
            trailing.clone(),
            Some(("trailing_bytes", format!("1 byte(s) left after the Avro record of writer schema id {id}"))),
        ),
        (good.clone(), None),
    ];
    let origin = |i: usize| RecordOrigin::new("users", (i % 3) as i32, 100 + i as i64);

    // Fail policy: each bad payload is an error naming where it came from and what was seen.
    let failing = DecodeStage::new(AvroDecoder::<UserV1>::new(client.clone()), OnDecodeError::Fail);
    for (i, (bytes, expected)) in payloads.iter().enumerate() {
        let result = failing.decode(bytes, &origin(i));
        match expected {
            None => assert_eq!(result.unwrap().unwrap().value, UserV1 { id: 1, name: "ana".into() }),
            Some((_, text)) => {
                let error = result.unwrap_err().to_string();
                let place = format!("cannot decode the record at topic users partition {} offset {}: ", i % 3, 100 + i);
                assert!(error.starts_with(&place), "{error}");
                assert!(error.contains(text.as_str()), "{text:?} missing from: {error}");
            }
        }
    }

    // Dead-letter policy: every payload is decoded or dead-lettered, and counted.
    let dir = std::env::temp_dir().join(format!("weir-registry-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("dead.jsonl");
    let file = Arc::new(DeadLetterFile::create(&path).unwrap());
    let stage = DecodeStage::new(AvroDecoder::<UserV1>::new(client.clone()), OnDecodeError::DeadLetter(file.clone()));
    let mut decoded = 0;
    for (i, (bytes, _)) in payloads.iter().enumerate() {
        decoded += stage.decode(bytes, &origin(i)).unwrap().is_some() as usize;
    }
    let bad: Vec<usize> = (0..payloads.len()).filter(|i| payloads[*i].1.is_some()).collect();
    assert_eq!(decoded, payloads.len() - bad.len());
    assert_eq!(stage.counters().get(), (decoded as u64, bad.len() as u64));
    let letters = DeadLetterFile::read_all(&path).unwrap();
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad payload");
    for (letter, &i) in letters.iter().zip(&bad) {
        let (kind, text) = payloads[i].1.as_ref().unwrap();
        assert_eq!(letter.raw, payloads[i].0, "raw bytes of payload {i}");
        assert_eq!(letter.origin(), origin(i));
        assert_eq!(letter.error_kind, *kind);
        assert!(letter.reason.contains(text.as_str()), "{text:?} missing from {}", letter.reason);
    }

    // The batch path gives the same outcome (one file write per batch).
    let collector = DeadLetterCollector::new();
    let batch_stage = DecodeStage::new(
        AvroDecoder::<UserV1>::new(client.clone()),
        OnDecodeError::DeadLetter(Arc::new(collector.clone())),
    );
    let origins: Vec<RecordOrigin> = (0..payloads.len()).map(origin).collect();
    let values = batch_stage.decode_batch(origins.iter().zip(payloads.iter().map(|(b, _)| b.as_slice()))).unwrap();
    assert_eq!(values.len(), decoded);
    assert_eq!(collector.drain(), letters);

    // Invalid JSON through the JSON stage: position and snippet, dead-lettered too.
    let json_stage = DecodeStage::new(JsonDecoder::<serde_json::Value>::new(), OnDecodeError::DeadLetter(file.clone()));
    let broken = br#"{"id": 1, "name": "ana" "x": 2}"#;
    assert_eq!(json_stage.decode(&json, &origin(50)).unwrap().unwrap()["name"], "ana");
    assert!(json_stage.decode(broken, &origin(51)).unwrap().is_none());
    assert!(json_stage.decode(&good, &origin(52)).unwrap().is_none(), "Avro bytes are not JSON");
    assert_eq!(json_stage.counters().get(), (1, 2));
    let letters = DeadLetterFile::read_all(&path).unwrap();
    assert_eq!(letters.len(), bad.len() + 2);
    let json_letter = &letters[bad.len()];
    assert_eq!(json_letter.raw, broken);
    assert_eq!(json_letter.error_kind, "invalid_json");
    assert_eq!(
        json_letter.reason,
        r#"invalid JSON at line 1 column 25: expected `,` or `}`; near `{"id": 1, "name": "ana" "x": 2}`"#
    );
    assert_eq!(letters[bad.len() + 1].error_kind, "invalid_json");
    let failing_json = JsonDecoder::<serde_json::Value>::new().decode_at(broken, &origin(51)).unwrap_err();
    assert!(
        failing_json.to_string().starts_with(
            "cannot decode the record at topic users partition 0 offset 151: invalid JSON at line 1 column 25"
        ),
        "{failing_json}"
    );

    // A registry outage is not bad data: the stage fails instead of dead-lettering the whole topic.
    drop(server);
    let fresh = RegistryClient::new(
        RegistryClientConfig::new([client.config().urls[0].clone()])
            .timeouts(Duration::from_secs(2), Duration::from_secs(2)),
    )
    .unwrap();
    let collector = DeadLetterCollector::new();
    let outage =
        DecodeStage::new(AvroDecoder::<UserV1>::new(fresh), OnDecodeError::DeadLetter(Arc::new(collector.clone())));
    let error = outage.decode(&good, &origin(0)).unwrap_err();
    assert!(error.to_string().contains(&format!("cannot fetch writer schema id {id}")), "{error}");
    assert!(collector.is_empty());
    assert_eq!(outage.counters().get(), (0, 0));
    let kind =
        AvroDecoder::<UserV1>::new(RegistryClient::from_url("http://127.0.0.1:1").unwrap()).decode(&good).unwrap_err();
    assert!(matches!(kind, DecodeErrorKind::Registry { .. }) && !kind.is_bad_data(), "{kind}");
    std::fs::remove_dir_all(&dir).unwrap();
}
