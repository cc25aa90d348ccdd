//! Aggregators: how a group's records are folded into one value. Partial results merge, so
//! workers pre-aggregate before the exchange and only partials cross the network.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A user-defined aggregation (Spark's `Aggregator`: zero / reduce / merge / finish).
///
/// ```
/// use weir_operators::aggregate::Aggregator;
/// /// The longest string seen.
/// #[derive(Clone)]
/// struct Longest;
/// impl Aggregator<String> for Longest {
///     type Acc = String;
///     type Output = usize;
///     fn init(&self) -> String { String::new() }
///     fn add(&self, acc: &mut String, record: &String) { if record.len() > acc.len() { *acc = record.clone(); } }
///     fn merge(&self, acc: &mut String, other: String) { if other.len() > acc.len() { *acc = other; } }
///     fn finish(&self, acc: &String) -> usize { acc.len() }
/// }
/// let mut acc = Longest.init();
/// Longest.add(&mut acc, &"tide".to_string());
/// assert_eq!(Longest.finish(&acc), 4);
/// ```
pub trait Aggregator<D>: Clone + 'static {
    /// The partial result kept per group (and sent between workers).
    type Acc: Clone + Serialize + DeserializeOwned + Send + 'static;
    /// The value reported per group.
    type Output: Clone + 'static;
    /// The partial result of no records.
    fn init(&self) -> Self::Acc;
    /// Folds one record into a partial result.
    fn add(&self, acc: &mut Self::Acc, record: &D);
    /// Folds another partial result into this one.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The reported value of a partial result.
    fn finish(&self, acc: &Self::Acc) -> Self::Output;
}

/// Counts records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<D> Aggregator<D> for Count {
    type Acc = u64;
    type Output = u64;
    #[inline]
    fn init(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _record: &D) {
        *acc += 1;
    }
    #[inline]
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    #[inline]
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Numbers that [`Sum`] can add.
pub trait Number: Copy + Default + std::ops::AddAssign + Serialize + DeserializeOwned + Send + 'static {}
impl Number for i64 {}
impl Number for u64 {}
impl Number for f64 {}

/// Sums a number read from each record.
#[derive(Clone, Copy, Debug)]
pub struct Sum<F>(pub F);

impl<D, N: Number, F: Fn(&D) -> N + Clone + 'static> Aggregator<D> for Sum<F> {
    type Acc = N;
    type Output = N;
    #[inline]
    fn init(&self) -> N {
        N::default()
    }
    #[inline]
    fn add(&self, acc: &mut N, record: &D) {
        *acc += (self.0)(record);
    }
    #[inline]
    fn merge(&self, acc: &mut N, other: N) {
        *acc += other;
    }
    #[inline]
    fn finish(&self, acc: &N) -> N {
        *acc
    }
}

/// The smallest value read from each record (`None` for no records).
#[derive(Clone, Copy, Debug)]
pub struct Min<F>(pub F);

/// The largest value read from each record (`None` for no records).
#[derive(Clone, Copy, Debug)]
pub struct Max<F>(pub F);

fn keep_if<V: PartialOrd>(acc: &mut Option<V>, value: V, better: std::cmp::Ordering) {
    match acc {
        Some(current) if value.partial_cmp(current) != Some(better) => {}
        _ => *acc = Some(value),
    }
}

macro_rules! extreme {
    ($name:ident, $ordering:expr) => {
        impl<D, V, F> Aggregator<D> for $name<F>
        where
            V: PartialOrd + Clone + Serialize + DeserializeOwned + Send + 'static,
            F: Fn(&D) -> V + Clone + 'static,
        {
            type Acc = Option<V>;
            type Output = Option<V>;
            fn init(&self) -> Option<V> {
                None
            }
            #[inline]
            fn add(&self, acc: &mut Option<V>, record: &D) {
                keep_if(acc, (self.0)(record), $ordering);
            }
            fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
                if let Some(value) = other {
                    keep_if(acc, value, $ordering);
                }
            }
            fn finish(&self, acc: &Option<V>) -> Option<V> {
                acc.clone()
            }
        }
    };
}
extreme!(Min, std::cmp::Ordering::Less);
extreme!(Max, std::cmp::Ordering::Greater);

/// Sum and count, the partial result of [`Avg`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SumCount {
    /// Sum of the values.
    pub sum: f64,
    /// Number of values.
    pub count: u64,
}

/// The mean of a number read from each record (`None` for no records).
#[derive(Clone, Copy, Debug)]
pub struct Avg<F>(pub F);

impl<D, F: Fn(&D) -> f64 + Clone + 'static> Aggregator<D> for Avg<F> {
    type Acc = SumCount;
    type Output = Option<f64>;
    fn init(&self) -> SumCount {
        SumCount::default()
    }
    #[inline]
    fn add(&self, acc: &mut SumCount, record: &D) {
        acc.sum += (self.0)(record);
        acc.count += 1;
    }
    fn merge(&self, acc: &mut SumCount, other: SumCount) {
        acc.sum += other.sum;
        acc.count += other.count;
    }
    fn finish(&self, acc: &SumCount) -> Option<f64> {
        (acc.count > 0).then(|| acc.sum / acc.count as f64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Folds `values` as two workers would: the first `split` values and the rest into separate
    /// partials, merged, then finished. Shared with the other aggregators' unit tests.
    pub(crate) fn fold_in_two<D, A: Aggregator<D>>(a: &A, values: &[D], split: usize) -> A::Output {
        let (left, right) = values.split_at(split);
        let mut x = a.init();
        left.iter().for_each(|v| a.add(&mut x, v));
        let mut y = a.init();
        right.iter().for_each(|v| a.add(&mut y, v));
        a.merge(&mut x, y);
        a.finish(&x)
    }

    fn fold<A: Aggregator<i64>>(a: &A, values: &[i64]) -> A::Output {
        fold_in_two(a, values, values.len() / 2)
    }

    #[test]
    fn builtins_agree_with_iterators() {
        let values = [5, -3, 12, 7, 7, 0, -8];
        assert_eq!(fold(&Count, &values), 7);
        assert_eq!(fold(&Sum(|v: &i64| *v), &values), values.iter().sum::<i64>());
        assert_eq!(fold(&Min(|v: &i64| *v), &values), values.iter().min().copied());
        assert_eq!(fold(&Max(|v: &i64| *v), &values), values.iter().max().copied());
        let avg = fold(&Avg(|v: &i64| *v as f64), &values).unwrap();
        assert!((avg - values.iter().sum::<i64>() as f64 / 7.0).abs() < 1e-12);
        assert_eq!(fold(&Avg(|v: &i64| *v as f64), &[]), None);
        assert_eq!(fold(&Max(|v: &i64| *v), &[]), None);
    }
}
