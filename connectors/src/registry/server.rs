//! HTTP routing of Confluent's Schema Registry REST API on a small synchronous server (`tiny_http`).

use std::net::SocketAddr;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use super::compatibility::{CompatibilityLevel, Mode};
use super::error::RegistryError;
use super::store::{Registration, Registry, VersionSpec};

/// The content type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A bound registry server; [`RegistryServer::run`] answers requests until the process ends.
pub struct RegistryServer {
    server: Server,
    registry: Registry,
}

impl RegistryServer {
    /// Binds `listen` (port 0 picks a free port; see [`RegistryServer::local_addr`]).
    pub fn bind(listen: &str, registry: Registry) -> Result<Self, RegistryError> {
        let server =
            Server::http(listen).map_err(|e| RegistryError::Store(format!("cannot listen on {listen}: {e}")))?;
        Ok(Self { server, registry })
    }

    /// The address bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Answers requests, one at a time, forever.
    pub fn run(mut self) {
        for request in self.server.incoming_requests() {
            answer(&mut self.registry, request);
        }
    }
}

/// A parsed HTTP answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

fn ok(body: Value) -> Result<Answer, RegistryError> {
    Ok(Answer { status: 200, body })
}

fn answer(registry: &mut Registry, mut request: Request) {
    let mut body = String::new();
    let read = request.as_reader().read_to_string(&mut body);
    let result = match read {
        Ok(_) => handle(registry, request.method(), request.url(), &body),
        Err(e) => Err(RegistryError::UnprocessableEntity(e.to_string())),
    };
    let (status, body) = match result {
        Ok(answer) => (answer.status, answer.body),
        Err(error) => {
            if error.status() >= 500 {
                tracing::warn!("registry: {error}");
            }
            (error.status(), error.body())
        }
    };
    // `GET .../schema` answers the schema itself, not a JSON string.
    let text = match &body {
        Value::String(raw) if status == 200 => raw.clone(),
        other => other.to_string(),
    };
    let header = Header::from_bytes("Content-Type", CONTENT_TYPE).expect("valid header");
    let response = Response::from_string(text).with_status_code(status).with_header(header);
    if let Err(e) = request.respond(response) {
        tracing::debug!("registry: cannot answer: {e}");
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        let pairs = query.split('&').filter(|p| !p.is_empty()).map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        });
        Self(pairs.collect())
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && (v.is_empty() || v.eq_ignore_ascii_case("true")))
    }
}

fn parse_body(body: &str) -> Result<Value, RegistryError> {
    if body.trim().is_empty() {
        return Err(RegistryError::UnprocessableEntity("empty request body".to_string()));
    }
    serde_json::from_str(body).map_err(|e| RegistryError::UnprocessableEntity(e.to_string()))
}

fn registration(body: &str) -> Result<Registration, RegistryError> {
    let body = parse_body(body)?;
    let schema = body.get("schema").and_then(Value::as_str);
    let schema = schema.ok_or_else(|| RegistryError::InvalidSchema("the body has no \"schema\" string".to_string()))?;
    if let Some(kind) = body.get("schemaType").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("AVRO") {
            return Err(RegistryError::InvalidSchema(format!("schema type {kind} is not supported (only AVRO)")));
        }
    }
    if body.get("references").and_then(Value::as_array).is_some_and(|r| !r.is_empty()) {
        return Err(RegistryError::InvalidSchema("schema references are not supported yet".to_string()));
    }
    let number = |name: &str| body.get(name).and_then(Value::as_u64).filter(|n| *n > 0).map(|n| n as u32);
    Ok(Registration { schema: schema.to_string(), id: number("id"), version: number("version") })
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// Routes one request. `url` is the path with its query string.
pub fn handle(registry: &mut Registry, method: &Method, url: &str, body: &str) -> Result<Answer, RegistryError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let query = Query::parse(query);
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let deleted = query.flag("deleted");
    use Method::*;
    match (method, segments.as_slice()) {
        (Get, []) => ok(json!({})),
        (Get, ["subjects"]) => ok(json!(registry.subjects(deleted))),
        (Get, ["subjects", s, "versions"]) => ok(json!(registry.versions(s, deleted)?)),
        (Post, ["subjects", s, "versions"]) => ok(json!({"id": registry.register(s, &registration(body)?)?})),
        (Get, ["subjects", s, "versions", v]) => {
            ok(serde_json::to_value(registry.version(s, VersionSpec::parse(v)?, deleted)?).expect("serialisable"))
        }
        (Get, ["subjects", s, "versions", v, "schema"]) => {
            ok(Value::String(registry.version(s, VersionSpec::parse(v)?, deleted)?.schema))
        }
        (Get, ["subjects", s, "versions", v, "referencedby"]) => {
            registry.version(s, VersionSpec::parse(v)?, deleted)?;
            ok(json!([]))
        }
        (Delete, ["subjects", s, "versions", v]) => {
            ok(json!(registry.delete_version(s, VersionSpec::parse(v)?, query.flag("permanent"))?))
        }
        (Post, ["subjects", s]) => {
            let schema = registration(body)?.schema;
            ok(serde_json::to_value(registry.lookup(s, &schema, deleted)?).expect("serialisable"))
        }
        (Delete, ["subjects", s]) => ok(json!(registry.delete_subject(s, query.flag("permanent"))?)),
        (Get, ["schemas", "types"]) => ok(json!(["AVRO"])),
        (Get, ["schemas", "ids", id]) => ok(json!({"schema": registry.schema_by_id(parse_id(id)?)?})),
        (Get, ["schemas", "ids", id, "schema"]) => ok(Value::String(registry.schema_by_id(parse_id(id)?)?.to_string())),
        (Get, ["schemas", "ids", id, "versions"]) => {
            let pairs = registry.id_versions(parse_id(id)?)?;
            ok(Value::Array(pairs.into_iter().map(|(s, v)| json!({"subject": s, "version": v})).collect()))
        }
        (Get, ["schemas", "ids", id, "subjects"]) => {
            let mut subjects: Vec<String> = registry.id_versions(parse_id(id)?)?.into_iter().map(|(s, _)| s).collect();
            subjects.dedup();
            ok(json!(subjects))
        }
        (Get, ["config"]) => ok(json!({"compatibilityLevel": registry.state().compatibility.to_string()})),
        (Put, ["config"]) => {
            let level = compatibility_in(body)?;
            registry.set_compatibility(None, level)?;
            ok(json!({"compatibility": level.to_string()}))
        }
        (Get, ["config", s]) => {
            let level = registry.subject_compatibility(s, query.flag("defaultToGlobal"))?;
            ok(json!({"compatibilityLevel": level.to_string()}))
        }
        (Put, ["config", s]) => {
            let level = compatibility_in(body)?;
            registry.set_compatibility(Some(s), level)?;
            ok(json!({"compatibility": level.to_string()}))
        }
        (Delete, ["config", s]) => {
            ok(json!({"compatibilityLevel": registry.delete_subject_compatibility(s)?.to_string()}))
        }
        (Post, ["compatibility", "subjects", s, "versions", v]) => {
            let spec = VersionSpec::parse(v)?;
            compatibility_answer(registry.check_compatibility(s, Some(spec), &registration(body)?.schema)?, &query)
        }
        (Post, ["compatibility", "subjects", s, "versions"]) => {
            compatibility_answer(registry.check_compatibility(s, None, &registration(body)?.schema)?, &query)
        }
        (Get, ["mode"]) => ok(json!({"mode": registry.state().mode.to_string()})),
        (Put, ["mode"]) => {
            let mode = mode_in(body)?;
            registry.set_mode(None, mode)?;
            ok(json!({"mode": mode.to_string()}))
        }
        (Get, ["mode", s]) => ok(json!({"mode": registry.subject_mode(s, query.flag("defaultToGlobal"))?.to_string()})),
        (Put, ["mode", s]) => {
            let mode = mode_in(body)?;
            registry.set_mode(Some(s), mode)?;
            ok(json!({"mode": mode.to_string()}))
        }
        (Delete, ["mode", s]) => ok(json!({"mode": registry.delete_subject_mode(s)?.to_string()})),
        (_, [first, ..]) if ["subjects", "schemas", "config", "compatibility", "mode"].contains(first) => {
            if known_path(&segments) {
                Err(RegistryError::MethodNotAllowed)
            } else {
                Err(RegistryError::NoSuchEndpoint)
            }
        }
        _ => Err(RegistryError::NoSuchEndpoint),
    }
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["subjects"]
            | ["subjects", _]
            | ["subjects", _, "versions"]
            | ["subjects", _, "versions", _]
            | ["schemas", "types"]
            | ["schemas", "ids", _]
            | ["config"]
            | ["config", _]
            | ["mode"]
            | ["mode", _]
    )
}

fn parse_id(text: &str) -> Result<u32, RegistryError> {
    text.parse().map_err(|_| RegistryError::SchemaNotFound(None))
}

fn compatibility_in(body: &str) -> Result<CompatibilityLevel, RegistryError> {
    let body = parse_body(body)?;
    field(&body, "compatibility").ok_or(RegistryError::InvalidCompatibilityLevel)?.parse()
}

fn mode_in(body: &str) -> Result<Mode, RegistryError> {
    let body = parse_body(body)?;
    field(&body, "mode").ok_or(RegistryError::InvalidMode)?.parse()
}

fn compatibility_answer(messages: Vec<String>, query: &Query) -> Result<Answer, RegistryError> {
    let mut answer = json!({"is_compatible": messages.is_empty()});
    if query.flag("verbose") {
        answer["messages"] = json!(messages);
    }
    ok(answer)
}
