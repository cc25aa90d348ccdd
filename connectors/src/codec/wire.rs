//! Confluent's wire format: byte 0 is the magic byte `0x00`, bytes 1–4 the schema id (big-endian `u32`), then
//! the serialized body (Avro binary for AVRO schemas).

use super::DecodeErrorKind;

/// The first byte of every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0x00;

/// Length of the header: magic byte + 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// Splits a framed payload into its schema id and body, or says precisely what is wrong with the bytes.
///
/// ```
/// use weir_connectors::codec::wire::{split_frame, frame};
/// assert_eq!(split_frame(&frame(7, b"body")).unwrap(), (7, &b"body"[..]));
/// let error = split_frame(br#"{"id":1}"#).unwrap_err();
/// assert!(error.to_string().starts_with("expected magic byte 0x00, got 0x7B ('{'): this looks like JSON"));
/// ```
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeErrorKind> {
    match bytes.first() {
        None => Err(DecodeErrorKind::TruncatedHeader { len: 0 }),
        Some(&byte) if byte != MAGIC_BYTE => Err(DecodeErrorKind::WrongMagicByte { got: byte }),
        Some(_) if bytes.len() < HEADER_LEN => Err(DecodeErrorKind::TruncatedHeader { len: bytes.len() }),
        Some(_) => {
            let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            Ok((id, &bytes[HEADER_LEN..]))
        }
    }
}

/// Appends the 5-byte header for `schema_id` to `out`.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// The framed payload: header then `body`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    write_header(schema_id, &mut out);
    out.extend_from_slice(body);
    out
}

/// A guess at what bytes that do not start with the magic byte are, for error messages.
pub(crate) fn looks_like(byte: u8) -> Option<&'static str> {
    match byte {
        b'{' | b'[' => Some("this looks like JSON"),
        b'"' => Some("this looks like a JSON string"),
        b'O' => Some("this may be an Avro object container file (\"Obj\\x01\"), not a framed record"),
        0xC3 => Some("this may be Avro single-object encoding (0xC3 0x01), not Confluent's framing"),
        0x20..=0x7E => Some("this looks like text"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_id_and_body() {
        for id in [0u32, 1, 255, 256, 65_536, u32::MAX] {
            let framed = frame(id, &[1, 2, 3]);
            assert_eq!(framed.len(), HEADER_LEN + 3);
            assert_eq!(framed[0], 0);
            assert_eq!(split_frame(&framed).unwrap(), (id, &[1u8, 2, 3][..]));
        }
        // An empty body is a valid frame (e.g. an Avro record with no fields).
        assert_eq!(split_frame(&frame(9, &[])).unwrap(), (9, &[][..]));
        // Big-endian: id 0x01020304.
        assert_eq!(split_frame(&[0, 1, 2, 3, 4, 42]).unwrap(), (0x0102_0304, &[42u8][..]));
    }

    #[test]
    fn json_bytes_are_recognised() {
        let error = split_frame(br#"{"id": 1}"#).unwrap_err();
        assert_eq!(error, DecodeErrorKind::WrongMagicByte { got: b'{' });
        assert_eq!(error.to_string(), "expected magic byte 0x00, got 0x7B ('{'): this looks like JSON");
        let error = split_frame(b"[1,2]").unwrap_err();
        assert_eq!(error.to_string(), "expected magic byte 0x00, got 0x5B ('['): this looks like JSON");
    }

    #[test]
    fn other_wrong_magic_bytes() {
        assert_eq!(
            split_frame(b"hello").unwrap_err().to_string(),
            "expected magic byte 0x00, got 0x68 ('h'): this looks like text"
        );
        assert_eq!(split_frame(&[0x01, 0, 0, 0, 1]).unwrap_err().to_string(), "expected magic byte 0x00, got 0x01");
        assert_eq!(split_frame(&[0xFF]).unwrap_err().to_string(), "expected magic byte 0x00, got 0xFF");
        assert!(split_frame(&[0xC3, 0x01, 1, 2]).unwrap_err().to_string().contains("single-object"));
        assert!(split_frame(b"Obj\x01").unwrap_err().to_string().contains("container file"));
    }

    #[test]
    fn truncated_headers() {
        assert_eq!(split_frame(&[]).unwrap_err(), DecodeErrorKind::TruncatedHeader { len: 0 });
        assert_eq!(
            split_frame(&[]).unwrap_err().to_string(),
            "empty payload: expected the 5-byte Confluent header (magic byte 0x00 and a 4-byte schema id)"
        );
        for len in 1..HEADER_LEN {
            let bytes = vec![0u8; len];
            let error = split_frame(&bytes).unwrap_err();
            assert_eq!(error, DecodeErrorKind::TruncatedHeader { len });
            assert_eq!(
                error.to_string(),
                format!(
                    "truncated Confluent header: {len} byte(s), expected at least 5 (magic byte 0x00 and a 4-byte schema id)"
                )
            );
        }
    }
}
