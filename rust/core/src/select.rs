use rayon::prelude::*;

use crate::penalty::penalized;
use crate::validate::{check_offsets, check_penalty, check_same_len, first_bad, value_error};
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

/// Prompts handled by one parallel task: enough to amortise scheduling, few enough to balance
/// the load across threads on small inputs.
const PROMPTS_PER_TASK: usize = 2048;

/// Selects one (chosen, rejected) pair per prompt, in parallel over prompts.
///
/// A bad request fails whole (see [`PairError`]); the error names the first offending prompt.
/// The result does not depend on the number of threads.
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
    let mut selection = Selection {
        chosen: vec![-1; n_prompts],
        rejected: vec![-1; n_prompts],
        status: vec![Status::TooFewResponses as u8; n_prompts],
    };
    // A bad value anywhere discards the whole result; the lowest bad index across tasks is
    // the one reported.
    let first_bad = selection
        .chosen
        .par_chunks_mut(PROMPTS_PER_TASK)
        .zip(selection.rejected.par_chunks_mut(PROMPTS_PER_TASK))
        .zip(selection.status.par_chunks_mut(PROMPTS_PER_TASK))
        .enumerate()
        .filter_map(|(task, ((chosen, rejected), status))| {
            let first = task * PROMPTS_PER_TASK;
            let bounds = &offsets[first..=first + chosen.len()];
            let out = Out {
                chosen,
                rejected,
                status,
            };
            select_task(scores, lengths, bounds, first, options, out)
        })
        .min();
    match first_bad {
        Some(index) => Err(value_error(index, scores, lengths, offsets)),
        None => Ok(selection),
    }
}

/// A task's slices of the per-prompt outputs.
struct Out<'a> {
    chosen: &'a mut [i64],
    rejected: &'a mut [i64],
    status: &'a mut [u8],
}

/// Selects for the prompts of one task; `bounds` are their offsets, `first` the index of the
/// task's first prompt. Each prompt's values are checked just before its selection, so they
/// are read from memory once; the flat index of the first bad one ends the task.
fn select_task(
    scores: &[f64],
    lengths: Option<&[f64]>,
    bounds: &[i64],
    first: usize,
    options: &Options,
    out: Out<'_>,
) -> Option<usize> {
    let mut rewards: Vec<f64> = Vec::with_capacity(64);
    for (i, range) in bounds.windows(2).enumerate() {
        let (start, end) = (range[0] as usize, range[1] as usize);
        let s = &scores[start..end];
        rewards.clear();
        match lengths {
            Some(lengths) => {
                let l = &lengths[start..end];
                if let Some(bad) = first_bad(s, Some(l)) {
                    return Some(start + bad);
                }
                let lp = options.length_penalty;
                rewards.extend(s.iter().zip(l).map(|(&s, &l)| penalized(s, l, lp)));
            }
            None => {
                if let Some(bad) = first_bad(s, None) {
                    return Some(start + bad);
                }
                rewards.extend_from_slice(s);
            }
        }
        if rewards.len() < 2 {
            continue;
        }
        let key = options.first_key + (first + i) as u64;
        let r = rewards.as_slice();
        let (a, b) = pick(r, options.method, || PromptRng::new(options.seed, key));
        let (c, j) = if r[b] > r[a] { (b, a) } else { (a, b) };
        if r[c] == r[j] && !options.keep_ties {
            out.status[i] = Status::Tie as u8;
            continue;
        }
        out.chosen[i] = (start + c) as i64;
        out.rejected[i] = (start + j) as i64;
        out.status[i] = Status::Paired as u8;
    }
    None
}

/// The two local indices a method picks from `r.len() >= 2` penalised rewards, best (or
/// first draw) first.
#[inline]
fn pick(r: &[f64], method: Method, rng: impl FnOnce() -> PromptRng) -> (usize, usize) {
    let n = r.len();
    match method {
        Method::MaxMin => best_and_worst(r),
        Method::MaxMax => best_two(r),
        Method::MaxRandom => {
            let best = best(r);
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
    draw + usize::from(draw >= taken)
}

/// The first index of the maximum.
#[inline]
fn best(r: &[f64]) -> usize {
    let (mut best, mut hi) = (0, r[0]);
    for (i, &ri) in r.iter().enumerate().skip(1) {
        if ri > hi {
            (best, hi) = (i, ri);
        }
    }
    best
}

/// The first index of the maximum and the first index of the minimum among the others, in
/// one pass. The two overall extremes only coincide when every reward is equal; then the
/// best is index 0 and the worst among the rest is index 1.
#[inline]
fn best_and_worst(r: &[f64]) -> (usize, usize) {
    let (mut best, mut worst) = (0, 0);
    let (mut hi, mut lo) = (r[0], r[0]);
    for (i, &ri) in r.iter().enumerate().skip(1) {
        if ri > hi {
            (best, hi) = (i, ri);
        }
        if ri < lo {
            (worst, lo) = (i, ri);
        }
    }
    (best, if worst == best { 1 } else { worst })
}

/// The first two entries of the stable descending order, in one pass: a later index only
/// displaces an earlier one by being strictly greater. Written as selects rather than
/// branches, which random rewards would mispredict.
#[inline]
fn best_two(r: &[f64]) -> (usize, usize) {
    let (r0, r1) = (r[0], r[1]);
    let (mut best, mut second, mut hi, mut next) = if r1 > r0 {
        (1, 0, r1, r0)
    } else {
        (0, 1, r0, r1)
    };
    for (i, &ri) in r.iter().enumerate().skip(2) {
        let (above_best, above_second) = (ri > hi, ri > next);
        (second, next) = if above_best {
            (best, hi)
        } else if above_second {
            (i, ri)
        } else {
            (second, next)
        };
        (best, hi) = if above_best { (i, ri) } else { (best, hi) };
    }
    (best, second)
}
