//! The error of the HyperLogLog++ sketch against its documented bound, and its algebra.
//!
//! * Over many random sets whose cardinalities are spread log-uniformly over 10^3..10^6, the
//!   standard deviation of the relative error `(estimate - n) / n` is within 10 % of the documented
//!   `1.04 / sqrt(2^p)` (at most 1.1 × it overall, and between 0.9 × and 1.1 × it where the
//!   harmonic-mean estimator is in charge, n ≥ 5 · 2^p), and the mean error is near 0; at the
//!   default precision (rsd 0.05 → p = 9), at p = 10 and at p = 14.
//! * Cardinalities below 100 are exact or off by one at every precision 4..=18.
//! * The merge of two sketches equals the sketch of the union (same content, same estimate),
//!   whatever the sizes (sparse and dense), order and grouping; sketches of different precisions
//!   do not merge.
//! * Serialization (JSON and bincode) round-trips, and corrupt sketches are rejected.
//! * The hash is stable: fixed values have fixed hashes, so sketches merge across processes.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_operators::hll::{
    precision_for_rsd, relative_standard_error, stable_hash, HllError, HyperLogLogPlusPlus, DEFAULT_RSD,
};

/// Random sets per precision in the error test.
const SETS: usize = 400;

fn log_uniform(rng: &mut SmallRng, low: f64, high: f64) -> u64 {
    (low.ln() + rng.random::<f64>() * (high.ln() - low.ln())).exp().round() as u64
}

/// The sketch of `n` distinct values: `n` consecutive integers from a random start, inserted
/// through `insert` (so the stable hash is part of what is tested).
fn sketch_of_range(p: u8, start: u64, n: u64) -> HyperLogLogPlusPlus {
    let mut sketch = HyperLogLogPlusPlus::with_precision(p).unwrap();
    for value in start..start + n {
        sketch.insert(&value);
    }
    sketch
}

struct Stats {
    count: usize,
    mean: f64,
    std: f64,
}

fn stats(errors: &[f64]) -> Stats {
    let count = errors.len();
    let mean = errors.iter().sum::<f64>() / count as f64;
    let var = errors.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / (count - 1) as f64;
    Stats { count, mean, std: var.sqrt() }
}

fn check_error(p: u8, seed: u64) {
    let started = Instant::now();
    let sigma = relative_standard_error(p);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut all = Vec::new();
    let mut asymptotic = Vec::new();
    for _ in 0..SETS {
        let n = log_uniform(&mut rng, 1e3, 1e6);
        let start = rng.random::<u64>() >> 1;
        let estimate = sketch_of_range(p, start, n).estimate();
        let error = (estimate as f64 - n as f64) / n as f64;
        all.push(error);
        if n >= 5 << p {
            asymptotic.push(error);
        }
    }
    let (overall, high) = (stats(&all), stats(&asymptotic));
    let report = format!(
        "p={p}: documented rsd {sigma:.5}; all {} sets: mean {:+.5}, std {:.5} ({:.3} × rsd); {} sets with n ≥ 5·2^p: \
         mean {:+.5}, std {:.5} ({:.3} × rsd) [{:.1} s]",
        overall.count,
        overall.mean,
        overall.std,
        overall.std / sigma,
        high.count,
        high.mean,
        high.std,
        high.std / sigma,
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    assert!(overall.std <= 1.1 * sigma, "{report}: the error's std exceeds 1.1 × the documented bound");
    assert!(high.count >= 100, "{report}: too few sets in the asymptotic range to judge the std");
    assert!(
        (0.9 * sigma..=1.1 * sigma).contains(&high.std),
        "{report}: the error's std is not within 10 % of the documented bound"
    );
    // The mean of N errors has a standard error of std / sqrt(N); allow 3 of them.
    let tolerance = 3.0 * sigma / (overall.count as f64).sqrt();
    assert!(overall.mean.abs() <= tolerance, "{report}: biased (|mean| > {tolerance:.5})");
}

#[test]
fn error_at_the_default_precision_is_within_the_documented_bound() {
    let p = precision_for_rsd(DEFAULT_RSD).unwrap();
    assert_eq!(p, 9, "Spark's precision for rsd 0.05");
    check_error(p, 9);
}

#[test]
fn error_at_precision_10_is_within_the_documented_bound() {
    check_error(10, 10);
}

#[test]
fn error_at_precision_14_is_within_the_documented_bound() {
    check_error(14, 14);
}

#[test]
fn small_cardinalities_are_exact_or_off_by_one() {
    let mut rng = SmallRng::seed_from_u64(100);
    let mut off_by_one = 0;
    for p in 4..=18 {
        for n in 0..100u64 {
            for _ in 0..3 {
                let start = rng.random::<u64>() >> 1;
                // Each value several times, in a shuffled order: duplicates do not count.
                let mut values: Vec<u64> = (start..start + n).flat_map(|v| [v, v, v]).collect();
                values.sort_by_key(|v| stable_hash(&(v ^ 0x5555)));
                let mut sketch = HyperLogLogPlusPlus::with_precision(p).unwrap();
                values.iter().for_each(|v| sketch.insert(v));
                let estimate = sketch.estimate();
                assert!(estimate.abs_diff(n) <= 1, "p={p}: {n} distinct values estimated as {estimate}");
                off_by_one += usize::from(estimate != n);
            }
        }
    }
    // A collision of two values among 2^25 sparse registers is rare: nearly everything is exact.
    assert!(off_by_one <= 5, "{off_by_one} of 4500 small sets were off by one");
}

/// Random sets and their union, each as a sketch, at sizes around the sparse/dense switch.
#[test]
fn merge_equals_the_sketch_of_the_union() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut cases = 0;
    for p in [4u8, 9, 10, 14] {
        for _ in 0..25 {
            let size = |rng: &mut SmallRng| log_uniform(rng, 1.0, 40.0 * (1u64 << p) as f64);
            let (a_len, b_len) = (size(&mut rng), size(&mut rng));
            let overlap = rng.random_range(0..=a_len.min(b_len));
            let a_start = rng.random::<u64>() >> 2;
            let b_start = a_start + a_len - overlap;
            let a = sketch_of_range(p, a_start, a_len);
            let b = sketch_of_range(p, b_start, b_len);
            let union = sketch_of_range(p, a_start, a_len + b_len - overlap);

            let mut ab = a.clone();
            ab.merge(&b).unwrap();
            let mut ba = b.clone();
            ba.merge(&a).unwrap();
            let label = format!("p={p}, |A|={a_len}, |B|={b_len}, overlap {overlap}");
            assert!(ab == union, "{label}: merge(A, B) is not the sketch of A ∪ B");
            assert!(ba == union, "{label}: merge(B, A) is not the sketch of A ∪ B");
            assert_eq!(ab.estimate(), union.estimate(), "{label}: estimates");
            assert_eq!(ab.is_sparse(), union.is_sparse(), "{label}: representation");
            // Idempotent: merging again changes nothing.
            let mut again = ab.clone();
            again.merge(&b).unwrap();
            assert!(again == union, "{label}: merge is not idempotent");
            // Grouping: three parts of the union merged in any grouping give the union.
            let n = a_len + b_len - overlap;
            let (cut1, cut2) = (n / 3, 2 * n / 3);
            let parts = [(0, cut1), (cut1, cut2), (cut2, n)].map(|(s, e)| sketch_of_range(p, a_start + s, e - s));
            let mut left = parts[0].clone();
            left.merge_owned(parts[1].clone()).unwrap();
            left.merge_owned(parts[2].clone()).unwrap();
            let mut right = parts[2].clone();
            right.merge_owned(parts[1].clone()).unwrap();
            right.merge_owned(parts[0].clone()).unwrap();
            assert!(left == union && right == union, "{label}: merging three parts");
            cases += 1;
        }
    }
    assert_eq!(cases, 100);
    let mut p9 = HyperLogLogPlusPlus::with_precision(9).unwrap();
    let p10 = HyperLogLogPlusPlus::with_precision(10).unwrap();
    assert_eq!(p9.merge(&p10), Err(HllError::PrecisionMismatch { ours: 9, theirs: 10 }));
}

#[test]
fn serialization_round_trips_and_rejects_corrupt_sketches() {
    let mut rng = SmallRng::seed_from_u64(11);
    for p in [4u8, 9, 12, 18] {
        for n in [0u64, 1, 50, 127, 129, 3_000, 70_000] {
            let mut sketch = sketch_of_range(p, rng.random::<u64>() >> 1, n);
            // Leave some insertions pending in the sparse buffer.
            sketch.insert(&u64::MAX);
            let json = serde_json::to_string(&sketch).unwrap();
            let from_json: HyperLogLogPlusPlus = serde_json::from_str(&json).unwrap();
            let bytes = bincode::serialize(&sketch).unwrap();
            let from_bincode: HyperLogLogPlusPlus = bincode::deserialize(&bytes).unwrap();
            for copy in [&from_json, &from_bincode] {
                assert!(*copy == sketch, "p={p}, n={n}: a round trip changed the sketch");
                assert_eq!(copy.estimate(), sketch.estimate());
                assert_eq!(copy.precision(), p);
                assert_eq!(bincode::serialize(copy).unwrap(), bytes, "p={p}, n={n}: the encoding is not canonical");
            }
            // Bounded size: a dense sketch is 2^p bytes plus a few.
            assert!(bytes.len() <= (1 << p) + 16 || sketch.is_sparse(), "p={p}, n={n}: {} bytes", bytes.len());
        }
    }
    let bad = [
        (r#"{"precision":3,"registers":{"Sparse":[]}}"#, "precision"),
        (r#"{"precision":19,"registers":{"Sparse":[]}}"#, "precision"),
        (r#"{"precision":4,"registers":{"Dense":[0,0,0]}}"#, "registers"),
        (r#"{"precision":4,"registers":{"Dense":[62,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}"#, "register value"),
        (r#"{"precision":9,"registers":{"Sparse":[129,65]}}"#, "sorted"),
        (r#"{"precision":9,"registers":{"Sparse":[64]}}"#, "rank"),
    ];
    for (text, mention) in bad {
        let error = serde_json::from_str::<HyperLogLogPlusPlus>(text).unwrap_err().to_string();
        assert!(error.contains(mention), "{text}: the error should mention {mention:?}: {error}");
    }
}

#[test]
fn invalid_settings_are_typed_errors() {
    assert_eq!(HyperLogLogPlusPlus::with_precision(3).unwrap_err(), HllError::PrecisionOutOfRange { precision: 3 });
    assert_eq!(HyperLogLogPlusPlus::with_precision(19).unwrap_err(), HllError::PrecisionOutOfRange { precision: 19 });
    assert!(matches!(HyperLogLogPlusPlus::with_rsd(0.0), Err(HllError::RsdOutOfRange { .. })));
    assert!(matches!(HyperLogLogPlusPlus::with_rsd(0.5), Err(HllError::RsdOutOfRange { .. })));
    assert!(matches!(HyperLogLogPlusPlus::with_rsd(f64::NAN), Err(HllError::RsdOutOfRange { .. })));
    assert_eq!(HyperLogLogPlusPlus::with_rsd(0.05).unwrap().precision(), 9);
    assert_eq!(HyperLogLogPlusPlus::default().precision(), 9);
    for (rsd, p) in [(0.3, 4), (0.1, 7), (0.05, 9), (0.02, 12), (0.01, 14), (0.005, 16), (0.0025, 18)] {
        assert_eq!(precision_for_rsd(rsd), Ok(p), "rsd {rsd}");
        assert!(relative_standard_error(p) <= rsd, "rsd {rsd}: p {p} does not reach it");
    }
}

/// Fixed values hash to fixed numbers, so a change of hash function or seed (which would make
/// sketches written before and after it unmergeable) fails here first.
#[test]
fn the_hash_is_stable() {
    let got = [stable_hash(&42u64), stable_hash("alice"), stable_hash(&String::from("alice")), stable_hash(&-1i32)];
    assert_eq!(got[1], got[2], "str and String hash alike");
    assert_eq!(got, [0x37cd430dbad1f5f7, 0xb1bcb7dd68fcbe7d, 0xb1bcb7dd68fcbe7d, 0x0cd8fb1ce2ce4cfc], "{got:#018x?}");
}
