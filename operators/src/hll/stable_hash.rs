//! A 64-bit hash that is the same in every run, process and machine, for sketches that are merged
//! across workers and processes and written into checkpoints.

use std::hash::{Hash, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The fixed seed of [`StableHasher`] ("WEIR-HLL" in ASCII). Changing it changes every hash, so
/// sketches written before and after the change no longer merge meaningfully.
pub const STABLE_HASH_SEED: u64 = 0x5745_4952_2d48_4c4c;

const BUFFER: usize = 64;

/// A [`Hasher`] producing XXH3-64 hashes with a fixed seed: unlike `std`'s `RandomState` or
/// `DefaultHasher`, its output does not change between runs, processes, Rust versions or byte
/// orders, which sketches that merge across workers and checkpoints need.
///
/// Integers are fed in little-endian order and `usize`/`isize` as 64-bit values, so a value hashes
/// the same on every platform. Bytes are buffered and hashed in 64-byte chunks; the hash of a
/// value depends on the sequence of writes its `Hash` implementation makes, which is fixed per
/// type (so `42u32` and `42u64` hash differently, as with any `Hasher`).
///
/// ```
/// use weir_operators::hll::stable_hash;
/// assert_eq!(stable_hash("alice"), stable_hash(&String::from("alice")));
/// assert_ne!(stable_hash("alice"), stable_hash("bob"));
/// ```
#[derive(Clone)]
pub struct StableHasher {
    state: u64,
    buffer: [u8; BUFFER],
    len: usize,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher { state: STABLE_HASH_SEED, buffer: [0; BUFFER], len: 0 }
    }
}

impl StableHasher {
    /// A hasher with the fixed seed [`STABLE_HASH_SEED`].
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn flush(&mut self) {
        if self.len > 0 {
            self.state = xxh3_64_with_seed(&self.buffer[..self.len], self.state);
            self.len = 0;
        }
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > BUFFER {
            self.flush();
            if bytes.len() > BUFFER {
                // Long inputs are hashed in place, chained through the state.
                self.state = xxh3_64_with_seed(bytes, self.state ^ bytes.len() as u64);
                return;
            }
        }
        self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline]
    fn finish(&self) -> u64 {
        xxh3_64_with_seed(&self.buffer[..self.len], self.state)
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write(&[i])
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes())
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes())
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes())
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes())
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write(&(i as u64).to_le_bytes())
    }
    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8)
    }
    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16)
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32)
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128)
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64)
    }
}

/// The stable 64-bit hash of `value` (see [`StableHasher`]).
#[inline]
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = StableHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
