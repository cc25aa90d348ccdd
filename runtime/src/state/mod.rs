//! Where stateful operators keep their state: in memory (default) or in RocksDB (for state larger
//! than memory), chosen per dataflow ([`crate::query::Query::state_backend`]) or per operator
//! ([`crate::context::QueryContext::with_state_backend`]).
//!
//! An operator opens one [`StateStore`] per worker: a map from its key type to its value type.
//! Both backends offer the same operations, so an operator written against [`StateStore`] runs on
//! either. The memory backend hands out references; RocksDB encodes keys and values with bincode.
//!
//! RocksDB keeps every key and value on disk; in memory it holds at most
//! [`RocksDbOptions::max_write_buffers`] memtables of [`RocksDbOptions::write_buffer_bytes`] and an
//! LRU block cache of [`RocksDbOptions::block_cache_bytes`] (which also holds the partitioned index
//! and filter blocks), per store. Its write-ahead log is disabled: a store is scratch space for one
//! run (opening clears its directory, dropping deletes it); durability comes from checkpoints.

mod memory;
mod rocksdb;
pub mod snapshot;

use std::borrow::Cow;
use std::hash::Hash;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

pub use self::memory::MemoryStore;
pub use self::rocksdb::{RocksDbOptions, RocksDbStore, SNAPSHOT_ROCKSDB_DIR, SNAPSHOT_STORE_FILE};
pub use self::snapshot::{SnapshotError, StateSnapshot};

use crate::checkpoint::{CheckpointDir, StateFile, StateFileRef, StateKind};

/// Which kind of store a stateful operator keeps its state in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// A hash map per worker: fastest, bounded by memory.
    #[default]
    Memory,
    /// A RocksDB database per operator and worker under a directory: state can exceed memory.
    RocksDb(RocksDbOptions),
}

impl StateBackend {
    /// RocksDB under `dir` with the default cache and write-buffer sizes.
    pub fn rocksdb(dir: impl Into<PathBuf>) -> Self {
        StateBackend::RocksDb(RocksDbOptions::new(dir))
    }

    /// A short description for logs and `explain`: `memory` or `rocksdb(<dir>)`.
    pub fn describe(&self) -> String {
        match self {
            StateBackend::Memory => "memory".to_string(),
            StateBackend::RocksDb(options) => format!("rocksdb({})", options.dir.display()),
        }
    }

    /// Opens the store of operator `operator` on worker `worker` of query `query_id`.
    ///
    /// RocksDB stores live in `<dir>/<query_id>/<operator>/worker-<worker>`; an existing
    /// directory there is cleared first (recovery from checkpoints restores state explicitly).
    pub fn open<K, V>(&self, query_id: &str, operator: &str, worker: usize) -> Result<StateStore<K, V>, StateError>
    where
        K: StateKey,
        V: StateValue,
    {
        match self {
            StateBackend::Memory => Ok(StateStore::Memory(MemoryStore::new())),
            StateBackend::RocksDb(options) => {
                let path =
                    options.dir.join(sanitize(query_id)).join(sanitize(operator)).join(format!("worker-{worker}"));
                Ok(StateStore::RocksDb(RocksDbStore::open(path, options)?))
            }
        }
    }
}

/// A key of operator state: hashable for memory, serializable for RocksDB.
pub trait StateKey: Clone + Eq + Hash + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Eq + Hash + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// A value of operator state: cloneable for memory, serializable for RocksDB.
pub trait StateValue: Clone + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// Why a state store could not be opened, read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// RocksDB refused an operation (open, read, write), with its message.
    #[error("RocksDB state at {path}: {message}")]
    RocksDb {
        /// The store's directory.
        path: String,
        /// RocksDB's message.
        message: String,
    },
    /// Stored bytes could not be decoded into the operator's state type (e.g. the type changed).
    #[error("state at {path} could not be decoded: {message}")]
    Codec {
        /// The store's directory.
        path: String,
        /// The decoder's message.
        message: String,
    },
}

/// One operator's keyed state on one worker, in memory or in RocksDB.
///
/// ```
/// use weir_runtime::state::StateBackend;
///
/// let mut store = StateBackend::Memory.open::<String, u64>("query", "counts", 0).unwrap();
/// store.modify(&"alice".to_string(), |count| *count.get_or_insert(0) += 1).unwrap();
/// assert_eq!(store.get(&"alice".to_string()).unwrap().as_deref(), Some(&1));
/// assert_eq!(store.len(), 1);
/// ```
pub enum StateStore<K: StateKey, V: StateValue> {
    /// Kept in a hash map.
    Memory(MemoryStore<K, V>),
    /// Kept in RocksDB.
    RocksDb(RocksDbStore<K, V>),
}

impl<K: StateKey, V: StateValue> StateStore<K, V> {
    /// The value for `key`: borrowed from memory, or decoded from RocksDB.
    #[inline]
    pub fn get(&self, key: &K) -> Result<Option<Cow<'_, V>>, StateError> {
        match self {
            StateStore::Memory(store) => Ok(store.get(key).map(Cow::Borrowed)),
            StateStore::RocksDb(store) => Ok(store.get(key)?.map(Cow::Owned)),
        }
    }

    /// Whether `key` has a value.
    #[inline]
    pub fn contains(&self, key: &K) -> Result<bool, StateError> {
        match self {
            StateStore::Memory(store) => Ok(store.contains(key)),
            StateStore::RocksDb(store) => store.contains(key),
        }
    }

    /// Sets the value of `key`.
    #[inline]
    pub fn put(&mut self, key: K, value: V) -> Result<(), StateError> {
        match self {
            StateStore::Memory(store) => {
                store.put(key, value);
                Ok(())
            }
            StateStore::RocksDb(store) => store.put(&key, &value),
        }
    }

    /// Removes `key` and returns its value.
    #[inline]
    pub fn remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        match self {
            StateStore::Memory(store) => Ok(store.remove(key)),
            StateStore::RocksDb(store) => store.remove(key),
        }
    }

    /// Reads, changes and writes back the value of `key` in one step: `f` sees `None` for a new
    /// key, and leaving `None` behind removes the key.
    #[inline]
    pub fn modify<R>(&mut self, key: &K, f: impl FnOnce(&mut Option<V>) -> R) -> Result<R, StateError> {
        match self {
            StateStore::Memory(store) => Ok(store.modify(key, f)),
            StateStore::RocksDb(store) => store.modify(key, f),
        }
    }

    /// Like [`StateStore::modify`], but `f` also says whether it changed the value: RocksDB then
    /// skips the write for unchanged values (memory always keeps the value in place).
    #[inline]
    pub fn modify_if_changed<R>(
        &mut self,
        key: &K,
        f: impl FnOnce(&mut Option<V>) -> (R, bool),
    ) -> Result<R, StateError> {
        match self {
            StateStore::Memory(store) => Ok(store.modify(key, |value| f(value).0)),
            StateStore::RocksDb(store) => store.modify_if_changed(key, f),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> u64 {
        match self {
            StateStore::Memory(store) => store.len(),
            StateStore::RocksDb(store) => store.len(),
        }
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes held in memory by this store (for `memoryUsedBytes`): the map's entries
    /// for memory; memtables and cached blocks for RocksDB.
    pub fn memory_bytes(&self) -> u64 {
        match self {
            StateStore::Memory(store) => store.memory_bytes(),
            StateStore::RocksDb(store) => store.memory_bytes(),
        }
    }

    /// Calls `f` with every key and value, in no particular order (for flushing at the end of
    /// input and for snapshots).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) -> Result<(), StateError> {
        match self {
            StateStore::Memory(store) => {
                store.iter().for_each(|(k, v)| f(k, v));
                Ok(())
            }
            StateStore::RocksDb(store) => store.for_each(|k, v| f(&k, &v)),
        }
    }

    /// Removes and returns every key and value.
    pub fn drain(&mut self) -> Result<Vec<(K, V)>, StateError> {
        match self {
            StateStore::Memory(store) => Ok(store.drain()),
            StateStore::RocksDb(store) => store.drain(),
        }
    }

    /// Every entry as bytes, with the key and value types recorded (see [`snapshot`]): a full
    /// copy, on either backend. A store restored from it ([`StateStore::restore`]) may use either
    /// backend. For checkpoints use [`StateStore::write_snapshot`], which lets RocksDB write a
    /// checkpoint of hard-linked files instead.
    pub fn snapshot(&self) -> Result<StateSnapshot, SnapshotError> {
        match self {
            StateStore::Memory(store) => store.snapshot(),
            StateStore::RocksDb(store) => snapshot::encode::<K, V>(store.len(), |write| {
                let mut result = Ok(());
                store.for_each(|key, value| {
                    if result.is_ok() {
                        result = write(&key, &value);
                    }
                })?;
                result
            }),
        }
    }

    /// Loads a byte snapshot ([`StateStore::snapshot`]) into this store, which must be empty.
    /// Refuses a snapshot of other key or value types and truncated or damaged bytes.
    pub fn restore(&mut self, snapshot: &StateSnapshot) -> Result<(), SnapshotError> {
        self.restore_bytes(snapshot.as_bytes(), snapshot::IN_MEMORY)
    }

    /// Writes this store's snapshot of epoch `epoch` into the checkpoint, as
    /// `state/<operator>/<worker>/<epoch>`, and returns the reference to report for the epoch's
    /// commit: a file of bytes for the memory backend, a directory holding a RocksDB checkpoint
    /// (hard links, no full copy) for the RocksDB backend.
    ///
    /// An operator calls it at an epoch boundary, after applying every input below the
    /// boundary and before applying any at or above it (`docs/checkpoints.md` §2).
    pub fn write_snapshot(
        &self,
        checkpoint: &CheckpointDir,
        operator: &str,
        worker: usize,
        epoch: u64,
    ) -> Result<StateFileRef, SnapshotError> {
        match self {
            StateStore::Memory(store) => {
                let snapshot = store.snapshot()?;
                Ok(checkpoint.write_state(operator, worker, epoch, snapshot.as_bytes())?)
            }
            StateStore::RocksDb(store) => {
                checkpoint.write_state_dir(operator, worker, epoch, |dir| store.checkpoint_into(dir))
            }
        }
    }

    /// Restores this store, which must be empty (just opened), from a snapshot listed by the
    /// checkpoint's last commit ([`crate::checkpoint::Resume::FromEpoch`]'s `state_files`).
    ///
    /// The snapshot is checked first (length and CRC-32 of a file; manifest, sizes and CRC-32 of
    /// every file of a directory); damage is an error naming the file. A RocksDB store is
    /// reopened on a copy of the checkpoint (SST files hard-linked), so the checkpoint itself is
    /// never changed. A byte snapshot restores into either backend; a RocksDB checkpoint only
    /// into a RocksDB store ([`SnapshotError::WrongBackend`]).
    pub fn restore_snapshot(&mut self, checkpoint: &CheckpointDir, file: &StateFile) -> Result<(), SnapshotError> {
        let label = file.path.display().to_string();
        if !self.is_empty() {
            return Err(SnapshotError::NotEmpty { snapshot: label, keys: self.len() });
        }
        match file.kind {
            StateKind::Bytes => {
                let bytes = checkpoint.read_state(&file.operator, file.worker, file.epoch)?;
                self.restore_bytes(&bytes, &label)
            }
            StateKind::Directory => {
                let dir = checkpoint.read_state_dir(&file.operator, file.worker, file.epoch)?;
                let StateStore::RocksDb(store) = self else {
                    return Err(SnapshotError::WrongBackend { snapshot: label, backend: self.backend_name() });
                };
                let (path, options) = (store.path().to_path_buf(), store.options().clone());
                // Close the live store (which deletes its directory and releases it) first.
                *self = StateStore::Memory(MemoryStore::new());
                match RocksDbStore::open_from_checkpoint(&path, &options, &dir) {
                    Ok(restored) => {
                        *self = StateStore::RocksDb(restored);
                        Ok(())
                    }
                    Err(error) => {
                        // Leave an empty store of the same backend behind, as for any failed restore.
                        if let Ok(empty) = RocksDbStore::open(&path, &options) {
                            *self = StateStore::RocksDb(empty);
                        }
                        Err(error)
                    }
                }
            }
        }
    }

    fn restore_bytes(&mut self, bytes: &[u8], label: &str) -> Result<(), SnapshotError> {
        match self {
            StateStore::Memory(store) => store.restore_bytes(bytes, label),
            StateStore::RocksDb(store) => {
                if !store.is_empty() {
                    return Err(SnapshotError::NotEmpty { snapshot: label.to_string(), keys: store.len() });
                }
                let result = snapshot::decode::<K, V, _>(
                    bytes,
                    label,
                    store,
                    |_, _| {},
                    |store, key, value| store.put(&key, &value),
                );
                if result.is_err() {
                    store.drain()?;
                }
                result.map(|_| ())
            }
        }
    }

    /// Which backend holds this store.
    pub fn backend_name(&self) -> &'static str {
        match self {
            StateStore::Memory(_) => "memory",
            StateStore::RocksDb(_) => "rocksdb",
        }
    }
}

/// A directory-name-safe form of a query id or operator name.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
