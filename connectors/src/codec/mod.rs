//! Codecs: explicit, typed stages between the bytes a source delivers and the records a dataflow works on.
//!
//! | stage | input | output |
//! |---|---|---|
//! | [`TextDecoder`] | `&[u8]` | `String` (UTF-8 checked) |
//! | [`json::JsonDecoder<T>`] | `&[u8]` | `T: DeserializeOwned` (`serde_json::Value` for generic JSON) |
//! | [`avro::AvroDecoder<T>`] | `&[u8]` (Confluent-framed) | [`avro::Decoded<T>`] (`value` + `schema_id`) |
//! | [`avro::GenericAvroDecoder`] | `&[u8]` (Confluent-framed) | [`avro::Decoded<apache_avro::types::Value>`] |
//! | [`avro::RawAvroDecoder<T>`] | `&[u8]` (bare Avro binary) | `T` |
//!
//! and the encoders the other way ([`TextEncoder`], [`json::JsonEncoder`], [`avro::AvroEncoder`],
//! [`avro::RawAvroEncoder`]). Each decoder implements [`Decode`], each encoder [`Encode`]; a stage's input and
//! output types say what it expects, so bytes, text and structs cannot be confused.
//!
//! A decode failure is a [`DecodeError`]: the [`RecordOrigin`] (topic, partition, offset) and a
//! [`DecodeErrorKind`] saying what was seen. [`DecodeStage`] applies a decoder with a policy: fail the query, or
//! send the raw bytes and the reason to a [`dead_letter`] target and count them. Nothing is dropped silently.

pub mod avro;
pub mod dead_letter;
pub mod json;
pub mod wire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::registry::RegistryClientError;
use dead_letter::{DeadLetter, DeadLetterTarget};

/// Where a payload came from: named in every error and dead letter. For files, `topic` is the file name,
/// `partition` 0 and `offset` the line number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RecordOrigin {
    /// Kafka topic (or file).
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

impl RecordOrigin {
    /// The origin of one Kafka record.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        RecordOrigin { topic: topic.into(), partition, offset }
    }
}

impl fmt::Display for RecordOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "topic {} partition {} offset {}", self.topic, self.partition, self.offset)
    }
}

/// What was wrong with one payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The first byte is not Confluent's magic byte `0x00`.
    #[error("expected magic byte 0x00, got 0x{got:02X}{}", describe_byte(*got))]
    WrongMagicByte {
        /// The byte found.
        got: u8,
    },
    /// Fewer than 5 bytes: no complete magic byte + schema id.
    #[error("{}", if *len == 0 {
        "empty payload: expected the 5-byte Confluent header (magic byte 0x00 and a 4-byte schema id)".to_string()
    } else {
        format!("truncated Confluent header: {len} byte(s), expected at least 5 (magic byte 0x00 and a 4-byte schema id)")
    })]
    TruncatedHeader {
        /// How many bytes there were.
        len: usize,
    },
    /// The registry has no schema with this id.
    #[error("unknown schema id {schema_id}: schema registry {registry} has no schema with this id ({message})")]
    UnknownSchemaId {
        /// The id read from the header.
        schema_id: u32,
        /// The registry URL(s) asked.
        registry: String,
        /// The registry's answer.
        message: String,
    },
    /// The body ends before the record its writer schema describes.
    #[error("truncated Avro body: the {len} byte(s) after the header end before the record of writer schema {} does ({message})", fmt_id(*schema_id))]
    TruncatedBody {
        /// The writer schema id (`None` for raw Avro).
        schema_id: Option<u32>,
        /// Body length.
        len: usize,
        /// apache-avro's message.
        message: String,
    },
    /// Bytes left over after the record: the writer schema does not describe these bytes.
    #[error("{extra} byte(s) left after the Avro record of writer schema {} ({len}-byte body): the bytes were not written with this schema", fmt_id(*schema_id))]
    TrailingBytes {
        /// The writer schema id (`None` for raw Avro).
        schema_id: Option<u32>,
        /// Body length.
        len: usize,
        /// Bytes not consumed.
        extra: usize,
    },
    /// The body is not valid Avro for its writer schema.
    #[error("invalid Avro body for writer schema {}: {message}", fmt_id(*schema_id))]
    InvalidAvro {
        /// The writer schema id (`None` for raw Avro).
        schema_id: Option<u32>,
        /// apache-avro's message.
        message: String,
    },
    /// The writer schema cannot be read with the reader schema (schema resolution failed).
    #[error("writer schema {} cannot be read with the reader schema: {message}", fmt_id(*schema_id))]
    Resolution {
        /// The writer schema id (`None` for raw Avro).
        schema_id: Option<u32>,
        /// Why.
        message: String,
    },
    /// The decoded value does not fit the Rust type asked for.
    #[error("the value does not fit {type_name}: {message}")]
    Type {
        /// The Rust type.
        type_name: &'static str,
        /// serde's message.
        message: String,
    },
    /// Not UTF-8.
    #[error("invalid UTF-8 at byte {valid_up_to}: {snippet}")]
    InvalidUtf8 {
        /// Bytes before the first invalid sequence.
        valid_up_to: usize,
        /// The bytes around it (escaped).
        snippet: String,
    },
    /// Text that does not parse as JSON (or not as the type asked for).
    #[error("invalid JSON at line {line} column {column}: {message}; near `{snippet}`")]
    InvalidJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's message (without the position).
        message: String,
        /// The text around the position.
        snippet: String,
    },
    /// The registry could not be asked (unreachable, bad answer): not a problem of the record, so a
    /// [`DecodeStage`] fails instead of dead-lettering it.
    #[error("cannot fetch writer schema id {schema_id}: {message}")]
    Registry {
        /// The schema id asked for.
        schema_id: u32,
        /// The client error.
        message: String,
    },
}

fn fmt_id(id: Option<u32>) -> String {
    id.map_or_else(|| "(raw Avro, no id)".to_string(), |id| format!("id {id}"))
}

fn describe_byte(byte: u8) -> String {
    let printable = if (0x20..=0x7E).contains(&byte) { format!(" ('{}')", byte as char) } else { String::new() };
    match wire::looks_like(byte) {
        Some(hint) => format!("{printable}: {hint}"),
        None => printable,
    }
}

impl DecodeErrorKind {
    /// A short stable name of the kind (`wrong_magic_byte`, `unknown_schema_id`, ...), for dead letters and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            DecodeErrorKind::WrongMagicByte { .. } => "wrong_magic_byte",
            DecodeErrorKind::TruncatedHeader { .. } => "truncated_header",
            DecodeErrorKind::UnknownSchemaId { .. } => "unknown_schema_id",
            DecodeErrorKind::TruncatedBody { .. } => "truncated_body",
            DecodeErrorKind::TrailingBytes { .. } => "trailing_bytes",
            DecodeErrorKind::InvalidAvro { .. } => "invalid_avro",
            DecodeErrorKind::Resolution { .. } => "schema_resolution",
            DecodeErrorKind::Type { .. } => "type_mismatch",
            DecodeErrorKind::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeErrorKind::InvalidJson { .. } => "invalid_json",
            DecodeErrorKind::Registry { .. } => "registry_unavailable",
        }
    }

    /// Whether the payload itself is at fault (so it may go to a dead-letter output). `false` for registry
    /// outages: dead-lettering every record while the registry is down would empty the topic into the
    /// dead-letter output.
    pub fn is_bad_data(&self) -> bool {
        !matches!(self, DecodeErrorKind::Registry { .. })
    }

    /// Attaches where the payload came from.
    pub fn at(self, origin: &RecordOrigin) -> DecodeError {
        DecodeError { origin: Some(origin.clone()), kind: self }
    }

    pub(crate) fn from_registry(schema_id: u32, error: RegistryClientError, registry: String) -> Self {
        match error {
            RegistryClientError::Registry { error_code: 40403, message, .. }
            | RegistryClientError::Registry { status: 404, message, .. } => {
                DecodeErrorKind::UnknownSchemaId { schema_id, registry, message }
            }
            RegistryClientError::InvalidSchema { message, .. } => {
                DecodeErrorKind::InvalidAvro { schema_id: Some(schema_id), message }
            }
            other => DecodeErrorKind::Registry { schema_id, message: other.to_string() },
        }
    }
}

/// A payload that could not be decoded: where it came from and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Topic, partition and offset (when known).
    pub origin: Option<RecordOrigin>,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "cannot decode the record at {origin}: {}", self.kind),
            None => write!(f, "cannot decode a record: {}", self.kind),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        DecodeError { origin: None, kind }
    }
}

/// A value that could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The value does not fit the schema.
    #[error("cannot encode the value with schema {}: {message}", fmt_id(*schema_id))]
    Avro {
        /// The schema id (`None` for raw Avro).
        schema_id: Option<u32>,
        /// apache-avro's message.
        message: String,
    },
    /// serde_json failed (e.g. a map with non-string keys).
    #[error("cannot encode the value as JSON: {0}")]
    Json(String),
    /// The encoder's schema is not registered under its subject and auto-register is off.
    #[error("{0}")]
    NotRegistered(String),
    /// The schema cannot be registered: it is incompatible with the subject's versions.
    #[error("{0}")]
    Incompatible(String),
    /// A registry call failed.
    #[error(transparent)]
    Registry(#[from] RegistryClientError),
    /// The subject name strategy needs a named schema.
    #[error(transparent)]
    Subject(#[from] crate::registry::subject::UnnamedSchemaError),
}

/// A decoding stage: bytes in, `Output` out, or what was wrong with the bytes.
pub trait Decode {
    /// What one payload decodes to.
    type Output;

    /// Decodes one payload.
    fn decode(&self, bytes: &[u8]) -> Result<Self::Output, DecodeErrorKind>;

    /// Decodes one payload, naming where it came from in the error.
    fn decode_at(&self, bytes: &[u8], origin: &RecordOrigin) -> Result<Self::Output, DecodeError> {
        self.decode(bytes).map_err(|kind| kind.at(origin))
    }
}

/// An encoding stage: a `T` in, bytes out.
pub trait Encode<T: ?Sized> {
    /// Appends the encoding of `value` to `out`.
    fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The encoding of `value`.
    fn encode(&self, value: &T) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(value, &mut out)?;
        Ok(out)
    }
}

/// Bytes → UTF-8 text.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextDecoder;

impl Decode for TextDecoder {
    type Output = String;

    fn decode(&self, bytes: &[u8]) -> Result<String, DecodeErrorKind> {
        decode_utf8(bytes).map(str::to_string)
    }
}

/// Text → UTF-8 bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextEncoder;

impl<S: AsRef<str> + ?Sized> Encode<S> for TextEncoder {
    fn encode_into(&self, value: &S, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(value.as_ref().as_bytes());
        Ok(())
    }
}

pub(crate) fn decode_utf8(bytes: &[u8]) -> Result<&str, DecodeErrorKind> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let start = at.saturating_sub(16);
        let end = (at + 16).min(bytes.len());
        DecodeErrorKind::InvalidUtf8 { valid_up_to: at, snippet: bytes[start..end].escape_ascii().to_string() }
    })
}

/// What a [`DecodeStage`] does with a payload that does not decode.
#[derive(Clone)]
pub enum OnDecodeError {
    /// Return the error (the query should fail with it). The default: a bad record is never skipped unless asked.
    Fail,
    /// Send the raw bytes and the reason to this dead-letter target, count it, and go on.
    DeadLetter(Arc<dyn DeadLetterTarget>),
}

impl fmt::Debug for OnDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnDecodeError::Fail => f.write_str("Fail"),
            OnDecodeError::DeadLetter(_) => f.write_str("DeadLetter(..)"),
        }
    }
}

/// Counts of a [`DecodeStage`], shared by its clones (one per worker) so a test or the progress report can read
/// them: every payload is either decoded or dead-lettered (or the stage failed).
#[derive(Debug, Default)]
pub struct DecodeCounters {
    /// Payloads decoded.
    pub decoded: AtomicU64,
    /// Payloads sent to the dead-letter target.
    pub dead_lettered: AtomicU64,
}

impl DecodeCounters {
    /// `(decoded, dead_lettered)`.
    pub fn get(&self) -> (u64, u64) {
        (self.decoded.load(Ordering::Relaxed), self.dead_lettered.load(Ordering::Relaxed))
    }
}

/// Why a [`DecodeStage`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeStageError {
    /// A payload did not decode and the policy is [`OnDecodeError::Fail`], or the registry is unreachable.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The dead-letter target could not be written: the record would otherwise be lost.
    #[error("cannot write the dead letter for the record at {origin}: {error}")]
    DeadLetter {
        /// The record.
        origin: RecordOrigin,
        /// The target's error.
        error: std::io::Error,
    },
}

/// A decoder with an error policy, for use inside an operator (clone it into each worker; the counters and
/// the dead-letter target are shared).
///
/// ```no_run
/// use std::sync::Arc;
/// use weir_connectors::codec::{json::JsonDecoder, DecodeStage, OnDecodeError, RecordOrigin};
/// use weir_connectors::codec::dead_letter::DeadLetterFile;
/// let dead = Arc::new(DeadLetterFile::create("dead-letters.jsonl")?);
/// let stage = DecodeStage::new(JsonDecoder::<serde_json::Value>::new(), OnDecodeError::DeadLetter(dead));
/// let decoded = stage.decode(b"{oops", &RecordOrigin::new("events", 0, 42))?; // None: dead-lettered
/// assert!(decoded.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DecodeStage<D> {
    decoder: D,
    on_error: OnDecodeError,
    counters: Arc<DecodeCounters>,
}

impl<D: Decode> DecodeStage<D> {
    /// Applies `decoder` with this policy.
    pub fn new(decoder: D, on_error: OnDecodeError) -> Self {
        DecodeStage { decoder, on_error, counters: Arc::new(DecodeCounters::default()) }
    }

    /// The decoder.
    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<DecodeCounters> {
        &self.counters
    }

    /// Decodes one payload: `Ok(Some(value))`; `Ok(None)` when it went to the dead-letter target (counted);
    /// `Err` when the policy is to fail, when the registry cannot be asked, or when the dead letter cannot be
    /// written.
    pub fn decode(&self, bytes: &[u8], origin: &RecordOrigin) -> Result<Option<D::Output>, DecodeStageError> {
        match self.decoder.decode(bytes) {
            Ok(value) => {
                self.counters.decoded.fetch_add(1, Ordering::Relaxed);
                Ok(Some(value))
            }
            Err(kind) => match &self.on_error {
                OnDecodeError::DeadLetter(target) if kind.is_bad_data() => {
                    let letter = DeadLetter::new(bytes, &kind, origin);
                    target
                        .write(std::slice::from_ref(&letter))
                        .map_err(|error| DecodeStageError::DeadLetter { origin: origin.clone(), error })?;
                    tracing::warn!(%origin, reason = %kind, "record sent to the dead-letter output");
                    self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    Ok(None)
                }
                _ => Err(kind.at(origin).into()),
            },
        }
    }

    /// Decodes a batch of `(origin, bytes)`: the decoded values in order; bad payloads go to the dead-letter
    /// target in one write per batch.
    pub fn decode_batch<'a, I>(&self, batch: I) -> Result<Vec<D::Output>, DecodeStageError>
    where
        I: IntoIterator<Item = (&'a RecordOrigin, &'a [u8])>,
    {
        let mut out = Vec::new();
        let mut letters = Vec::new();
        for (origin, bytes) in batch {
            match self.decoder.decode(bytes) {
                Ok(value) => out.push(value),
                Err(kind) => match &self.on_error {
                    OnDecodeError::DeadLetter(_) if kind.is_bad_data() => {
                        letters.push(DeadLetter::new(bytes, &kind, origin))
                    }
                    _ => return Err(kind.at(origin).into()),
                },
            }
        }
        if let (OnDecodeError::DeadLetter(target), Some(first)) = (&self.on_error, letters.first()) {
            target.write(&letters).map_err(|error| DecodeStageError::DeadLetter { origin: first.origin(), error })?;
            tracing::warn!(count = letters.len(), "records sent to the dead-letter output");
        }
        self.counters.decoded.fetch_add(out.len() as u64, Ordering::Relaxed);
        self.counters.dead_lettered.fetch_add(letters.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stage_checks_utf8() {
        assert_eq!(TextDecoder.decode("héllo".as_bytes()).unwrap(), "héllo");
        let error = TextDecoder.decode(b"ab\xffcd").unwrap_err();
        assert_eq!(error.to_string(), r"invalid UTF-8 at byte 2: ab\xffcd");
        assert_eq!(TextEncoder.encode("héllo").unwrap(), "héllo".as_bytes());
    }

    #[test]
    fn errors_name_the_origin() {
        let error = DecodeErrorKind::WrongMagicByte { got: b'{' }.at(&RecordOrigin::new("users", 3, 42));
        assert_eq!(
            error.to_string(),
            "cannot decode the record at topic users partition 3 offset 42: expected magic byte 0x00, got 0x7B ('{'): this looks like JSON"
        );
    }

    #[test]
    fn fail_policy_returns_the_error() {
        let stage = DecodeStage::new(TextDecoder, OnDecodeError::Fail);
        let origin = RecordOrigin::new("t", 0, 7);
        assert_eq!(stage.decode(b"ok", &origin).unwrap().as_deref(), Some("ok"));
        let error = stage.decode(b"\xff", &origin).unwrap_err();
        assert!(error.to_string().contains("topic t partition 0 offset 7"), "{error}");
        assert_eq!(stage.counters().get(), (1, 0));
    }
}
