//! Avro: Confluent-framed (schema id from a registry) and raw (a fixed schema), typed structs and generic values.
//!
//! Decoding a framed record: split the 5-byte header ([`wire`](super::wire)), fetch the writer schema by id
//! (cached forever by the [`RegistryClient`]), read the body with it, then resolve the value against the reader
//! schema (apache-avro's schema resolution: defaults for missing fields, int→long→float→double, string↔bytes,
//! unions) and, for typed decoders, deserialize it into `T`. Every record comes with its writer `schema_id`.
//!
//! ```no_run
//! use apache_avro::AvroSchema;
//! use serde::{Deserialize, Serialize};
//! use weir_connectors::codec::avro::{AvroDecoder, AvroEncoder, AvroEncoderConfig};
//! use weir_connectors::codec::{Decode, Encode};
//! use weir_connectors::registry::RegistryClient;
//!
//! #[derive(Debug, Serialize, Deserialize, AvroSchema)]
//! struct User { id: i64, name: String }
//!
//! let client = RegistryClient::from_url("http://localhost:8081")?;
//! // Fails fast unless the schema is registered under "users-value" (auto-register is off by default).
//! let encoder = AvroEncoder::<User>::new(client.clone(), "users", AvroEncoderConfig::default())?;
//! let bytes = encoder.encode(&User { id: 1, name: "ana".into() })?;
//! let decoded = AvroDecoder::<User>::new(client).decode(&bytes)?;
//! assert_eq!(decoded.schema_id, encoder.schema_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{AvroSchema, Schema};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{split_frame, write_header};
use super::{Decode, DecodeErrorKind, Encode, EncodeError};
use crate::registry::client::{schema_json, REGISTRY_CONTENT_TYPE};
use crate::registry::subject::{SchemaRole, SubjectNameStrategy};
use crate::registry::RegistryClient;

/// A decoded record and the id of the schema it was written with.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// The record, in the reader's shape.
    pub value: T,
    /// The writer schema id from the record's header.
    pub schema_id: u32,
}

/// Reads exactly `body`, remembering whether the decoder wanted more bytes than there are (a truncated body).
struct EofTracker<'a> {
    rest: &'a [u8],
    wanted_more: bool,
}

impl Read for EofTracker<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.wanted_more = true;
        }
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// Schemas used by cached readers and writers, interned for the life of the process (bounded by the number of
/// distinct schemas seen): apache-avro's datum readers borrow their schemas, and building them per record (name
/// resolution) costs more than decoding a small record.
fn intern(schema: &Schema) -> &'static Schema {
    static INTERNED: OnceLock<Mutex<HashMap<String, &'static Schema>>> = OnceLock::new();
    let key = serde_json::to_string(schema).expect("an Avro schema always serialises");
    let mut interned = INTERNED.get_or_init(Default::default).lock().expect("schema interner poisoned");
    interned.entry(key).or_insert_with(|| Box::leak(Box::new(schema.clone())))
}

/// Reads one Avro datum that must span `body` exactly, with `reader` (which may resolve against a reader schema).
/// On failure, tells a truncated body, a body that is not valid for the writer schema, and a value that does not
/// resolve against the reader schema apart.
fn read_datum(
    reader: &GenericDatumReader<'static>,
    writer: &'static Schema,
    resolving: bool,
    body: &[u8],
    schema_id: Option<u32>,
) -> Result<Value, DecodeErrorKind> {
    let mut input = EofTracker { rest: body, wanted_more: false };
    match reader.read_value(&mut input) {
        // apache-avro reads a union whose index is cut off at the end of the input as null: a complete datum
        // never asks for bytes past its end, so that is a truncated body too.
        Ok(_) if input.wanted_more => Err(DecodeErrorKind::TruncatedBody {
            schema_id,
            len: body.len(),
            message: "the body ends inside the record".to_string(),
        }),
        Ok(value) if input.rest.is_empty() => Ok(value),
        Ok(_) => Err(DecodeErrorKind::TrailingBytes { schema_id, len: body.len(), extra: input.rest.len() }),
        Err(e) if input.wanted_more => {
            Err(DecodeErrorKind::TruncatedBody { schema_id, len: body.len(), message: e.to_string() })
        }
        Err(e) if resolving => {
            // Rare path: does the body decode with the writer schema alone? Then resolution failed.
            match GenericDatumReader::builder(writer).build().and_then(|r| r.read_value(&mut &body[..])) {
                Ok(_) => Err(DecodeErrorKind::Resolution { schema_id, message: e.to_string() }),
                Err(_) => Err(DecodeErrorKind::InvalidAvro { schema_id, message: e.to_string() }),
            }
        }
        Err(e) => Err(DecodeErrorKind::InvalidAvro { schema_id, message: e.to_string() }),
    }
}

/// A datum reader for one writer schema, resolving against the reader schema unless they are the same.
struct PreparedReader {
    reader: GenericDatumReader<'static>,
    writer: &'static Schema,
    resolving: bool,
}

impl PreparedReader {
    fn new(
        writer: &'static Schema,
        reader_schema: Option<&'static Schema>,
        schema_id: Option<u32>,
    ) -> Result<Self, DecodeErrorKind> {
        let reader_schema = reader_schema.filter(|r| !std::ptr::eq(*r, writer));
        let reader = GenericDatumReader::builder(writer)
            .maybe_reader_schema(reader_schema)
            .build()
            .map_err(|e| DecodeErrorKind::InvalidAvro { schema_id, message: e.to_string() })?;
        Ok(PreparedReader { reader, writer, resolving: reader_schema.is_some() })
    }

    fn read(&self, body: &[u8], schema_id: Option<u32>) -> Result<Value, DecodeErrorKind> {
        read_datum(&self.reader, self.writer, self.resolving, body, schema_id)
    }
}

fn to_typed<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeErrorKind> {
    apache_avro::from_value(value)
        .map_err(|e| DecodeErrorKind::Type { type_name: std::any::type_name::<T>(), message: e.to_string() })
}

/// The framed decoding every Avro decoder shares: header, writer schema from the registry, body, resolution.
/// Each clone (one per worker) has its own cache of prepared readers by writer schema id.
struct FramedReader {
    client: RegistryClient,
    reader_schema: Option<&'static Schema>,
    readers: RwLock<HashMap<u32, Arc<PreparedReader>>>,
}

impl Clone for FramedReader {
    fn clone(&self) -> Self {
        FramedReader::new(self.client.clone(), self.reader_schema)
    }
}

impl std::fmt::Debug for FramedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedReader")
            .field("registry", &self.client.urls())
            .field("reader_schema", &self.reader_schema.and_then(|s| s.name()).map(|n| n.fullname(None)))
            .finish()
    }
}

impl FramedReader {
    fn new(client: RegistryClient, reader_schema: Option<&'static Schema>) -> Self {
        FramedReader { client, reader_schema, readers: RwLock::new(HashMap::new()) }
    }

    fn prepared(&self, schema_id: u32) -> Result<Arc<PreparedReader>, DecodeErrorKind> {
        if let Some(found) = self.readers.read().expect("reader cache poisoned").get(&schema_id) {
            return Ok(found.clone());
        }
        let writer = self
            .client
            .schema_by_id(schema_id)
            .map_err(|e| DecodeErrorKind::from_registry(schema_id, e, self.client.urls()))?;
        let prepared = Arc::new(PreparedReader::new(intern(&writer.schema), self.reader_schema, Some(schema_id))?);
        self.readers.write().expect("reader cache poisoned").insert(schema_id, prepared.clone());
        Ok(prepared)
    }

    fn read(&self, bytes: &[u8]) -> Result<Decoded<Value>, DecodeErrorKind> {
        let (schema_id, body) = split_frame(bytes)?;
        let value = self.prepared(schema_id)?.read(body, Some(schema_id))?;
        Ok(Decoded { value, schema_id })
    }
}

/// Decodes Confluent-framed Avro into `T` (a `#[derive(Deserialize, AvroSchema)]` struct): the writer schema is
/// resolved against `T`'s schema, so records written with older or newer compatible schemas decode.
pub struct AvroDecoder<T> {
    framed: FramedReader,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for AvroDecoder<T> {
    fn clone(&self) -> Self {
        AvroDecoder { framed: self.framed.clone(), _type: PhantomData }
    }
}

impl<T> std::fmt::Debug for AvroDecoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AvroDecoder<{}>({:?})", std::any::type_name::<T>(), self.framed)
    }
}

impl<T: DeserializeOwned + AvroSchema> AvroDecoder<T> {
    /// A decoder whose reader schema is `T::get_schema()`.
    pub fn new(client: RegistryClient) -> Self {
        Self::with_reader_schema(client, T::get_schema())
    }
}

impl<T: DeserializeOwned> AvroDecoder<T> {
    /// A decoder with this reader schema (which `T` must deserialize from).
    pub fn with_reader_schema(client: RegistryClient, reader_schema: Schema) -> Self {
        AvroDecoder { framed: FramedReader::new(client, Some(intern(&reader_schema))), _type: PhantomData }
    }

    /// A decoder that reads every record in its writer's shape (no resolution) before deserializing into `T`.
    pub fn writer_schema_only(client: RegistryClient) -> Self {
        AvroDecoder { framed: FramedReader::new(client, None), _type: PhantomData }
    }
}

impl<T: DeserializeOwned> Decode for AvroDecoder<T> {
    type Output = Decoded<T>;

    fn decode(&self, bytes: &[u8]) -> Result<Decoded<T>, DecodeErrorKind> {
        let Decoded { value, schema_id } = self.framed.read(bytes)?;
        Ok(Decoded { value: to_typed(&value)?, schema_id })
    }
}

/// Decodes Confluent-framed Avro into generic [`Value`]s, in the writer's shape or resolved against a reader schema.
#[derive(Debug, Clone)]
pub struct GenericAvroDecoder {
    framed: FramedReader,
}

impl GenericAvroDecoder {
    /// Values in the shape of each record's writer schema.
    pub fn new(client: RegistryClient) -> Self {
        GenericAvroDecoder { framed: FramedReader::new(client, None) }
    }

    /// Values resolved against `reader_schema`.
    pub fn with_reader_schema(client: RegistryClient, reader_schema: Schema) -> Self {
        GenericAvroDecoder { framed: FramedReader::new(client, Some(intern(&reader_schema))) }
    }
}

impl Decode for GenericAvroDecoder {
    type Output = Decoded<Value>;

    fn decode(&self, bytes: &[u8]) -> Result<Decoded<Value>, DecodeErrorKind> {
        self.framed.read(bytes)
    }
}

/// Decodes raw (unframed) Avro binary written with a known schema into `T` ([`Value`] via
/// [`RawAvroDecoder::generic`]).
pub struct RawAvroDecoder<T> {
    prepared: Arc<PreparedReader>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for RawAvroDecoder<T> {
    fn clone(&self) -> Self {
        RawAvroDecoder { prepared: self.prepared.clone(), _type: PhantomData }
    }
}

impl<T> RawAvroDecoder<T> {
    /// Reads data written with `writer_schema`, resolved against `reader_schema` when given. Fails on a schema
    /// whose named references do not resolve.
    pub fn new(writer_schema: Schema, reader_schema: Option<Schema>) -> Result<Self, DecodeErrorKind> {
        let prepared = PreparedReader::new(intern(&writer_schema), reader_schema.as_ref().map(intern), None)?;
        Ok(RawAvroDecoder { prepared: Arc::new(prepared), _type: PhantomData })
    }

    fn read(&self, bytes: &[u8]) -> Result<Value, DecodeErrorKind> {
        self.prepared.read(bytes, None)
    }
}

impl RawAvroDecoder<Value> {
    /// Generic values written with `writer_schema`.
    pub fn generic(writer_schema: Schema) -> Result<RawGenericAvroDecoder, DecodeErrorKind> {
        Ok(RawGenericAvroDecoder(RawAvroDecoder::new(writer_schema, None)?))
    }
}

impl<T: DeserializeOwned> Decode for RawAvroDecoder<T> {
    type Output = T;

    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeErrorKind> {
        to_typed(&self.read(bytes)?)
    }
}

/// Raw Avro into generic [`Value`]s (see [`RawAvroDecoder::generic`]).
#[derive(Clone)]
pub struct RawGenericAvroDecoder(RawAvroDecoder<Value>);

impl Decode for RawGenericAvroDecoder {
    type Output = Value;

    fn decode(&self, bytes: &[u8]) -> Result<Value, DecodeErrorKind> {
        self.0.read(bytes)
    }
}

/// How an [`AvroEncoder`] finds its schema id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvroEncoderConfig {
    /// How the subject is named (default `TopicName`: `<topic>-value`).
    pub strategy: SubjectNameStrategy,
    /// Key or value schema (default value).
    pub role: SchemaRole,
    /// Register the schema when it is not registered yet (default `false`: a producer should not change the
    /// registry behind its owners' backs; like Confluent's `auto.register.schemas=false`).
    pub auto_register: bool,
}

impl Default for AvroEncoderConfig {
    fn default() -> Self {
        AvroEncoderConfig { strategy: SubjectNameStrategy::TopicName, role: SchemaRole::Value, auto_register: false }
    }
}

impl AvroEncoderConfig {
    /// Sets the subject name strategy.
    pub fn strategy(mut self, strategy: SubjectNameStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Encodes keys (subject `<topic>-key` under `TopicName`).
    pub fn key(mut self) -> Self {
        self.role = SchemaRole::Key;
        self
    }

    /// Registers the schema if needed.
    pub fn auto_register(mut self, auto_register: bool) -> Self {
        self.auto_register = auto_register;
        self
    }
}

/// A datum writer for one schema, built once (the schema is interned).
struct PreparedWriter {
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
    schema_id: Option<u32>,
}

impl PreparedWriter {
    fn new(schema: &Schema, schema_id: Option<u32>) -> Result<Self, EncodeError> {
        let schema = intern(schema);
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| EncodeError::Avro { schema_id, message: e.to_string() })?;
        Ok(PreparedWriter { schema, writer, schema_id })
    }

    fn error(&self, error: apache_avro::Error) -> EncodeError {
        EncodeError::Avro { schema_id: self.schema_id, message: error.to_string() }
    }

    /// Appends a generic value, resolved against the schema first (so e.g. a bare value fills a union).
    fn write_value(&self, value: Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let value = value.resolve(self.schema).map_err(|e| self.error(e))?;
        let start = out.len();
        self.writer.write_value_ref(out, &value).map(|_| ()).map_err(|e| {
            out.truncate(start);
            self.error(e)
        })
    }

    /// Appends a `Serialize` value, serialized straight against the schema (no intermediate `Value`).
    fn write_ser<T: Serialize>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        self.writer.write_ser(out, value).map(|_| ()).map_err(|e| {
            out.truncate(start);
            self.error(e)
        })
    }
}

/// The schema, id and subject an encoder writes with, found by the pre-flight.
#[derive(Clone)]
struct RegisteredWriter {
    writer: Arc<PreparedWriter>,
    schema_id: u32,
    subject: String,
}

impl RegisteredWriter {
    /// The pre-flight: look the schema up under its subject; if it is not there, check compatibility and either
    /// register it (auto-register) or fail with what to do.
    fn preflight(
        client: &RegistryClient,
        topic: &str,
        schema: Schema,
        config: AvroEncoderConfig,
    ) -> Result<Self, EncodeError> {
        let subject = config.strategy.subject(topic, config.role, &schema)?;
        let text = schema_json(&schema);
        if let Some(found) = client.lookup(&subject, &text)? {
            tracing::info!(%subject, schema_id = found.id, version = found.version, "Avro encoder schema is registered");
            let writer = Arc::new(PreparedWriter::new(&schema, Some(found.id))?);
            return Ok(RegisteredWriter { writer, schema_id: found.id, subject });
        }
        let name = schema.name().map_or_else(|| "the schema".to_string(), |n| format!("schema {}", n.fullname(None)));
        let has_versions = match client.versions(&subject) {
            Ok(versions) => !versions.is_empty(),
            Err(e) if e.error_code() == Some(40401) => false,
            Err(e) => return Err(e.into()),
        };
        let check = if has_versions { Some(client.test_compatibility_all(&subject, &text)?) } else { None };
        if let Some(check) = check.as_ref().filter(|c| !c.is_compatible) {
            return Err(EncodeError::Incompatible(format!(
                "{name} is not registered under subject \"{subject}\" at schema registry {} and is incompatible with \
                 the subject's versions, so it cannot be registered: {}",
                client.urls(),
                check.messages.join("; ")
            )));
        }
        if config.auto_register {
            let schema_id = client.register(&subject, &text)?;
            tracing::info!(%subject, schema_id, "Avro encoder registered its schema (auto-register)");
            let writer = Arc::new(PreparedWriter::new(&schema, Some(schema_id))?);
            return Ok(RegisteredWriter { writer, schema_id, subject });
        }
        let state = if check.is_some() {
            "it is compatible with the subject's existing versions"
        } else {
            "the subject has no versions yet"
        };
        let url = client.config().urls[0].clone();
        Err(EncodeError::NotRegistered(format!(
            "{name} is not registered under subject \"{subject}\" at schema registry {} and auto-register is off \
             ({state}): register it first (POST {url}/subjects/{subject}/versions with Content-Type \
             {REGISTRY_CONTENT_TYPE} and body {{\"schema\": <the schema JSON>}}, or RegistryClient::register), \
             or enable auto-register (AvroEncoderConfig::auto_register(true)). The schema: {text}",
            client.urls()
        )))
    }

    fn write_value(&self, value: Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        write_header(self.schema_id, out);
        self.writer.write_value(value, out).inspect_err(|_| out.truncate(start))
    }

    fn write_ser<T: Serialize>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        write_header(self.schema_id, out);
        self.writer.write_ser(value, out).inspect_err(|_| out.truncate(start))
    }
}

/// Encodes `T` as Confluent-framed Avro with a registered schema id (see [`AvroEncoderConfig`] for the
/// pre-flight done when it is built).
pub struct AvroEncoder<T> {
    writer: RegisteredWriter,
    _type: PhantomData<fn(&T)>,
}

impl<T> Clone for AvroEncoder<T> {
    fn clone(&self) -> Self {
        AvroEncoder { writer: self.writer.clone(), _type: PhantomData }
    }
}

impl<T> std::fmt::Debug for AvroEncoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroEncoder")
            .field("type", &std::any::type_name::<T>())
            .field("subject", &self.writer.subject)
            .field("schema_id", &self.writer.schema_id)
            .finish()
    }
}

impl<T: Serialize + AvroSchema> AvroEncoder<T> {
    /// An encoder of `T` with `T::get_schema()`, for records written to `topic`; runs the pre-flight now.
    pub fn new(client: RegistryClient, topic: &str, config: AvroEncoderConfig) -> Result<Self, EncodeError> {
        Self::with_schema(client, topic, T::get_schema(), config)
    }
}

impl<T> AvroEncoder<T> {
    /// An encoder with this writer schema; runs the pre-flight now.
    pub fn with_schema(
        client: RegistryClient,
        topic: &str,
        schema: Schema,
        config: AvroEncoderConfig,
    ) -> Result<Self, EncodeError> {
        Ok(AvroEncoder { writer: RegisteredWriter::preflight(&client, topic, schema, config)?, _type: PhantomData })
    }

    /// The registered schema id every record is framed with.
    pub fn schema_id(&self) -> u32 {
        self.writer.schema_id
    }

    /// The subject the schema was found (or registered) under.
    pub fn subject(&self) -> &str {
        &self.writer.subject
    }

    /// The writer schema.
    pub fn schema(&self) -> &Schema {
        self.writer.writer.schema
    }

    /// Encodes a generic value (resolved against the writer schema first).
    pub fn encode_value(&self, value: Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.writer.write_value(value, out)
    }
}

impl<T: Serialize> Encode<T> for AvroEncoder<T> {
    fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.writer.write_ser(value, out)
    }
}

/// Encodes `T` as raw (unframed) Avro binary with a fixed schema.
pub struct RawAvroEncoder<T> {
    writer: Arc<PreparedWriter>,
    _type: PhantomData<fn(&T)>,
}

impl<T> Clone for RawAvroEncoder<T> {
    fn clone(&self) -> Self {
        RawAvroEncoder { writer: self.writer.clone(), _type: PhantomData }
    }
}

impl<T: AvroSchema> RawAvroEncoder<T> {
    /// An encoder with `T::get_schema()`.
    pub fn new() -> Result<Self, EncodeError> {
        Self::with_schema(T::get_schema())
    }
}

impl<T> RawAvroEncoder<T> {
    /// An encoder with this schema. Fails on a schema whose named references do not resolve.
    pub fn with_schema(schema: Schema) -> Result<Self, EncodeError> {
        Ok(RawAvroEncoder { writer: Arc::new(PreparedWriter::new(&schema, None)?), _type: PhantomData })
    }

    /// Encodes a generic value (resolved against the schema first).
    pub fn encode_value(&self, value: Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.writer.write_value(value, out)
    }
}

impl<T: Serialize> Encode<T> for RawAvroEncoder<T> {
    fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.writer.write_ser(value, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
    struct Reading {
        sensor: String,
        value: i32,
        note: Option<String>,
    }

    fn reading() -> Reading {
        Reading { sensor: "s-1".into(), value: 42, note: Some("ok".into()) }
    }

    #[test]
    fn raw_round_trip_typed_and_generic() {
        let encoder = RawAvroEncoder::<Reading>::new().unwrap();
        let bytes = encoder.encode(&reading()).unwrap();
        assert_eq!(
            RawAvroDecoder::<Reading>::new(Reading::get_schema(), None).unwrap().decode(&bytes).unwrap(),
            reading()
        );
        let value = RawAvroDecoder::generic(Reading::get_schema()).unwrap().decode(&bytes).unwrap();
        let Value::Record(fields) = value else { panic!("not a record") };
        assert_eq!(fields[1], ("value".to_string(), Value::Int(42)));
        let none = Reading { note: None, ..reading() };
        let bytes = encoder.encode(&none).unwrap();
        assert_eq!(RawAvroDecoder::<Reading>::new(Reading::get_schema(), None).unwrap().decode(&bytes).unwrap(), none);
    }

    #[test]
    fn raw_truncated_and_trailing_bodies() {
        let bytes = RawAvroEncoder::<Reading>::new().unwrap().encode(&reading()).unwrap();
        let decoder = RawAvroDecoder::<Reading>::new(Reading::get_schema(), None).unwrap();
        for cut in 0..bytes.len() {
            let error = decoder.decode(&bytes[..cut]).unwrap_err();
            assert_eq!(error.name(), "truncated_body", "cut at {cut}: {error}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[2, 4]);
        let error = decoder.decode(&longer).unwrap_err();
        assert_eq!(error, DecodeErrorKind::TrailingBytes { schema_id: None, len: bytes.len() + 2, extra: 2 });
    }

    #[test]
    fn raw_promotion_and_default() {
        // Written with {sensor: string, value: int}; read with value: long and a defaulted field added.
        let writer = Schema::parse_str(
            r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"int"}]}"#,
        )
        .unwrap();
        let reader = Schema::parse_str(
            r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"long"},
               {"name":"unit","type":"string","default":"celsius"}]}"#,
        )
        .unwrap();
        let bytes = RawAvroEncoder::<Value>::with_schema(writer.clone()).unwrap();
        let mut out = Vec::new();
        bytes
            .encode_value(
                Value::Record(vec![("sensor".into(), Value::String("a".into())), ("value".into(), Value::Int(7))]),
                &mut out,
            )
            .unwrap();
        let value = RawAvroDecoder::<Value>::new(writer, Some(reader)).unwrap().read(&out).unwrap();
        assert_eq!(
            value,
            Value::Record(vec![
                ("sensor".into(), Value::String("a".into())),
                ("value".into(), Value::Long(7)),
                ("unit".into(), Value::String("celsius".into())),
            ])
        );
    }

    #[test]
    fn resolution_invalid_body_and_type_errors_are_told_apart() {
        let writer =
            Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#).unwrap();
        let reader = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#).unwrap();
        let mut body = Vec::new();
        RawAvroEncoder::<Value>::with_schema(writer.clone())
            .unwrap()
            .encode_value(Value::Record(vec![("a".into(), Value::String("x".into()))]), &mut body)
            .unwrap();
        let error = RawAvroDecoder::<Value>::new(writer.clone(), Some(reader)).unwrap().read(&body).unwrap_err();
        assert_eq!(error.name(), "schema_resolution", "{error}");
        assert!(error.to_string().starts_with("writer schema (raw Avro, no id) cannot be read with the reader schema"));
        // A union index that does not exist.
        let union = Schema::parse_str(r#"["null","string"]"#).unwrap();
        let error = RawAvroDecoder::generic(union).unwrap().decode(&[0x08]).unwrap_err();
        assert_eq!(error.name(), "invalid_avro", "{error}");
        // The value decodes but does not fit the Rust type.
        let error = RawAvroDecoder::<Reading>::new(writer, None).unwrap().decode(&body).unwrap_err();
        assert_eq!(error.name(), "type_mismatch", "{error}");
        assert!(error.to_string().contains("Reading"), "{error}");
    }
}
