//! The RocksDB state store: one database per operator and worker, keys and values in bincode.
//!
//! (Implementation in progress: see issue 3, item 7.)

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use super::{StateError, StateKey, StateValue};

/// Settings of the RocksDB backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksDbOptions {
    /// Directory holding every store of every query that uses this backend.
    pub dir: PathBuf,
    /// Block cache size in bytes (bounds the memory used for reads).
    pub block_cache_bytes: usize,
    /// Write buffer (memtable) size in bytes (bounds the memory used for writes).
    pub write_buffer_bytes: usize,
}

impl RocksDbOptions {
    /// Stores under `dir`, with a 64 MiB block cache and 16 MiB write buffers.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RocksDbOptions { dir: dir.into(), block_cache_bytes: 64 << 20, write_buffer_bytes: 16 << 20 }
    }
}

/// Keyed state in RocksDB.
pub struct RocksDbStore<K, V> {
    path: PathBuf,
    _types: PhantomData<(K, V)>,
}

impl<K: StateKey, V: StateValue> RocksDbStore<K, V> {
    /// Opens (creating, or clearing) the database at `path`.
    pub fn open(path: impl AsRef<Path>, _options: &RocksDbOptions) -> Result<Self, StateError> {
        Err(StateError::RocksDb {
            path: path.as_ref().display().to_string(),
            message: "the RocksDB backend is not built yet".to_string(),
        })
    }

    fn unavailable<T>(&self) -> Result<T, StateError> {
        Err(StateError::RocksDb { path: self.path.display().to_string(), message: "not built yet".to_string() })
    }

    /// The value of `key`.
    pub fn get(&self, _key: &K) -> Result<Option<V>, StateError> {
        self.unavailable()
    }
    /// Whether `key` has a value.
    pub fn contains(&self, _key: &K) -> Result<bool, StateError> {
        self.unavailable()
    }
    /// Sets the value of `key`.
    pub fn put(&mut self, _key: &K, _value: &V) -> Result<(), StateError> {
        self.unavailable()
    }
    /// Removes `key`.
    pub fn remove(&mut self, _key: &K) -> Result<Option<V>, StateError> {
        self.unavailable()
    }
    /// Read-modify-write of one key.
    pub fn modify<R>(&mut self, _key: &K, _f: impl FnOnce(&mut Option<V>) -> R) -> Result<R, StateError> {
        self.unavailable()
    }
    /// Number of keys.
    pub fn len(&self) -> u64 {
        0
    }
    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        true
    }
    /// Estimated bytes in memory.
    pub fn memory_bytes(&self) -> u64 {
        0
    }
    /// Every key and value.
    pub fn for_each(&self, _f: impl FnMut(K, V)) -> Result<(), StateError> {
        self.unavailable()
    }
    /// Removes and returns everything.
    pub fn drain(&mut self) -> Result<Vec<(K, V)>, StateError> {
        self.unavailable()
    }
}
