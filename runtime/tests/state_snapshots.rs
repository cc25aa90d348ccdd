//! State snapshots for checkpoints, on both backends, against a model.
//!
//! A seeded random sequence of puts, modifies and removes runs on a store and on a `BTreeMap`;
//! the store is snapshotted (into a checkpoint directory: bytes for memory, a RocksDB checkpoint
//! directory for RocksDB), more random writes follow, and a fresh store restored from the
//! snapshot must hold exactly the model's contents at snapshot time (and the right key count).
//! Then: damaged or missing snapshot pieces (each error must name the file), snapshots of another
//! key or value type (refused, naming both), and a RocksDB store larger than its block cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_runtime::checkpoint::{
    CheckpointDir, CheckpointMetadata, CommitRecord, DataflowFingerprint, EpochOffsets, Resume, StateFile,
    StateFileRef, StateKind,
};
use weir_runtime::state::{RocksDbOptions, SnapshotError, StateBackend, StateSnapshot, StateStore};
use weir_runtime::time::EventTime;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct Key {
    user: String,
    shard: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Value {
    count: u64,
    payload: Vec<u8>,
}

/// SplitMix64 (the runtime crate has no `rand` dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn scratch(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-snapshot-{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// RocksDB with buffers small enough that state moves into SST files during the test.
fn small_rocksdb(dir: &Path) -> StateBackend {
    StateBackend::RocksDb(
        RocksDbOptions::new(dir)
            .with_block_cache_bytes(1 << 20)
            .with_write_buffer_bytes(64 << 10)
            .with_max_write_buffers(2),
    )
}

/// `ops` random writes over `key_space` keys, applied to the store and the model: puts, modifies
/// (some of which remove), and removes (deletes before the snapshot).
fn random_writes(
    rng: &mut Rng,
    store: &mut StateStore<Key, Value>,
    model: &mut BTreeMap<Key, Value>,
    ops: usize,
    key_space: u64,
) {
    for _ in 0..ops {
        let key = Key { user: format!("user-{}", rng.below(key_space)), shard: rng.below(4) as u32 };
        match rng.below(10) {
            0..=4 => {
                let value =
                    Value { count: rng.next(), payload: (0..rng.below(40)).map(|_| rng.next() as u8).collect() };
                store.put(key.clone(), value.clone()).unwrap();
                model.insert(key, value);
            }
            5..=7 => {
                let remove = rng.below(4) == 0;
                let add = rng.below(100);
                store
                    .modify(&key, |value| {
                        if remove {
                            *value = None;
                        } else {
                            value.get_or_insert(Value { count: 0, payload: vec![1] }).count += add;
                        }
                    })
                    .unwrap();
                if remove {
                    model.remove(&key);
                } else {
                    model.entry(key).or_insert(Value { count: 0, payload: vec![1] }).count += add;
                }
            }
            _ => {
                assert_eq!(store.remove(&key).unwrap(), model.remove(&key));
            }
        }
    }
}

fn contents(store: &StateStore<Key, Value>) -> BTreeMap<Key, Value> {
    let mut out = BTreeMap::new();
    store
        .for_each(|k, v| {
            assert!(out.insert(k.clone(), v.clone()).is_none(), "key {k:?} seen twice");
        })
        .unwrap();
    out
}

fn open_checkpoint(path: &Path) -> CheckpointDir {
    let metadata = CheckpointMetadata::new("q", "snapshots", 1, DataflowFingerprint::default());
    CheckpointDir::open_or_create(path, &metadata).unwrap().0
}

/// Commits `epoch` with the given state and returns the state files a restart would restore.
fn commit_and_resume(checkpoint: &CheckpointDir, epoch: u64, state_files: Vec<StateFileRef>) -> Vec<StateFile> {
    let offsets = EpochOffsets {
        epoch,
        start: EventTime::from_millis(epoch * 10),
        end: EventTime::from_millis(epoch * 10 + 10),
        sources: BTreeMap::new(),
    };
    checkpoint.write_offsets(&offsets).unwrap();
    checkpoint.write_commit(&CommitRecord { epoch, committed_at: EventTime::now(), state_files }).unwrap();
    let metadata = checkpoint.metadata().clone();
    let (_, resume) = CheckpointDir::open_or_create(checkpoint.path(), &metadata).unwrap();
    let Resume::FromEpoch { state_files, .. } = resume else { panic!("must resume: {resume:?}") };
    state_files
}

/// Random writes, snapshot into a checkpoint, more random writes, commit, restore into a fresh
/// store: it must hold the state at snapshot time. Returns the checkpoint's state files.
fn round_trip(backend: &StateBackend, seed: u64, ops: usize, key_space: u64, expected_kind: StateKind) {
    let path = scratch(&format!("round-trip-{seed}"));
    let checkpoint = open_checkpoint(&path);
    let mut rng = Rng(seed);
    let mut store = backend.open::<Key, Value>("q", "count", 0).unwrap();
    let mut model = BTreeMap::new();
    random_writes(&mut rng, &mut store, &mut model, ops, key_space);
    assert!(model.len() > 1, "the test must hold state");
    let reference = store.write_snapshot(&checkpoint, "count", 0, 0).unwrap();
    assert_eq!(reference.kind, expected_kind);
    let at_snapshot = model.clone();
    // Writes after the snapshot (including deletes of snapshotted keys) must not reach it.
    random_writes(&mut rng, &mut store, &mut model, ops, key_space);
    assert_ne!(model, at_snapshot, "the writes after the snapshot must change something");
    assert_eq!(contents(&store), model);
    drop(store);

    let files = commit_and_resume(&checkpoint, 0, vec![reference]);
    assert_eq!(files.len(), 1);
    // Twice: the first restore must leave the checkpoint intact for a later recovery, even
    // after the restored store was written to.
    for round in 0..2 {
        let mut restored = backend.open::<Key, Value>("q", "count", 0).unwrap();
        restored.restore_snapshot(&checkpoint, &files[0]).unwrap();
        assert_eq!(restored.len(), at_snapshot.len() as u64, "seed {seed} round {round}: key count");
        assert_eq!(contents(&restored), at_snapshot, "seed {seed} round {round}: contents");
        for (key, value) in at_snapshot.iter().take(50) {
            assert_eq!(restored.get(key).unwrap().as_deref(), Some(value));
        }
        // The restored store is a working store: its key count follows further writes.
        let mut model = at_snapshot.clone();
        random_writes(&mut rng, &mut restored, &mut model, ops, key_space);
        assert_eq!(restored.len(), model.len() as u64);
        assert_eq!(contents(&restored), model);
    }
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn memory_snapshots_restore_the_state_at_snapshot_time() {
    for seed in 0..8 {
        let (ops, keys) = if seed == 7 { (200_000, 50_000) } else { (2_000 + 500 * seed as usize, 300) };
        round_trip(&StateBackend::Memory, seed, ops, keys, StateKind::Bytes);
    }
}

#[test]
fn rocksdb_checkpoints_restore_the_state_at_snapshot_time() {
    let dir = scratch("rocksdb-backend");
    for seed in 0..5 {
        let (ops, keys) = if seed == 4 { (100_000, 30_000) } else { (3_000 + 1_000 * seed as usize, 500) };
        round_trip(&small_rocksdb(&dir), 100 + seed, ops, keys, StateKind::Directory);
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn byte_snapshots_move_between_backends() {
    let dir = scratch("cross-backend");
    let mut rng = Rng(7);
    let mut model = BTreeMap::new();
    let mut rocks = small_rocksdb(&dir).open::<Key, Value>("q", "x", 0).unwrap();
    random_writes(&mut rng, &mut rocks, &mut model, 5_000, 800);
    let snapshot = rocks.snapshot().unwrap();
    let mut memory = StateBackend::Memory.open::<Key, Value>("q", "x", 0).unwrap();
    memory.restore(&snapshot).unwrap();
    assert_eq!(contents(&memory), model);
    drop(rocks);
    let mut rocks = small_rocksdb(&dir).open::<Key, Value>("q", "x", 0).unwrap();
    rocks.restore(&memory.snapshot().unwrap()).unwrap();
    assert_eq!((contents(&rocks), rocks.len()), (model.clone(), model.len() as u64));
    // Restoring needs an empty store.
    let error = rocks.restore(&snapshot).unwrap_err();
    assert!(matches!(error, SnapshotError::NotEmpty { .. }), "{error}");
    drop(rocks);
    let _ = fs::remove_dir_all(&dir);
}

/// The largest hard-link count of the SST files in `dir`.
fn max_links(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .map(|p| fs::metadata(p).unwrap().nlink())
        .max()
        .expect("SST files")
}

#[test]
fn a_rocksdb_store_larger_than_its_block_cache_round_trips() {
    let dir = scratch("large-backend");
    let path = scratch("large-checkpoint");
    let checkpoint = open_checkpoint(&path);
    let backend = small_rocksdb(&dir); // 1 MiB block cache
    let mut store = backend.open::<u64, Vec<u8>>("q", "big", 0).unwrap();
    // Incompressible values, so the files are as large as the data.
    let value = |i: u64| -> Vec<u8> {
        let mut rng = Rng(i);
        (0..100).map(|_| rng.next() as u8).collect()
    };
    const KEYS: u64 = 150_000;
    for i in 0..KEYS {
        store.put(i, value(i)).unwrap();
    }
    for i in (0..KEYS).step_by(10) {
        store.remove(&i).unwrap();
    }
    let reference = store.write_snapshot(&checkpoint, "big", 0, 0).unwrap();
    assert!(reference.bytes > 4 << 20, "the snapshot ({} bytes) must exceed the 1 MiB block cache", reference.bytes);
    let snapshot_dir = checkpoint.state_path("big", 0, 0);
    // The SST files are hard links shared with the live store, not copies.
    assert!(max_links(&snapshot_dir.join("rocksdb")) >= 2, "the checkpoint's SST files must be hard links");
    drop(store);
    let files = commit_and_resume(&checkpoint, 0, vec![reference]);
    assert_eq!(max_links(&snapshot_dir.join("rocksdb")), 1, "the live store is gone");
    let mut restored = backend.open::<u64, Vec<u8>>("q", "big", 0).unwrap();
    restored.restore_snapshot(&checkpoint, &files[0]).unwrap();
    assert!(max_links(&snapshot_dir.join("rocksdb")) >= 2, "the restore hard-links the SST files");
    assert_eq!(restored.len(), KEYS - KEYS / 10);
    for i in 0..KEYS {
        let expected = if i % 10 == 0 { None } else { Some(value(i)) };
        assert_eq!(restored.get(&i).unwrap().map(|v| v.into_owned()), expected, "key {i}");
    }
    assert!(restored.memory_bytes() < 16 << 20, "memory stays bounded: {}", restored.memory_bytes());
    drop(restored);
    let _ = fs::remove_dir_all(&dir);
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn a_snapshot_of_another_key_or_value_type_is_refused() {
    let mut store = StateBackend::Memory.open::<String, u64>("q", "c", 0).unwrap();
    store.put("a".into(), 1).unwrap();
    let snapshot = store.snapshot().unwrap();
    let mut other = StateBackend::Memory.open::<String, i64>("q", "c", 0).unwrap();
    let error = other.restore(&snapshot).unwrap_err();
    let SnapshotError::TypeMismatch { ref expected_value, ref found_value, ref found_key, .. } = error else {
        panic!("expected a type mismatch, got {error}")
    };
    assert_eq!((expected_value.as_str(), found_value.as_str()), ("i64", "u64"));
    assert!(found_key.contains("String"), "{found_key}");
    assert!(error.to_string().contains("values of type `u64`"), "{error}");
    assert!(other.is_empty());

    // RocksDB: a checkpoint directory of (String, u64) into a (u64, u64) store.
    let dir = scratch("types-backend");
    let path = scratch("types-checkpoint");
    let checkpoint = open_checkpoint(&path);
    let backend = small_rocksdb(&dir);
    let mut store = backend.open::<String, u64>("q", "c", 0).unwrap();
    store.put("a".into(), 1).unwrap();
    let reference = store.write_snapshot(&checkpoint, "c", 0, 0).unwrap();
    drop(store);
    let files = commit_and_resume(&checkpoint, 0, vec![reference]);
    let mut other = backend.open::<u64, u64>("q", "c", 0).unwrap();
    let error = other.restore_snapshot(&checkpoint, &files[0]).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SnapshotError::TypeMismatch { .. }), "{message}");
    assert!(message.contains(&files[0].path.display().to_string()), "must name the snapshot: {message}");
    assert!(message.contains("keys of type `alloc::string::String`") && message.contains("`u64`"), "{message}");
    assert_eq!((other.backend_name(), other.is_empty()), ("rocksdb", true), "a failed restore leaves an empty store");
    other.put(1, 2).unwrap();
    assert_eq!(other.len(), 1);
    // A RocksDB checkpoint cannot go into a memory store.
    let mut memory = StateBackend::Memory.open::<String, u64>("q", "c", 0).unwrap();
    let error = memory.restore_snapshot(&checkpoint, &files[0]).unwrap_err();
    assert!(matches!(error, SnapshotError::WrongBackend { .. }), "{error}");
    drop(other);
    let _ = fs::remove_dir_all(&dir);
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn truncated_or_damaged_byte_snapshots_are_refused() {
    let mut store = StateBackend::Memory.open::<String, u64>("q", "c", 0).unwrap();
    for i in 0..100u64 {
        store.put(format!("key-{i}"), i).unwrap();
    }
    let bytes = store.snapshot().unwrap().into_bytes();
    let restore = |bytes: &[u8]| {
        let mut fresh = StateBackend::Memory.open::<String, u64>("q", "c", 0).unwrap();
        let result = fresh.restore(&StateSnapshot::from_bytes(bytes.to_vec()));
        assert!(result.is_err() && fresh.is_empty(), "a failed restore leaves the store empty");
        result.unwrap_err()
    };
    let error = restore(&bytes[..bytes.len() - 5]);
    assert!(matches!(error, SnapshotError::Truncated { expected: 100, found: 99, .. }), "{error}");
    assert!(error.to_string().contains("announces 100 entries, only 99 are complete"), "{error}");
    let error = restore(&bytes[..10]);
    assert!(matches!(error, SnapshotError::Invalid { .. }), "{error}");
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"xyz");
    assert!(restore(&longer).to_string().contains("3 unexpected bytes follow its 100 entries"));
    let error = restore(b"not a snapshot at all, clearly");
    assert!(matches!(error, SnapshotError::Invalid { .. }), "{error}");

    // In a checkpoint, the file's own length and checksum catch it first, naming the file.
    let path = scratch("bytes-damaged");
    let checkpoint = open_checkpoint(&path);
    let reference = store.write_snapshot(&checkpoint, "c", 0, 0).unwrap();
    let files = commit_and_resume(&checkpoint, 0, vec![reference]);
    let file = &files[0].path;
    let mut damaged = fs::read(file).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    fs::write(file, &damaged).unwrap();
    let mut fresh = StateBackend::Memory.open::<String, u64>("q", "c", 0).unwrap();
    let message = fresh.restore_snapshot(&checkpoint, &files[0]).unwrap_err().to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("does not match its checksum"),
        "{message}"
    );
    damaged.truncate(damaged.len() / 2);
    fs::write(file, &damaged).unwrap();
    let message = fresh.restore_snapshot(&checkpoint, &files[0]).unwrap_err().to_string();
    assert!(message.contains(&file.display().to_string()) && message.contains("is truncated"), "{message}");
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn damaged_or_missing_pieces_of_a_rocksdb_checkpoint_are_named() {
    type Damage = fn(&Path) -> PathBuf;
    fn first_sst(dir: &Path) -> PathBuf {
        let mut ssts: Vec<PathBuf> = fs::read_dir(dir.join("rocksdb"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sst"))
            .collect();
        ssts.sort();
        ssts.into_iter().next().expect("the checkpoint has SST files")
    }
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "an SST file removed",
            |dir| {
                let sst = first_sst(dir);
                fs::remove_file(&sst).unwrap();
                sst
            },
            "is listed by the manifest of its state directory but is missing",
        ),
        (
            "a byte of an SST file changed",
            |dir| {
                let sst = first_sst(dir);
                let mut bytes = fs::read(&sst).unwrap();
                bytes[100] ^= 0x01;
                // Write a new file: the SST may be a hard link shared with nothing else here, but
                // never change a file in place that another directory could share.
                fs::remove_file(&sst).unwrap();
                fs::write(&sst, bytes).unwrap();
                sst
            },
            "does not match the checksum in the manifest of its state directory",
        ),
        (
            "an SST file cut short",
            |dir| {
                let sst = first_sst(dir);
                let bytes = fs::read(&sst).unwrap();
                fs::remove_file(&sst).unwrap();
                fs::write(&sst, &bytes[..bytes.len() / 2]).unwrap();
                sst
            },
            "the manifest of its state directory lists",
        ),
        (
            "the manifest missing (a half-written directory)",
            |dir| {
                fs::remove_file(dir.join("weir-manifest")).unwrap();
                dir.to_path_buf()
            },
            "has no manifest",
        ),
        (
            "the store file missing",
            |dir| {
                fs::remove_file(dir.join("store")).unwrap();
                dir.join("store")
            },
            "is listed by the manifest of its state directory but is missing",
        ),
        (
            "a file added afterwards",
            |dir| {
                fs::write(dir.join("rocksdb").join("999999.sst"), b"stray").unwrap();
                dir.join("rocksdb").join("999999.sst")
            },
            "is not listed by the manifest",
        ),
        (
            "the manifest damaged",
            |dir| {
                let manifest = dir.join("weir-manifest");
                let mut bytes = fs::read(&manifest).unwrap();
                let at = bytes.windows(9).position(|w| w == b"\"bytes\": ").unwrap() + 9;
                bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
                fs::write(&manifest, bytes).unwrap();
                manifest
            },
            "does not match its checksum",
        ),
        (
            "the directory replaced by a file",
            |dir| {
                fs::remove_dir_all(dir).unwrap();
                fs::write(dir, b"x").unwrap();
                dir.to_path_buf()
            },
            "a state directory was expected",
        ),
    ];
    for (case, damage, expected) in cases {
        let dir = scratch("damaged-backend");
        let path = scratch("damaged-checkpoint");
        let checkpoint = open_checkpoint(&path);
        let backend = small_rocksdb(&dir);
        let mut store = backend.open::<u64, u64>("q", "c", 0).unwrap();
        for i in 0..20_000u64 {
            store.put(i, i * 3).unwrap();
        }
        let reference = store.write_snapshot(&checkpoint, "c", 0, 0).unwrap();
        drop(store);
        let files = commit_and_resume(&checkpoint, 0, vec![reference]);
        let damaged = damage(&files[0].path);
        let mut fresh = backend.open::<u64, u64>("q", "c", 0).unwrap();
        let result = fresh.restore_snapshot(&checkpoint, &files[0]);
        let message = result.err().map(|e| e.to_string()).unwrap_or_else(|| format!("{case}: restored anyway"));
        assert!(message.contains(&damaged.display().to_string()), "{case}: must name {}: {message}", damaged.display());
        assert!(message.contains(expected), "{case}: expected {expected:?} in: {message}");
        assert!(fresh.is_empty(), "{case}");
        // Resuming also refuses a state directory in the wrong shape or without its manifest.
        if case.contains("replaced by a file") {
            let metadata = checkpoint.metadata().clone();
            let message = CheckpointDir::open_or_create(&path, &metadata).unwrap_err().to_string();
            assert!(message.contains("a state directory was expected"), "{message}");
        }
        drop(fresh);
        let _ = fs::remove_dir_all(&dir);
        fs::remove_dir_all(&path).unwrap();
    }
}

/// The cost of a snapshot and a restore of 1 M small entries (u64 → u64) on both backends,
/// through a checkpoint directory. Run on purpose, in release:
/// `cargo test --release -p weir-runtime --test state_snapshots -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture in release"]
fn measure_snapshot_and_restore_of_one_million_entries() {
    use std::time::Instant;
    const ENTRIES: u64 = 1_000_000;
    let dir = scratch("measure-backend");
    let backends = [("memory", StateBackend::Memory), ("rocksdb", StateBackend::rocksdb(&dir))];
    for (name, backend) in backends {
        let path = scratch("measure-checkpoint");
        let checkpoint = open_checkpoint(&path);
        let mut store = backend.open::<u64, u64>("q", "m", 0).unwrap();
        let mut rng = Rng(1);
        let started = Instant::now();
        for i in 0..ENTRIES {
            store.put(rng.next(), i).unwrap();
        }
        let fill = started.elapsed();
        let started = Instant::now();
        let reference = store.write_snapshot(&checkpoint, "m", 0, 0).unwrap();
        let snapshot = started.elapsed();
        // A second snapshot after 1% more writes (RocksDB: one more small SST, the rest shared).
        for i in 0..ENTRIES / 100 {
            store.put(rng.next(), i).unwrap();
        }
        let started = Instant::now();
        store.write_snapshot(&checkpoint, "m", 0, 1).unwrap();
        let second = started.elapsed();
        drop(store);
        let files = commit_and_resume(&checkpoint, 0, vec![reference.clone()]);
        let mut restored = backend.open::<u64, u64>("q", "m", 0).unwrap();
        let started = Instant::now();
        restored.restore_snapshot(&checkpoint, &files[0]).unwrap();
        let restore = started.elapsed();
        assert_eq!(restored.len(), ENTRIES);
        println!(
            "{name}: fill {:.3}s, snapshot {:.3}s ({} bytes, {:?}), second snapshot after 1% more writes {:.3}s, \
             restore {:.3}s",
            fill.as_secs_f64(),
            snapshot.as_secs_f64(),
            reference.bytes,
            reference.kind,
            second.as_secs_f64(),
            restore.as_secs_f64()
        );
        drop(restored);
        fs::remove_dir_all(&path).unwrap();
    }
    let _ = fs::remove_dir_all(&dir);
}
