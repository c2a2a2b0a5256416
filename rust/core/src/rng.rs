//! A counter-based random stream per prompt.
//!
//! Each prompt gets its own SplitMix64 stream whose starting state is a hash of
//! `(seed, key)`, so a draw depends on nothing but the seed and the prompt's key: not on
//! which chunk the prompt arrived in, which thread ran it, or which path (Rust or Python).

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Stafford's mix 13): a bijection on `u64`.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream of one prompt.
#[derive(Debug, Clone)]
pub struct PromptRng {
    state: u64,
}

impl PromptRng {
    /// The stream for the prompt with global key `key` under `seed`.
    pub fn new(seed: u64, key: u64) -> Self {
        Self {
            state: mix64(mix64(seed) ^ key),
        }
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform integer in `0..n` without modulo bias: draws below `2**64 mod n` are
    /// rejected, so the accepted range is a whole multiple of `n`. `n` must be positive.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        below(n, || self.next_u64())
    }
}

/// [`PromptRng::below`] over any source of uniform 64-bit draws, so that tests can feed it
/// draws from the rejected tail.
#[inline]
fn below(n: u64, mut next: impl FnMut() -> u64) -> u64 {
    debug_assert!(n > 0);
    let mut x = next();
    // 2**64 mod n is below n, so a draw of at least n is never rejected: the threshold (a
    // division) is only worked out for the rare draw below n.
    if x < n {
        let threshold = n.wrapping_neg() % n; // == 2**64 mod n
        while x < threshold {
            x = next();
        }
    }
    x % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_a_pure_function_of_seed_and_key() {
        let a: Vec<u64> = {
            let mut r = PromptRng::new(7, 3);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = PromptRng::new(7, 3);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(a[0], PromptRng::new(7, 4).next_u64());
        assert_ne!(a[0], PromptRng::new(8, 3).next_u64());
    }

    #[test]
    fn splitmix64_matches_published_reference_values() {
        // SplitMix64 seeded with 0 (Vigna's reference implementation): first outputs.
        let mut r = PromptRng { state: 0 };
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = PromptRng::new(1, 2);
        let mut seen = [0u32; 5];
        for _ in 0..5_000 {
            seen[r.below(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 850 && c < 1150), "{seen:?}");
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn below_redraws_values_in_the_biased_tail() {
        // n = 2**63 + 1: 2**64 mod n = 2**63 - 1, so draws below that are redrawn. Plain
        // `x % n` would return 5 for the first draw.
        let n = (1u64 << 63) + 1;
        let mut draws = [5, (1 << 63) - 2, (1 << 63) + 7].into_iter();
        assert_eq!(below(n, || draws.next().unwrap_or(0)), 6);
        assert_eq!(
            draws.next(),
            None,
            "both tail draws redrawn, the third accepted"
        );
        let mut draws = [(1u64 << 63) - 1].into_iter();
        assert_eq!(below(n, || draws.next().unwrap_or(0)), (1 << 63) - 1);
    }

    #[test]
    fn below_is_uniform_where_modulo_would_be_biased() {
        // n = 3 * 2**62: `x % n` maps both [0, 2**62) and [n, 2**64) onto [0, 2**62), so a
        // third of the range would get half the draws; unbiased, it gets a third.
        let n = 3u64 << 62;
        let mut r = PromptRng::new(3, 9);
        let low = (0..3000).filter(|_| r.below(n) < 1 << 62).count();
        assert!(
            (880..1120).contains(&low),
            "{low} of 3000 in the lowest third"
        );
    }
}
