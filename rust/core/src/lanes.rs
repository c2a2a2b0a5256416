//! The rankings of a prompt of exactly `N` responses (2, 4, 8 or 16), over its `N` rewards
//! at once.
//!
//! Datasets usually give every prompt the same number of responses, most often one of
//! these, and over an array of known length an extreme is a few vector maxima and a
//! position is a mask of the lanes equal to it, with no dependence of one response on the
//! one before. A streaming ranking ([`crate::select`]'s `Rank`) carries its best-so-far
//! through every response instead: about 25 instructions per response, most of a one-pair
//! selection's time.
//!
//! On x86_64 the lanes are SSE2 vectors (part of the x86_64 baseline, so no runtime
//! detection); elsewhere, and in the tests beside them, plain loops compute the same.
//! Rewards here are valid penalised rewards: never NaN, possibly infinite.

/// `$body` with the constant `$n` set to `$width` when that is one of the widths ranked
/// over lanes (2, 4, 8 or 16), else `$other`: the one list of those widths.
macro_rules! by_width {
    ($width:expr, |$n:ident| $body:expr, else $other:expr) => {
        match $width {
            2 => {
                const $n: usize = 2;
                $body
            }
            4 => {
                const $n: usize = 4;
                $body
            }
            8 => {
                const $n: usize = 8;
                $body
            }
            16 => {
                const $n: usize = 16;
                $body
            }
            _ => $other,
        }
    };
}
pub(crate) use by_width;

/// The largest of `r` (which of two equal values, `0.0` or `-0.0`, is left open: positions
/// come from [`equal`]).
#[inline(always)]
pub(crate) fn max<const N: usize>(r: &[f64; N]) -> f64 {
    imp::max(r)
}

/// The smallest of `r`, as [`max`].
#[inline(always)]
pub(crate) fn min<const N: usize>(r: &[f64; N]) -> f64 {
    imp::min(r)
}

/// The largest of `r` and the largest of the rest (equal to it when it occurs twice), in
/// one pass: each lane keeps its two largest.
#[inline(always)]
pub(crate) fn top_two<const N: usize>(r: &[f64; N]) -> (f64, f64) {
    imp::top_two(r)
}

/// The smallest of `r` and the smallest of the rest, as [`top_two`].
#[inline(always)]
pub(crate) fn bottom_two<const N: usize>(r: &[f64; N]) -> (f64, f64) {
    imp::bottom_two(r)
}

/// Bit `i` set where `r[i] == x` (`-0.0` equals `0.0`, as everywhere in selection).
#[inline(always)]
pub(crate) fn equal<const N: usize>(r: &[f64; N], x: f64) -> u32 {
    imp::equal(r, x)
}

/// Whether every value is finite.
#[inline(always)]
pub(crate) fn all_finite<const N: usize>(r: &[f64; N]) -> bool {
    imp::all_finite(r)
}

/// Lengths in `0..2^52` as `f64`s, exactly (as `l as f64` gives them).
#[inline(always)]
pub(crate) fn small_as_f64<const N: usize>(lengths: &[i64; N]) -> [f64; N] {
    debug_assert!(lengths.iter().all(|&l| l >> 52 == 0));
    imp::small_as_f64(lengths)
}

/// The lowest set bit's position (`mask != 0`).
#[inline(always)]
pub(crate) fn lowest(mask: u32) -> usize {
    mask.trailing_zeros() as usize
}

/// The highest set bit's position (`mask != 0`).
#[inline(always)]
pub(crate) fn highest(mask: u32) -> usize {
    (u32::BITS - 1 - mask.leading_zeros()) as usize
}

#[cfg(target_arch = "x86_64")]
use sse2 as imp;

#[cfg(not(target_arch = "x86_64"))]
use portable as imp;

/// Two lanes per vector; `N` is even.
///
/// SAFETY (every `unsafe` block here): the intrinsics need SSE2, which every x86_64 target
/// has; they take and return values only, no pointers.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128d, _mm_and_pd, _mm_castsi128_pd, _mm_cmpeq_pd, _mm_cmplt_pd, _mm_cvtsd_f64,
        _mm_max_pd, _mm_max_sd, _mm_min_pd, _mm_min_sd, _mm_movemask_pd, _mm_or_si128,
        _mm_set1_epi64x, _mm_set1_pd, _mm_set_epi64x, _mm_set_pd, _mm_sub_pd, _mm_unpackhi_pd,
    };

    /// Lanes `2 * i` and `2 * i + 1` of `r`.
    #[inline(always)]
    fn pair<const N: usize>(r: &[f64; N], i: usize) -> __m128d {
        unsafe { _mm_set_pd(r[2 * i + 1], r[2 * i]) }
    }

    /// `pick` over the vectors of `r`, then over the two lanes of the result (`pick_sd`).
    #[inline(always)]
    fn fold<const N: usize>(
        r: &[f64; N],
        pick: impl Fn(__m128d, __m128d) -> __m128d,
        pick_sd: impl Fn(__m128d, __m128d) -> __m128d,
    ) -> f64 {
        debug_assert!(N >= 2 && N.is_multiple_of(2));
        // Loops, not `Iterator::fold`, which was left uninlined.
        let mut acc = pair(r, 0);
        for i in 1..N / 2 {
            acc = pick(acc, pair(r, i));
        }
        unsafe { _mm_cvtsd_f64(pick_sd(acc, _mm_unpackhi_pd(acc, acc))) }
    }

    /// The larger (`max`) or the smaller of `a` and `b`, lane by lane; `max` is a constant
    /// wherever this is inlined, so no branch is left.
    #[inline(always)]
    fn extreme(max: bool, a: __m128d, b: __m128d) -> __m128d {
        unsafe {
            if max {
                _mm_max_pd(a, b)
            } else {
                _mm_min_pd(a, b)
            }
        }
    }

    /// [`extreme`] of the low lanes, with the high lane of `a`.
    #[inline(always)]
    fn extreme_sd(max: bool, a: __m128d, b: __m128d) -> __m128d {
        unsafe {
            if max {
                _mm_max_sd(a, b)
            } else {
                _mm_min_sd(a, b)
            }
        }
    }

    #[inline(always)]
    pub(super) fn max<const N: usize>(r: &[f64; N]) -> f64 {
        fold(r, |a, b| extreme(true, a, b), |a, b| extreme_sd(true, a, b))
    }

    #[inline(always)]
    pub(super) fn min<const N: usize>(r: &[f64; N]) -> f64 {
        fold(
            r,
            |a, b| extreme(false, a, b),
            |a, b| extreme_sd(false, a, b),
        )
    }

    /// The two largest of `r` (`TOP`) or its two smallest: per lane the two first seen, then
    /// the lanes merged (the second is the second of the lane holding the first, or the other
    /// lane's first).
    #[inline(always)]
    fn two<const TOP: bool, const N: usize>(r: &[f64; N]) -> (f64, f64) {
        unsafe {
            let above = |a, b| extreme(TOP, a, b);
            let below = |a, b| extreme(!TOP, a, b);
            let above_sd = |a, b| extreme_sd(TOP, a, b);
            let below_sd = |a, b| extreme_sd(!TOP, a, b);
            let none = if TOP {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            let (mut first, mut second) = (pair(r, 0), _mm_set1_pd(none));
            for i in 1..N / 2 {
                let v = pair(r, i);
                second = above(second, below(first, v));
                first = above(first, v);
            }
            let (first_hi, second_hi) = (
                _mm_unpackhi_pd(first, first),
                _mm_unpackhi_pd(second, second),
            );
            let best = above_sd(first, first_hi);
            let next = above_sd(below_sd(first, first_hi), above_sd(second, second_hi));
            (_mm_cvtsd_f64(best), _mm_cvtsd_f64(next))
        }
    }

    #[inline(always)]
    pub(super) fn top_two<const N: usize>(r: &[f64; N]) -> (f64, f64) {
        two::<true, N>(r)
    }

    #[inline(always)]
    pub(super) fn bottom_two<const N: usize>(r: &[f64; N]) -> (f64, f64) {
        two::<false, N>(r)
    }

    #[inline(always)]
    pub(super) fn equal<const N: usize>(r: &[f64; N], x: f64) -> u32 {
        unsafe {
            let x = _mm_set1_pd(x);
            let mut mask = 0;
            for i in 0..N / 2 {
                mask |= (_mm_movemask_pd(_mm_cmpeq_pd(pair(r, i), x)) as u32) << (2 * i);
            }
            mask
        }
    }

    /// SSE2 converts no `i64` lanes, so each length `l < 2^52` is put into the mantissa of
    /// 2^52, making the `f64` `2^52 + l` exactly, from which 2^52 is taken away exactly.
    #[inline(always)]
    pub(super) fn small_as_f64<const N: usize>(lengths: &[i64; N]) -> [f64; N] {
        const TWO_52: f64 = 4_503_599_627_370_496.0;
        let mut out = [0.0; N];
        unsafe {
            let exponent = _mm_set1_epi64x(TWO_52.to_bits() as i64);
            for i in 0..N / 2 {
                let l = _mm_set_epi64x(lengths[2 * i + 1], lengths[2 * i]);
                let x = _mm_sub_pd(
                    _mm_castsi128_pd(_mm_or_si128(l, exponent)),
                    _mm_set1_pd(TWO_52),
                );
                out[2 * i] = _mm_cvtsd_f64(x);
                out[2 * i + 1] = _mm_cvtsd_f64(_mm_unpackhi_pd(x, x));
            }
        }
        out
    }

    /// `|v| < inf` in every lane (false for NaN).
    #[inline(always)]
    pub(super) fn all_finite<const N: usize>(r: &[f64; N]) -> bool {
        unsafe {
            let magnitude = _mm_castsi128_pd(_mm_set1_epi64x(i64::MAX));
            let inf = _mm_set1_pd(f64::INFINITY);
            let mut finite = _mm_cmpeq_pd(inf, inf);
            for i in 0..N / 2 {
                finite = _mm_and_pd(finite, _mm_cmplt_pd(_mm_and_pd(pair(r, i), magnitude), inf));
            }
            _mm_movemask_pd(finite) == 0b11
        }
    }
}

/// The same functions as plain loops: the definition the vector ones are tested against.
#[cfg(any(test, not(target_arch = "x86_64")))]
mod portable {
    #[inline(always)]
    pub(super) fn max<const N: usize>(r: &[f64; N]) -> f64 {
        r.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    #[inline(always)]
    pub(super) fn min<const N: usize>(r: &[f64; N]) -> f64 {
        r.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// `r` in ascending order.
    fn sorted<const N: usize>(r: &[f64; N]) -> [f64; N] {
        let mut sorted = *r;
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    pub(super) fn top_two<const N: usize>(r: &[f64; N]) -> (f64, f64) {
        let sorted = sorted(r);
        (sorted[N - 1], sorted[N - 2])
    }

    pub(super) fn bottom_two<const N: usize>(r: &[f64; N]) -> (f64, f64) {
        let sorted = sorted(r);
        (sorted[0], sorted[1])
    }

    #[inline(always)]
    pub(super) fn equal<const N: usize>(r: &[f64; N], x: f64) -> u32 {
        r.iter()
            .enumerate()
            .fold(0, |mask, (i, &v)| mask | (u32::from(v == x) << i))
    }

    #[inline(always)]
    pub(super) fn all_finite<const N: usize>(r: &[f64; N]) -> bool {
        r.iter().all(|v| v.is_finite())
    }

    #[inline(always)]
    pub(super) fn small_as_f64<const N: usize>(lengths: &[i64; N]) -> [f64; N] {
        lengths.map(|l| l as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PromptRng;

    #[test]
    fn extremes_and_masks() {
        let r = [3.0, -0.0, 7.0, f64::NEG_INFINITY, 7.0, 0.0, -2.0, 1.0];
        assert_eq!(max(&r), 7.0);
        assert_eq!(min(&r), f64::NEG_INFINITY);
        assert_eq!(equal(&r, 7.0), 0b1_0100);
        assert_eq!(equal(&r, 0.0), 0b10_0010);
        assert_eq!((lowest(0b1_0100), highest(0b1_0100)), (2, 4));
        assert_eq!(max(&[f64::NEG_INFINITY; 2]), f64::NEG_INFINITY);
        assert!(all_finite(&[1.0, -0.0, f64::MAX, f64::MIN]));
        assert!(!all_finite(&[1.0, 2.0, f64::NAN, 0.0]));
        assert!(!all_finite(&[1.0, 2.0, 3.0, f64::NEG_INFINITY]));
    }

    /// The lanes' functions equal the plain loops on arrays of every width, with ties, both
    /// zeros, infinities and (for finiteness) NaN.
    fn same_as_portable<const N: usize>(rng: &mut PromptRng) {
        let values = [
            f64::NEG_INFINITY,
            -1.5,
            -0.0,
            0.0,
            2.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for _ in 0..5_000 {
            let r: [f64; N] = std::array::from_fn(|_| values[rng.below(6) as usize]);
            assert_eq!(max(&r), portable::max(&r), "{r:?}");
            assert_eq!(min(&r), portable::min(&r), "{r:?}");
            assert_eq!(top_two(&r), portable::top_two(&r), "{r:?}");
            assert_eq!(bottom_two(&r), portable::bottom_two(&r), "{r:?}");
            for x in values {
                assert_eq!(equal(&r, x), portable::equal(&r, x), "{r:?} {x}");
            }
            let with_nan: [f64; N] = std::array::from_fn(|_| values[rng.below(7) as usize]);
            assert_eq!(all_finite(&with_nan), portable::all_finite(&with_nan));
            // Small lengths, and ones near the top of the range, 2^52 - 1 included.
            let top = (1 << 52) - 1;
            let lengths: [i64; N] = std::array::from_fn(|_| match rng.below(3) {
                0 => rng.below(5000) as i64,
                1 => top - rng.below(5000) as i64,
                _ => (rng.next_u64() >> 12) as i64,
            });
            let exact = small_as_f64(&lengths);
            assert_eq!(
                exact.map(f64::to_bits),
                portable::small_as_f64(&lengths).map(f64::to_bits)
            );
        }
    }

    #[test]
    fn lanes_equal_plain_loops() {
        let mut rng = PromptRng::new(3, 0);
        same_as_portable::<2>(&mut rng);
        same_as_portable::<4>(&mut rng);
        same_as_portable::<8>(&mut rng);
        same_as_portable::<16>(&mut rng);
    }
}
