//! The in-memory state store: a hash map per operator and worker.

use rustc_hash::FxHashMap;

use super::snapshot::{self, SnapshotError, StateSnapshot, IN_MEMORY};
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

    /// Every entry as bytes (bincode), after a header with the key and value types and the
    /// entry count: see [`super::snapshot`].
    ///
    /// ```
    /// use weir_runtime::state::MemoryStore;
    ///
    /// let mut store = MemoryStore::<String, u64>::new();
    /// store.put("alice".to_string(), 3);
    /// let snapshot = store.snapshot().unwrap();
    /// store.put("bob".to_string(), 1);
    ///
    /// let mut restored = MemoryStore::<String, u64>::new();
    /// restored.restore(&snapshot).unwrap();
    /// assert_eq!((restored.len(), restored.get(&"alice".to_string())), (1, Some(&3)));
    /// // Another value type is refused.
    /// assert!(MemoryStore::<String, i32>::new().restore(&snapshot).is_err());
    /// ```
    pub fn snapshot(&self) -> Result<StateSnapshot, SnapshotError> {
        snapshot::encode::<K, V>(self.len(), |write| {
            for (key, value) in &self.map {
                write(key, value)?;
            }
            Ok(())
        })
    }

    /// Loads a snapshot into this store, which must be empty. Refuses a snapshot of other key or
    /// value types ([`SnapshotError::TypeMismatch`]) and truncated or damaged bytes.
    pub fn restore(&mut self, snapshot: &StateSnapshot) -> Result<(), SnapshotError> {
        self.restore_bytes(snapshot.as_bytes(), IN_MEMORY)
    }

    /// [`MemoryStore::restore`] of bytes from `label` (a file, for messages). On error the store
    /// is left empty.
    pub(crate) fn restore_bytes(&mut self, bytes: &[u8], label: &str) -> Result<(), SnapshotError> {
        if !self.map.is_empty() {
            return Err(SnapshotError::NotEmpty { snapshot: label.to_string(), keys: self.len() });
        }
        let result = snapshot::decode::<K, V, _>(
            bytes,
            label,
            &mut self.map,
            |map, n| map.reserve(n),
            |map, key, value| {
                map.insert(key, value);
                Ok(())
            },
        );
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                self.map = FxHashMap::default();
                Err(error)
            }
        }
    }
}
