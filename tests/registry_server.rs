//! `weir registry serve` talked to over HTTP by a client Weir did not write (`ureq`): the REAL binary on port 0,
//! checked against the answers Confluent Schema Registry documents.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A running `weir registry serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(storage: Option<&Path>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command.args(["registry", "serve", "--listen", "127.0.0.1:0"]);
        if let Some(path) = storage {
            command.arg("--storage").arg(path);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start weir");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Server { base: base.to_string(), child }
    }

    /// Sends a request; answers (status, JSON body, content type).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).set("Accept", CONTENT_TYPE);
        let result = match body {
            Some(body) => request.set("Content-Type", CONTENT_TYPE).send_string(&body.to_string()),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        assert_eq!(response.content_type(), CONTENT_TYPE, "{method} {path}");
        let text = response.into_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}")))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.call("POST", &format!("/subjects/{subject}/versions"), Some(json!({ "schema": schema })))
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

fn error_code(answer: &(u16, Value)) -> (u16, u64) {
    (answer.0, answer.1["error_code"].as_u64().unwrap_or_else(|| panic!("no error_code in {}", answer.1)))
}

#[test]
fn subjects_versions_and_ids() {
    let server = Server::start(None);
    assert_eq!(server.get("/subjects"), (200, json!([])));
    assert_eq!(server.get("/schemas/types"), (200, json!(["AVRO"])));

    let v1 = user(ID);
    let v2 = user(&format!("{ID},{NAME_DEFAULT}"));
    assert_eq!(server.register("users-value", &v1), (200, json!({"id": 1})));
    // The same schema again (even formatted differently) answers the same id and adds no version.
    let v1_spaced = v1.replace(',', ", ").replace(':', " : ");
    assert_eq!(server.register("users-value", &v1_spaced), (200, json!({"id": 1})));
    assert_eq!(server.get("/subjects/users-value/versions"), (200, json!([1])));
    assert_eq!(server.register("users-value", &v2), (200, json!({"id": 2})));
    assert_eq!(server.get("/subjects/users-value/versions"), (200, json!([1, 2])));
    // An identical schema under another subject reuses the global id.
    assert_eq!(server.register("other-value", &v2), (200, json!({"id": 2})));
    // A schema differing only in a default is a different schema.
    let v2_other_default = user(&format!(r#"{ID},{{"name":"name","type":"string","default":"x"}}"#));
    assert_eq!(server.register("third-value", &v2_other_default), (200, json!({"id": 3})));
    assert_eq!(server.get("/subjects"), (200, json!(["other-value", "third-value", "users-value"])));

    let (status, latest) = server.get("/subjects/users-value/versions/latest");
    assert_eq!(status, 200);
    assert_eq!(
        (latest["subject"].clone(), latest["version"].clone(), latest["id"].clone()),
        (json!("users-value"), json!(2), json!(2))
    );
    let stored: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored["fields"][1]["default"], json!("anonymous"));
    assert_eq!(server.get("/subjects/users-value/versions/1").1["id"], json!(1));
    assert_eq!(server.get("/subjects/users-value/versions/-1").1["version"], json!(2));
    // `.../schema` answers the schema itself.
    let (status, raw) = server.get("/subjects/users-value/versions/1/schema");
    assert_eq!((status, raw["name"].clone(), raw["fields"][0]["name"].clone()), (200, json!("User"), json!("id")));

    let (status, by_id) = server.get("/schemas/ids/2");
    assert_eq!(status, 200);
    assert_eq!(by_id["schema"], latest["schema"]);
    assert_eq!(
        server.get("/schemas/ids/2/versions"),
        (200, json!([{"subject": "other-value", "version": 1}, {"subject": "users-value", "version": 2}]))
    );

    // Lookup: registered under the subject or not.
    let (status, found) = server.call("POST", "/subjects/users-value", Some(json!({ "schema": v1 })));
    assert_eq!((status, found["id"].clone(), found["version"].clone()), (200, json!(1), json!(1)));
    let unknown = user(r#"{"name":"other","type":"int"}"#);
    assert_eq!(
        error_code(&server.call("POST", "/subjects/users-value", Some(json!({ "schema": unknown })))),
        (404, 40403)
    );

    // Not found codes and messages.
    let missing = server.get("/subjects/nobody/versions");
    assert_eq!(error_code(&missing), (404, 40401));
    assert_eq!(missing.1["message"], json!("Subject 'nobody' not found."));
    assert_eq!(error_code(&server.get("/subjects/nobody/versions/1")), (404, 40401));
    assert_eq!(error_code(&server.get("/subjects/users-value/versions/7")), (404, 40402));
    assert_eq!(error_code(&server.get("/schemas/ids/99")), (404, 40403));
    assert_eq!(error_code(&server.get("/subjects/users-value/versions/zero")), (422, 42202));
    assert_eq!(error_code(&server.get("/subjects/users-value/versions/0")), (422, 42202));

    // Invalid schemas: 422 / 42201.
    assert_eq!(error_code(&server.register("users-value", "{not json")), (422, 42201));
    assert_eq!(error_code(&server.register("users-value", r#"{"type":"record","name":"X"}"#)), (422, 42201));
    assert_eq!(
        error_code(&server.call(
            "POST",
            "/subjects/users-value/versions",
            Some(json!({"schema": "{}", "schemaType": "PROTOBUF"}))
        )),
        (422, 42201)
    );
}

#[test]
fn compatibility_config_and_incompatible_registration() {
    let server = Server::start(None);
    assert_eq!(server.get("/config"), (200, json!({"compatibilityLevel": "BACKWARD"})));
    let v1 = user(ID);
    assert_eq!(server.register("users-value", &v1), (200, json!({"id": 1})));

    // Adding a field without a default is not BACKWARD compatible: 409.
    let no_default = user(&format!("{ID},{NAME}"));
    let refused = server.register("users-value", &no_default);
    assert_eq!(error_code(&refused), (409, 409));
    assert!(refused.1["message"].as_str().unwrap().contains("incompatible"), "{}", refused.1);
    assert_eq!(server.get("/subjects/users-value/versions"), (200, json!([1])));

    let check = |schema: &str, version: &str, verbose: bool| {
        let path = format!(
            "/compatibility/subjects/users-value/versions/{version}{}",
            if verbose { "?verbose=true" } else { "" }
        );
        server.call("POST", &path, Some(json!({ "schema": schema })))
    };
    assert_eq!(check(&no_default, "latest", false), (200, json!({"is_compatible": false})));
    let (status, verbose) = check(&no_default, "1", true);
    assert_eq!((status, verbose["is_compatible"].clone()), (200, json!(false)));
    assert!(!verbose["messages"].as_array().unwrap().is_empty());
    let with_default = user(&format!("{ID},{NAME_DEFAULT}"));
    assert_eq!(check(&with_default, "latest", true), (200, json!({"is_compatible": true, "messages": []})));
    assert_eq!(error_code(&check(&with_default, "5", false)), (404, 40402));
    assert_eq!(
        error_code(&server.call("POST", "/compatibility/subjects/nobody/versions/latest", Some(json!({"schema": v1})))),
        (404, 40401)
    );

    // Subject-level config: FORWARD lets the field without a default in.
    assert_eq!(error_code(&server.get("/config/users-value")), (404, 40408));
    assert_eq!(
        server.get("/config/users-value?defaultToGlobal=true"),
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(
        server.call("PUT", "/config/users-value", Some(json!({"compatibility": "FORWARD"}))),
        (200, json!({"compatibility": "FORWARD"}))
    );
    assert_eq!(server.get("/config/users-value"), (200, json!({"compatibilityLevel": "FORWARD"})));
    assert_eq!(server.get("/config"), (200, json!({"compatibilityLevel": "BACKWARD"})));
    assert_eq!(server.register("users-value", &no_default), (200, json!({"id": 2})));
    assert_eq!(server.call("DELETE", "/config/users-value", None), (200, json!({"compatibilityLevel": "FORWARD"})));
    assert_eq!(error_code(&server.call("PUT", "/config", Some(json!({"compatibility": "SIDEWAYS"})))), (422, 42203));

    // Global NONE accepts anything.
    assert_eq!(
        server.call("PUT", "/config", Some(json!({"compatibility": "none"}))),
        (200, json!({"compatibility": "NONE"}))
    );
    let string_id = user(r#"{"name":"id","type":"string"}"#);
    assert_eq!(server.register("users-value", &string_id), (200, json!({"id": 3})));
}

#[test]
fn transitive_registration_checks_all_versions() {
    let server = Server::start(None);
    assert_eq!(
        server.call("PUT", "/config", Some(json!({"compatibility": "BACKWARD_TRANSITIVE"}))),
        (200, json!({"compatibility": "BACKWARD_TRANSITIVE"}))
    );
    assert_eq!(server.register("s", &user(ID)), (200, json!({"id": 1})));
    assert_eq!(server.register("s", &user(&format!("{ID},{NAME_DEFAULT}"))), (200, json!({"id": 2})));
    // Reads v2 data but not v1 data.
    let v3 = user(&format!("{ID},{NAME}"));
    assert_eq!(error_code(&server.register("s", &v3)), (409, 409));
    assert_eq!(server.call("PUT", "/config/s", Some(json!({"compatibility": "BACKWARD"}))).0, 200);
    assert_eq!(server.register("s", &v3), (200, json!({"id": 3})));
}

#[test]
fn modes_and_deletes() {
    let server = Server::start(None);
    assert_eq!(server.get("/mode"), (200, json!({"mode": "READWRITE"})));
    assert_eq!(server.register("s", &user(ID)), (200, json!({"id": 1})));
    assert_eq!(server.call("PUT", "/mode/s", Some(json!({"mode": "READONLY"}))), (200, json!({"mode": "READONLY"})));
    assert_eq!(server.get("/mode/s"), (200, json!({"mode": "READONLY"})));
    assert_eq!(error_code(&server.register("s", &user(&format!("{ID},{NAME_DEFAULT}")))), (422, 42205));
    assert_eq!(server.register("t", &user(NAME)), (200, json!({"id": 2})), "other subjects stay writable");
    assert_eq!(server.call("DELETE", "/mode/s", None), (200, json!({"mode": "READONLY"})));
    assert_eq!(error_code(&server.get("/mode/s")), (404, 40409));
    assert_eq!(server.call("PUT", "/mode", Some(json!({"mode": "READONLY"}))), (200, json!({"mode": "READONLY"})));
    assert_eq!(error_code(&server.register("s", &user(&format!("{ID},{NAME_DEFAULT}")))), (422, 42205));
    assert_eq!(error_code(&server.call("PUT", "/mode", Some(json!({"mode": "SOMETIMES"})))), (422, 42204));
    assert_eq!(server.call("PUT", "/mode", Some(json!({"mode": "READWRITE"}))).0, 200);

    // Soft delete of a version, then permanent; soft delete of a subject, then permanent.
    assert_eq!(server.register("s", &user(&format!("{ID},{NAME_DEFAULT}"))), (200, json!({"id": 3})));
    assert_eq!(error_code(&server.call("DELETE", "/subjects/s/versions/1?permanent=true", None)), (404, 40407));
    assert_eq!(server.call("DELETE", "/subjects/s/versions/1", None), (200, json!(1)));
    assert_eq!(server.get("/subjects/s/versions"), (200, json!([2])));
    assert_eq!(server.get("/subjects/s/versions?deleted=true"), (200, json!([1, 2])));
    assert_eq!(error_code(&server.get("/subjects/s/versions/1")), (404, 40402));
    assert_eq!(server.call("DELETE", "/subjects/s/versions/1?permanent=true", None), (200, json!(1)));
    assert_eq!(server.get("/subjects/s/versions?deleted=true"), (200, json!([2])));
    // The schema stays readable by id.
    assert_eq!(server.get("/schemas/ids/1").0, 200);

    assert_eq!(error_code(&server.call("DELETE", "/subjects/s?permanent=true", None)), (404, 40405));
    assert_eq!(server.call("DELETE", "/subjects/s", None), (200, json!([2])));
    assert_eq!(server.get("/subjects"), (200, json!(["t"])));
    assert_eq!(server.get("/subjects?deleted=true"), (200, json!(["s", "t"])));
    assert_eq!(error_code(&server.call("DELETE", "/subjects/s", None)), (404, 40404));
    assert_eq!(server.call("DELETE", "/subjects/s?permanent=true", None), (200, json!([2])));
    assert_eq!(server.get("/subjects?deleted=true"), (200, json!(["t"])));
    assert_eq!(error_code(&server.call("DELETE", "/subjects/s", None)), (404, 40401));
}

#[test]
fn state_survives_a_restart_with_the_same_storage_file() {
    let dir = std::env::temp_dir().join(format!("weir-registry-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let storage = dir.join("registry.json");
    let _ = std::fs::remove_file(&storage);
    let v2 = user(&format!("{ID},{NAME_DEFAULT}"));
    {
        let server = Server::start(Some(&storage));
        assert_eq!(server.register("users-value", &user(ID)), (200, json!({"id": 1})));
        assert_eq!(server.register("users-value", &v2), (200, json!({"id": 2})));
        assert_eq!(server.call("PUT", "/config/users-value", Some(json!({"compatibility": "FULL"}))).0, 200);
        assert_eq!(server.call("PUT", "/mode", Some(json!({"mode": "IMPORT"}))).0, 200);
        assert_eq!(server.call("DELETE", "/subjects/users-value/versions/1", None).0, 200);
    }
    let server = Server::start(Some(&storage));
    assert_eq!(server.get("/subjects/users-value/versions"), (200, json!([2])));
    assert_eq!(server.get("/subjects/users-value/versions?deleted=true"), (200, json!([1, 2])));
    assert_eq!(server.get("/subjects/users-value/versions/latest").1["id"], json!(2));
    assert_eq!(server.get("/config/users-value"), (200, json!({"compatibilityLevel": "FULL"})));
    assert_eq!(server.get("/mode"), (200, json!({"mode": "IMPORT"})));
    assert_eq!(server.call("PUT", "/mode", Some(json!({"mode": "READWRITE"}))).0, 200);
    // Ids continue after the restart, and the same schema keeps its id.
    assert_eq!(server.register("users-value", &v2), (200, json!({"id": 2})));
    assert_eq!(server.register("other", &user(NAME)), (200, json!({"id": 3})));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
