//! Distinct counts per group: exact ([`CountDistinct`]) and approximate with HyperLogLog++
//! ([`ApproxCountDistinct`]). Both are [`Aggregator`]s, so they run in `window_aggregate` with
//! tumbling, sliding or no windows and every output mode, and their partial results merge, so
//! workers pre-aggregate each batch before the exchange.
//!
//! Spark offers only the approximate one on streams (`approx_count_distinct`; `count(DISTINCT)` is
//! rejected on streaming Datasets). Exact distinct keeps every distinct value of every open group
//! in memory, so its state grows with the number of distinct values; the approximate one keeps at
//! most `2^p` bytes per group whatever the input (512 bytes at the default rsd of 0.05).
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::prelude::*;
//! use weir_runtime::prelude::*;
//! use weir_runtime::timely::dataflow::operators::{Inspect, ToStream};
//!
//! #[derive(Clone)]
//! struct Visit { page: &'static str, user: u64 }
//!
//! let ctx = QueryContext::ephemeral("doc");
//! timely::execute_directly(move |worker| {
//!     worker.dataflow::<EventTime, _, _>(|scope| {
//!         let visits = [(1_000, "home", 7), (2_000, "home", 8), (3_000, "home", 7)]
//!             .into_iter()
//!             .map(|(t, page, user)| Event::new(EventTime::from_millis(t), Visit { page, user }))
//!             .to_stream(scope)
//!             .container::<Vec<_>>();
//!         let late = Vec::<LateRecord<Visit>>::new().to_stream(scope).container::<Vec<_>>();
//!         let events = EventStream { records: visits, late };
//!         let ten_seconds = Windowing::tumbling(Duration::from_secs(10));
//!         // Exact: 2 distinct users on "home" in [0, 10 s).
//!         let exact = events.clone()
//!             .window_aggregate(&ctx, "users", ten_seconds, OutputMode::Append,
//!                               |v: &Visit| v.page.to_string(), CountDistinct::new(|v: &Visit| v.user))
//!             .unwrap();
//!         exact.results.inspect(|row| assert_eq!(row.value, 2));
//!         // Approximate (HyperLogLog++, rsd 0.05 → precision 9): exact for few values.
//!         let approx = ApproxCountDistinct::new(|v: &Visit| v.user).rsd(0.05).unwrap();
//!         let estimated = events
//!             .window_aggregate(&ctx, "users~", ten_seconds, OutputMode::Append,
//!                               |v: &Visit| v.page.to_string(), approx)
//!             .unwrap();
//!         estimated.results.inspect(|row| assert_eq!(row.value, 2));
//!     });
//! });
//! ```

use std::hash::Hash;

use rustc_hash::FxHashSet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::aggregate::Aggregator;
use crate::hll::{precision_for_rsd, HllError, HyperLogLogPlusPlus, DEFAULT_PRECISION, MAX_PRECISION, MIN_PRECISION};

/// The exact number of distinct values read from a group's records.
///
/// The partial result is the set of the values themselves (not of hashes), so the count is exact;
/// the state of an open group therefore grows with its distinct values. Values are compared with
/// `Eq`: a closure returning `String`s compares texts, one returning `u64`s compares numbers.
#[derive(Clone, Copy, Debug)]
pub struct CountDistinct<F> {
    value_of: F,
}

impl<F> CountDistinct<F> {
    /// Counts the distinct values `value_of` reads from each group's records.
    pub fn new(value_of: F) -> Self {
        CountDistinct { value_of }
    }
}

impl<D, V, F> Aggregator<D> for CountDistinct<F>
where
    F: Fn(&D) -> V + Clone + 'static,
    V: Eq + Hash + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = DistinctSet<V>;
    type Output = u64;

    fn init(&self) -> DistinctSet<V> {
        DistinctSet::default()
    }

    #[inline]
    fn add(&self, acc: &mut DistinctSet<V>, record: &D) {
        acc.insert((self.value_of)(record));
    }

    fn merge(&self, acc: &mut DistinctSet<V>, other: DistinctSet<V>) {
        acc.union(other);
    }

    fn finish(&self, acc: &DistinctSet<V>) -> u64 {
        acc.len() as u64
    }
}

/// How many distinct values a [`DistinctSet`] keeps inline before it moves them to a hash set.
const INLINE_VALUES: usize = 4;

/// The distinct values of one group, [`CountDistinct`]'s partial result.
///
/// A few values are kept inline and compared one by one; past [`INLINE_VALUES`] they move to a
/// hash set. Pre-aggregating a batch creates one partial result per group in the batch, and most
/// of those hold one or two values when the groups are many (e.g. one per channel of a bid
/// stream), so not allocating for them is what keeps the pre-aggregation cheap.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "V: Serialize", deserialize = "V: DeserializeOwned"))]
pub enum DistinctSet<V: Eq + Hash> {
    /// Up to [`INLINE_VALUES`] values, without a heap allocation.
    Few(SmallVec<[V; INLINE_VALUES]>),
    /// More values, in a hash set.
    Many(FxHashSet<V>),
}

impl<V: Eq + Hash> Default for DistinctSet<V> {
    fn default() -> Self {
        DistinctSet::Few(SmallVec::new())
    }
}

impl<V: Eq + Hash> DistinctSet<V> {
    /// Adds `value` if it is not there yet.
    #[inline]
    pub fn insert(&mut self, value: V) {
        match self {
            DistinctSet::Few(values) => {
                if values.contains(&value) {
                    return;
                }
                if values.len() < INLINE_VALUES {
                    values.push(value);
                    return;
                }
                let mut set: FxHashSet<V> = values.drain(..).collect();
                set.insert(value);
                *self = DistinctSet::Many(set);
            }
            DistinctSet::Many(set) => {
                set.insert(value);
            }
        }
    }

    /// Adds every value of `other`.
    pub fn union(&mut self, other: DistinctSet<V>) {
        match (&mut *self, other) {
            (DistinctSet::Many(mine), DistinctSet::Many(mut theirs)) => {
                // Insert the smaller set into the larger one.
                if theirs.len() > mine.len() {
                    std::mem::swap(mine, &mut theirs);
                }
                mine.extend(theirs);
            }
            (DistinctSet::Few(_), DistinctSet::Many(mut theirs)) => {
                let DistinctSet::Few(mine) = std::mem::take(self) else { unreachable!() };
                theirs.extend(mine);
                *self = DistinctSet::Many(theirs);
            }
            (_, DistinctSet::Few(theirs)) => {
                for value in theirs {
                    self.insert(value);
                }
            }
        }
    }

    /// The number of distinct values.
    pub fn len(&self) -> usize {
        match self {
            DistinctSet::Few(values) => values.len(),
            DistinctSet::Many(set) => set.len(),
        }
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The approximate number of distinct values read from a group's records, with a HyperLogLog++
/// sketch (see [`crate::hll`]): relative standard error `1.04 / sqrt(2^p)`, exact or off by one
/// below about a hundred distinct values, at most `2^p` bytes per group.
///
/// The default is Spark's `rsd = 0.05` (precision 9, 4.6 %); set [`rsd`](Self::rsd) or
/// [`precision`](Self::precision) to change it. Values are hashed with
/// [`stable_hash`](crate::hll::stable_hash), the same in every process, so partial sketches
/// merge across workers and processes.
#[derive(Clone, Copy, Debug)]
pub struct ApproxCountDistinct<F> {
    value_of: F,
    precision: u8,
}

impl<F> ApproxCountDistinct<F> {
    /// Estimates the distinct values `value_of` reads from each group's records, at `rsd` 0.05.
    pub fn new(value_of: F) -> Self {
        ApproxCountDistinct { value_of, precision: DEFAULT_PRECISION }
    }

    /// Targets a relative standard deviation (as Spark's `approx_count_distinct(col, rsd)`): the
    /// precision becomes `ceil(2 * log2(1.106 / rsd))`. Fails outside `0.0022..=0.39`.
    pub fn rsd(self, rsd: f64) -> Result<Self, HllError> {
        Ok(ApproxCountDistinct { precision: precision_for_rsd(rsd)?, ..self })
    }

    /// Sets the precision `p` directly (`4..=18`; `2^p` registers).
    pub fn precision(self, precision: u8) -> Result<Self, HllError> {
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
            return Err(HllError::PrecisionOutOfRange { precision });
        }
        Ok(ApproxCountDistinct { precision, ..self })
    }

    /// The precision in use.
    pub fn precision_bits(&self) -> u8 {
        self.precision
    }
}

impl<D, V, F> Aggregator<D> for ApproxCountDistinct<F>
where
    F: Fn(&D) -> V + Clone + 'static,
    V: Hash,
{
    type Acc = HyperLogLogPlusPlus;
    type Output = u64;

    fn init(&self) -> HyperLogLogPlusPlus {
        HyperLogLogPlusPlus::with_precision(self.precision).expect("the precision was checked when it was set")
    }

    #[inline]
    fn add(&self, acc: &mut HyperLogLogPlusPlus, record: &D) {
        acc.insert(&(self.value_of)(record));
    }

    fn merge(&self, acc: &mut HyperLogLogPlusPlus, other: HyperLogLogPlusPlus) {
        // Every partial comes from `init` of this aggregator, so the precisions agree.
        acc.merge_owned(other).expect("partials of one aggregator share its precision");
    }

    fn finish(&self, acc: &HyperLogLogPlusPlus) -> u64 {
        acc.estimate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<A: Aggregator<u64>>(a: &A, values: &[u64]) -> A::Output {
        crate::aggregate::tests::fold_in_two(a, values, values.len() / 3)
    }

    #[test]
    fn exact_and_approximate_counts_of_small_inputs() {
        let values: Vec<u64> = (0..500).map(|i| i % 73).collect();
        assert_eq!(fold(&CountDistinct::new(|v: &u64| *v), &values), 73);
        assert_eq!(fold(&ApproxCountDistinct::new(|v: &u64| *v), &values), 73);
        assert_eq!(fold(&CountDistinct::new(|v: &u64| *v), &[]), 0);
        assert_eq!(fold(&ApproxCountDistinct::new(|v: &u64| *v), &[]), 0);
        let p14 = ApproxCountDistinct::new(|v: &u64| *v).rsd(0.01).unwrap();
        assert_eq!(p14.precision_bits(), 14);
        assert!(ApproxCountDistinct::new(|v: &u64| *v).precision(19).is_err());
        assert!(ApproxCountDistinct::new(|v: &u64| *v).rsd(0.5).is_err());
    }

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    /// Random inserts and unions of sets of every size agree with a `HashSet`.
    #[test]
    fn distinct_set_matches_a_hash_set() {
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..2_000 {
            let (mut set, mut oracle) = (DistinctSet::default(), HashSet::new());
            for _ in 0..rng.random_range(0..4) {
                let (mut other, mut other_oracle) = (DistinctSet::default(), HashSet::new());
                let range = rng.random_range(1..20u32);
                for _ in 0..rng.random_range(0..12) {
                    let value = rng.random_range(0..range);
                    other.insert(value);
                    other_oracle.insert(value);
                }
                assert_eq!(other.len(), other_oracle.len());
                set.union(other);
                oracle.extend(other_oracle);
                assert_eq!(set.len(), oracle.len());
            }
            let restored: DistinctSet<u32> = bincode::deserialize(&bincode::serialize(&set).unwrap()).unwrap();
            assert_eq!(restored.len(), oracle.len());
        }
    }
}
