//! HyperLogLog++: approximate distinct counting in a small, mergeable, serializable sketch.
//!
//! [`HyperLogLogPlusPlus`] follows Heule, Nunkesser and Hall, "HyperLogLog in Practice" (EDBT
//! 2013), the algorithm behind Spark's `approx_count_distinct`:
//!
//! * a **64-bit hash** ([`StableHasher`], XXH3 with a fixed seed, identical in every process and
//!   run), so cardinalities far beyond 2^32 need no large-range correction;
//! * a **sparse representation** while few distinct hashes have been seen: the sketch keeps each
//!   hash's register index at precision 25 (2^25 virtual registers) with its rank, and estimates
//!   by linear counting over those 2^25 registers, which is exact or off by one for the first
//!   hundreds of values. Past `max(2^p / 4, 128)` entries (when the list would outgrow the dense
//!   registers, 4 bytes per entry against 1 byte per register) it converts to
//! * **dense registers**: `2^p` one-byte registers; the estimate is the harmonic-mean estimate with
//!   the paper's **empirical bias correction** (6-nearest-neighbour interpolation over its tables)
//!   below `5 * 2^p`, and linear counting on the registers below the paper's per-precision
//!   thresholds.
//!
//! The relative standard error of an estimate is `1.04 / sqrt(2^p)`: 4.6 % at the default
//! `p = 9` (`rsd = 0.05`, as in Spark), 3.3 % at p = 10, 0.81 % at p = 14. The precision is given
//! directly (`4..=18`) or derived from a target `rsd` as Spark does:
//! `p = ceil(2 * log2(1.106 / rsd))`.
//!
//! Sketches of the same precision **merge** (register-wise maximum; sparse lists are unioned):
//! the merge of the sketches of two sets is the sketch of their union, whatever the order of
//! insertions and merges, so its estimate is exactly the union sketch's estimate. They
//! **serialize** with serde in a canonical form (sorted sparse list or dense registers), which is
//! what crosses worker exchanges and goes into checkpoints.
//!
//! ```
//! use weir_operators::hll::HyperLogLogPlusPlus;
//!
//! let mut monday = HyperLogLogPlusPlus::with_rsd(0.05).unwrap(); // p = 9, like Spark
//! let mut tuesday = HyperLogLogPlusPlus::with_precision(9).unwrap();
//! for user in 0..3_000u64 {
//!     monday.insert(&user);
//! }
//! for user in 2_000..5_000u64 {
//!     tuesday.insert(&user);
//! }
//! assert_eq!(monday.precision(), 9);
//! monday.merge(&tuesday).unwrap();
//! let estimate = monday.estimate() as f64;
//! assert!((estimate - 5_000.0).abs() < 5_000.0 * 4.0 * monday.relative_standard_error());
//!
//! // Few values: exact.
//! let mut few = HyperLogLogPlusPlus::default();
//! for word in ["a", "b", "c", "a"] {
//!     few.insert(word);
//! }
//! assert_eq!(few.estimate(), 3);
//! ```

mod stable_hash;
mod tables;

use std::borrow::Cow;
use std::hash::Hash;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use weir_runtime::error::BuildError;

pub use stable_hash::{stable_hash, StableHasher, STABLE_HASH_SEED};

/// The smallest precision: 16 registers, relative standard error 26 %.
pub const MIN_PRECISION: u8 = 4;
/// The largest precision: 262,144 registers, relative standard error 0.2 %.
pub const MAX_PRECISION: u8 = 18;
/// The default relative standard deviation, as in Spark's `approx_count_distinct`.
pub const DEFAULT_RSD: f64 = 0.05;
/// The precision for [`DEFAULT_RSD`]: 9 (512 registers, relative standard error 4.6 %).
pub const DEFAULT_PRECISION: u8 = 9;
/// The precision of the sparse representation's register indices (2^25 virtual registers).
pub const SPARSE_PRECISION: u8 = 25;

/// Bits of a sparse entry holding the rank; the index at precision 25 is above them.
const RANK_BITS: u32 = 6;
const RANK_MASK: u32 = (1 << RANK_BITS) - 1;
/// Neighbours averaged when interpolating the bias (as in the paper and Spark).
const BIAS_NEIGHBOURS: usize = 6;

/// Why a sketch could not be made or merged.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum HllError {
    /// A precision outside `4..=18`.
    #[error("HyperLogLog++ precision {precision} is outside 4..=18")]
    PrecisionOutOfRange {
        /// The precision asked for.
        precision: u8,
    },
    /// A relative standard deviation that maps to no precision in `4..=18`.
    #[error("relative standard deviation {rsd} is outside 0.0022..=0.39, the range of precisions 4..=18")]
    RsdOutOfRange {
        /// The rsd asked for.
        rsd: f64,
    },
    /// Two sketches of different precisions cannot be merged: their registers do not line up.
    #[error("cannot merge a HyperLogLog++ sketch of precision {theirs} into one of precision {ours}")]
    PrecisionMismatch {
        /// The precision of the sketch merged into.
        ours: u8,
        /// The precision of the sketch merged from.
        theirs: u8,
    },
}

impl From<HllError> for BuildError {
    fn from(error: HllError) -> Self {
        let (what, fix) = match error {
            HllError::PrecisionOutOfRange { .. } => (
                "HyperLogLog++ precision",
                "use a precision from 4 (error 26%) to 18 (error 0.2%), e.g. 9 (Spark's default) or 14",
            ),
            HllError::RsdOutOfRange { .. } => {
                ("HyperLogLog++ rsd", "use an rsd from 0.0022 to 0.39, e.g. 0.05 (Spark's default, precision 9)")
            }
            HllError::PrecisionMismatch { .. } => {
                ("HyperLogLog++ merge", "build every sketch that is merged with the same precision (or rsd)")
            }
        };
        BuildError::invalid(what, error.to_string(), fix)
    }
}

/// The precision Spark derives from a relative standard deviation:
/// `ceil(2 * log2(1.106 / rsd))`, which guarantees an error of at most `rsd`
/// (0.05 → 9, 0.01 → 14). Fails unless the result is in `4..=18`.
pub fn precision_for_rsd(rsd: f64) -> Result<u8, HllError> {
    if !(rsd.is_finite() && rsd > 0.0) {
        return Err(HllError::RsdOutOfRange { rsd });
    }
    let p = (2.0 * (1.106 / rsd).log2()).ceil();
    if p < MIN_PRECISION as f64 || p > MAX_PRECISION as f64 {
        return Err(HllError::RsdOutOfRange { rsd });
    }
    Ok(p as u8)
}

/// The documented relative standard error of a sketch of precision `p`: `1.04 / sqrt(2^p)`.
pub fn relative_standard_error(precision: u8) -> f64 {
    1.04 / ((1u64 << precision) as f64).sqrt()
}

fn check_precision(precision: u8) -> Result<u8, HllError> {
    if (MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
        Ok(precision)
    } else {
        Err(HllError::PrecisionOutOfRange { precision })
    }
}

/// The most distinct sparse entries a sketch of precision `p` keeps before turning dense:
/// `max(2^p / 4, 128)`, i.e. while the list is no larger than the dense registers, and at least
/// 128 so that cardinalities below 100 stay exact at every precision.
fn sparse_limit(precision: u8) -> usize {
    1 << (precision.max(9) - 2)
}

/// An approximate distinct counter (HyperLogLog++, see the [module documentation](self)).
#[derive(Clone, Debug)]
pub struct HyperLogLogPlusPlus {
    precision: u8,
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    /// Entries `index25 << 6 | rank25`: `sorted` is sorted by index with one entry (the highest
    /// rank) per index; `pending` holds recent insertions, unsorted, folded in by `flush`.
    Sparse { sorted: Vec<u32>, pending: Vec<u32> },
    /// One register per index at the sketch's precision: the highest rank seen.
    Dense(Box<[u8]>),
}

impl Default for HyperLogLogPlusPlus {
    /// A sketch for the default rsd of 0.05 (precision 9).
    fn default() -> Self {
        Self::empty(DEFAULT_PRECISION)
    }
}

impl PartialEq for HyperLogLogPlusPlus {
    /// Two sketches are equal when they hold the same information (whatever is still pending).
    fn eq(&self, other: &Self) -> bool {
        self.precision == other.precision && self.canonical() == other.canonical()
    }
}

/// A sketch's content in canonical form: what is serialized and compared.
#[derive(PartialEq)]
enum Canonical<'a> {
    Sparse(Cow<'a, [u32]>),
    Dense(Cow<'a, [u8]>),
}

impl HyperLogLogPlusPlus {
    fn empty(precision: u8) -> Self {
        HyperLogLogPlusPlus { precision, repr: Repr::Sparse { sorted: Vec::new(), pending: Vec::new() } }
    }

    /// An empty sketch with `2^precision` registers (`precision` in `4..=18`).
    pub fn with_precision(precision: u8) -> Result<Self, HllError> {
        Ok(Self::empty(check_precision(precision)?))
    }

    /// An empty sketch whose relative standard error is at most `rsd`, with the precision Spark
    /// picks for it (see [`precision_for_rsd`]).
    pub fn with_rsd(rsd: f64) -> Result<Self, HllError> {
        Ok(Self::empty(precision_for_rsd(rsd)?))
    }

    /// The precision `p` (the sketch has `2^p` registers once dense).
    pub fn precision(&self) -> u8 {
        self.precision
    }

    /// The documented relative standard error of this sketch's estimates, `1.04 / sqrt(2^p)`.
    pub fn relative_standard_error(&self) -> f64 {
        relative_standard_error(self.precision)
    }

    /// Whether the sketch still uses the sparse representation.
    pub fn is_sparse(&self) -> bool {
        matches!(self.canonical(), Canonical::Sparse(_))
    }

    /// Whether nothing has been inserted.
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Sparse { sorted, pending } => sorted.is_empty() && pending.is_empty(),
            Repr::Dense(registers) => registers.iter().all(|r| *r == 0),
        }
    }

    /// Heap bytes held by the sketch (the sparse list and buffer, or the registers).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Sparse { sorted, pending } => 4 * (sorted.capacity() + pending.capacity()),
            Repr::Dense(registers) => registers.len(),
        }
    }

    /// Adds a value: hashes it with [`stable_hash`] and inserts the hash.
    #[inline]
    pub fn insert<T: Hash + ?Sized>(&mut self, value: &T) {
        self.insert_hash(stable_hash(value));
    }

    /// Adds a value by its 64-bit hash, for callers that hash values themselves (the hash must be
    /// uniformly distributed over all 64 bits, and the same function for sketches that merge).
    #[inline]
    pub fn insert_hash(&mut self, hash: u64) {
        let p = self.precision;
        match &mut self.repr {
            Repr::Dense(registers) => {
                let (index, rank) = dense_index_rank(hash, p);
                let register = &mut registers[index];
                if rank > *register {
                    *register = rank;
                }
            }
            Repr::Sparse { sorted, pending } => {
                pending.push(sparse_entry(hash));
                if pending.len() >= (sorted.len() / 4).max(32) {
                    self.flush();
                }
            }
        }
    }

    /// Folds the pending insertions into the sorted sparse list, and turns the sketch dense if
    /// the list outgrew its limit.
    fn flush(&mut self) {
        let limit = sparse_limit(self.precision);
        if let Repr::Sparse { sorted, pending } = &mut self.repr {
            if pending.is_empty() {
                return;
            }
            normalize(pending);
            let merged = merge_sorted(sorted, pending);
            pending.clear();
            if merged.len() > limit {
                self.repr = Repr::Dense(to_dense(&merged, self.precision));
            } else {
                *sorted = merged;
            }
        }
    }

    /// Merges `other` into this sketch: afterwards this sketch is the sketch of the union of both
    /// inputs. Fails (and changes nothing) if the precisions differ.
    pub fn merge(&mut self, other: &HyperLogLogPlusPlus) -> Result<(), HllError> {
        self.merge_owned(other.clone())
    }

    /// [`merge`](Self::merge), reusing `other`'s memory.
    pub fn merge_owned(&mut self, mut other: HyperLogLogPlusPlus) -> Result<(), HllError> {
        if self.precision != other.precision {
            return Err(HllError::PrecisionMismatch { ours: self.precision, theirs: other.precision });
        }
        let p = self.precision;
        // Make the dense side (if any) the receiver, so that no registers are copied.
        if matches!(other.repr, Repr::Dense(_)) && matches!(self.repr, Repr::Sparse { .. }) {
            std::mem::swap(self, &mut other);
        }
        match other.repr {
            Repr::Dense(theirs) => {
                let Repr::Dense(registers) = &mut self.repr else { unreachable!("the dense sketch is the receiver") };
                for (ours, theirs) in registers.iter_mut().zip(theirs.iter()) {
                    *ours = (*ours).max(*theirs);
                }
            }
            Repr::Sparse { sorted: their_sorted, pending: their_pending } => match &mut self.repr {
                Repr::Dense(registers) => {
                    for entry in their_sorted.iter().chain(their_pending.iter()) {
                        let (index, rank) = dense_of_entry(*entry, p);
                        registers[index] = registers[index].max(rank);
                    }
                }
                Repr::Sparse { pending, .. } => {
                    // Their entries become pending here, then one flush merges everything.
                    pending.extend_from_slice(&their_sorted);
                    pending.extend_from_slice(&their_pending);
                    self.flush();
                }
            },
        }
        Ok(())
    }

    /// The estimated number of distinct values inserted (into this sketch and those merged in).
    pub fn estimate(&self) -> u64 {
        match self.canonical() {
            Canonical::Sparse(entries) => {
                let m = (1u64 << SPARSE_PRECISION) as f64;
                let empty = m - entries.len() as f64;
                (m * (m / empty).ln()).round() as u64
            }
            Canonical::Dense(registers) => dense_estimate(&registers, self.precision),
        }
    }

    /// The content in canonical form: the sorted sparse list (pending entries folded in), or the
    /// dense registers (also when the pending entries push the list past its limit).
    fn canonical(&self) -> Canonical<'_> {
        match &self.repr {
            Repr::Dense(registers) => Canonical::Dense(Cow::Borrowed(registers)),
            Repr::Sparse { sorted, pending } if pending.is_empty() => Canonical::Sparse(Cow::Borrowed(sorted)),
            Repr::Sparse { sorted, pending } => {
                let mut pending = pending.clone();
                normalize(&mut pending);
                let merged = merge_sorted(sorted, &pending);
                if merged.len() > sparse_limit(self.precision) {
                    Canonical::Dense(Cow::Owned(to_dense(&merged, self.precision).into_vec()))
                } else {
                    Canonical::Sparse(Cow::Owned(merged))
                }
            }
        }
    }
}

/// The register index (top `p` bits) and rank (position of the first 1 bit after them, from 1)
/// of a hash, in the dense representation.
#[inline]
fn dense_index_rank(hash: u64, p: u8) -> (usize, u8) {
    let index = (hash >> (64 - p)) as usize;
    // The padding bit bounds the rank at 64 - p + 1 when the remaining bits are all zero.
    let rank = ((hash << p) | (1 << (p - 1))).leading_zeros() + 1;
    (index, rank as u8)
}

/// The sparse entry of a hash: its index at precision 25 and its rank after those 25 bits.
#[inline]
fn sparse_entry(hash: u64) -> u32 {
    let (index, rank) = dense_index_rank(hash, SPARSE_PRECISION);
    ((index as u32) << RANK_BITS) | rank as u32
}

/// The dense register and rank at precision `p` of a sparse entry: the same as inserting the
/// original hash into dense registers directly. If the 25 - p index bits below the top `p` are
/// not all zero, the rank is decided by them; otherwise it continues into the stored rank.
#[inline]
fn dense_of_entry(entry: u32, p: u8) -> (usize, u8) {
    let index25 = entry >> RANK_BITS;
    let extra_bits = (SPARSE_PRECISION - p) as u32;
    let index = (index25 >> extra_bits) as usize;
    let between = index25 & ((1 << extra_bits) - 1);
    let rank =
        if between != 0 { between.leading_zeros() - (32 - extra_bits) + 1 } else { extra_bits + (entry & RANK_MASK) };
    (index, rank as u8)
}

#[inline]
fn index25(entry: u32) -> u32 {
    entry >> RANK_BITS
}

/// Sorts entries and keeps one per index, the one with the highest rank.
fn normalize(entries: &mut Vec<u32>) {
    entries.sort_unstable();
    let mut kept = 0;
    for i in 0..entries.len() {
        // Within a run of one index the ranks ascend, so the run's last entry is kept.
        if i + 1 < entries.len() && index25(entries[i + 1]) == index25(entries[i]) {
            continue;
        }
        entries[kept] = entries[i];
        kept += 1;
    }
    entries.truncate(kept);
}

/// The union of two normalized entry lists, normalized.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        match index25(x).cmp(&index25(y)) {
            std::cmp::Ordering::Less => {
                out.push(x);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(y);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(x.max(y));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn to_dense(entries: &[u32], p: u8) -> Box<[u8]> {
    let mut registers = vec![0u8; 1 << p].into_boxed_slice();
    for entry in entries {
        let (index, rank) = dense_of_entry(*entry, p);
        registers[index] = registers[index].max(rank);
    }
    registers
}

/// The HyperLogLog++ estimate of dense registers (Heule et al., figure 6).
fn dense_estimate(registers: &[u8], p: u8) -> u64 {
    let m = registers.len() as f64;
    let mut inverse_sum = 0.0;
    let mut zeros = 0u32;
    for register in registers {
        inverse_sum += 1.0 / (1u64 << register) as f64;
        zeros += u32::from(*register == 0);
    }
    let alpha = match p {
        4 => 0.673,
        5 => 0.697,
        6 => 0.709,
        _ => 0.7213 / (1.0 + 1.079 / m),
    };
    let raw = alpha * m * m / inverse_sum;
    let corrected = if raw <= 5.0 * m { raw - estimate_bias(raw, p) } else { raw };
    let estimate = if zeros > 0 {
        let linear = m * (m / zeros as f64).ln();
        if linear <= tables::THRESHOLDS[(p - MIN_PRECISION) as usize] {
            linear
        } else {
            corrected
        }
    } else {
        corrected
    };
    estimate.max(0.0).round() as u64
}

/// The bias of a raw estimate: the mean bias of its 6 nearest neighbours among the paper's
/// measured raw estimates for precision `p` (k-nearest-neighbour interpolation, as in the paper).
fn estimate_bias(raw: f64, p: u8) -> f64 {
    let estimates = tables::RAW_ESTIMATE_DATA[(p - MIN_PRECISION) as usize];
    let biases = tables::BIAS_DATA[(p - MIN_PRECISION) as usize];
    let nearest = estimates.partition_point(|e| *e < raw);
    let distance = |i: usize| (raw - estimates[i]) * (raw - estimates[i]);
    // Start with the 6 points below `raw` (or the first 6), then slide up while the next point
    // above is nearer than the lowest one.
    let mut low = nearest.saturating_sub(BIAS_NEIGHBOURS).min(estimates.len() - BIAS_NEIGHBOURS);
    let mut high = low + BIAS_NEIGHBOURS;
    while high < estimates.len() && distance(high) < distance(low) {
        low += 1;
        high += 1;
    }
    biases[low..high].iter().sum::<f64>() / (high - low) as f64
}

// ---------------------------------------------------------------------------------------------
// Serialization: the canonical form, checked when read.
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename = "HyperLogLogPlusPlus")]
struct WireRef<'a> {
    precision: u8,
    registers: RegistersRef<'a>,
}

#[derive(Serialize)]
#[serde(rename = "Registers")]
enum RegistersRef<'a> {
    Sparse(&'a [u32]),
    Dense(&'a [u8]),
}

#[derive(Deserialize)]
#[serde(rename = "HyperLogLogPlusPlus")]
struct Wire {
    precision: u8,
    registers: Registers,
}

#[derive(Deserialize)]
#[serde(rename = "Registers")]
enum Registers {
    Sparse(Vec<u32>),
    Dense(Vec<u8>),
}

impl Serialize for HyperLogLogPlusPlus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let canonical = self.canonical();
        let registers = match &canonical {
            Canonical::Sparse(entries) => RegistersRef::Sparse(entries),
            Canonical::Dense(registers) => RegistersRef::Dense(registers),
        };
        WireRef { precision: self.precision, registers }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HyperLogLogPlusPlus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = Wire::deserialize(deserializer)?;
        let p = check_precision(wire.precision).map_err(D::Error::custom)?;
        let repr = match wire.registers {
            Registers::Sparse(entries) => {
                if entries.len() > sparse_limit(p) {
                    return Err(D::Error::custom(format!(
                        "a sparse HyperLogLog++ sketch of precision {p} holds at most {} entries, not {}",
                        sparse_limit(p),
                        entries.len()
                    )));
                }
                let max_rank = 64 - SPARSE_PRECISION as u32 + 1;
                if let Some(bad) = entries.iter().find(|e| *e & RANK_MASK == 0 || *e & RANK_MASK > max_rank) {
                    return Err(D::Error::custom(format!(
                        "sparse HyperLogLog++ entry {bad:#x} has an impossible rank"
                    )));
                }
                if entries.windows(2).any(|w| index25(w[0]) >= index25(w[1])) {
                    return Err(D::Error::custom(
                        "sparse HyperLogLog++ entries are not sorted by index without repeats",
                    ));
                }
                Repr::Sparse { sorted: entries, pending: Vec::new() }
            }
            Registers::Dense(registers) => {
                if registers.len() != 1 << p {
                    return Err(D::Error::custom(format!(
                        "a dense HyperLogLog++ sketch of precision {p} has {} registers, not {}",
                        1 << p,
                        registers.len()
                    )));
                }
                let max_rank = 64 - p + 1;
                if let Some(bad) = registers.iter().find(|r| **r > max_rank) {
                    return Err(D::Error::custom(format!(
                        "HyperLogLog++ register value {bad} is impossible at precision {p} (at most {max_rank})"
                    )));
                }
                Repr::Dense(registers.into_boxed_slice())
            }
        };
        Ok(HyperLogLogPlusPlus { precision: p, repr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_precisions_for_rsd() {
        assert_eq!(precision_for_rsd(DEFAULT_RSD), Ok(DEFAULT_PRECISION));
        assert_eq!(precision_for_rsd(0.05), Ok(9));
        assert_eq!(precision_for_rsd(0.01), Ok(14));
        assert_eq!(precision_for_rsd(0.39), Ok(4));
        assert_eq!(precision_for_rsd(0.0022), Ok(18));
        for bad in [0.0, -0.1, 0.4, 1.0, 0.002, f64::NAN, f64::INFINITY] {
            assert!(matches!(precision_for_rsd(bad), Err(HllError::RsdOutOfRange { .. })), "{bad}");
        }
    }

    #[test]
    fn sparse_entries_convert_like_dense_insertion() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for i in 0..100_000u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Mix in hashes with many leading zeros after the index, to reach every rank.
            let hash = if i % 4 == 0 { state & (u64::MAX << 60 | (state >> (i % 64))) } else { state };
            for p in MIN_PRECISION..=MAX_PRECISION {
                assert_eq!(dense_of_entry(sparse_entry(hash), p), dense_index_rank(hash, p), "{hash:#x} p={p}");
            }
        }
        assert_eq!(dense_index_rank(0, 4), (0, 61));
        assert_eq!(dense_of_entry(sparse_entry(0), 4), (0, 61));
    }

    #[test]
    fn bias_is_interpolated_from_neighbours() {
        // Below the first measured estimate: the mean of the first six biases.
        let first_six: f64 = tables::BIAS_DATA[0][..6].iter().sum::<f64>() / 6.0;
        assert!((estimate_bias(0.0, 4) - first_six).abs() < 1e-12);
        // Beyond the last: the mean of the last six.
        let b = tables::BIAS_DATA[14];
        let last_six: f64 = b[b.len() - 6..].iter().sum::<f64>() / 6.0;
        assert!((estimate_bias(1e12, 18) - last_six).abs() < 1e-9);
        // Exactly on a measured point far from both ends: the window of 6 around it.
        let (e, b) = (tables::RAW_ESTIMATE_DATA[5], tables::BIAS_DATA[5]);
        let mean = |r: std::ops::Range<usize>| b[r.clone()].iter().sum::<f64>() / r.len() as f64;
        let got = estimate_bias(e[100], 9);
        assert!([mean(95..101), mean(96..102), mean(97..103), mean(98..104), mean(99..105), mean(100..106)]
            .iter()
            .any(|m| (m - got).abs() < 1e-12));
    }
}
