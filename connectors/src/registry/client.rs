//! A blocking client for Confluent Schema Registry's REST API (`application/vnd.schemaregistry.v1+json`), usable
//! from timely operators (no async runtime): `weir registry serve`, Confluent's registry, Redpanda's, Karapace.
//!
//! ```no_run
//! use weir_connectors::registry::client::{RegistryClient, RegistryClientConfig, VersionSelector};
//! let client = RegistryClient::new(
//!     RegistryClientConfig::new(["http://registry-a:8081", "http://registry-b:8081"]).basic_auth("svc", "secret"),
//! )?;
//! let id = client.register("users-value", r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#)?;
//! let schema = client.schema_by_id(id)?; // cached forever: ids are immutable
//! let latest = client.version("users-value", VersionSelector::Latest)?;
//! # Ok::<(), weir_connectors::registry::client::RegistryClientError>(())
//! ```
//!
//! Every base URL is tried in order until one answers; an HTTP answer (even an error) ends the search, only
//! transport failures (connection refused, timeout, TLS) move on to the next URL.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::compatibility::CompatibilityLevel;

/// The content type of Confluent's REST API, sent as `Accept` and `Content-Type`.
pub const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// TLS settings for `https://` registries. Without any, the Mozilla root certificates (webpki-roots) are trusted.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file of the certificate authorities to trust instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain (mutual TLS); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

impl TlsSettings {
    fn is_default(&self) -> bool {
        self.ca_file.is_none() && self.client_cert_file.is_none() && self.client_key_file.is_none()
    }
}

/// Settings of a [`RegistryClient`].
#[derive(Clone)]
pub struct RegistryClientConfig {
    /// Base URLs, tried in order (`http://host:8081`, no trailing slash needed).
    pub urls: Vec<String>,
    /// `user:password` sent as HTTP basic auth (Confluent's `basic.auth.user.info`).
    pub basic_auth: Option<(String, String)>,
    /// TLS settings for `https://` URLs.
    pub tls: TlsSettings,
    /// Time allowed to open a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Time allowed for a whole request (default 30 s).
    pub request_timeout: Duration,
}

impl fmt::Debug for RegistryClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClientConfig")
            .field("urls", &self.urls)
            .field("basic_auth", &self.basic_auth.as_ref().map(|(user, _)| format!("{user}:***")))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl RegistryClientConfig {
    /// Settings for these base URLs with no auth, default TLS and the default timeouts.
    pub fn new<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RegistryClientConfig {
            urls: urls.into_iter().map(|u| u.into().trim_end_matches('/').to_string()).collect(),
            basic_auth: None,
            tls: TlsSettings::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Sends `Authorization: Basic base64(user:password)`.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Parses Confluent's `basic.auth.user.info` form `user:password`.
    pub fn basic_auth_user_info(self, user_info: &str) -> Result<Self, RegistryClientError> {
        match user_info.split_once(':') {
            Some((user, password)) => Ok(self.basic_auth(user, password)),
            None => Err(RegistryClientError::Config("basic auth user info must be `user:password`".into())),
        }
    }

    /// Uses these TLS settings.
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the connect and whole-request timeouts.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
}

/// What a registry call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryClientError {
    /// The registry answered with an error: Confluent's `error_code` (e.g. 40401 subject not found, 40403 schema
    /// not found, 409 incompatible) and its message.
    #[error("schema registry {url} answered HTTP {status}, error_code {error_code}: {message}")]
    Registry {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// Confluent's `error_code` (the HTTP status when the body had none).
        error_code: u32,
        /// Confluent's message (or the body as text).
        message: String,
    },
    /// No registry URL could be reached.
    #[error("cannot reach the schema registry ({}): {message}", .urls.join(", "))]
    Unreachable {
        /// Every URL tried.
        urls: Vec<String>,
        /// The last transport error.
        message: String,
    },
    /// The registry answered something that is not what the API documents.
    #[error("unexpected answer from schema registry {url}: {message}")]
    InvalidResponse {
        /// The URL requested.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The registry's schema does not parse as Avro.
    #[error("schema {id} from schema registry {url} is not a valid Avro schema: {message}")]
    InvalidSchema {
        /// The schema id.
        id: u32,
        /// The registry it came from.
        url: String,
        /// apache-avro's message.
        message: String,
    },
    /// Invalid client settings (bad URL list, unreadable TLS files, ...).
    #[error("invalid schema registry client settings: {0}")]
    Config(String),
}

impl RegistryClientError {
    /// Confluent's `error_code` when the registry answered with an error.
    pub fn error_code(&self) -> Option<u32> {
        match self {
            RegistryClientError::Registry { error_code, .. } => Some(*error_code),
            _ => None,
        }
    }

    /// Subject, version or schema not found (404 / 404xx).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryClientError::Registry { status: 404, .. })
    }
}

/// A version of a subject: `latest` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    /// The newest non-deleted version.
    Latest,
    /// Version N (1-based).
    Number(u32),
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSelector::Latest => f.write_str("latest"),
            VersionSelector::Number(n) => write!(f, "{n}"),
        }
    }
}

impl From<u32> for VersionSelector {
    fn from(n: u32) -> Self {
        VersionSelector::Number(n)
    }
}

/// A schema registered under a subject (`GET /subjects/{s}/versions/{v}`, lookup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version under the subject.
    pub version: u32,
    /// The global schema id (what the wire format carries).
    pub id: u32,
    /// The schema text (JSON).
    pub schema: String,
}

/// The answer of a compatibility test.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompatibilityCheck {
    /// Whether the schema may be registered.
    pub is_compatible: bool,
    /// Why not (the registry's verbose messages; empty when compatible).
    pub messages: Vec<String>,
}

/// A schema fetched by id: its text and its parsed form.
#[derive(Debug)]
pub struct RegisteredSchema {
    /// The global id.
    pub id: u32,
    /// The schema text as the registry answered it.
    pub text: String,
    /// The parsed Avro schema.
    pub schema: Schema,
}

struct Inner {
    config: RegistryClientConfig,
    agent: ureq::Agent,
    authorization: Option<String>,
    by_id: RwLock<HashMap<u32, Arc<RegisteredSchema>>>,
}

/// A blocking, cheaply clonable (shared cache) schema registry client. See the [module docs](self).
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient").field("config", &self.inner.config).finish()
    }
}

impl RegistryClient {
    /// A client with these settings. Reads the TLS files now (fails fast on a bad path); does not connect.
    pub fn new(config: RegistryClientConfig) -> Result<Self, RegistryClientError> {
        if config.urls.is_empty() {
            return Err(RegistryClientError::Config("no schema registry URL given".into()));
        }
        for url in &config.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(RegistryClientError::Config(format!(
                    "schema registry URL {url:?} must start with http:// or https://"
                )));
            }
        }
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
        if !config.tls.is_default() {
            builder = builder.tls_config(Arc::new(tls_config(&config.tls)?));
        }
        let authorization = config.basic_auth.as_ref().map(|(user, password)| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        });
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                agent: builder.build(),
                config,
                authorization,
                by_id: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// A client for one URL with default settings.
    pub fn from_url(url: &str) -> Result<Self, RegistryClientError> {
        Self::new(RegistryClientConfig::new([url]))
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &RegistryClientConfig {
        &self.inner.config
    }

    /// The base URLs, comma separated (for error messages).
    pub fn urls(&self) -> String {
        self.inner.config.urls.join(",")
    }

    /// `GET /subjects`.
    pub fn subjects(&self) -> Result<Vec<String>, RegistryClientError> {
        self.get_json("/subjects")
    }

    /// `GET /subjects/{s}/versions`.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryClientError> {
        self.get_json(&format!("/subjects/{}/versions", encode(subject)))
    }

    /// `POST /subjects/{s}/versions`: registers an AVRO schema (JSON text) and answers its global id (the id of
    /// an identical schema if there is one). Fails with error_code 409 when incompatible.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryClientError> {
        #[derive(Deserialize)]
        struct Id {
            id: u32,
        }
        let answer: Id =
            self.send_json("POST", &format!("/subjects/{}/versions", encode(subject)), &json!({ "schema": schema }))?;
        Ok(answer.id)
    }

    /// [`register`](Self::register) for a parsed schema.
    pub fn register_schema(&self, subject: &str, schema: &Schema) -> Result<u32, RegistryClientError> {
        self.register(subject, &schema_json(schema))
    }

    /// `GET /schemas/ids/{id}`, parsed; cached for the life of the client (ids are immutable).
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryClientError> {
        if let Some(found) = self.inner.by_id.read().expect("schema cache poisoned").get(&id) {
            return Ok(found.clone());
        }
        #[derive(Deserialize)]
        struct Answer {
            schema: String,
            #[serde(rename = "schemaType", default)]
            schema_type: Option<String>,
        }
        let path = format!("/schemas/ids/{id}");
        let answer: Answer = self.get_json(&path)?;
        if let Some(kind) = answer.schema_type.filter(|t| t != "AVRO") {
            return Err(RegistryClientError::InvalidSchema {
                id,
                url: self.urls(),
                message: format!("it is a {kind} schema, not AVRO"),
            });
        }
        let schema = Schema::parse_str(&answer.schema).map_err(|e| RegistryClientError::InvalidSchema {
            id,
            url: self.urls(),
            message: e.to_string(),
        })?;
        let registered = Arc::new(RegisteredSchema { id, text: answer.schema, schema });
        self.inner.by_id.write().expect("schema cache poisoned").insert(id, registered.clone());
        Ok(registered)
    }

    /// How many schemas are cached by id.
    pub fn cached_schemas(&self) -> usize {
        self.inner.by_id.read().expect("schema cache poisoned").len()
    }

    /// `GET /subjects/{s}/versions/{v}`.
    pub fn version(&self, subject: &str, version: VersionSelector) -> Result<SubjectVersion, RegistryClientError> {
        self.get_json(&format!("/subjects/{}/versions/{version}", encode(subject)))
    }

    /// `GET /subjects/{s}/versions/latest`.
    pub fn latest(&self, subject: &str) -> Result<SubjectVersion, RegistryClientError> {
        self.version(subject, VersionSelector::Latest)
    }

    /// `POST /subjects/{s}`: the version and id of this schema under the subject; `None` when the subject or
    /// the schema under it is not registered (40401 / 40403).
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<Option<SubjectVersion>, RegistryClientError> {
        match self.send_json("POST", &format!("/subjects/{}", encode(subject)), &json!({ "schema": schema })) {
            Ok(found) => Ok(Some(found)),
            Err(e) if matches!(e.error_code(), Some(40401 | 40403)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /subjects/{s}` (`?permanent=true`): the versions deleted.
    pub fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>, RegistryClientError> {
        let query = if permanent { "?permanent=true" } else { "" };
        self.request_json("DELETE", &format!("/subjects/{}{query}", encode(subject)), None)
    }

    /// `GET /config`: the global compatibility level.
    pub fn compatibility(&self) -> Result<CompatibilityLevel, RegistryClientError> {
        self.get_level("/config")
    }

    /// `PUT /config`: sets the global compatibility level.
    pub fn set_compatibility(&self, level: CompatibilityLevel) -> Result<(), RegistryClientError> {
        self.put_level("/config", level)
    }

    /// `GET /config/{s}`: the subject's own level, `None` when it has none (40408).
    pub fn subject_compatibility(&self, subject: &str) -> Result<Option<CompatibilityLevel>, RegistryClientError> {
        match self.get_level(&format!("/config/{}", encode(subject))) {
            Ok(level) => Ok(Some(level)),
            Err(e) if matches!(e.error_code(), Some(40408 | 40401)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /config/{s}?defaultToGlobal=true`: the level that applies to the subject.
    pub fn effective_compatibility(&self, subject: &str) -> Result<CompatibilityLevel, RegistryClientError> {
        self.get_level(&format!("/config/{}?defaultToGlobal=true", encode(subject)))
    }

    /// `PUT /config/{s}`: sets the subject's level.
    pub fn set_subject_compatibility(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryClientError> {
        self.put_level(&format!("/config/{}", encode(subject)), level)
    }

    /// `DELETE /config/{s}`: the subject falls back to the global level.
    pub fn delete_subject_compatibility(&self, subject: &str) -> Result<(), RegistryClientError> {
        let _: Value = self.request_json("DELETE", &format!("/config/{}", encode(subject)), None)?;
        Ok(())
    }

    /// `POST /compatibility/subjects/{s}/versions/{v}?verbose=true`: may `schema` be registered, judged against
    /// that version under the subject's level?
    pub fn test_compatibility(
        &self,
        subject: &str,
        version: VersionSelector,
        schema: &str,
    ) -> Result<CompatibilityCheck, RegistryClientError> {
        self.compatibility_check(&format!("/compatibility/subjects/{}/versions/{version}", encode(subject)), schema)
    }

    /// `POST /compatibility/subjects/{s}/versions?verbose=true`: against every version the level names (the
    /// latest, or all for `_TRANSITIVE`).
    pub fn test_compatibility_all(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<CompatibilityCheck, RegistryClientError> {
        self.compatibility_check(&format!("/compatibility/subjects/{}/versions", encode(subject)), schema)
    }

    fn compatibility_check(&self, path: &str, schema: &str) -> Result<CompatibilityCheck, RegistryClientError> {
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
            #[serde(default)]
            messages: Vec<String>,
        }
        let answer: Answer = self.send_json("POST", &format!("{path}?verbose=true"), &json!({ "schema": schema }))?;
        Ok(CompatibilityCheck { is_compatible: answer.is_compatible, messages: answer.messages })
    }

    fn get_level(&self, path: &str) -> Result<CompatibilityLevel, RegistryClientError> {
        let answer: Value = self.get_json(path)?;
        let level = answer.get("compatibilityLevel").or_else(|| answer.get("compatibility")).cloned();
        level.and_then(|l| serde_json::from_value(l).ok()).ok_or_else(|| RegistryClientError::InvalidResponse {
            url: format!("{}{path}", self.inner.config.urls[0]),
            message: format!("no compatibility level in {answer}"),
        })
    }

    fn put_level(&self, path: &str, level: CompatibilityLevel) -> Result<(), RegistryClientError> {
        let _: Value = self.send_json("PUT", path, &json!({ "compatibility": level }))?;
        Ok(())
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RegistryClientError> {
        self.request_json("GET", path, None)
    }

    fn send_json<T: DeserializeOwned>(&self, method: &str, path: &str, body: &Value) -> Result<T, RegistryClientError> {
        self.request_json(method, path, Some(body))
    }

    /// One request, tried against each base URL until one answers.
    fn request_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, RegistryClientError> {
        let mut last_transport_error = String::new();
        for base in &self.inner.config.urls {
            let url = format!("{base}{path}");
            let mut request = self.inner.agent.request(method, &url).set("Accept", REGISTRY_CONTENT_TYPE);
            if let Some(authorization) = &self.inner.authorization {
                request = request.set("Authorization", authorization);
            }
            let result = match body {
                Some(body) => request.set("Content-Type", REGISTRY_CONTENT_TYPE).send_string(&body.to_string()),
                None => request.call(),
            };
            match result {
                Ok(response) => {
                    let text = response.into_string().map_err(|e| RegistryClientError::InvalidResponse {
                        url: url.clone(),
                        message: format!("cannot read the body: {e}"),
                    })?;
                    return serde_json::from_str(&text).map_err(|e| RegistryClientError::InvalidResponse {
                        url,
                        message: format!("{e}: {}", snippet(&text)),
                    });
                }
                Err(ureq::Error::Status(status, response)) => {
                    let text = response.into_string().unwrap_or_default();
                    let (error_code, message) = match serde_json::from_str::<Value>(&text) {
                        Ok(body) => (
                            body.get("error_code").and_then(Value::as_u64).map_or(status as u32, |c| c as u32),
                            body.get("message").and_then(Value::as_str).map_or_else(|| snippet(&text), str::to_string),
                        ),
                        Err(_) => (status as u32, snippet(&text)),
                    };
                    return Err(RegistryClientError::Registry { url, status, error_code, message });
                }
                Err(ureq::Error::Transport(transport)) => {
                    tracing::warn!(%url, error = %transport, "schema registry unreachable, trying the next URL");
                    last_transport_error = transport.to_string();
                }
            }
        }
        Err(RegistryClientError::Unreachable { urls: self.inner.config.urls.clone(), message: last_transport_error })
    }
}

/// The JSON text of a parsed schema, as sent to the registry.
pub fn schema_json(schema: &Schema) -> String {
    serde_json::to_string(schema).expect("an Avro schema always serialises to JSON")
}

fn snippet(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Percent-encodes a path segment (subjects may hold any character).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn tls_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, RegistryClientError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |what: &str, path: &PathBuf, e: &dyn fmt::Display| {
        RegistryClientError::Config(format!("cannot read the {what} PEM file {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| pem_error("CA certificate", path, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error("CA certificate", path, &e))?;
            if certificates.is_empty() {
                return Err(pem_error("CA certificate", path, &"no certificate in it"));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| pem_error("CA certificate", path, &e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| RegistryClientError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_error("client certificate", cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error("client certificate", cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("client key", key, &e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| RegistryClientError::Config(e.to_string()))
        }
        _ => Err(RegistryClientError::Config("a client certificate needs both a certificate and a key file".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(encode("users-value"), "users-value");
        assert_eq!(encode("shop.User"), "shop.User");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn bad_settings_fail_fast() {
        assert!(matches!(
            RegistryClient::new(RegistryClientConfig::new(Vec::<String>::new())),
            Err(RegistryClientError::Config(_))
        ));
        assert!(RegistryClient::from_url("localhost:8081").is_err());
        let missing = TlsSettings { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let error = RegistryClient::new(RegistryClientConfig::new(["https://x"]).tls(missing)).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let half = TlsSettings { client_cert_file: Some("/x.pem".into()), ..Default::default() };
        assert!(RegistryClient::new(RegistryClientConfig::new(["https://x"]).tls(half)).is_err());
        assert!(RegistryClientConfig::new(["http://x"]).basic_auth_user_info("nocolon").is_err());
    }

    #[test]
    fn unreachable_names_every_url() {
        let config = RegistryClientConfig::new(["http://127.0.0.1:9/", "http://127.0.0.1:1"])
            .timeouts(Duration::from_secs(2), Duration::from_secs(2));
        let error = RegistryClient::new(config).unwrap().subjects().unwrap_err();
        let text = error.to_string();
        assert!(text.contains("http://127.0.0.1:9,") || text.contains("http://127.0.0.1:9, "), "{text}");
        assert!(text.contains("http://127.0.0.1:1"), "{text}");
    }
}
