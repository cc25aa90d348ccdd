//! Snapshots of a [`StateStore`](super::StateStore), for checkpoints.
//!
//! Two shapes, one per backend's strength:
//! * **bytes** ([`StateSnapshot`]): every entry in bincode after a header that records the key and
//!   value types (`std::any::type_name`) and the entry count. Any store can be snapshotted this
//!   way ([`super::StateStore::snapshot`]) and any store restored from it; it is what the memory
//!   backend writes into a checkpoint.
//! * **a directory**: a RocksDB checkpoint (`rocksdb::checkpoint`: SST files hard-linked, not
//!   copied) plus a small `store` file with the types and the key count; what the RocksDB
//!   backend writes ([`super::RocksDbStore::checkpoint_into`]).
//!
//! Restoring checks the recorded types first: a snapshot of another key or value type is
//! refused with [`SnapshotError::TypeMismatch`], never decoded into garbage.

use std::io::ErrorKind;

use bincode::Options;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{StateError, StateKey, StateValue};
use crate::checkpoint::CheckpointError;
use crate::error::QueryError;

/// What starts every byte snapshot (and the `store` file of a directory snapshot).
const MAGIC: &str = "weir-state-snapshot";
/// The version of the snapshot encoding.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;

/// A store's state as bytes: a header (types, entry count) and every entry in bincode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSnapshot {
    bytes: Vec<u8>,
}

impl StateSnapshot {
    /// A snapshot read back from somewhere (e.g. [`crate::checkpoint::CheckpointDir::read_state`]);
    /// it is checked when restored.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        StateSnapshot { bytes }
    }

    /// The encoded snapshot.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded snapshot, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it has no bytes at all (never true for a snapshot written by Weir).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The header of a byte snapshot, and the content of a directory snapshot's `store` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub magic: String,
    pub version: u32,
    pub key_type: String,
    pub value_type: String,
    pub entries: u64,
}

impl SnapshotHeader {
    pub fn of<K, V>(entries: u64) -> Self {
        SnapshotHeader {
            magic: MAGIC.to_string(),
            version: SNAPSHOT_VERSION,
            key_type: std::any::type_name::<K>().to_string(),
            value_type: std::any::type_name::<V>().to_string(),
            entries,
        }
    }

    /// Checks the magic, the version and the types against `K`, `V`.
    pub fn check<K, V>(&self, snapshot: &str) -> Result<(), SnapshotError> {
        if self.magic != MAGIC {
            return Err(SnapshotError::Invalid {
                snapshot: snapshot.to_string(),
                problem: "it is not a Weir state snapshot".to_string(),
            });
        }
        if self.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Invalid {
                snapshot: snapshot.to_string(),
                problem: format!(
                    "it has snapshot version {}, this build of Weir reads version {SNAPSHOT_VERSION}",
                    self.version
                ),
            });
        }
        let (key_type, value_type) = (std::any::type_name::<K>(), std::any::type_name::<V>());
        if self.key_type != key_type || self.value_type != value_type {
            return Err(SnapshotError::TypeMismatch {
                snapshot: snapshot.to_string(),
                expected_key: key_type.to_string(),
                expected_value: value_type.to_string(),
                found_key: self.key_type.clone(),
                found_value: self.value_type.clone(),
            });
        }
        Ok(())
    }
}

/// Why a state snapshot could not be written or restored. Every variant names the snapshot (its
/// file or directory in the checkpoint, or `(in memory)` for bytes handed over directly).
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The store itself failed (RocksDB, encoding).
    #[error(transparent)]
    State(#[from] StateError),
    /// The checkpoint directory failed or a snapshot file in it is damaged (the error names the file).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The snapshot holds state of other key or value types than the store it is restored into.
    #[error(
        "state snapshot {snapshot} holds keys of type `{found_key}` and values of type `{found_value}`, but the \
         store it is restored into keeps keys of type `{expected_key}` and values of type `{expected_value}`: the \
         operator's state type changed since the checkpoint was written. Undo the change, or start fresh on \
         purpose with --reset-checkpoint"
    )]
    TypeMismatch {
        /// The snapshot.
        snapshot: String,
        /// The store's key type.
        expected_key: String,
        /// The store's value type.
        expected_value: String,
        /// The key type recorded in the snapshot.
        found_key: String,
        /// The value type recorded in the snapshot.
        found_value: String,
    },
    /// The snapshot ends before all the entries its header announces.
    #[error(
        "state snapshot {snapshot} is truncated: its header announces {expected} entries, only {found} are complete"
    )]
    Truncated {
        /// The snapshot.
        snapshot: String,
        /// Entries announced.
        expected: u64,
        /// Entries read completely.
        found: u64,
    },
    /// The snapshot cannot be decoded (not a snapshot, another version, bytes after the entries, ...).
    #[error("state snapshot {snapshot} is invalid: {problem}")]
    Invalid {
        /// The snapshot.
        snapshot: String,
        /// What is wrong.
        problem: String,
    },
    /// Restoring needs an empty store.
    #[error(
        "cannot restore state snapshot {snapshot} into a store that already holds {keys} key(s): restore into a \
         newly opened store, before any record is processed"
    )]
    NotEmpty {
        /// The snapshot.
        snapshot: String,
        /// Keys in the store.
        keys: u64,
    },
    /// A directory snapshot (RocksDB checkpoint) cannot be restored into a memory store.
    #[error(
        "state snapshot {snapshot} is a RocksDB checkpoint; the store it is restored into uses the {backend} \
         backend. Run with the RocksDB state backend, as when the checkpoint was written"
    )]
    WrongBackend {
        /// The snapshot.
        snapshot: String,
        /// The backend of the store.
        backend: &'static str,
    },
}

impl SnapshotError {
    /// The error to fail a query with (`ctx.fail(error.into_query_error(name))`).
    pub fn into_query_error(self, operator: &str) -> QueryError {
        QueryError::State { operator: operator.to_string(), message: self.to_string() }
    }
}

/// The label of a snapshot that is not in a file.
pub(crate) const IN_MEMORY: &str = "(in memory)";

/// Encodes `entries` entries produced by `each` (which calls its argument once per entry).
pub(crate) fn encode<K: StateKey, V: StateValue>(
    entries: u64,
    each: impl FnOnce(&mut dyn FnMut(&K, &V) -> Result<(), StateError>) -> Result<(), StateError>,
) -> Result<StateSnapshot, SnapshotError> {
    let codec = |e: bincode::Error| StateError::Codec { path: IN_MEMORY.to_string(), message: e.to_string() };
    let mut bytes = Vec::new();
    bincode::serialize_into(&mut bytes, &SnapshotHeader::of::<K, V>(entries)).map_err(codec)?;
    let mut written = 0u64;
    each(&mut |key, value| {
        written += 1;
        bincode::serialize_into(&mut bytes, &(key, value)).map_err(codec)
    })?;
    if written != entries {
        return Err(SnapshotError::State(StateError::Codec {
            path: IN_MEMORY.to_string(),
            message: format!("the store announced {entries} entries but held {written}"),
        }));
    }
    Ok(StateSnapshot { bytes })
}

/// Decodes a byte snapshot: checks its header against `K`, `V`, then calls `insert` on `target`
/// with every entry (after `reserve` with the entry count, bounded by what the bytes can hold).
pub(crate) fn decode<K: StateKey, V: StateValue, T>(
    bytes: &[u8],
    snapshot: &str,
    target: &mut T,
    reserve: impl FnOnce(&mut T, usize),
    mut insert: impl FnMut(&mut T, K, V) -> Result<(), StateError>,
) -> Result<u64, SnapshotError> {
    // The encoding of `bincode::serialize`, with a limit: a damaged length prefix must not make
    // the decoder allocate more than the snapshot's size.
    let options = |limit: usize| {
        bincode::DefaultOptions::new().with_fixint_encoding().allow_trailing_bytes().with_limit(limit as u64)
    };
    let mut reader = bytes;
    let header: SnapshotHeader =
        options(reader.len()).deserialize_from(&mut reader).map_err(|error| SnapshotError::Invalid {
            snapshot: snapshot.to_string(),
            problem: format!(
                "its header cannot be decoded ({error}): it is not a Weir state snapshot, or it is cut short"
            ),
        })?;
    header.check::<K, V>(snapshot)?;
    // A damaged count must not allocate without bound: an entry takes at least one byte.
    reserve(target, header.entries.min(reader.len() as u64) as usize);
    for found in 0..header.entries {
        let (key, value): (K, V) =
            options(reader.len()).deserialize_from(&mut reader).map_err(|error| match *error {
                bincode::ErrorKind::Io(ref io) if io.kind() == ErrorKind::UnexpectedEof => {
                    SnapshotError::Truncated { snapshot: snapshot.to_string(), expected: header.entries, found }
                }
                bincode::ErrorKind::SizeLimit => {
                    SnapshotError::Truncated { snapshot: snapshot.to_string(), expected: header.entries, found }
                }
                _ => SnapshotError::Invalid {
                    snapshot: snapshot.to_string(),
                    problem: format!("entry {found} cannot be decoded: {error}"),
                },
            })?;
        insert(target, key, value)?;
    }
    if !reader.is_empty() {
        return Err(SnapshotError::Invalid {
            snapshot: snapshot.to_string(),
            problem: format!("{} unexpected bytes follow its {} entries", reader.len(), header.entries),
        });
    }
    Ok(header.entries)
}
