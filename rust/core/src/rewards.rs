//! Response lengths in the dtype they arrived in, and the penalised reward of each response
//! computed and checked in the same read.

use crate::{buffers, lanes};

/// Response lengths, borrowed as the caller holds them: no conversion copy for integer
/// token or character counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lengths<'a> {
    F64(&'a [f64]),
    I64(&'a [i64]),
    I32(&'a [i32]),
}

impl Lengths<'_> {
    pub fn len(&self) -> usize {
        match self {
            Self::F64(l) => l.len(),
            Self::I64(l) => l.len(),
            Self::I32(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a [f64]> for Lengths<'a> {
    fn from(lengths: &'a [f64]) -> Self {
        Self::F64(lengths)
    }
}

impl<'a> From<&'a [i64]> for Lengths<'a> {
    fn from(lengths: &'a [i64]) -> Self {
        Self::I64(lengths)
    }
}

impl<'a> From<&'a [i32]> for Lengths<'a> {
    fn from(lengths: &'a [i32]) -> Self {
        Self::I32(lengths)
    }
}

/// One length value: valid when finite and `>= 0`, used in the penalty as an `f64`.
pub(crate) trait Length: Copy + Send + Sync {
    fn is_valid(self) -> bool;
    /// `lengths` as `f64`s (as [`Self::as_f64`] gives them) when every one is valid, tested
    /// all at once, for [`Rewards::lanes`]; `None` also for a valid `i64` of 2^52 or more,
    /// which the fast conversion does not cover (the per-response path then takes it).
    fn lanes_as_f64<const N: usize>(lengths: &[Self; N]) -> Option<[f64; N]>;
    /// Rounds to the nearest `f64`, ties to even, as Python's `float * int` does.
    fn as_f64(self) -> f64;
}

impl Length for f64 {
    #[inline]
    fn is_valid(self) -> bool {
        self.is_finite() & (self >= 0.0)
    }
    #[inline(always)]
    fn lanes_as_f64<const N: usize>(lengths: &[Self; N]) -> Option<[f64; N]> {
        (lanes::all_finite(lengths) & (lanes::min(lengths) >= 0.0)).then_some(*lengths)
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
}

impl Length for i64 {
    #[inline]
    fn is_valid(self) -> bool {
        self >= 0
    }
    /// No bit from 52 up in any of them: none negative, all exact by [`lanes::small_as_f64`].
    #[inline(always)]
    fn lanes_as_f64<const N: usize>(lengths: &[Self; N]) -> Option<[f64; N]> {
        let mut any = 0;
        for &l in lengths {
            any |= l;
        }
        (any >> 52 == 0).then(|| lanes::small_as_f64(lengths))
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Length for i32 {
    #[inline]
    fn is_valid(self) -> bool {
        self >= 0
    }
    /// No sign bit in any of them.
    #[inline(always)]
    fn lanes_as_f64<const N: usize>(lengths: &[Self; N]) -> Option<[f64; N]> {
        let mut any = 0;
        let mut as_f64 = [0.0; N];
        for (&l, x) in lengths.iter().zip(&mut as_f64) {
            any |= l;
            *x = f64::from(l);
        }
        (any >= 0).then_some(as_f64)
    }
    #[inline]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

/// The penalised reward of one response: `score - length_penalty * length`.
///
/// Kept as one expression (multiply, then subtract, no fused multiply-add) so that it rounds
/// exactly as the Python reference does.
#[inline]
fn penalized(score: f64, length: f64, length_penalty: f64) -> f64 {
    score - length_penalty * length
}

/// What is wrong with a response that failed validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bad {
    Score(f64),
    Length(f64),
}

/// A run of responses seen as penalised rewards, each with whether its inputs are valid.
/// Implemented once without lengths and once per length dtype, so every loop over responses
/// is compiled for the dtype it reads.
pub(crate) trait Rewards: Copy + Send + Sync {
    fn len(self) -> usize;
    /// The responses `start..end` of this run.
    fn cut(self, start: usize, end: usize) -> Self;
    /// `(penalised reward, inputs valid)` of every response, in order: the one read of the
    /// data that validation, penalty and ranking share.
    fn scan(self) -> impl Iterator<Item = (f64, bool)>;
    /// The penalised rewards of a run of exactly `N` responses when every input is valid,
    /// else `None` (another length, a bad value that [`Self::scan`] finds, or a length
    /// [`Length::lanes_as_f64`] leaves to it): the same values as `scan`'s, in an array the
    /// [`crate::lanes`] rankings take whole.
    fn lanes<const N: usize>(self) -> Option<[f64; N]>;
    /// The penalised reward of response `k` (of an already validated run).
    fn reward(self, k: usize) -> f64;
    /// The raw score of response `k`.
    fn score(self, k: usize) -> f64;
    /// The length of response `k` as an `f64`, `None` without lengths.
    fn length(self, k: usize) -> Option<f64>;
    /// What is wrong with response `k`, `None` if nothing; the score is checked first.
    fn bad(self, k: usize) -> Option<Bad>;
    /// Asks for the inputs of response `k` to be brought into cache ahead of their read;
    /// `k` may lie past the end, where nothing is fetched.
    fn prefetch(self, k: usize);

    /// The first bad response and what is wrong with it (only called once `scan` found one).
    fn first_bad(self) -> Option<(usize, Bad)> {
        (0..self.len()).find_map(|k| self.bad(k).map(|bad| (k, bad)))
    }
}

/// Raw scores as rewards (no lengths, so no penalty).
#[derive(Clone, Copy)]
pub(crate) struct Scores<'a>(pub &'a [f64]);

impl Rewards for Scores<'_> {
    #[inline]
    fn len(self) -> usize {
        self.0.len()
    }
    #[inline]
    fn cut(self, start: usize, end: usize) -> Self {
        Self(&self.0[start..end])
    }
    #[inline]
    fn scan(self) -> impl Iterator<Item = (f64, bool)> {
        self.0.iter().map(|&s| (s, s.is_finite()))
    }
    #[inline(always)]
    fn lanes<const N: usize>(self) -> Option<[f64; N]> {
        let scores: &[f64; N] = self.0.try_into().ok()?;
        lanes::all_finite(scores).then_some(*scores)
    }
    #[inline]
    fn reward(self, k: usize) -> f64 {
        self.0[k]
    }
    #[inline]
    fn score(self, k: usize) -> f64 {
        self.0[k]
    }
    #[inline]
    fn length(self, _: usize) -> Option<f64> {
        None
    }
    #[inline(always)]
    fn prefetch(self, k: usize) {
        buffers::prefetch(self.0, k);
    }
    fn bad(self, k: usize) -> Option<Bad> {
        let score = self.0[k];
        (!score.is_finite()).then_some(Bad::Score(score))
    }
}

/// Scores with lengths of one dtype, ranked by `score - length_penalty * length`.
#[derive(Clone, Copy)]
pub(crate) struct Penalized<'a, L> {
    pub scores: &'a [f64],
    /// As many as `scores` (checked before a view is made).
    pub lengths: &'a [L],
    pub length_penalty: f64,
}

impl<L: Length> Rewards for Penalized<'_, L> {
    #[inline]
    fn len(self) -> usize {
        self.scores.len()
    }
    #[inline]
    fn cut(self, start: usize, end: usize) -> Self {
        Self {
            scores: &self.scores[start..end],
            lengths: &self.lengths[start..end],
            ..self
        }
    }
    #[inline]
    fn scan(self) -> impl Iterator<Item = (f64, bool)> {
        let lp = self.length_penalty;
        self.scores
            .iter()
            .zip(self.lengths)
            .map(move |(&s, &l)| (penalized(s, l.as_f64(), lp), s.is_finite() & l.is_valid()))
    }
    #[inline(always)]
    fn lanes<const N: usize>(self) -> Option<[f64; N]> {
        let scores: &[f64; N] = self.scores.try_into().ok()?;
        let lengths: &[L; N] = self.lengths.try_into().ok()?;
        let lengths = L::lanes_as_f64(lengths)?;
        if !lanes::all_finite(scores) {
            return None;
        }
        let lp = self.length_penalty;
        // A loop, not `array::from_fn`, which was left uninlined.
        let mut rewards = [0.0; N];
        for (i, reward) in rewards.iter_mut().enumerate() {
            *reward = penalized(scores[i], lengths[i], lp);
        }
        Some(rewards)
    }
    #[inline]
    fn reward(self, k: usize) -> f64 {
        penalized(
            self.scores[k],
            self.lengths[k].as_f64(),
            self.length_penalty,
        )
    }
    #[inline]
    fn score(self, k: usize) -> f64 {
        self.scores[k]
    }
    #[inline]
    fn length(self, k: usize) -> Option<f64> {
        Some(self.lengths[k].as_f64())
    }
    #[inline(always)]
    fn prefetch(self, k: usize) {
        buffers::prefetch(self.scores, k);
        buffers::prefetch(self.lengths, k);
    }
    fn bad(self, k: usize) -> Option<Bad> {
        let (score, length) = (self.scores[k], self.lengths[k]);
        if !score.is_finite() {
            Some(Bad::Score(score))
        } else if !length.is_valid() {
            Some(Bad::Length(length.as_f64()))
        } else {
            None
        }
    }
}

/// Calls `$body` with `$view` bound to the [`Rewards`] view of `$scores` and `$lengths`
/// (an `Option<Lengths>`), so that the body is compiled once per length dtype.
macro_rules! with_rewards {
    ($scores:expr, $lengths:expr, $length_penalty:expr, |$view:ident| $body:expr) => {{
        use $crate::rewards::{Lengths, Penalized, Scores};
        let (scores, length_penalty) = ($scores, $length_penalty);
        match $lengths {
            None => {
                let $view = Scores(scores);
                $body
            }
            Some(Lengths::F64(lengths)) => {
                let $view = Penalized {
                    scores,
                    lengths,
                    length_penalty,
                };
                $body
            }
            Some(Lengths::I64(lengths)) => {
                let $view = Penalized {
                    scores,
                    lengths,
                    length_penalty,
                };
                $body
            }
            Some(Lengths::I32(lengths)) => {
                let $view = Penalized {
                    scores,
                    lengths,
                    length_penalty,
                };
                $body
            }
        }
    }};
}
pub(crate) use with_rewards;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_lengths_round_like_python_floats() {
        // 2**53 + 1 is not an f64; Python's float * int rounds it to even, 2**53.
        let big = (1i64 << 53) + 1;
        let view = Penalized {
            scores: &[0.0],
            lengths: &[big],
            length_penalty: -1.0,
        };
        assert_eq!(view.reward(0), 9_007_199_254_740_992.0);
    }

    #[test]
    fn the_score_is_named_before_the_length() {
        let view = Penalized {
            scores: &[f64::NAN, 1.0, 1.0],
            lengths: &[-1i32, -2, 3],
            length_penalty: 0.5,
        };
        assert!(matches!(view.bad(0), Some(Bad::Score(s)) if s.is_nan()));
        assert_eq!(view.bad(1), Some(Bad::Length(-2.0)));
        assert_eq!(view.bad(2), None);
        let valid: Vec<bool> = view.scan().map(|(_, ok)| ok).collect();
        assert_eq!(valid, [false, false, true]);
    }
}
