use rayon::prelude::*;

use crate::rewards::{with_rewards, Bad, Rewards};
use crate::validate::{check_penalty, check_same_len, value_error};
use crate::{Lengths, Method, PairError, PromptRng};

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
/// One read of the data: each prompt's offsets, scores and lengths are checked, penalised
/// and ranked as they are read. A bad request fails whole (see [`PairError`]) with the error
/// the documented check order gives first: offsets (by prompt) before the key range before
/// values (by flat index). The result does not depend on the number of threads.
pub fn select_pairs(
    scores: &[f64],
    lengths: Option<Lengths<'_>>,
    offsets: &[i64],
    options: &Options,
) -> Result<Selection, PairError> {
    check_penalty(options.length_penalty, lengths.is_some())?;
    check_same_len(scores.len(), lengths)?;
    let (&first, _) = offsets.split_first().ok_or(PairError::EmptyOffsets)?;
    if first != 0 {
        return Err(PairError::OffsetsStart(first));
    }
    let n_prompts = offsets.len() - 1;
    let n_scores = scores.len();
    let mut selection = Selection {
        chosen: vec![-1; n_prompts],
        rejected: vec![-1; n_prompts],
        status: vec![Status::TooFewResponses as u8; n_prompts],
    };
    let problem = with_rewards!(scores, lengths, options.length_penalty, |view| {
        select_all(view, offsets, options, &mut selection)
    });
    let end = offsets[n_prompts];
    let key_overflow = n_prompts > 0
        && options
            .first_key
            .checked_add(n_prompts as u64 - 1)
            .is_none();
    match problem {
        Some(Problem::Offsets(err)) => Err(err),
        _ if end != n_scores as i64 => Err(PairError::OffsetsShort { end, n_scores }),
        _ if key_overflow => Err(PairError::KeyOverflow {
            first_key: options.first_key,
            n_prompts,
        }),
        Some(Problem::Value(_, err)) => Err(err),
        None => Ok(selection),
    }
}

/// The first thing wrong that a task found. Offsets problems outrank value problems
/// wherever they are, as in the reference, which checks all offsets before any value.
#[derive(Debug)]
enum Problem {
    Offsets(PairError),
    /// A bad score or length, at its flat index.
    Value(usize, PairError),
}

fn select_all(
    view: impl Rewards,
    offsets: &[i64],
    options: &Options,
    selection: &mut Selection,
) -> Option<Problem> {
    selection
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
            select_task(view, bounds, first, options, out)
        })
        // Each task reports its first problem in prompt order; across tasks, the earliest.
        .min_by_key(|problem| match problem {
            Problem::Offsets(_) => (0, 0),
            Problem::Value(index, _) => (1, *index),
        })
}

/// A task's slices of the per-prompt outputs.
struct Out<'a> {
    chosen: &'a mut [i64],
    rejected: &'a mut [i64],
    status: &'a mut [u8],
}

/// Checks and selects for the prompts of one task; `bounds` are their offsets, `first` the
/// index of the task's first prompt. After a bad value only the offsets are still checked,
/// since an offsets problem later in the task would outrank it.
fn select_task(
    view: impl Rewards,
    bounds: &[i64],
    first: usize,
    options: &Options,
    out: Out<'_>,
) -> Option<Problem> {
    let n_scores = view.len() as i64;
    // The task's first start is the previous prompt's end. If that is outside the arrays,
    // the previous prompt's own check fails (its end is below its start, which is at least
    // 0 by induction from offsets[0] == 0, or past the end), and its task reports it.
    if !(0..=n_scores).contains(&bounds[0]) {
        return None;
    }
    let mut bad_value = None;
    for (i, range) in bounds.windows(2).enumerate() {
        let prompt = first + i;
        let (start, end) = (range[0], range[1]);
        if end < start {
            return Some(Problem::Offsets(PairError::OffsetsDecrease {
                prompt,
                start,
                end,
            }));
        }
        if end > n_scores {
            return Some(Problem::Offsets(PairError::OffsetsPastEnd {
                prompt,
                end,
                n_scores: n_scores as usize,
            }));
        }
        if bad_value.is_some() {
            continue;
        }
        let start = start as usize;
        let responses = view.cut(start, end as usize);
        let key = options.first_key.wrapping_add(prompt as u64);
        let rng = || PromptRng::new(options.seed, key);
        let picked = match options.method {
            Method::MaxMin => select_one::<BestAndWorst>(responses, rng),
            Method::MaxMax => select_one::<BestTwo>(responses, rng),
            Method::MaxRandom => select_one::<Best>(responses, rng),
            Method::Random => select_one::<Unranked>(responses, rng),
        };
        let Pick { a, ra, b, rb } = match picked {
            Ok(Some(pick)) => pick,
            Ok(None) => continue, // too few responses: the status it already has
            Err((k, bad)) => {
                let index = start + k;
                bad_value = Some(Problem::Value(index, value_error(bad, index, prompt, k)));
                continue;
            }
        };
        let (c, j) = if rb > ra { (b, a) } else { (a, b) };
        if ra == rb && !options.keep_ties {
            out.status[i] = Status::Tie as u8;
            continue;
        }
        out.chosen[i] = (start + c) as i64;
        out.rejected[i] = (start + j) as i64;
        out.status[i] = Status::Paired as u8;
    }
    bad_value
}

/// The two local indices a method picked, best (or first draw) first, with their
/// penalised rewards.
struct Pick {
    a: usize,
    ra: f64,
    b: usize,
    rb: f64,
}

/// What a method keeps track of while one prompt's rewards stream past.
trait Rank {
    /// The state after responses 0 and 1.
    fn start(r0: f64, r1: f64) -> Self;
    /// Response `i >= 2` with reward `r`.
    fn push(&mut self, i: usize, r: f64);
    /// The pair, from the state and (for random draws) the prompt's rewards and stream.
    fn pick(self, rewards: impl Rewards, rng: impl FnOnce() -> PromptRng) -> Pick;
}

/// The pair of one prompt's responses in a single read of them, `Ok(None)` for fewer than
/// two, or `Err` with the first bad response (local index) and what is wrong with it.
#[inline]
fn select_one<K: Rank>(
    responses: impl Rewards,
    rng: impl FnOnce() -> PromptRng,
) -> Result<Option<Pick>, (usize, Bad)> {
    let mut scan = responses.scan();
    let (Some((r0, ok0)), Some((r1, ok1))) = (scan.next(), scan.next()) else {
        return responses.first_bad().map_or(Ok(None), Err);
    };
    let mut rank = K::start(r0, r1);
    let mut valid = ok0 & ok1;
    for (i, (r, ok)) in scan.enumerate() {
        valid &= ok;
        rank.push(i + 2, r);
    }
    if let Some(bad) = (!valid).then(|| responses.first_bad()).flatten() {
        return Err(bad);
    }
    Ok(Some(rank.pick(responses, rng)))
}

/// Maps a uniform draw over the `n - 1` indices other than `taken` onto `0..n`.
#[inline]
fn skip(draw: u64, taken: usize) -> usize {
    let draw = draw as usize;
    draw + usize::from(draw >= taken)
}

/// `random`: nothing to rank; two distinct draws.
struct Unranked;

impl Rank for Unranked {
    #[inline]
    fn start(_: f64, _: f64) -> Self {
        Self
    }
    #[inline]
    fn push(&mut self, _: usize, _: f64) {}
    #[inline]
    fn pick(self, rewards: impl Rewards, rng: impl FnOnce() -> PromptRng) -> Pick {
        let n = rewards.len() as u64;
        let mut rng = rng();
        let a = rng.below(n) as usize;
        let b = skip(rng.below(n - 1), a);
        Pick {
            a,
            ra: rewards.reward(a),
            b,
            rb: rewards.reward(b),
        }
    }
}

/// `max_random`: the first index of the maximum, against a uniform draw among the others.
struct Best {
    best: usize,
    hi: f64,
}

impl Rank for Best {
    #[inline]
    fn start(r0: f64, r1: f64) -> Self {
        if r1 > r0 {
            Self { best: 1, hi: r1 }
        } else {
            Self { best: 0, hi: r0 }
        }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        if r > self.hi {
            (self.best, self.hi) = (i, r);
        }
    }
    #[inline]
    fn pick(self, rewards: impl Rewards, rng: impl FnOnce() -> PromptRng) -> Pick {
        let b = skip(rng().below(rewards.len() as u64 - 1), self.best);
        Pick {
            a: self.best,
            ra: self.hi,
            b,
            rb: rewards.reward(b),
        }
    }
}

/// `max_min`: the first index of the maximum and the first index of the minimum among the
/// others. The two overall extremes only coincide when every reward is equal; then the best
/// is index 0 and the worst among the rest is index 1.
struct BestAndWorst {
    best: Best,
    worst: usize,
    lo: f64,
}

impl Rank for BestAndWorst {
    #[inline]
    fn start(r0: f64, r1: f64) -> Self {
        let (worst, lo) = if r1 < r0 { (1, r1) } else { (0, r0) };
        Self {
            best: Best::start(r0, r1),
            worst,
            lo,
        }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        self.best.push(i, r);
        if r < self.lo {
            (self.worst, self.lo) = (i, r);
        }
    }
    #[inline]
    fn pick(self, _: impl Rewards, _: impl FnOnce() -> PromptRng) -> Pick {
        let Best { best, hi } = self.best;
        Pick {
            a: best,
            ra: hi,
            b: if self.worst == best { 1 } else { self.worst },
            rb: self.lo,
        }
    }
}

/// `max_max`: the first two entries of the stable descending order: a later index only
/// displaces an earlier one by being strictly greater. Written as selects rather than
/// branches, which random rewards would mispredict.
struct BestTwo {
    best: usize,
    hi: f64,
    second: usize,
    next: f64,
}

impl Rank for BestTwo {
    #[inline]
    fn start(r0: f64, r1: f64) -> Self {
        if r1 > r0 {
            Self {
                best: 1,
                hi: r1,
                second: 0,
                next: r0,
            }
        } else {
            Self {
                best: 0,
                hi: r0,
                second: 1,
                next: r1,
            }
        }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        let (above_best, above_second) = (r > self.hi, r > self.next);
        (self.second, self.next) = if above_best {
            (self.best, self.hi)
        } else if above_second {
            (i, r)
        } else {
            (self.second, self.next)
        };
        (self.best, self.hi) = if above_best {
            (i, r)
        } else {
            (self.best, self.hi)
        };
    }
    #[inline]
    fn pick(self, _: impl Rewards, _: impl FnOnce() -> PromptRng) -> Pick {
        Pick {
            a: self.best,
            ra: self.hi,
            b: self.second,
            rb: self.next,
        }
    }
}
