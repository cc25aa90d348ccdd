//! One checkpoint file: a one-line text header (format version, record kind, content length and
//! CRC-32), then the content; written atomically (temporary file, fsync, rename, fsync of the
//! directory) so a crash leaves either the old file or the new one, never half of one.
//!
//! ```text
//! WEIR-CHECKPOINT v1 offsets len=312 crc32=9a0c51d2
//! {"epoch":7,...}
//! ```
//!
//! JSON records (metadata, offsets, commits, sink records) stay readable with `tail -n +2`; state
//! files carry opaque bytes after the same header.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{CheckpointError, Corruption};

/// The version of the checkpoint format this build reads and writes (in every file's header
/// and in the metadata).
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: &str = "WEIR-CHECKPOINT";
/// Headers are short; a longer first line means the file is not a checkpoint file.
const MAX_HEADER: usize = 256;

/// The kinds of record a checkpoint file holds (named in its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `metadata`.
    Metadata,
    /// `offsets/<epoch>`.
    Offsets,
    /// `commits/<epoch>`.
    Commit,
    /// `state/<operator>/<worker>/<epoch>`.
    State,
    /// `sinks/<sink>/<worker>/<epoch>`.
    Sink,
    /// `sinks/<sink>/<worker>/staged/<epoch>`: a sink's output of an epoch, staged ahead of its
    /// delivery (opaque bytes).
    SinkData,
    /// `state/<operator>/<worker>/<epoch>/weir-manifest`: the files of a state directory.
    StateManifest,
}

impl FileKind {
    /// The kind's name in file headers.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Metadata => "metadata",
            FileKind::Offsets => "offsets",
            FileKind::Commit => "commit",
            FileKind::State => "state",
            FileKind::Sink => "sink",
            FileKind::SinkData => "sink-data",
            FileKind::StateManifest => "state-manifest",
        }
    }
}

/// A fresh temporary name beside `path` (`.<name>.tmp-<pid>-<n>`), recognised by [`is_temporary`]
/// and removed at the next open or cleanup if a crash leaves it behind.
pub fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// Writes `content` to `path` atomically: to a temporary file beside it, fsynced, renamed over
/// `path`, and the directory fsynced so the rename itself is durable.
pub fn write_atomic(path: &Path, kind: FileKind, content: &[u8]) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = temporary_path(path);
    let header =
        format!("{MAGIC} v{FORMAT_VERSION} {} len={} crc32={:08x}\n", kind.as_str(), content.len(), crc32(content));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(header.as_bytes())?;
        file.write_all(content)?;
        file.sync_all()
    };
    if let Err(error) = write() {
        let _ = fs::remove_file(&temp);
        return Err(CheckpointError::io("cannot write", &temp, error));
    }
    if let Err(error) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(CheckpointError::io("cannot rename a temporary file to", path, error));
    }
    sync_dir(dir)
}

/// Fsyncs a directory, so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|error| CheckpointError::io("cannot sync directory", dir, error))
}

/// Creates `dir` and its missing parents, and makes the new entries durable.
pub fn create_dir_durable(dir: &Path) -> Result<(), CheckpointError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|error| CheckpointError::io("cannot create directory", dir, error))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Reads the content of a checkpoint file of kind `kind`, checking header, version, length and
/// checksum.
pub fn read_checked(path: &Path, kind: FileKind) -> Result<Vec<u8>, CheckpointError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|error| CheckpointError::io("cannot read", path, error))?;
    let (header, content) = parse_header(path, &bytes, kind)?;
    let found = content.len() as u64;
    if found < header.len {
        return Err(CheckpointError::corrupt(path, Corruption::Truncated { expected: header.len, found }));
    }
    if found > header.len {
        return Err(CheckpointError::corrupt(path, Corruption::TrailingBytes { expected: header.len, found }));
    }
    let actual = crc32(content);
    if actual != header.crc32 {
        return Err(CheckpointError::corrupt(
            path,
            Corruption::ChecksumMismatch { expected: header.crc32, found: actual },
        ));
    }
    Ok(content.to_vec())
}

/// Writes `value` as a JSON record of kind `kind`, atomically.
pub fn write_json<T: Serialize>(path: &Path, kind: FileKind, value: &T) -> Result<(), CheckpointError> {
    let mut content = serde_json::to_vec_pretty(value).expect("checkpoint records serialize");
    content.push(b'\n');
    write_atomic(path, kind, &content)
}

/// Reads a JSON record of kind `kind`.
pub fn read_json<T: DeserializeOwned>(path: &Path, kind: FileKind) -> Result<T, CheckpointError> {
    let content = read_checked(path, kind)?;
    serde_json::from_slice(&content).map_err(|error| {
        CheckpointError::corrupt(
            path,
            Corruption::InvalidContent(format!("not a valid {} record: {error}", kind.as_str())),
        )
    })
}

struct Header {
    len: u64,
    crc32: u32,
}

fn parse_header<'a>(path: &Path, bytes: &'a [u8], kind: FileKind) -> Result<(Header, &'a [u8]), CheckpointError> {
    let not_ours = || {
        CheckpointError::corrupt(
            path,
            Corruption::NotACheckpointFile { starts_with: escape(&bytes[..bytes.len().min(24)]) },
        )
    };
    if !bytes.starts_with(MAGIC.as_bytes()) {
        if bytes.is_empty() {
            return Err(CheckpointError::corrupt(path, Corruption::Empty));
        }
        return Err(not_ours());
    }
    let Some(end) = bytes.iter().take(MAX_HEADER).position(|&b| b == b'\n') else {
        return Err(CheckpointError::corrupt(
            path,
            Corruption::BadHeader { header: escape(&bytes[..bytes.len().min(MAX_HEADER)]) },
        ));
    };
    let line = &bytes[..end];
    let bad = || CheckpointError::corrupt(path, Corruption::BadHeader { header: escape(line) });
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [_, version, found_kind, len, crc] = fields[..] else { return Err(bad()) };
    let version: u32 = version.strip_prefix('v').and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::corrupt(
            path,
            Corruption::UnsupportedVersion { found: version, supported: FORMAT_VERSION },
        ));
    }
    if found_kind != kind.as_str() {
        return Err(CheckpointError::corrupt(
            path,
            Corruption::WrongKind { expected: kind.as_str().into(), found: found_kind.into() },
        ));
    }
    let len: u64 = len.strip_prefix("len=").and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let crc32 = crc.strip_prefix("crc32=").and_then(|v| u32::from_str_radix(v, 16).ok()).ok_or_else(bad)?;
    Ok((Header { len, crc32 }, &bytes[end + 1..]))
}

/// Bytes as printable text, for error messages.
fn escape(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

/// Whether a directory entry is a temporary file left by an interrupted [`write_atomic`].
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// The entries of `dir` (names), sorted; an absent directory has none.
pub fn list(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(CheckpointError::io("cannot list directory", dir, error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| CheckpointError::io("cannot list directory", dir, error))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Removes a file or a directory tree if it exists.
pub fn remove(path: &Path) -> Result<(), CheckpointError> {
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match result {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(CheckpointError::io("cannot remove", path, error)),
    }
}

/// CRC-32 (IEEE 802.3, the one of zlib and gzip) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

/// CRC-32 tables for slicing by 8 (eight bytes per step; a large state directory is checksummed
/// at several hundred MB/s).
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut t = 1;
    while t < 8 {
        let mut i = 0;
        while i < 256 {
            let previous = tables[t - 1][i];
            tables[t][i] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            i += 1;
        }
        t += 1;
    }
    tables
};

/// An incremental CRC-32 (the same as [`crc32`] over the concatenation of every update).
#[derive(Clone, Copy, Debug)]
pub struct Crc32 {
    state: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32 { state: 0xFFFF_FFFF }
    }
}

impl Crc32 {
    /// The CRC of nothing so far.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let t = &CRC_TABLES;
        let mut crc = self.state;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let low = crc ^ u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            crc = t[7][(low & 0xFF) as usize]
                ^ t[6][((low >> 8) & 0xFF) as usize]
                ^ t[5][((low >> 16) & 0xFF) as usize]
                ^ t[4][(low >> 24) as usize]
                ^ t[3][chunk[4] as usize]
                ^ t[2][chunk[5] as usize]
                ^ t[1][chunk[6] as usize]
                ^ t[0][chunk[7] as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
        }
        self.state = crc;
    }

    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn incremental_crc32_matches_the_bytewise_definition() {
        fn bytewise(bytes: &[u8]) -> u32 {
            let mut crc = 0xFFFF_FFFFu32;
            for &b in bytes {
                crc ^= b as u32;
                for _ in 0..8 {
                    crc = if crc & 1 != 0 { 0xEDB8_8320 ^ (crc >> 1) } else { crc >> 1 };
                }
            }
            !crc
        }
        let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let mut crc = Crc32::new();
            crc.update(&data[..split]);
            crc.update(&data[split..]);
            assert_eq!(crc.finish(), bytewise(&data), "split at {split}");
            assert_eq!(crc32(&data[..split]), bytewise(&data[..split]));
        }
    }
}
