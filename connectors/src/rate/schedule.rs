//! When each row of a rate source is due, and how far its timestamp is skewed back.
//!
//! With `R` rows per second and a ramp-up of `T` ms, the rate grows linearly from 0 to `R` over
//! the first `T` ms and stays at `R` afterwards. The number of rows due by `t` ms is therefore
//! `N(t) = R·t²/(2000·T)` during the ramp-up and `R·T/2000 + R·(t − T)/1000` after it, and row `v`
//! (counting from 0) is due at the `t` where `N(t) = v`:
//!
//! * ramp-up (`2000·v < R·T`): `offset(v) = ⌊√(2000·T·v / R)⌋` ms (computed in `f64`);
//! * steady (otherwise): `offset(v) = ⌊(2000·v + R·T) / (2·R)⌋` ms, exact integer arithmetic,
//!   which without ramp-up is `⌊v·1000 / R⌋`.
//!
//! Both pieces are non-decreasing and meet at `offset = T`, so the schedule is monotone.

/// The largest accepted `rows_per_second` (keeps the schedule arithmetic within `u64`).
pub const MAX_ROWS_PER_SECOND: u64 = 1_000_000_000_000;

/// The due times of a rate source's rows, relative to its start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Schedule {
    rows_per_second: u64,
    ramp_ms: u64,
    /// `2000·T / R`, the factor under the square root during ramp-up.
    ramp_factor: f64,
}

impl Schedule {
    /// A schedule of `rows_per_second` (clamped to `1..=MAX_ROWS_PER_SECOND`) after a ramp-up of `ramp_ms`.
    pub(crate) fn new(rows_per_second: u64, ramp_ms: u64) -> Self {
        let rows_per_second = rows_per_second.clamp(1, MAX_ROWS_PER_SECOND);
        Schedule { rows_per_second, ramp_ms, ramp_factor: 2000.0 * ramp_ms as f64 / rows_per_second as f64 }
    }

    /// The first value that is due after the ramp-up (`⌈R·T / 2000⌉`).
    pub(crate) fn steady_from(&self) -> u64 {
        let product = self.rows_per_second as u128 * self.ramp_ms as u128;
        product.div_ceil(2000).min(u64::MAX as u128) as u64
    }

    /// Milliseconds after the start at which row `value` is due.
    #[inline]
    pub(crate) fn offset_ms(&self, value: u64) -> u64 {
        let rt = self.rows_per_second as u128 * self.ramp_ms as u128;
        if 2000 * (value as u128) < rt {
            (self.ramp_factor * value as f64).sqrt() as u64
        } else {
            ((2000 * value as u128 + rt) / (2 * self.rows_per_second as u128)).min(u64::MAX as u128) as u64
        }
    }
}

/// Steps the steady-phase offset from one value to `value + step` with one add and one compare,
/// instead of a division per row (the unthrottled hot path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SteadyCursor {
    /// The offset of the current value, in ms.
    pub(crate) offset: u64,
    remainder: u64,
    quotient_step: u64,
    remainder_step: u64,
    denominator: u64,
}

impl SteadyCursor {
    /// A cursor at `value` (which must be at or after [`Schedule::steady_from`]) moving by `step` values.
    pub(crate) fn new(schedule: &Schedule, value: u64, step: u64) -> Self {
        let denominator = 2 * schedule.rows_per_second as u128;
        let numerator = 2000 * value as u128 + schedule.rows_per_second as u128 * schedule.ramp_ms as u128;
        let numerator_step = 2000 * step as u128;
        SteadyCursor {
            offset: (numerator / denominator).min(u64::MAX as u128) as u64,
            remainder: (numerator % denominator) as u64,
            quotient_step: (numerator_step / denominator).min(u64::MAX as u128) as u64,
            remainder_step: (numerator_step % denominator) as u64,
            denominator: denominator as u64,
        }
    }

    /// Moves to the next value of the partition.
    #[inline(always)]
    pub(crate) fn advance(&mut self) {
        self.offset = self.offset.wrapping_add(self.quotient_step);
        self.remainder += self.remainder_step;
        if self.remainder >= self.denominator {
            self.remainder -= self.denominator;
            self.offset = self.offset.wrapping_add(1);
        }
    }
}

/// How far (in ms, within `[0, span)`) row `value` is moved back: the splitmix64 hash of
/// `seed + value·γ`, mapped onto the span by a multiply-shift. `span` is `max_skew_ms + 1`.
#[inline(always)]
pub(crate) fn skew_ms(seed: u64, value: u64, span: u64) -> u64 {
    let hash = splitmix64(seed.wrapping_add(value.wrapping_mul(GOLDEN_GAMMA)));
    ((hash as u128 * span as u128) >> 64) as u64
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_ramp_up_rows_are_evenly_spaced() {
        let s = Schedule::new(4, 0);
        let offsets: Vec<u64> = (0..6).map(|v| s.offset_ms(v)).collect();
        assert_eq!(offsets, vec![0, 250, 500, 750, 1000, 1250]);
        assert_eq!(Schedule::new(3, 0).offset_ms(1), 333);
        assert_eq!(s.steady_from(), 0);
    }

    #[test]
    fn ramp_up_is_monotone_and_meets_the_steady_rate() {
        // 10 rows/s after a 4 s ramp-up: 20 rows are due during the ramp-up.
        let s = Schedule::new(10, 4000);
        assert_eq!(s.steady_from(), 20);
        assert_eq!(s.offset_ms(0), 0);
        assert_eq!(s.offset_ms(20), 4000);
        assert_eq!(s.offset_ms(30), 5000);
        // Row 5 is due at sqrt(2000 * 4000 * 5 / 10) = 2000 ms.
        assert_eq!(s.offset_ms(5), 2000);
        let offsets: Vec<u64> = (0..100).map(|v| s.offset_ms(v)).collect();
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    }

    #[test]
    fn cursor_matches_the_formula() {
        for (rate, ramp, step, from) in
            [(7u64, 0u64, 1u64, 0u64), (1000, 0, 3, 2), (13, 2500, 4, 17), (1_000_000, 10, 5, 5_000)]
        {
            let s = Schedule::new(rate, ramp);
            let start = from.max(s.steady_from());
            let mut cursor = SteadyCursor::new(&s, start, step);
            for k in 0..10_000 {
                assert_eq!(
                    cursor.offset,
                    s.offset_ms(start + k * step),
                    "rate {rate} ramp {ramp} value {}",
                    start + k * step
                );
                cursor.advance();
            }
        }
    }

    #[test]
    fn skew_stays_in_range_and_is_deterministic() {
        let skews: Vec<u64> = (0..10_000).map(|v| skew_ms(42, v, 101)).collect();
        assert!(skews.iter().all(|s| *s <= 100));
        assert!(skews.contains(&0) && skews.contains(&100));
        assert_eq!(skews, (0..10_000).map(|v| skew_ms(42, v, 101)).collect::<Vec<_>>());
        assert_ne!(skews, (0..10_000).map(|v| skew_ms(43, v, 101)).collect::<Vec<_>>());
    }
}
