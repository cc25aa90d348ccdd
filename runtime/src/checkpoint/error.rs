//! What can go wrong with a checkpoint directory, as typed errors that name the file.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// What to tell a user whose checkpoint cannot be used as it is.
const RESET_HINT: &str = "to start fresh on purpose (losing the query's state and offsets), run with \
                          --reset-checkpoint (or `CheckpointDir::reset`)";

/// Why a checkpoint directory or one of its files cannot be used.
///
/// Every variant names the file or directory at fault; none of them is ever turned into a
/// silent fresh start.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading or writing a file failed at the operating-system level.
    #[error("checkpoint {action} {path}: {cause}")]
    Io {
        /// What was being done (`cannot write`, `cannot read`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// A file exists but its content is damaged or not what a checkpoint file must hold.
    #[error("checkpoint file {path} is corrupt: {problem}. Restore the directory from a backup, or {RESET_HINT}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: Corruption,
    },
    /// The files of the directory contradict each other (e.g. a commit without its offsets).
    #[error("checkpoint {path} is inconsistent: {problem}. Restore the directory from a backup, or {RESET_HINT}")]
    Inconsistent {
        /// The file or directory.
        path: PathBuf,
        /// What contradicts what.
        problem: String,
    },
    /// The directory holds files but no checkpoint metadata: it is not (or no longer) a Weir
    /// checkpoint, and Weir will neither use nor delete it.
    #[error(
        "{path} is not a Weir checkpoint directory: it has no `metadata` file but contains {found}. \
         Give an empty or new directory for the checkpoint"
    )]
    NotACheckpoint {
        /// The directory.
        path: PathBuf,
        /// An example of what it contains.
        found: String,
    },
    /// The dataflow changed in a way the checkpoint's state cannot follow.
    #[error(
        "the checkpoint in {path} was written by a different dataflow: {}. Its state and offsets cannot be \
         used with the new dataflow; undo the change, or {RESET_HINT}",
        .differences.join("; ")
    )]
    Incompatible {
        /// The checkpoint directory.
        path: PathBuf,
        /// Each difference, in words (e.g. "operator `count` changed from tumbling 10s to tumbling 5s").
        differences: Vec<String>,
    },
    /// The query runs with a different number of workers than wrote the checkpoint.
    #[error(
        "the checkpoint in {path} was written by {checkpoint_workers} worker(s) in total, this run has {workers}: \
         rescaling checkpointed state to another worker count is not supported yet. Run with {checkpoint_workers} \
         worker(s) in total (-w times -n), or {RESET_HINT}"
    )]
    Rescale {
        /// The checkpoint directory.
        path: PathBuf,
        /// The worker count recorded in the checkpoint.
        checkpoint_workers: usize,
        /// The worker count of this run.
        workers: usize,
    },
    /// An epoch that is already committed cannot be written again.
    #[error("checkpoint {path}: epoch {epoch} is already committed and cannot be written again")]
    AlreadyCommitted {
        /// The checkpoint directory.
        path: PathBuf,
        /// The epoch.
        epoch: u64,
    },
}

impl CheckpointError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CheckpointError::Io { action, path: path.into(), cause: source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, problem: Corruption) -> Self {
        CheckpointError::Corrupt { path: path.into(), problem }
    }
}

/// What is wrong with a corrupt checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The file does not start with Weir's checkpoint header.
    NotACheckpointFile {
        /// The first bytes of the file, escaped.
        starts_with: String,
    },
    /// The file has no bytes at all (it was truncated, or the disk lost its content).
    Empty,
    /// The header is there but cannot be parsed.
    BadHeader {
        /// The header line, escaped.
        header: String,
    },
    /// The file was written by a format version this build does not read.
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The file holds another kind of record than its place in the directory says.
    WrongKind {
        /// What its place says it must hold.
        expected: String,
        /// What its header says it holds.
        found: String,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// Body bytes the header announces.
        expected: u64,
        /// Body bytes present.
        found: u64,
    },
    /// The file is longer than its header says.
    TrailingBytes {
        /// Body bytes the header announces.
        expected: u64,
        /// Body bytes present.
        found: u64,
    },
    /// The body's checksum does not match the header's.
    ChecksumMismatch {
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the body as read.
        found: u32,
    },
    /// The body is intact but is not the record it must be (e.g. JSON that does not parse).
    InvalidContent(String),
    /// A state directory has no manifest: it was not completely written.
    MissingManifest,
    /// A file listed by its state directory's manifest is missing.
    ListedFileMissing,
    /// A file of a state directory does not have the size its manifest lists.
    SizeMismatch {
        /// The size in the manifest.
        expected: u64,
        /// The size on disk.
        found: u64,
    },
    /// A file of a state directory does not have the CRC-32 its manifest lists.
    ContentMismatch {
        /// The checksum in the manifest.
        expected: u32,
        /// The checksum of the file as read.
        found: u32,
    },
    /// A state directory holds a file its manifest does not list.
    UnlistedFile,
    /// A state snapshot is a directory where a file was expected, or the other way round.
    WrongShape {
        /// What the caller expected (`file` or `directory`).
        expected: &'static str,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::NotACheckpointFile { starts_with } => {
                write!(f, "it is not a Weir checkpoint file (it starts with \"{starts_with}\")")
            }
            Corruption::Empty => f.write_str("it is empty (0 bytes): it was truncated"),
            Corruption::BadHeader { header } => write!(f, "its header \"{header}\" cannot be parsed"),
            Corruption::UnsupportedVersion { found, supported } => write!(
                f,
                "it has format version {found}, this build of Weir reads version {supported} \
                 (it was written by another version of Weir)"
            ),
            Corruption::WrongKind { expected, found } => {
                write!(f, "it holds a `{found}` record where a `{expected}` record belongs")
            }
            Corruption::Truncated { expected, found } => write!(
                f,
                "it is truncated: the header announces {expected} bytes of content, only {found} are there"
            ),
            Corruption::TrailingBytes { expected, found } => write!(
                f,
                "it has {} unexpected bytes after its content (the header announces {expected} bytes, {found} are there)",
                found - expected
            ),
            Corruption::ChecksumMismatch { expected, found } => write!(
                f,
                "its content does not match its checksum (header crc32 {expected:08x}, content crc32 {found:08x}): \
                 the bytes were changed or damaged after they were written"
            ),
            Corruption::InvalidContent(what) => write!(f, "its content is invalid: {what}"),
            Corruption::MissingManifest => f.write_str(
                "this state directory has no manifest (`weir-manifest`, written after its files): \
                 it was not completely written",
            ),
            Corruption::ListedFileMissing => {
                f.write_str("it is listed by the manifest of its state directory but is missing")
            }
            Corruption::SizeMismatch { expected, found } => write!(
                f,
                "it has {found} bytes, the manifest of its state directory lists {expected} bytes"
            ),
            Corruption::ContentMismatch { expected, found } => write!(
                f,
                "its content does not match the checksum in the manifest of its state directory (manifest crc32 \
                 {expected:08x}, content crc32 {found:08x}): the bytes were changed or damaged after they were written"
            ),
            Corruption::UnlistedFile => {
                f.write_str("it is not listed by the manifest of its state directory (it was added afterwards)")
            }
            Corruption::WrongShape { expected } => {
                let found = if *expected == "file" { "directory" } else { "file" };
                write!(f, "it is a {found}, a state {expected} was expected")
            }
        }
    }
}
