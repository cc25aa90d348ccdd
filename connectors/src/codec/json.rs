//! JSON with serde: bytes → (UTF-8 checked) text → `T`, typed structs or generic `serde_json::Value`.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode_utf8, Decode, DecodeErrorKind, Encode, EncodeError};

/// Decodes JSON payloads into `T` (`serde_json::Value` for any JSON).
///
/// ```
/// use weir_connectors::codec::{json::JsonDecoder, Decode};
/// let decoder = JsonDecoder::<serde_json::Value>::new();
/// assert_eq!(decoder.decode(br#"{"a":1}"#).unwrap()["a"], 1);
/// let error = decoder.decode(b"{\"a\":1,}").unwrap_err();
/// assert_eq!(error.to_string(), "invalid JSON at line 1 column 8: trailing comma; near `{\"a\":1,}`");
/// ```
pub struct JsonDecoder<T> {
    _type: PhantomData<fn() -> T>,
}

impl<T> JsonDecoder<T> {
    /// A decoder of `T`.
    pub fn new() -> Self {
        JsonDecoder { _type: PhantomData }
    }
}

impl<T> Default for JsonDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonDecoder<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonDecoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonDecoder<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned> JsonDecoder<T> {
    /// Decodes text (the stage after [`TextDecoder`](super::TextDecoder)).
    pub fn decode_text(&self, text: &str) -> Result<T, DecodeErrorKind> {
        serde_json::from_str(text).map_err(|e| json_error(text, &e))
    }
}

impl<T: DeserializeOwned> Decode for JsonDecoder<T> {
    type Output = T;

    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeErrorKind> {
        if let [0x00, a, b, c, d, ..] = bytes {
            // Confluent's magic byte: say so rather than show a snippet of control characters.
            let id = u32::from_be_bytes([*a, *b, *c, *d]);
            return Err(DecodeErrorKind::InvalidJson {
                line: 1,
                column: 1,
                message: format!(
                    "expected value, got byte 0x00: this looks like Confluent-framed data (schema id {id}), use an \
                     Avro decoder"
                ),
                snippet: bytes[..bytes.len().min(16)].escape_ascii().to_string(),
            });
        }
        self.decode_text(decode_utf8(bytes)?)
    }
}

/// Encodes `T: Serialize` as compact JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonEncoder;

impl<T: Serialize + ?Sized> Encode<T> for JsonEncoder {
    fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        serde_json::to_writer(out, value).map_err(|e| EncodeError::Json(e.to_string()))
    }
}

/// serde_json's error with its position and the text around it.
pub(crate) fn json_error(text: &str, error: &serde_json::Error) -> DecodeErrorKind {
    let (line, column) = (error.line(), error.column());
    // serde_json's message ends with " at line L column C": keep only the reason.
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message,
    };
    let line_start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let at = (line_start + column.saturating_sub(1)).min(text.len());
    let mut start = at.saturating_sub(30);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 30).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let snippet = text[start..end].replace('\n', "\\n");
    DecodeErrorKind::InvalidJson { line, column, message, snippet }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Click {
        user: String,
        page: u32,
    }

    #[test]
    fn typed_round_trip() {
        let click = Click { user: "ana".into(), page: 3 };
        let bytes = JsonEncoder.encode(&click).unwrap();
        assert_eq!(bytes, br#"{"user":"ana","page":3}"#);
        assert_eq!(JsonDecoder::<Click>::new().decode(&bytes).unwrap(), click);
    }

    #[test]
    fn errors_have_position_and_snippet() {
        let decoder = JsonDecoder::<Click>::new();
        let error = decoder.decode(b"{\"user\":\"ana\",\n\"page\":\"x\"}").unwrap_err();
        match &error {
            DecodeErrorKind::InvalidJson { line: 2, column, message, snippet } => {
                assert_eq!(*column, 10);
                assert!(message.starts_with("invalid type: string \"x\", expected u32"), "{message}");
                assert!(snippet.contains("\"page\":\"x\""), "{snippet}");
            }
            other => panic!("{other:?}"),
        }
        let error = decoder.decode(b"").unwrap_err();
        assert_eq!(error.to_string(), "invalid JSON at line 1 column 0: EOF while parsing a value; near ``");
        assert_eq!(decoder.decode(b"\xff{").unwrap_err().name(), "invalid_utf8");
        let framed = super::super::wire::frame(7, b"\x02\x06ana");
        assert_eq!(
            decoder.decode(&framed).unwrap_err().to_string(),
            "invalid JSON at line 1 column 1: expected value, got byte 0x00: this looks like Confluent-framed data \
             (schema id 7), use an Avro decoder; near `\\x00\\x00\\x00\\x00\\x07\\x02\\x06ana`"
        );
        let long = format!("{{\"user\":\"{}\", oops}}", "é".repeat(100));
        let error = decoder.decode(long.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("oops"), "{error}");
    }
}
