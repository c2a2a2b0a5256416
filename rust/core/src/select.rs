use rayon::prelude::*;

use crate::penalty::penalized;
use crate::validate::{check_offsets, check_penalty, check_same_len, check_values};
use crate::{Method, PairError, PromptRng};

/// What became of one prompt. Stored as `u8` so it crosses into NumPy without conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// A pair was selected.
    Paired = 0,
    /// Fewer than two responses: nothing to compare.
    TooFewResponses = 1,
    /// The two picked responses have equal penalised rewards and ties are dropped.
    Tie = 2,
}

/// How to select: the method, the length penalty and where the randomness comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub method: Method,
    /// Penalised reward is `score - length_penalty * length`; needs lengths unless zero.
    pub length_penalty: f64,
    pub seed: u64,
    /// Key of prompt 0 of this call; prompt `p` draws from `PromptRng::new(seed, first_key + p)`.
    /// Pass the global position of the first prompt when selecting chunk by chunk.
    pub first_key: u64,
    /// Keep pairs whose two penalised rewards are equal (LMFlow's behaviour).
    pub keep_ties: bool,
}

/// One entry per prompt: flat response indices of the pair (`-1` where there is none) and
/// the prompt's [`Status`] as `u8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub chosen: Vec<i64>,
    pub rejected: Vec<i64>,
    pub status: Vec<u8>,
}

/// Selects one (chosen, rejected) pair per prompt, in parallel over prompts.
///
/// The input is checked whole before anything is selected; see [`PairError`] for what is
/// refused. The result does not depend on the number of threads.
pub fn select_pairs(
    scores: &[f64],
    lengths: Option<&[f64]>,
    offsets: &[i64],
    options: &Options,
) -> Result<Selection, PairError> {
    check_penalty(options.length_penalty, lengths.is_some())?;
    check_same_len(scores, lengths)?;
    check_offsets(offsets, scores.len())?;
    let n_prompts = offsets.len() - 1;
    if n_prompts > 0
        && options
            .first_key
            .checked_add(n_prompts as u64 - 1)
            .is_none()
    {
        return Err(PairError::KeyOverflow {
            first_key: options.first_key,
            n_prompts,
        });
    }
    check_values(scores, lengths, offsets)?;
    Ok(match lengths {
        Some(lengths) => {
            let lp = options.length_penalty;
            select_with(&|k| penalized(scores[k], lengths[k], lp), offsets, options)
        }
        None => select_with(&|k| scores[k], offsets, options),
    })
}

/// The parallel loop, generic over how the penalised reward of flat response `k` is read so
/// that the no-lengths case costs nothing extra.
fn select_with<R: Fn(usize) -> f64 + Sync>(
    reward: &R,
    offsets: &[i64],
    options: &Options,
) -> Selection {
    let n_prompts = offsets.len() - 1;
    let mut selection = Selection {
        chosen: vec![-1; n_prompts],
        rejected: vec![-1; n_prompts],
        status: vec![Status::TooFewResponses as u8; n_prompts],
    };
    (
        selection.chosen.par_iter_mut(),
        selection.rejected.par_iter_mut(),
        selection.status.par_iter_mut(),
    )
        .into_par_iter()
        .with_min_len(1024)
        .enumerate()
        .for_each(|(p, (chosen, rejected, status))| {
            let start = offsets[p] as usize;
            let n = offsets[p + 1] as usize - start;
            if n < 2 {
                return;
            }
            let r = |i: usize| reward(start + i);
            let key = options.first_key + p as u64;
            let (first, second) = pick(&r, n, options.method, || PromptRng::new(options.seed, key));
            let (c, j) = if r(second) > r(first) {
                (second, first)
            } else {
                (first, second)
            };
            if r(c) == r(j) && !options.keep_ties {
                *status = Status::Tie as u8;
                return;
            }
            *chosen = (start + c) as i64;
            *rejected = (start + j) as i64;
            *status = Status::Paired as u8;
        });
    selection
}

/// The two local indices a method picks from `n >= 2` responses, best (or first draw) first.
#[inline]
fn pick<R: Fn(usize) -> f64>(
    r: &R,
    n: usize,
    method: Method,
    rng: impl FnOnce() -> PromptRng,
) -> (usize, usize) {
    match method {
        Method::MaxMin => {
            let best = extreme(r, n, None, |a, b| a > b);
            (best, extreme(r, n, Some(best), |a, b| a < b))
        }
        Method::MaxMax => {
            let best = extreme(r, n, None, |a, b| a > b);
            (best, extreme(r, n, Some(best), |a, b| a > b))
        }
        Method::MaxRandom => {
            let best = extreme(r, n, None, |a, b| a > b);
            (best, skip(rng().below(n as u64 - 1) as usize, best))
        }
        Method::Random => {
            let mut rng = rng();
            let first = rng.below(n as u64) as usize;
            (first, skip(rng.below(n as u64 - 1) as usize, first))
        }
    }
}

/// Maps a uniform draw over the `n - 1` indices other than `taken` onto `0..n`.
#[inline]
fn skip(draw: usize, taken: usize) -> usize {
    if draw >= taken {
        draw + 1
    } else {
        draw
    }
}

/// The lowest index whose reward beats all others under `better`, leaving out `exclude`.
#[inline]
fn extreme<R: Fn(usize) -> f64>(
    r: &R,
    n: usize,
    exclude: Option<usize>,
    better: impl Fn(f64, f64) -> bool,
) -> usize {
    let mut indices = (0..n).filter(|&i| Some(i) != exclude);
    let mut best = indices.next().unwrap_or(0);
    let mut best_r = r(best);
    for i in indices {
        let ri = r(i);
        if better(ri, best_r) {
            best = i;
            best_r = ri;
        }
    }
    best
}
