//! The in-memory state store: a hash map per operator and worker.

use rustc_hash::FxHashMap;

use super::{StateKey, StateValue};

/// Keyed state in a hash map.
pub struct MemoryStore<K, V> {
    map: FxHashMap<K, V>,
}

impl<K: StateKey, V: StateValue> Default for MemoryStore<K, V> {
    fn default() -> Self {
        MemoryStore { map: FxHashMap::default() }
    }
}

impl<K: StateKey, V: StateValue> MemoryStore<K, V> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// The value of `key`, to change in place.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    /// Whether `key` has a value.
    #[inline]
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Sets the value of `key`.
    #[inline]
    pub fn put(&mut self, key: K, value: V) {
        self.map.insert(key, value);
    }

    /// Removes `key`.
    #[inline]
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key)
    }

    /// Read-modify-write of one key; `None` afterwards removes it.
    #[inline]
    pub fn modify<R>(&mut self, key: &K, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        let mut value = self.map.remove(key);
        let result = f(&mut value);
        if let Some(value) = value {
            self.map.insert(key.clone(), value);
        }
        result
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Estimated bytes: the map's slots times the size of a key and a value.
    pub fn memory_bytes(&self) -> u64 {
        (self.map.capacity() * (std::mem::size_of::<K>() + std::mem::size_of::<V>() + 8)) as u64
    }

    /// Every key and value.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Removes and returns everything.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        self.map.drain().collect()
    }
}
