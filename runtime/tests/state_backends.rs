//! Both state backends against a model: the same seeded random sequence of operations runs on a
//! memory store, a RocksDB store and a `HashMap`, and every result, the key count and the full
//! contents must agree. RocksDB runs with tiny write buffers so that state moves through flushes
//! and compactions into SST files during the test, not just the memtable.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weir_runtime::state::{RocksDbOptions, StateBackend, StateError, StateStore};

/// A key with two parts, so that encoding and hashing see a compound type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct Key {
    user: String,
    shard: u32,
}

/// A value of varying size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Value {
    count: u64,
    payload: Vec<u8>,
}

/// SplitMix64: a small seeded generator (the runtime crate has no `rand` dependency).
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

/// A fresh directory under the system temp dir, unique to this process and call.
fn scratch_dir(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    std::env::temp_dir().join(format!(
        "weir-state-{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ))
}

/// RocksDB with buffers small enough that a few thousand writes reach SST files.
fn small_rocksdb(dir: &std::path::Path) -> StateBackend {
    StateBackend::RocksDb(
        RocksDbOptions::new(dir)
            .with_block_cache_bytes(1 << 20)
            .with_write_buffer_bytes(64 << 10)
            .with_max_write_buffers(2),
    )
}

fn random_key(rng: &mut Rng, key_space: u64) -> Key {
    let k = rng.below(key_space);
    Key { user: format!("user-{}", k / 3), shard: (k % 3) as u32 }
}

fn random_value(rng: &mut Rng) -> Value {
    let len = rng.below(200) as usize;
    Value { count: rng.below(1_000), payload: (0..len).map(|i| (i as u8).wrapping_mul(31)).collect() }
}

fn sorted(mut entries: Vec<(Key, Value)>) -> Vec<(Key, Value)> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn contents(store: &StateStore<Key, Value>) -> Vec<(Key, Value)> {
    let mut entries = Vec::new();
    store.for_each(|k, v| entries.push((k.clone(), v.clone()))).unwrap();
    sorted(entries)
}

fn model_contents(model: &HashMap<Key, Value>) -> Vec<(Key, Value)> {
    sorted(model.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Runs `ops` random operations on `store` and on a model, checking every answer.
fn exercise(label: &str, store: &mut StateStore<Key, Value>, seed: u64, ops: usize, key_space: u64) {
    let mut rng = Rng(seed);
    let mut model: HashMap<Key, Value> = HashMap::new();
    for step in 0..ops {
        let key = random_key(&mut rng, key_space);
        let at = format!("{label}, seed {seed}, step {step}, key {key:?}");
        match rng.below(100) {
            0..=19 => {
                let got = store.get(&key).unwrap().map(|v| v.into_owned());
                assert_eq!(got.as_ref(), model.get(&key), "{at}: get");
            }
            20..=29 => assert_eq!(store.contains(&key).unwrap(), model.contains_key(&key), "{at}: contains"),
            30..=54 => {
                let value = random_value(&mut rng);
                store.put(key.clone(), value.clone()).unwrap();
                model.insert(key, value);
            }
            55..=69 => assert_eq!(store.remove(&key).unwrap(), model.remove(&key), "{at}: remove"),
            70..=84 => {
                // Increment, removing the key when the count passes a threshold.
                let seen = store
                    .modify(&key, |slot| {
                        let seen = slot.clone();
                        match slot {
                            Some(v) if v.count >= 900 => *slot = None,
                            Some(v) => v.count += 50,
                            None => *slot = Some(Value { count: 0, payload: vec![7; 3] }),
                        }
                        seen
                    })
                    .unwrap();
                assert_eq!(seen.as_ref(), model.get(&key), "{at}: modify saw");
                match model.get_mut(&key) {
                    Some(v) if v.count >= 900 => {
                        model.remove(&key);
                    }
                    Some(v) => v.count += 50,
                    None => {
                        model.insert(key.clone(), Value { count: 0, payload: vec![7; 3] });
                    }
                }
            }
            85..=94 => {
                // Sometimes change, sometimes only look: an unchanged value must stay as it was.
                let change = rng.below(2) == 0;
                let seen = store
                    .modify_if_changed(&key, |slot| {
                        let seen = slot.as_ref().map(|v| v.count);
                        if change {
                            *slot = Some(Value { count: 1, payload: Vec::new() });
                        }
                        (seen, change)
                    })
                    .unwrap();
                assert_eq!(seen, model.get(&key).map(|v| v.count), "{at}: modify_if_changed saw");
                if change {
                    model.insert(key, Value { count: 1, payload: Vec::new() });
                }
            }
            95..=97 => assert_eq!(contents(store), model_contents(&model), "{at}: full contents"),
            _ => {
                if rng.below(20) == 0 {
                    let drained = sorted(store.drain().unwrap());
                    assert_eq!(drained, model_contents(&model), "{at}: drain");
                    model.clear();
                }
            }
        }
        assert_eq!(store.len(), model.len() as u64, "{at}: len after the operation");
        assert_eq!(store.is_empty(), model.is_empty(), "{at}: is_empty");
    }
    assert_eq!(contents(store), model_contents(&model), "{label}, seed {seed}: final contents");
    let drained = sorted(store.drain().unwrap());
    assert_eq!(drained, model_contents(&model), "{label}, seed {seed}: final drain");
    assert_eq!(store.len(), 0, "{label}, seed {seed}: len after drain");
    assert!(contents(store).is_empty(), "{label}, seed {seed}: contents after drain");
}

#[test]
fn random_operations_agree_with_a_hash_map_on_both_backends() {
    let dir = scratch_dir("model");
    for seed in 0..12u64 {
        // Small key spaces make hits and removals common; large ones make misses common.
        let key_space = [20, 300, 5_000][seed as usize % 3];
        let mut memory = StateBackend::Memory.open::<Key, Value>("q", "op", 0).unwrap();
        exercise("memory", &mut memory, seed, 3_000, key_space);
        let mut rocks = small_rocksdb(&dir).open::<Key, Value>("q", "op", seed as usize).unwrap();
        assert_eq!(rocks.backend_name(), "rocksdb");
        exercise("rocksdb", &mut rocks, seed, 3_000, key_space);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rocksdb_keeps_exact_counts_through_flushes_to_disk() {
    let dir = scratch_dir("flush");
    let mut store = small_rocksdb(&dir).open::<u64, Vec<u8>>("q", "op", 0).unwrap();
    // ~4 MB of values through 64 KiB memtables: dozens of flushes and some compactions.
    for k in 0..20_000u64 {
        store.put(k, vec![(k % 251) as u8; 200]).unwrap();
    }
    // Overwrites must not count twice; removals of absent keys must not count at all.
    for k in (0..20_000u64).step_by(2) {
        store.put(k, vec![1; 10]).unwrap();
    }
    for k in 19_000..21_000u64 {
        store.remove(&k).unwrap();
    }
    assert_eq!(store.len(), 19_000);
    for k in [0u64, 1, 2, 9_999, 18_999] {
        let want = if k % 2 == 0 { vec![1; 10] } else { vec![(k % 251) as u8; 200] };
        assert_eq!(store.get(&k).unwrap().map(|v| v.into_owned()), Some(want), "key {k}");
    }
    assert_eq!(store.get(&19_500).unwrap(), None);
    let mut seen = 0u64;
    store.for_each(|_, _| seen += 1).unwrap();
    assert_eq!(seen, 19_000, "for_each visits every key once");
    assert!(store.memory_bytes() > 0, "memtables and cache hold something after writes");
    assert!(
        store.memory_bytes() < 16 << 20,
        "RocksDB memory ({} bytes) should stay near its 1 MiB cache and 2 x 64 KiB memtables, not the ~2.4 MB of state",
        store.memory_bytes()
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rocksdb_open_clears_its_directory_and_drop_deletes_it() {
    let dir = scratch_dir("lifecycle");
    let backend = small_rocksdb(&dir);
    let store_dir = dir.join("query-1").join("my_op").join("worker-3");
    std::fs::create_dir_all(&store_dir).unwrap();
    std::fs::write(store_dir.join("stale-file"), b"left over from an earlier run").unwrap();

    // The query id and operator name are made directory-safe.
    let mut store = backend.open::<String, u64>("query-1", "my op", 3).unwrap();
    assert!(!store_dir.join("stale-file").exists(), "open clears the store's directory");
    store.put("a".to_string(), 1).unwrap();
    assert_eq!(store.len(), 1);
    drop(store);
    assert!(!store_dir.exists(), "dropping the store deletes its directory");
    assert!(!dir.join("query-1").exists(), "and its empty parents below the backend directory");
    assert!(dir.exists(), "but never the backend directory itself");

    // While a store is open, a second store in its directory is refused (it would wipe the first).
    let first = backend.open::<String, u64>("query-1", "twice", 0).unwrap();
    let error = match backend.open::<String, u64>("query-1", "twice", 0) {
        Ok(_) => panic!("a second store in an open store's directory must be refused"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("give each stateful operator of a query its own name"), "{error}");
    drop(first);
    drop(backend.open::<String, u64>("query-1", "twice", 0).expect("free again once the first is closed"));

    // A second open of the same store starts empty.
    let store = backend.open::<String, u64>("query-1", "my op", 3).unwrap();
    assert!(store.is_empty());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rocksdb_open_fails_with_the_path_when_the_directory_cannot_be_made() {
    let dir = scratch_dir("unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let error = match small_rocksdb(&file).open::<u64, u64>("q", "op", 0) {
        Ok(_) => panic!("a backend directory below a regular file cannot work"),
        Err(error) => error,
    };
    let StateError::RocksDb { path, message } = &error else { panic!("expected a RocksDB error, got {error:?}") };
    assert!(path.contains("a-file"), "the error names the store path: {error}");
    assert!(message.contains("Not a directory"), "the error carries the system's reason: {error}");
    let _ = std::fs::remove_dir_all(&dir);
}
