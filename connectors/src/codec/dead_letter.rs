//! Dead letters: payloads that did not decode, kept with their raw bytes, the reason and where they came from.
//!
//! A dead letter as one JSON line (`raw` is standard base64):
//!
//! ```text
//! {"topic":"users","partition":3,"offset":42,"error_kind":"wrong_magic_byte","reason":"expected magic byte 0x00, got 0x7B ('{'): this looks like JSON","raw":"eyJpZCI6MX0="}
//! ```
//!
//! Targets implement [`DeadLetterTarget`]: [`DeadLetterFile`] (JSON lines, shared by the workers of a process)
//! and [`DeadLetterCollector`] (in memory, for tests or to hand the letters to a Kafka sink). For a Kafka topic,
//! [`DeadLetter::kafka_key`] / [`DeadLetter::kafka_value`] give the JSON envelope, or [`DeadLetter::raw`] with
//! [`DeadLetter::kafka_headers`] keeps the original bytes as the value (Kafka Connect's dead-letter layout).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DecodeErrorKind, RecordOrigin};

/// One payload that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The topic (or file) it came from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The kind of failure ([`DecodeErrorKind::name`]: `wrong_magic_byte`, `invalid_json`, ...).
    pub error_kind: String,
    /// The full error message.
    pub reason: String,
    /// The payload exactly as received (base64 in JSON).
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub raw: Vec<u8>,
}

fn to_base64<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
}

impl DeadLetter {
    /// The dead letter of `raw`, which failed with `kind`, read at `origin`.
    pub fn new(raw: &[u8], kind: &DecodeErrorKind, origin: &RecordOrigin) -> Self {
        DeadLetter {
            topic: origin.topic.clone(),
            partition: origin.partition,
            offset: origin.offset,
            error_kind: kind.name().to_string(),
            reason: kind.to_string(),
            raw: raw.to_vec(),
        }
    }

    /// Where the payload came from.
    pub fn origin(&self) -> RecordOrigin {
        RecordOrigin::new(self.topic.clone(), self.partition, self.offset)
    }

    /// The dead letter as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a dead letter always serialises")
    }

    /// Parses a line written by [`to_json_line`](Self::to_json_line).
    pub fn from_json_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// A Kafka key naming the record: `topic/partition/offset` (unique per letter; to keep the letters of one
    /// source partition in order, key by [`kafka_partition_key`](Self::kafka_partition_key) instead).
    pub fn kafka_key(&self) -> Vec<u8> {
        format!("{}/{}/{}", self.topic, self.partition, self.offset).into_bytes()
    }

    /// A key that is the same for every letter of one source partition (`topic/partition`): with Kafka's default
    /// partitioner, letters from one source partition stay in order.
    pub fn kafka_partition_key(&self) -> Vec<u8> {
        format!("{}/{}", self.topic, self.partition).into_bytes()
    }

    /// The JSON envelope as a Kafka value (the same object as a file line).
    pub fn kafka_value(&self) -> Vec<u8> {
        self.to_json_line().into_bytes()
    }

    /// Headers for Kafka Connect's dead-letter layout (value = [`raw`](Self::raw)):
    /// `__weir.errors.topic`, `.partition`, `.offset`, `.kind`, `.reason`.
    pub fn kafka_headers(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            ("__weir.errors.topic".into(), self.topic.clone().into_bytes()),
            ("__weir.errors.partition".into(), self.partition.to_string().into_bytes()),
            ("__weir.errors.offset".into(), self.offset.to_string().into_bytes()),
            ("__weir.errors.kind".into(), self.error_kind.clone().into_bytes()),
            ("__weir.errors.reason".into(), self.reason.clone().into_bytes()),
        ]
    }
}

/// Where dead letters go. `write` returns only once the letters are stored (a file: written to the OS), so a
/// record is never acknowledged as handled before its dead letter exists.
pub trait DeadLetterTarget: Send + Sync {
    /// Stores these letters, in order.
    fn write(&self, letters: &[DeadLetter]) -> io::Result<()>;
}

/// A JSON-lines dead-letter file, appended to. Share one (`Arc`) between the workers of a process: each
/// `write` appends whole lines in one system call under a lock, so lines never interleave.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    file: Mutex<File>,
    sync: bool,
}

impl DeadLetterFile {
    /// Opens `path` for appending (creating it and its parent directories).
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(DeadLetterFile { path, file: Mutex::new(file), sync: false })
    }

    /// Also `fsync` after every write (durable across a machine crash; slower).
    pub fn with_fsync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every letter of a dead-letter file.
    pub fn read_all(path: impl AsRef<Path>) -> io::Result<Vec<DeadLetter>> {
        let text = std::fs::read_to_string(path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| DeadLetter::from_json_line(l).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)))
            .collect()
    }
}

impl DeadLetterTarget for DeadLetterFile {
    fn write(&self, letters: &[DeadLetter]) -> io::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        for letter in letters {
            serde_json::to_writer(&mut buffer, letter)?;
            buffer.push(b'\n');
        }
        let mut file = self.file.lock().map_err(|_| io::Error::other("dead-letter file lock poisoned"))?;
        file.write_all(&buffer)?;
        if self.sync {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// Dead letters kept in memory (tests; or drained into a Kafka sink by the caller).
#[derive(Debug, Clone, Default)]
pub struct DeadLetterCollector {
    letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl DeadLetterCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every letter collected so far.
    pub fn drain(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut *self.letters.lock().expect("collector lock poisoned"))
    }

    /// How many letters are held.
    pub fn len(&self) -> usize {
        self.letters.lock().expect("collector lock poisoned").len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeadLetterTarget for DeadLetterCollector {
    fn write(&self, letters: &[DeadLetter]) -> io::Result<()> {
        self.letters.lock().map_err(|_| io::Error::other("collector lock poisoned"))?.extend_from_slice(letters);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter {
        DeadLetter::new(
            br#"{"id":1}"#,
            &DecodeErrorKind::WrongMagicByte { got: b'{' },
            &RecordOrigin::new("users", 3, 42),
        )
    }

    #[test]
    fn json_line_layout() {
        assert_eq!(
            letter().to_json_line(),
            r#"{"topic":"users","partition":3,"offset":42,"error_kind":"wrong_magic_byte","reason":"expected magic byte 0x00, got 0x7B ('{'): this looks like JSON","raw":"eyJpZCI6MX0="}"#
        );
        assert_eq!(DeadLetter::from_json_line(&letter().to_json_line()).unwrap(), letter());
    }

    #[test]
    fn kafka_forms() {
        let letter = letter();
        assert_eq!(letter.kafka_key(), b"users/3/42");
        assert_eq!(letter.kafka_partition_key(), b"users/3");
        assert_eq!(letter.kafka_value(), letter.to_json_line().into_bytes());
        let headers = letter.kafka_headers();
        assert_eq!(headers[2], ("__weir.errors.offset".to_string(), b"42".to_vec()));
        assert_eq!(headers[3].1, b"wrong_magic_byte");
    }

    #[test]
    fn file_appends_whole_lines_from_many_threads() {
        let dir = std::env::temp_dir().join(format!("weir-dead-letter-{}", std::process::id()));
        let path = dir.join("nested/dead.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let file = Arc::new(DeadLetterFile::create(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let file = file.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let mut letter = letter();
                        letter.offset = t * 1000 + i;
                        file.write(&[letter.clone(), letter]).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let letters = DeadLetterFile::read_all(&path).unwrap();
        assert_eq!(letters.len(), 400);
        // Both letters of one write are adjacent.
        for pair in letters.chunks(2) {
            assert_eq!(pair[0], pair[1]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
