//! The RocksDB state store: one database per operator and worker, keys and values in bincode.
//!
//! What lives where:
//! * on disk: every key and value (SST files and, until flushed, memtables), so state can be far
//!   larger than memory;
//! * in memory: the memtables (at most [`RocksDbOptions::max_write_buffers`] of
//!   [`RocksDbOptions::write_buffer_bytes`] each), the LRU block cache
//!   ([`RocksDbOptions::block_cache_bytes`], which also holds index and filter blocks so that
//!   they do not grow with the state), and a key counter.
//!
//! The write-ahead log is **disabled**: a store is scratch space for one run of one operator
//! (opening it clears its directory, dropping it deletes the directory). Durability across
//! crashes comes from checkpoints, which copy state explicitly; a WAL would only double the
//! write cost without making anything recoverable.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{BlockBasedIndexType, BlockBasedOptions, Cache, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::snapshot::{SnapshotError, SnapshotHeader};
use super::{StateError, StateKey, StateValue};

/// In a directory snapshot: the file with the key and value types and the key count (JSON).
pub const SNAPSHOT_STORE_FILE: &str = "store";
/// In a directory snapshot: the RocksDB checkpoint.
pub const SNAPSHOT_ROCKSDB_DIR: &str = "rocksdb";

/// Settings of the RocksDB backend.
///
/// ```
/// use weir_runtime::state::{RocksDbOptions, StateBackend};
///
/// let options = RocksDbOptions::new("/tmp/weir-state")
///     .with_block_cache_bytes(4 << 20)
///     .with_write_buffer_bytes(2 << 20)
///     .with_max_write_buffers(2);
/// let backend = StateBackend::RocksDb(options);
/// assert_eq!(backend.describe(), "rocksdb(/tmp/weir-state)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksDbOptions {
    /// Directory holding every store of every query that uses this backend.
    pub dir: PathBuf,
    /// Block cache size in bytes, per store (operator and worker): bounds the memory used for
    /// reads, including index and filter blocks.
    pub block_cache_bytes: usize,
    /// Write buffer (memtable) size in bytes: bounds the memory used for writes, together with
    /// `max_write_buffers`.
    pub write_buffer_bytes: usize,
    /// How many memtables a store may hold at once (the active one and those being flushed).
    pub max_write_buffers: usize,
}

impl RocksDbOptions {
    /// Stores under `dir`, with a 64 MiB block cache and two 16 MiB write buffers per store.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RocksDbOptions {
            dir: dir.into(),
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 16 << 20,
            max_write_buffers: 2,
        }
    }

    /// The same options with a block cache of `bytes` per store.
    pub fn with_block_cache_bytes(mut self, bytes: usize) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// The same options with memtables of `bytes` each.
    pub fn with_write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    /// The same options with at most `n` memtables per store (at least 2 are used).
    pub fn with_max_write_buffers(mut self, n: usize) -> Self {
        self.max_write_buffers = n;
        self
    }

    /// The RocksDB options these settings stand for, with the block cache they use.
    fn rocksdb_options(&self) -> Result<(Options, Cache), rocksdb::Error> {
        let cache = Cache::new_lru_cache(self.block_cache_bytes.max(1 << 20))?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Most lookups of new keys miss: a bloom filter answers them without reading a block.
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks go through the cache too, so their memory is bounded by it
        // instead of growing with the state. They are partitioned into small blocks: with
        // whole-file filters a small cache would re-read a filter of hundreds of KB per lookup.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_format_version(5);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_size(self.write_buffer_bytes.max(64 << 10));
        options.set_max_write_buffer_number(self.max_write_buffers.max(2) as i32);
        options.set_level_compaction_dynamic_level_bytes(true);
        options.set_max_background_jobs(2);
        Ok((options, cache))
    }
}

/// Keyed state in RocksDB: keys and values encoded with bincode, an exact key count kept beside.
///
/// RocksDB has no exact key count, so the store keeps one: every write first looks up whether
/// its key exists (a bloom-filter check for new keys). Opening a store clears its directory;
/// dropping it deletes the directory.
pub struct RocksDbStore<K, V> {
    // Declared before `_directory` so that the database is closed before its directory goes.
    db: DB,
    _directory: Box<RemoveOnDrop>,
    // Kept so the block cache's usage can be read (the database holds its own reference).
    cache: Cache,
    write_options: WriteOptions,
    path: PathBuf,
    // Boxed: kept only to reopen the store on a restore, and `StateStore`'s variants stay close in size.
    options: Box<RocksDbOptions>,
    keys: u64,
    key_buffer: RefCell<Vec<u8>>,
    value_buffer: Vec<u8>,
    _types: PhantomData<(K, V)>,
}

impl<K: StateKey, V: StateValue> RocksDbStore<K, V> {
    /// Opens the database at `path`, clearing whatever the directory held before.
    pub fn open(path: impl AsRef<Path>, options: &RocksDbOptions) -> Result<Self, StateError> {
        Self::open_filled(path.as_ref(), options, |_| Ok(()), 0)
    }

    /// Opens a store at `path` (cleared first, like [`RocksDbStore::open`]) holding the state of
    /// a directory snapshot written by [`RocksDbStore::checkpoint_into`].
    ///
    /// The snapshot's types are checked first. Its SST files are hard-linked into `path` (copied
    /// if `path` is on another file system), its other files (RocksDB's small `MANIFEST`,
    /// `CURRENT`, `OPTIONS`) copied: the live store never changes the snapshot, which stays
    /// intact for a later recovery. The caller checks the snapshot's integrity beforehand
    /// ([`crate::checkpoint::CheckpointDir::read_state_dir`]).
    pub fn open_from_checkpoint(
        path: impl AsRef<Path>,
        options: &RocksDbOptions,
        snapshot: &Path,
    ) -> Result<Self, SnapshotError> {
        let store_file = snapshot.join(SNAPSHOT_STORE_FILE);
        let invalid =
            |what: &Path, problem: String| SnapshotError::Invalid { snapshot: what.display().to_string(), problem };
        let content = std::fs::read(&store_file).map_err(|e| invalid(&store_file, format!("cannot be read: {e}")))?;
        let header: SnapshotHeader = serde_json::from_slice(&content)
            .map_err(|e| invalid(&store_file, format!("it is not a RocksDB state snapshot's `store` file: {e}")))?;
        header.check::<K, V>(&snapshot.display().to_string())?;
        let source = snapshot.join(SNAPSHOT_ROCKSDB_DIR);
        if !source.is_dir() {
            return Err(invalid(&source, "the RocksDB checkpoint directory is missing".to_string()));
        }
        Ok(Self::open_filled(path.as_ref(), options, |live| link_or_copy(&source, live), header.entries)?)
    }

    /// Writes a snapshot of the store into `dir` (which must exist): the file `store` (key and
    /// value types, key count) and a RocksDB checkpoint in `dir/rocksdb` (the memtables are
    /// flushed, then the SST files are hard-linked, not copied, when `dir` is on the same file
    /// system as the store). Usually called through
    /// [`crate::checkpoint::CheckpointDir::write_state_dir`], which adds the manifest.
    pub fn checkpoint_into(&self, dir: &Path) -> Result<(), SnapshotError> {
        let store_file = dir.join(SNAPSHOT_STORE_FILE);
        let header = serde_json::to_vec_pretty(&SnapshotHeader::of::<K, V>(self.keys)).expect("headers serialize");
        std::fs::write(&store_file, header).map_err(|e| StateError::RocksDb {
            path: self.path.display().to_string(),
            message: format!("cannot write the snapshot file {}: {e}", store_file.display()),
        })?;
        let target = dir.join(SNAPSHOT_ROCKSDB_DIR);
        let checkpoint_error = |e: rocksdb::Error| StateError::RocksDb {
            path: self.path.display().to_string(),
            message: format!("cannot create a RocksDB checkpoint in {}: {}", target.display(), e.into_string()),
        };
        Checkpoint::new(&self.db).and_then(|c| c.create_checkpoint(&target)).map_err(checkpoint_error)?;
        Ok(())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &RocksDbOptions {
        &self.options
    }

    fn open_filled<E: From<StateError>>(
        path: &Path,
        options: &RocksDbOptions,
        fill: impl FnOnce(&Path) -> Result<(), E>,
        keys: u64,
    ) -> Result<Self, E> {
        let path = path.to_path_buf();
        let io_error = |what: &str, error: std::io::Error| StateError::RocksDb {
            path: path.display().to_string(),
            message: format!("cannot {what} the directory: {error}"),
        };
        // Two stores in one directory would corrupt each other (e.g. two operators of one query
        // with the same name): refuse the second before touching the first one's files.
        let claim = Claim::take(&path)?;
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("clear", error).into()),
        }
        std::fs::create_dir_all(&path).map_err(|e| io_error("create", e))?;
        let directory = Box::new(RemoveOnDrop { path: path.clone(), keep_below: options.dir.clone(), _claim: claim });
        fill(&path)?;
        let (db_options, cache) = options.rocksdb_options().map_err(|e| rocks_error(&path, e))?;
        let db = DB::open(&db_options, &path).map_err(|e| rocks_error(&path, e))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksDbStore {
            db,
            _directory: directory,
            cache,
            write_options,
            path,
            options: Box::new(options.clone()),
            keys,
            key_buffer: RefCell::new(Vec::new()),
            value_buffer: Vec::new(),
            _types: PhantomData,
        })
    }

    /// The directory of this store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        let mut buffer = self.key_buffer.borrow_mut();
        encode_into(&mut buffer, key, &self.path)?;
        match self.db.get_pinned(&buffer[..]).map_err(|e| rocks_error(&self.path, e))? {
            Some(bytes) => Ok(Some(decode(&bytes, &self.path)?)),
            None => Ok(None),
        }
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &K) -> Result<bool, StateError> {
        let mut buffer = self.key_buffer.borrow_mut();
        encode_into(&mut buffer, key, &self.path)?;
        self.exists(&buffer)
    }

    /// Sets the value of `key`.
    pub fn put(&mut self, key: &K, value: &V) -> Result<(), StateError> {
        let mut key_bytes = std::mem::take(self.key_buffer.get_mut());
        let result = encode_into(&mut key_bytes, key, &self.path).and_then(|()| {
            let existed = self.exists(&key_bytes)?;
            self.write(&key_bytes, value, existed)
        });
        *self.key_buffer.get_mut() = key_bytes;
        result
    }

    /// Removes `key` and returns its value.
    pub fn remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        let mut key_bytes = std::mem::take(self.key_buffer.get_mut());
        let result = encode_into(&mut key_bytes, key, &self.path).and_then(|()| {
            let old = self.read_bytes(&key_bytes)?;
            if old.is_some() {
                self.delete(&key_bytes)?;
            }
            Ok(old)
        });
        *self.key_buffer.get_mut() = key_bytes;
        result
    }

    /// Read-modify-write of one key: `f` sees `None` for a new key; `None` afterwards removes it.
    pub fn modify<R>(&mut self, key: &K, f: impl FnOnce(&mut Option<V>) -> R) -> Result<R, StateError> {
        self.modify_if_changed(key, |value| (f(value), true))
    }

    /// Like [`RocksDbStore::modify`], but writes back only if `f` says (second result) that it
    /// changed the value.
    pub fn modify_if_changed<R>(
        &mut self,
        key: &K,
        f: impl FnOnce(&mut Option<V>) -> (R, bool),
    ) -> Result<R, StateError> {
        let mut key_bytes = std::mem::take(self.key_buffer.get_mut());
        let result = encode_into(&mut key_bytes, key, &self.path).and_then(|()| {
            let mut value = self.read_bytes(&key_bytes)?;
            let existed = value.is_some();
            let (result, changed) = f(&mut value);
            if changed {
                match &value {
                    Some(value) => self.write(&key_bytes, value, existed)?,
                    None if existed => self.delete(&key_bytes)?,
                    None => {}
                }
            }
            Ok(result)
        });
        *self.key_buffer.get_mut() = key_bytes;
        result
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.keys
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Estimated bytes in memory: the memtables and the block cache's usage (RocksDB's
    /// `rocksdb.cur-size-all-mem-tables` and `rocksdb.block-cache-usage`), plus the table
    /// readers' memory outside the cache (`rocksdb.estimate-table-readers-mem`).
    pub fn memory_bytes(&self) -> u64 {
        let property = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        let block_cache = property("rocksdb.block-cache-usage").max(self.cache.get_usage() as u64);
        property("rocksdb.cur-size-all-mem-tables") + block_cache + property("rocksdb.estimate-table-readers-mem")
    }

    /// Calls `f` with every key and value, in key-byte order.
    pub fn for_each(&self, mut f: impl FnMut(K, V)) -> Result<(), StateError> {
        for entry in self.db.iterator(IteratorMode::Start) {
            let (key, value) = entry.map_err(|e| rocks_error(&self.path, e))?;
            f(decode(&key, &self.path)?, decode(&value, &self.path)?);
        }
        Ok(())
    }

    /// Removes and returns everything.
    pub fn drain(&mut self) -> Result<Vec<(K, V)>, StateError> {
        const DELETES_PER_BATCH: usize = 10_000;
        let mut drained = Vec::with_capacity(self.keys as usize);
        let mut batch = WriteBatch::default();
        for entry in self.db.iterator(IteratorMode::Start) {
            let (key, value) = entry.map_err(|e| rocks_error(&self.path, e))?;
            drained.push((decode(&key, &self.path)?, decode(&value, &self.path)?));
            batch.delete(&key);
            if batch.len() >= DELETES_PER_BATCH {
                let full = std::mem::take(&mut batch);
                self.db.write_opt(full, &self.write_options).map_err(|e| rocks_error(&self.path, e))?;
            }
        }
        if !batch.is_empty() {
            self.db.write_opt(batch, &self.write_options).map_err(|e| rocks_error(&self.path, e))?;
        }
        self.keys = 0;
        Ok(drained)
    }

    fn exists(&self, key_bytes: &[u8]) -> Result<bool, StateError> {
        if !self.db.key_may_exist(key_bytes) {
            return Ok(false);
        }
        Ok(self.db.get_pinned(key_bytes).map_err(|e| rocks_error(&self.path, e))?.is_some())
    }

    fn read_bytes(&self, key_bytes: &[u8]) -> Result<Option<V>, StateError> {
        match self.db.get_pinned(key_bytes).map_err(|e| rocks_error(&self.path, e))? {
            Some(bytes) => Ok(Some(decode(&bytes, &self.path)?)),
            None => Ok(None),
        }
    }

    fn write(&mut self, key_bytes: &[u8], value: &V, existed: bool) -> Result<(), StateError> {
        encode_into(&mut self.value_buffer, value, &self.path)?;
        self.db.put_opt(key_bytes, &self.value_buffer, &self.write_options).map_err(|e| rocks_error(&self.path, e))?;
        if !existed {
            self.keys += 1;
        }
        Ok(())
    }

    fn delete(&mut self, key_bytes: &[u8]) -> Result<(), StateError> {
        self.db.delete_opt(key_bytes, &self.write_options).map_err(|e| rocks_error(&self.path, e))?;
        self.keys -= 1;
        Ok(())
    }
}

/// Deletes a store's directory once the store is closed, and then its parent directories up to
/// (not including) the backend's directory, if they are empty; then releases the directory.
struct RemoveOnDrop {
    path: PathBuf,
    keep_below: PathBuf,
    _claim: Claim,
}

/// The directories of the stores open in this process.
static OPEN_STORES: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// This process's claim on a store directory, released on drop.
struct Claim {
    path: PathBuf,
}

impl Claim {
    fn take(path: &Path) -> Result<Claim, StateError> {
        let mut open = OPEN_STORES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !open.insert(path.to_path_buf()) {
            return Err(StateError::RocksDb {
                path: path.display().to_string(),
                message: "another state store of this process is open in this directory: give each stateful \
                          operator of a query its own name"
                    .to_string(),
            });
        }
        Ok(Claim { path: path.to_path_buf() })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        OPEN_STORES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.path);
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), "could not delete a RocksDB state directory: {error}");
            return;
        }
        let mut parent = self.path.parent();
        while let Some(dir) = parent {
            if dir == self.keep_below || !dir.starts_with(&self.keep_below) || std::fs::remove_dir(dir).is_err() {
                break;
            }
            parent = dir.parent();
        }
    }
}

/// Hard-links (or, across file systems, copies) the SST files of `source` into `target`, and
/// copies every other file: those RocksDB may rewrite or append to.
fn link_or_copy(source: &Path, target: &Path) -> Result<(), StateError> {
    let io_error = |what: &str, path: &Path, e: std::io::Error| StateError::RocksDb {
        path: target.display().to_string(),
        message: format!("cannot {what} {} from the snapshot: {e}", path.display()),
    };
    let entries = std::fs::read_dir(source).map_err(|e| io_error("list", source, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", source, e))?;
        let from = entry.path();
        let to = target.join(entry.file_name());
        if from.is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| io_error("create", &to, e))?;
            link_or_copy(&from, &to)?;
        } else if from.extension().is_some_and(|ext| ext == "sst") {
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|e| io_error("copy", &from, e))?;
            }
        } else {
            std::fs::copy(&from, &to).map_err(|e| io_error("copy", &from, e))?;
        }
    }
    Ok(())
}

fn rocks_error(path: &Path, error: rocksdb::Error) -> StateError {
    StateError::RocksDb { path: path.display().to_string(), message: error.into_string() }
}

fn encode_into<T: Serialize>(buffer: &mut Vec<u8>, value: &T, path: &Path) -> Result<(), StateError> {
    buffer.clear();
    bincode::serialize_into(&mut *buffer, value)
        .map_err(|e| StateError::Codec { path: path.display().to_string(), message: e.to_string() })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<T, StateError> {
    bincode::deserialize(bytes)
        .map_err(|e| StateError::Codec { path: path.display().to_string(), message: e.to_string() })
}
