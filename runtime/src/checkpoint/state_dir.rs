//! State snapshots that are directories (a RocksDB checkpoint): written into a temporary
//! directory, every file fsynced, then a manifest (`weir-manifest`: every file with its size and
//! CRC-32) written atomically **after** the files, then the directory renamed into place.
//!
//! A directory without a manifest, a listed file that is missing, of another size or with another
//! checksum, or a file the manifest does not list, is a [`CheckpointError::Corrupt`] naming the
//! file. [`verify`] checks everything (reads every file); [`verify_sizes`] only the manifest and
//! the files' sizes (what `weir checkpoint inspect` does, so it never reads a large store in full).

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CheckpointError, Corruption};
use super::file::{self, FileKind};

/// The manifest's name inside a state directory.
pub const MANIFEST: &str = "weir-manifest";

/// The content of `weir-manifest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateManifest {
    /// Every file of the directory (the manifest excepted), by path relative to it, sorted.
    pub files: Vec<ManifestEntry>,
}

/// One file of a state directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Its path relative to the directory, with `/` separators.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its CRC-32.
    pub crc32: u32,
}

impl StateManifest {
    /// The total size of the files listed.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Fsyncs every file under `dir`, writes its manifest atomically, and returns it with the
/// CRC-32 of the manifest's content.
///
/// `previous` is an earlier state directory of the same operator and worker, if any: a file
/// there with the same relative path that is **the same file** (same device and inode: a hard
/// link, as RocksDB checkpoints make for SST files that did not change) and the same size keeps
/// the checksum recorded in that directory's manifest instead of being read again. So a
/// snapshot of a large RocksDB store reads only its new files. (Carrying a checksum over is
/// safe: it is the checksum of the content as first written, so later damage to the shared file
/// is still found when either directory is verified.)
pub fn seal(dir: &Path, previous: Option<&Path>) -> Result<(StateManifest, u32), CheckpointError> {
    let known = previous.map(known_checksums).unwrap_or_default();
    let mut files = Vec::new();
    for (relative, path) in walk(dir)? {
        let mut file = File::open(&path).map_err(|e| CheckpointError::io("cannot read", &path, e))?;
        // Hard-linked files are usually durable already; then this costs nothing.
        file.sync_all().map_err(|e| CheckpointError::io("cannot sync", &path, e))?;
        let metadata = file.metadata().map_err(|e| CheckpointError::io("cannot read", &path, e))?;
        let reused = known.get(&relative).and_then(|&(identity, bytes, crc32)| {
            (identity == file_identity(&metadata) && bytes == metadata.len()).then_some((bytes, crc32))
        });
        let (bytes, crc32) = match reused {
            Some(known) => known,
            None => checksum(&mut file).map_err(|e| CheckpointError::io("cannot read", &path, e))?,
        };
        files.push(ManifestEntry { path: relative, bytes, crc32 });
    }
    for sub in subdirs(dir)? {
        file::sync_dir(&sub)?;
    }
    let manifest = StateManifest { files };
    let mut content = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
    content.push(b'\n');
    file::write_atomic(&dir.join(MANIFEST), FileKind::StateManifest, &content)?;
    Ok((manifest, file::crc32(&content)))
}

/// Reads the manifest of `dir`, and checks that every listed file is there with its size, and
/// that no other file is.
pub fn verify_sizes(dir: &Path) -> Result<StateManifest, CheckpointError> {
    if !dir.is_dir() {
        return Err(CheckpointError::corrupt(dir, Corruption::WrongShape { expected: "directory" }));
    }
    let manifest_path = dir.join(MANIFEST);
    if !manifest_path.is_file() {
        return Err(CheckpointError::corrupt(dir, Corruption::MissingManifest));
    }
    let manifest: StateManifest = file::read_json(&manifest_path, FileKind::StateManifest)?;
    for entry in &manifest.files {
        let path = dir.join(&entry.path);
        let found = match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata.len(),
            Ok(_) => return Err(CheckpointError::corrupt(&path, Corruption::WrongShape { expected: "file" })),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::corrupt(&path, Corruption::ListedFileMissing))
            }
            Err(error) => return Err(CheckpointError::io("cannot read", &path, error)),
        };
        if found != entry.bytes {
            return Err(CheckpointError::corrupt(&path, Corruption::SizeMismatch { expected: entry.bytes, found }));
        }
    }
    let listed: std::collections::BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for (relative, path) in walk(dir)? {
        if !listed.contains(relative.as_str()) {
            return Err(CheckpointError::corrupt(&path, Corruption::UnlistedFile));
        }
    }
    Ok(manifest)
}

/// [`verify_sizes`], then every file's checksum (reads every file in full).
pub fn verify(dir: &Path) -> Result<StateManifest, CheckpointError> {
    let manifest = verify_sizes(dir)?;
    for entry in &manifest.files {
        let path = dir.join(&entry.path);
        let (_, found) = File::open(&path)
            .and_then(|mut file| checksum(&mut file))
            .map_err(|e| CheckpointError::io("cannot read", &path, e))?;
        if found != entry.crc32 {
            return Err(CheckpointError::corrupt(&path, Corruption::ContentMismatch { expected: entry.crc32, found }));
        }
    }
    Ok(manifest)
}

/// The checksums of an earlier state directory's manifest that can be carried over: relative
/// path → (file identity, size, CRC-32). Nothing if that directory or its manifest is unusable.
fn known_checksums(dir: &Path) -> std::collections::HashMap<String, ((u64, u64), u64, u32)> {
    let Ok(manifest) = file::read_json::<StateManifest>(&dir.join(MANIFEST), FileKind::StateManifest) else {
        return Default::default();
    };
    manifest
        .files
        .into_iter()
        .filter_map(|entry| {
            let metadata = fs::metadata(dir.join(&entry.path)).ok()?;
            (metadata.len() == entry.bytes).then(|| (entry.path, (file_identity(&metadata), entry.bytes, entry.crc32)))
        })
        .collect()
}

/// (device, inode): the same for every hard link of one file.
#[cfg(unix)]
fn file_identity(metadata: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

/// Without inodes no file is known to be the same: every file is checksummed.
#[cfg(not(unix))]
fn file_identity(_: &fs::Metadata) -> (u64, u64) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    (u64::MAX, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Size and CRC-32 of a file, read in blocks.
fn checksum(file: &mut File) -> std::io::Result<(u64, u32)> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut crc = file::Crc32::new();
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((bytes, crc.finish()));
        }
        crc.update(&buffer[..n]);
        bytes += n as u64;
    }
}

/// Every file under `dir` (the manifest and temporary files excepted), as (relative path, path), sorted.
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>, CheckpointError> {
    fn visit(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), CheckpointError> {
        for name in file::list(dir)? {
            let path = dir.join(&name);
            let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            if path.is_dir() {
                visit(&path, &relative, out)?;
            } else if !(prefix.is_empty() && (name == MANIFEST || file::is_temporary(&name))) {
                out.push((relative, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(dir, "", &mut out)?;
    Ok(out)
}

/// `dir` and every directory below it.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let current = out[i].clone();
        for name in file::list(&current)? {
            let path = current.join(name);
            if path.is_dir() {
                out.push(path);
            }
        }
        i += 1;
    }
    Ok(out)
}
