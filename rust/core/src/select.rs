use std::cmp::Ordering;
use std::hint::select_unpredictable;

use rayon::prelude::*;

use crate::buffers::zeroed;
use crate::lanes;
use crate::rewards::{with_rewards, Bad, Rewards};
use crate::validate::{check_options, check_same_len, value_error};
use crate::{Lengths, MarginFrom, Method, PairError, PromptRng, TieOrder};

/// What became of one prompt. Stored as `u8` so it crosses into NumPy without conversion.
/// A prompt is unpaired only when no pair passes the filters; the status names the first
/// filter, in this order, that left none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// At least one pair was selected.
    Paired = 0,
    /// Fewer than two responses: nothing to compare.
    TooFewResponses = 1,
    /// Every pair of candidates has equal penalised rewards and ties are dropped.
    Tie = 2,
    /// Two responses or more, but fewer than two distinct texts.
    DuplicateResponses = 3,
    /// No pair's margin reaches `min_margin`.
    BelowMinMargin = 4,
    /// No pair is within `max_length_ratio` and `max_length_diff`.
    LengthLimits = 5,
}

impl Status {
    /// Every status as `(lower-case name, code)`, in code order.
    pub const NAMES: [(&'static str, u8); 6] = [
        ("paired", 0),
        ("too_few_responses", 1),
        ("tie", 2),
        ("duplicate_responses", 3),
        ("below_min_margin", 4),
        ("length_limits", 5),
    ];
}

/// How to select: the method, the length penalty, the filters every pair must pass, and
/// where the randomness comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub method: Method,
    /// Penalised reward is `score - length_penalty * length`; needs lengths unless zero.
    pub length_penalty: f64,
    pub seed: u64,
    /// Key of prompt 0 of this call when no per-prompt keys are given; prompt `p` draws
    /// from `PromptRng::new(seed, first_key + p)`.
    pub first_key: u64,
    /// Keep pairs whose two penalised rewards are equal.
    pub keep_ties: bool,
    pub tie_order: TieOrder,
    /// At most this many pairs per prompt (>= 1).
    pub pairs_per_prompt: usize,
    /// A pair whose margin `(chosen - rejected) * margin_scale` (from `margin_from`) is
    /// below this is not eligible.
    pub min_margin: Option<f64>,
    pub margin_scale: f64,
    pub margin_from: MarginFrom,
    /// A pair is eligible only if `longer <= max_length_ratio * shorter` (lengths in the
    /// unit of the length penalty).
    pub max_length_ratio: Option<f64>,
    /// A pair is eligible only if `longer - shorter <= max_length_diff`.
    pub max_length_diff: Option<f64>,
}

impl Options {
    /// The default filters and order for `method`: what the four original methods did.
    pub fn new(method: Method, seed: u64) -> Self {
        Self {
            method,
            length_penalty: 0.0,
            seed,
            first_key: 0,
            keep_ties: false,
            tie_order: TieOrder::Dpov2,
            pairs_per_prompt: 1,
            min_margin: None,
            margin_scale: 1.0,
            margin_from: MarginFrom::Raw,
            max_length_ratio: None,
            max_length_diff: None,
        }
    }

    /// Whether a filter besides the tie rule is set: a margin or a length limit.
    #[inline]
    fn filtered(&self) -> bool {
        self.min_margin.is_some()
            || self.max_length_ratio.is_some()
            || self.max_length_diff.is_some()
    }
}

/// The arrays a selection reads, all flat over responses except `offsets` and `keys`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    pub scores: &'a [f64],
    pub lengths: Option<Lengths<'a>>,
    /// `n_prompts + 1` offsets: prompt `p` owns responses `offsets[p]..offsets[p + 1]`.
    pub offsets: &'a [i64],
    /// Per response, the index within its prompt of the first response with the same
    /// text (its own index for a first occurrence); later copies are not candidates.
    pub duplicate_of: Option<&'a [i64]>,
    /// Per prompt, the key of its random stream (instead of `first_key + p`).
    pub keys: Option<&'a [u64]>,
}

/// Pair-shaped result: a status per prompt, and the pairs of prompt `p` at
/// `pair_offsets[p]..pair_offsets[p + 1]` of `chosen` and `rejected` (flat response
/// indices), in the method's preference order (random methods: draw order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub status: Vec<u8>,
    pub pair_offsets: Vec<i64>,
    pub chosen: Vec<i64>,
    pub rejected: Vec<i64>,
}

/// `top_bottom` with at most this many pairs per prompt keeps its two best and two worst as
/// it reads instead of sorting.
const TOP_BOTTOM_STREAMED: usize = 2;

/// Prompts handled by one parallel task: enough to amortise scheduling, few enough to balance
/// the load across threads on small inputs.
const PROMPTS_PER_TASK: usize = 2048;

/// Selects up to `pairs_per_prompt` (chosen, rejected) pairs per prompt, in parallel over
/// prompts.
///
/// One read of the data: each prompt's offsets, scores and lengths are checked, penalised
/// and ranked as they are read. A bad request fails whole (see [`PairError`]) with the error
/// the documented check order gives first: options, then offsets (by prompt), the key
/// range, values (by flat index). The result does not depend on the number of threads.
pub fn select_pairs(inputs: &Inputs<'_>, options: &Options) -> Result<Selection, PairError> {
    let Inputs {
        scores,
        lengths,
        offsets,
        duplicate_of,
        keys,
    } = *inputs;
    check_options(options, lengths.is_some())?;
    check_same_len(scores.len(), lengths)?;
    if let Some(d) = duplicate_of {
        if d.len() != scores.len() {
            return Err(PairError::DuplicatesMismatch {
                scores: scores.len(),
                duplicates: d.len(),
            });
        }
    }
    let (&first, _) = offsets.split_first().ok_or(PairError::EmptyOffsets)?;
    if first != 0 {
        return Err(PairError::OffsetsStart(first));
    }
    let n_prompts = offsets.len() - 1;
    if let Some(k) = keys {
        if k.len() != n_prompts {
            return Err(PairError::KeysMismatch {
                prompts: n_prompts,
                keys: k.len(),
            });
        }
    }
    // Per-prompt outputs are written in place. `all_pairs`, whose output dwarfs its input,
    // first only counts its pairs, then writes them straight into place; the other methods
    // write theirs into slots when a prompt has few (`MAX_SLOTS`), else gather them per
    // task and copy them once into place.
    if options.method == Method::AllPairs {
        let sinks = default_sinks::<Counted>(offsets);
        let (tasks, status, pair_offsets) = select_tasks(inputs, options, sinks)?;
        let (pair_offsets, n_pairs) = globalize(&tasks, pair_offsets, |t| t.0);
        let (chosen, rejected) = with_rewards!(scores, lengths, options.length_penalty, |view| {
            write_all_pairs(view, inputs, options, &pair_offsets, n_pairs)
        });
        return Ok(Selection {
            status,
            pair_offsets,
            chosen,
            rejected,
        });
    }
    if options.pairs_per_prompt <= MAX_SLOTS {
        return select_slotted(inputs, options);
    }
    let (tasks, status, pair_offsets) = select_tasks(inputs, options, default_sinks(offsets))?;
    Ok(assemble(tasks, status, pair_offsets))
}

/// Methods other than `all_pairs` with at most this many pairs per prompt write their pairs
/// straight into outputs of that many slots per prompt ([`Slots`]), then close the gaps
/// left by prompts with fewer; more pairs per prompt are gathered per task and copied.
const MAX_SLOTS: usize = 2;

/// One empty sink per task, for sinks that own their pairs.
fn default_sinks<P: Sink + Default>(offsets: &[i64]) -> Vec<P> {
    let n_prompts = offsets.len() - 1;
    (0..n_prompts.div_ceil(PROMPTS_PER_TASK))
        .map(|_| P::default())
        .collect()
}

/// [`select_pairs`] for `pairs_per_prompt <= MAX_SLOTS`: each task writes its pairs packed
/// into its own stretch of `pairs_per_prompt` slots per prompt of the outputs, so nothing is
/// gathered or copied; the stretches are then moved together (only when some prompt yielded
/// fewer pairs than slots) and the outputs cut to the pairs found.
fn select_slotted(inputs: &Inputs<'_>, options: &Options) -> Result<Selection, PairError> {
    let n_prompts = inputs.offsets.len() - 1;
    let stride = PROMPTS_PER_TASK * options.pairs_per_prompt;
    let mut chosen = zeroed(n_prompts * options.pairs_per_prompt);
    let mut rejected = zeroed(chosen.len());
    let sinks = chosen
        .chunks_mut(stride)
        .zip(rejected.chunks_mut(stride))
        .map(|(chosen, rejected)| Slots {
            chosen,
            rejected,
            len: 0,
        })
        .collect();
    let (tasks, status, pair_offsets) = select_tasks(inputs, options, sinks)?;
    let counts: Vec<usize> = tasks.iter().map(Slots::len).collect();
    let (pair_offsets, n_pairs) = globalize(&counts, pair_offsets, |&n| n);
    if n_pairs < chosen.len() {
        rayon::join(
            || close_gaps(&mut chosen, &counts, stride, n_pairs),
            || close_gaps(&mut rejected, &counts, stride, n_pairs),
        );
    }
    Ok(Selection {
        status,
        pair_offsets,
        chosen,
        rejected,
    })
}

/// Moves each task's `counts[t]` values, at `t * stride`, to follow the previous task's, and
/// cuts `values` to their `n` in all. In task order, so no move overwrites values not yet moved
/// (a task's values never start before the previous task's end).
fn close_gaps(values: &mut Vec<i64>, counts: &[usize], stride: usize, n: usize) {
    let mut end = 0;
    for (task, &count) in counts.iter().enumerate() {
        let start = task * stride;
        if start != end {
            values.copy_within(start..start + count, end);
        }
        end += count;
    }
    values.truncate(n);
    values.shrink_to_fit();
}

/// Runs [`select_task`] over every task in parallel, task `t` into `sinks[t]`: each task's
/// pairs, the per-prompt statuses, and the pair counts (each task's up to each prompt, not
/// yet global); or the error the documented check order gives first.
#[allow(clippy::type_complexity)]
fn select_tasks<P: Sink>(
    inputs: &Inputs<'_>,
    options: &Options,
    sinks: Vec<P>,
) -> Result<(Vec<P>, Vec<u8>, Vec<i64>), PairError> {
    let Inputs {
        scores,
        lengths,
        offsets,
        keys,
        ..
    } = *inputs;
    let n_prompts = offsets.len() - 1;
    let n_scores = scores.len();
    let mut status = zeroed(n_prompts);
    let mut pair_offsets = zeroed(n_prompts + 1);
    let tasks: Vec<TaskOut<P>> = with_rewards!(scores, lengths, options.length_penalty, |view| {
        status
            .par_chunks_mut(PROMPTS_PER_TASK)
            .zip(pair_offsets[1..].par_chunks_mut(PROMPTS_PER_TASK))
            .zip(sinks)
            .enumerate()
            .map(|(task, ((status, ends), sink))| {
                let first = task * PROMPTS_PER_TASK;
                let bounds = &offsets[first..=first + status.len()];
                select_task(view, inputs, bounds, first, options, (status, ends), sink)
            })
            .collect()
    });
    let problem =
        tasks
            .iter()
            .filter_map(|t| t.problem.as_ref())
            .min_by_key(|problem| match problem {
                Problem::Offsets(_) => (0, 0),
                Problem::Value(index, _) => (1, *index),
            });
    let end = offsets[n_prompts];
    let key_overflow = keys.is_none()
        && n_prompts > 0
        && options
            .first_key
            .checked_add(n_prompts as u64 - 1)
            .is_none();
    match problem {
        Some(Problem::Offsets(err)) => Err(err.clone()),
        _ if end != n_scores as i64 => Err(PairError::OffsetsShort { end, n_scores }),
        _ if key_overflow => Err(PairError::KeyOverflow {
            first_key: options.first_key,
            n_prompts,
        }),
        Some(Problem::Value(_, err)) => Err(err.clone()),
        None => Ok((
            tasks.into_iter().map(|t| t.pairs).collect(),
            status,
            pair_offsets,
        )),
    }
}

/// Each task's pair counts made global (`n_pairs(task)` pairs per task), and the total.
fn globalize<P>(
    tasks: &[P],
    mut pair_offsets: Vec<i64>,
    n_pairs: impl Fn(&P) -> usize,
) -> (Vec<i64>, usize) {
    let mut bases = Vec::with_capacity(tasks.len());
    let mut total = 0;
    for task in tasks {
        bases.push(total);
        total += n_pairs(task);
    }
    pair_offsets[1..]
        .par_chunks_mut(PROMPTS_PER_TASK)
        .zip(&bases)
        .for_each(|(ends, &base)| ends.iter_mut().for_each(|e| *e += base as i64));
    (pair_offsets, total)
}

/// The tasks' pairs joined in prompt order, and each task's pair counts made global.
fn assemble(tasks: Vec<Gathered>, status: Vec<u8>, pair_offsets: Vec<i64>) -> Selection {
    let (pair_offsets, n_pairs) = globalize(&tasks, pair_offsets, |t| t.chosen.len());
    let mut chosen = zeroed(n_pairs);
    let mut rejected = zeroed(n_pairs);
    let mut targets = Vec::with_capacity(tasks.len());
    let (mut c_rest, mut r_rest) = (&mut chosen[..], &mut rejected[..]);
    for task in &tasks {
        let (c, c_tail) = c_rest.split_at_mut(task.chosen.len());
        let (r, r_tail) = r_rest.split_at_mut(task.rejected.len());
        targets.push((c, r));
        (c_rest, r_rest) = (c_tail, r_tail);
    }
    targets
        .into_par_iter()
        .zip(&tasks)
        .for_each(|((c, r), task)| {
            c.copy_from_slice(&task.chosen);
            r.copy_from_slice(&task.rejected);
        });
    Selection {
        status,
        pair_offsets,
        chosen,
        rejected,
    }
}

/// The first thing wrong that a task found. Offsets problems outrank value problems
/// wherever they are, as in the reference, which checks all offsets before any value.
#[derive(Debug)]
enum Problem {
    Offsets(PairError),
    /// A bad score, length or duplicate index, at its flat index.
    Value(usize, PairError),
}

/// One task's pairs (its per-prompt outputs are written in place).
struct TaskOut<P> {
    pairs: P,
    problem: Option<Problem>,
}

/// Where a task puts its pairs.
trait Sink: Send {
    /// Only the number of pairs is wanted: `all_pairs` then counts its eligible pairs
    /// without ranking or ordering them.
    const COUNT_ONLY: bool;
    fn push(&mut self, chosen: i64, rejected: i64);
    fn len(&self) -> usize;
    fn truncate(&mut self, len: usize);
}

/// A task's pairs as flat indices, to be copied into place once all counts are known.
#[derive(Default)]
struct Gathered {
    chosen: Vec<i64>,
    rejected: Vec<i64>,
}

impl Sink for Gathered {
    const COUNT_ONLY: bool = false;
    #[inline]
    fn push(&mut self, chosen: i64, rejected: i64) {
        self.chosen.push(chosen);
        self.rejected.push(rejected);
    }
    fn len(&self) -> usize {
        self.chosen.len()
    }
    fn truncate(&mut self, len: usize) {
        self.chosen.truncate(len);
        self.rejected.truncate(len);
    }
}

/// A task's pairs written in place into its stretch of the outputs, packed to its front.
struct Slots<'a> {
    chosen: &'a mut [i64],
    rejected: &'a mut [i64],
    len: usize,
}

impl Sink for Slots<'_> {
    const COUNT_ONLY: bool = false;
    #[inline]
    fn push(&mut self, chosen: i64, rejected: i64) {
        self.chosen[self.len] = chosen;
        self.rejected[self.len] = rejected;
        self.len += 1;
    }
    fn len(&self) -> usize {
        self.len
    }
    fn truncate(&mut self, len: usize) {
        self.len = len;
    }
}

/// A task's number of pairs only.
#[derive(Default)]
struct Counted(usize);

impl Sink for Counted {
    const COUNT_ONLY: bool = true;
    #[inline]
    fn push(&mut self, _: i64, _: i64) {
        self.0 += 1;
    }
    fn len(&self) -> usize {
        self.0
    }
    fn truncate(&mut self, len: usize) {
        self.0 = len;
    }
}

/// `all_pairs`' second pass, once every prompt is checked and counted: each prompt's pairs
/// written straight into its slice (`pair_offsets`) of the `n_pairs` outputs, tasks in
/// parallel.
fn write_all_pairs<V: Rewards>(
    view: V,
    inputs: &Inputs<'_>,
    options: &Options,
    pair_offsets: &[i64],
    n_pairs: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut chosen = zeroed(n_pairs);
    let mut rejected = zeroed(n_pairs);
    let n_prompts = pair_offsets.len() - 1;
    let mut targets = Vec::with_capacity(n_prompts.div_ceil(PROMPTS_PER_TASK));
    let (mut c_rest, mut r_rest) = (&mut chosen[..], &mut rejected[..]);
    for first in (0..n_prompts).step_by(PROMPTS_PER_TASK) {
        let last = (first + PROMPTS_PER_TASK).min(n_prompts);
        let len = (pair_offsets[last] - pair_offsets[first]) as usize;
        let (c, c_tail) = c_rest.split_at_mut(len);
        let (r, r_tail) = r_rest.split_at_mut(len);
        targets.push((first..last, c, r));
        (c_rest, r_rest) = (c_tail, r_tail);
    }
    targets
        .into_par_iter()
        .for_each(|(prompts, mut c_rest, mut r_rest)| {
            let task = Task {
                view,
                inputs,
                first: prompts.start,
                options,
            };
            let mut scratch = Scratch::default();
            let mut words = [0; SMALL_PAIRS];
            for p in prompts {
                let len = (pair_offsets[p + 1] - pair_offsets[p]) as usize;
                if len == 0 {
                    continue;
                }
                // The prompt's own slices, of exactly its pairs.
                let (c_out, c_tail) = std::mem::take(&mut c_rest).split_at_mut(len);
                let (r_out, r_tail) = std::mem::take(&mut r_rest).split_at_mut(len);
                (c_rest, r_rest) = (c_tail, r_tail);
                let (start, end) = (inputs.offsets[p] as usize, inputs.offsets[p + 1] as usize);
                let prompt = task.prompt(start, end);
                if !prompt.small_all_pairs(start, &mut words, c_out, r_out) {
                    let mut at = 0;
                    prompt.ranked(&mut scratch, &mut |c, r| {
                        c_out[at] = (start + c) as i64;
                        r_out[at] = (start + r) as i64;
                        at += 1;
                    });
                }
            }
        });
    (chosen, rejected)
}

/// Checks and selects for the prompts of one task; `bounds` are their offsets, `first` the
/// index of the task's first prompt; writes each prompt's status, and its number of pairs
/// in the task up to and including it, into `per_prompt`. After a bad value only the
/// offsets are still checked, since an offsets problem later in the task would outrank it.
fn select_task<V: Rewards, P: Sink>(
    view: V,
    inputs: &Inputs<'_>,
    bounds: &[i64],
    first: usize,
    options: &Options,
    per_prompt: (&mut [u8], &mut [i64]),
    pairs: P,
) -> TaskOut<P> {
    let (status, ends) = per_prompt;
    let n_scores = view.len() as i64;
    let mut out = TaskOut {
        pairs,
        problem: None,
    };
    // The task's first start is the previous prompt's end. If that is outside the arrays,
    // the previous prompt's own check fails (its end is below its start, which is at least
    // 0 by induction from offsets[0] == 0, or past the end), and its task reports it.
    if !(0..=n_scores).contains(&bounds[0]) {
        return out;
    }
    // See [`Prompt::first_picks`].
    let quick_method = match options.method {
        Method::MaxMin | Method::MaxMax | Method::Random | Method::MaxRandom => {
            options.pairs_per_prompt == 1
        }
        Method::TopBottom => options.pairs_per_prompt <= TOP_BOTTOM_STREAMED,
        Method::Adjacent | Method::AllPairs => false,
    };
    if let (true, Some(width)) = (quick_method, uniform_width(bounds, n_scores)) {
        lanes::by_width!(width, |N| {
            let start = bounds[0] as usize;
            let copies = inputs
                .duplicate_of
                .map(|d| &d[start..start + N * status.len()]);
            // Where no response is a copy, as in nearly every dataset, every one is its own
            // first occurrence: the same as no duplicate indices.
            if copies.is_none_or(no_copies::<N>) {
                let inputs = Inputs {
                    duplicate_of: None,
                    ..*inputs
                };
                let task = Task {
                    view,
                    inputs: &inputs,
                    first,
                    options,
                };
                return task.uniform::<_, N>(start, (status, ends), out);
            }
        }, else {});
    }
    let quick = quick_method && inputs.duplicate_of.is_none();
    let task = Task {
        view,
        inputs,
        first,
        options,
    };
    let mut scratch = Scratch::default();
    for (i, range) in bounds.windows(2).enumerate() {
        let prompt = first + i;
        let (start, end) = (range[0], range[1]);
        if end < start {
            out.problem = Some(Problem::Offsets(PairError::OffsetsDecrease {
                prompt,
                start,
                end,
            }));
            return out;
        }
        if end > n_scores {
            out.problem = Some(Problem::Offsets(PairError::OffsetsPastEnd {
                prompt,
                end,
                n_scores: n_scores as usize,
            }));
            return out;
        }
        if out.problem.is_some() {
            continue;
        }
        let (start, end) = (start as usize, end as usize);
        let prompt_view = task.prompt(start, end);
        let key = task.key(i);
        if quick {
            let mut emit =
                |c: usize, r: usize| out.pairs.push((start + c) as i64, (start + r) as i64);
            if prompt_view.first_picks::<AnyWidth>(options.seed, key, &mut emit) {
                status[i] = Status::Paired as u8;
                ends[i] = out.pairs.len() as i64;
                continue;
            }
        }
        task.select(
            &prompt_view,
            i,
            start,
            &mut scratch,
            &mut out,
            (&mut status[i], &mut ends[i]),
        );
    }
    out
}

/// The width every prompt of a task has, when its prompts lie within the `n_scores` responses
/// and each is as wide as the first, so that no offsets check can fail in it.
fn uniform_width(bounds: &[i64], n_scores: i64) -> Option<usize> {
    let (start, width) = (bounds[0], bounds[1].wrapping_sub(bounds[0]));
    let end = *bounds.last()?;
    // One pass without a branch per prompt: every bound where the width puts it. Wrapping,
    // since offsets may be anything; the widths taken (16 at most) never wrap.
    let misplaced = bounds.iter().zip(0..).fold(0, |any, (&b, i)| {
        any | (b ^ start.wrapping_add(width.wrapping_mul(i)))
    });
    (misplaced == 0 && width >= 0 && end <= n_scores).then_some(width as usize)
}

/// Whether each prompt of `N` responses in `duplicate_of` is its own first occurrence
/// throughout (`0, 1, ..., N - 1`), in one pass without a branch per response.
fn no_copies<const N: usize>(duplicate_of: &[i64]) -> bool {
    let misplaced = duplicate_of.chunks_exact(N).fold(0, |any, prompt| {
        prompt
            .iter()
            .zip(0..)
            .fold(any, |any, (&d, k)| any | (d ^ k))
    });
    misplaced == 0
}

/// How far ahead of the prompt being read its task's inputs are prefetched, in responses:
/// a 4 KiB page of `f64`s. The hardware prefetcher follows a stream only within a page, so
/// without this each prompt waited on memory: `max_min` on 1M x 8 took 40 ms on one thread,
/// 14.7 ms with it (the gain is flat from 256 to 2048 here).
const PREFETCH_AHEAD: usize = 512;

/// What the prompts of one task share.
struct Task<'a, V> {
    view: V,
    inputs: &'a Inputs<'a>,
    /// Index of the task's first prompt.
    first: usize,
    options: &'a Options,
}

impl<'a, V: Rewards> Task<'a, V> {
    /// The responses `start..end`, with the inputs [`PREFETCH_AHEAD`] responses on asked
    /// into cache: every pass over prompts takes each one's view from here.
    #[inline(always)]
    fn prompt(&self, start: usize, end: usize) -> Prompt<'a, V> {
        self.view.prefetch(start + PREFETCH_AHEAD);
        Prompt {
            view: self.view.cut(start, end),
            duplicate_of: self.inputs.duplicate_of.map(|d| &d[start..end]),
            options: self.options,
        }
    }

    /// The key of the random stream of the task's prompt `i`.
    #[inline(always)]
    fn key(&self, i: usize) -> u64 {
        match self.inputs.keys {
            Some(keys) => keys[self.first + i],
            None => self.options.first_key.wrapping_add((self.first + i) as u64),
        }
    }

    /// The task's prompts when all are `N` wide from response `start` on, which
    /// [`uniform_width`] found: no offsets check, and each prompt's first picks over lanes
    /// of a width known here, not looked up per prompt. A bad value ends the task, since no
    /// offsets problem can follow to outrank it.
    fn uniform<P: Sink, const N: usize>(
        &self,
        start: usize,
        per_prompt: (&mut [u8], &mut [i64]),
        mut out: TaskOut<P>,
    ) -> TaskOut<P> {
        let mut scratch = Scratch::default();
        let (status, ends) = per_prompt;
        for (i, (status, end)) in status.iter_mut().zip(ends.iter_mut()).enumerate() {
            let start = start + i * N;
            let prompt_view = self.prompt(start, start + N);
            let key = self.key(i);
            let mut emit =
                |c: usize, r: usize| out.pairs.push((start + c) as i64, (start + r) as i64);
            if prompt_view.first_picks::<Width<N>>(self.options.seed, key, &mut emit) {
                *status = Status::Paired as u8;
                *end = out.pairs.len() as i64;
                continue;
            }
            self.select(
                &prompt_view,
                i,
                start,
                &mut scratch,
                &mut out,
                (status, end),
            );
            if out.problem.is_some() {
                break;
            }
        }
        out
    }

    /// [`Prompt::select`] for the task's prompt `i` (responses from `start` on), into `out` and
    /// its `status` and `end` (the task's pairs up to it); a bad value becomes `out`'s problem.
    fn select<P: Sink>(
        &self,
        prompt_view: &Prompt<'_, V>,
        i: usize,
        start: usize,
        scratch: &mut Scratch,
        out: &mut TaskOut<P>,
        (status, end): (&mut u8, &mut i64),
    ) {
        let prompt = self.first + i;
        let before = out.pairs.len();
        let mut emit = |c: usize, r: usize| out.pairs.push((start + c) as i64, (start + r) as i64);
        let seed = self.options.seed;
        match prompt_view.select(P::COUNT_ONLY, seed, self.key(i), scratch, &mut emit) {
            Ok(found) => *status = found as u8,
            Err((k, bad)) => {
                let index = start + k;
                let err = match bad {
                    Found::Value(bad) => value_error(bad, index, prompt, k),
                    Found::Duplicate(value) => PairError::BadDuplicate {
                        index,
                        prompt,
                        response: k,
                        value,
                    },
                };
                out.problem = Some(Problem::Value(index, err));
                out.pairs.truncate(before);
                return;
            }
        }
        *end = out.pairs.len() as i64;
    }
}

/// What is wrong with a response: a score or length, or its duplicate index.
enum Found {
    Value(Bad),
    Duplicate(i64),
}

/// Buffers reused across a task's prompts, so that no prompt allocates.
#[derive(Default)]
struct Scratch {
    /// Candidates (local indices), in ranking order once ranked.
    ranked: Vec<usize>,
    /// Candidates in the order worst first (`max_min`'s lower end).
    worst_first: Vec<usize>,
    /// Position of each local index in `ranked` (`usize::MAX`: not a candidate).
    position: Vec<usize>,
    /// Penalised reward of each local index (once ranked).
    rewards: Vec<f64>,
    /// Eligible pairs as (margin key, order found, chosen, rejected), before sorting; the
    /// key ([`margin_key`]) sorts largest margin first.
    pairs: Vec<(u64, usize, usize, usize)>,
    /// The pairs as sort words (see [`by_margin`]).
    packed: Vec<u64>,
    /// Pairs already drawn (smaller index first).
    taken: Vec<(usize, usize)>,
}

/// How far a pair got through the filters, in their order; the furthest any pair of a
/// prompt got decides the status of a prompt without pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Nothing,
    /// Failed the tie rule.
    Tie,
    /// Failed `min_margin`.
    Margin,
    /// Failed the length limits.
    Length,
}

impl Reached {
    fn status(self) -> Status {
        match self {
            Self::Nothing | Self::Tie => Status::Tie,
            Self::Margin => Status::BelowMinMargin,
            Self::Length => Status::LengthLimits,
        }
    }
}

/// The filter a pair failed, or its (chosen, rejected) orientation.
enum Check {
    Failed(Reached),
    Eligible(usize, usize),
}

/// One prompt's responses, as rewards, with their duplicate indices.
struct Prompt<'a, V> {
    view: V,
    duplicate_of: Option<&'a [i64]>,
    options: &'a Options,
}

impl<V: Rewards> Prompt<'_, V> {
    #[inline]
    fn is_candidate(&self, k: usize) -> bool {
        self.duplicate_of.is_none_or(|d| d[k] == k as i64)
    }

    /// The filters, in order, for the pair whose first pick is `a` and second `b`: the tie
    /// rule, the margin, the length limits. A tied pair's chosen is the first pick under the
    /// dpov2 tie order, the second under LMFlow's.
    #[inline(always)]
    fn check(&self, a: usize, b: usize) -> Check {
        self.check_rewards(a, b, self.view.reward(a), self.view.reward(b))
    }

    /// [`Self::check`] given the two penalised rewards, `ra` of `a` and `rb` of `b`.
    #[inline(always)]
    fn check_rewards(&self, a: usize, b: usize, ra: f64, rb: f64) -> Check {
        let o = self.options;
        let Some((c, r)) = self.orient(a, b, ra, rb) else {
            return Check::Failed(Reached::Tie);
        };
        if o.filtered() {
            if let Some(failed) = self.filters(c, r) {
                return Check::Failed(failed);
            }
        }
        Check::Eligible(c, r)
    }

    /// The tie rule of [`Self::check_rewards`] and its orientation: `(chosen, rejected)`, or
    /// `None` for a tie that is not kept. The orientation is a select, not a branch: for
    /// `random`'s draws it is a coin toss, which mispredicted every other prompt.
    #[inline(always)]
    fn orient(&self, a: usize, b: usize, ra: f64, rb: f64) -> Option<(usize, usize)> {
        let o = self.options;
        if ra == rb && !o.keep_ties {
            return None;
        }
        let first = (ra > rb) | ((ra == rb) & (o.tie_order == TieOrder::Dpov2));
        Some((
            select_unpredictable(first, a, b),
            select_unpredictable(first, b, a),
        ))
    }

    /// The margin and length limits for the pair (`c` chosen, `r` rejected): the first it
    /// fails, if any.
    #[inline(never)]
    fn filters(&self, c: usize, r: usize) -> Option<Reached> {
        let o = self.options;
        if let Some(min_margin) = o.min_margin {
            let margin = match o.margin_from {
                MarginFrom::Raw => self.view.score(c) - self.view.score(r),
                MarginFrom::Penalized => self.view.reward(c) - self.view.reward(r),
            } * o.margin_scale;
            if margin < min_margin {
                return Some(Reached::Margin);
            }
        }
        if o.max_length_ratio.is_some() || o.max_length_diff.is_some() {
            let (la, lb) = (self.view.length(c), self.view.length(r));
            let (la, lb) = (la.unwrap_or(0.0), lb.unwrap_or(0.0));
            let (long, short) = if la >= lb { (la, lb) } else { (lb, la) };
            let over_ratio = o.max_length_ratio.is_some_and(|q| long > q * short);
            let over_diff = o.max_length_diff.is_some_and(|d| long - short > d);
            if over_ratio || over_diff {
                return Some(Reached::Length);
            }
        }
        None
    }

    /// Emits the pairs, as (chosen, rejected), of a prompt without copies under `max_min`,
    /// `max_max`, `random` or `max_random` with one pair per prompt, or `top_bottom` with at
    /// most `TOP_BOTTOM_STREAMED`, when they are the method's first picks: its extremes or its
    /// first draw, whenever those pairs are eligible. False, having emitted nothing, for a
    /// first pick that is not eligible, fewer than two responses or a bad value:
    /// [`Self::select`] then decides. One
    /// tight read of the prompt, as before pairs per prompt and filters existed, for what
    /// nearly every prompt of these methods is.
    #[inline(always)]
    fn first_picks<W: Widths>(
        &self,
        seed: u64,
        key: u64,
        emit: &mut impl FnMut(usize, usize),
    ) -> bool {
        self.try_first_picks::<W>(seed, key, emit).is_some()
    }

    /// [`Self::first_picks`], `None` for false.
    #[inline(always)]
    fn try_first_picks<W: Widths>(
        &self,
        seed: u64,
        key: u64,
        emit: &mut impl FnMut(usize, usize),
    ) -> Option<()> {
        let n = self.view.len();
        let drawn = |(a, b)| [(a, self.view.reward(a)), (b, self.view.reward(b))];
        let [(a, ra), (b, rb)] = match self.options.method {
            Method::MaxMin => W::rank::<BestAndWorst>(self.view)?,
            Method::MaxMax => match self.options.tie_order {
                TieOrder::Dpov2 => W::rank::<BestTwo<false>>(self.view)?,
                TieOrder::Lmflow => W::rank::<BestTwo<true>>(self.view)?,
            },
            Method::MaxRandom => {
                let best = W::rank::<Best>(self.view)?;
                drawn((best, draw_other(&mut PromptRng::new(seed, key), n, best)))
            }
            Method::Random => {
                W::rank::<Unranked>(self.view)?;
                drawn(draw_two(&mut PromptRng::new(seed, key), n))
            }
            Method::TopBottom => {
                let ends = match self.options.tie_order {
                    TieOrder::Dpov2 => W::rank::<Ends<false, true>>(self.view),
                    TieOrder::Lmflow => W::rank::<Ends<true, false>>(self.view),
                };
                emit_picks(self.top_bottom(ends?)?, emit);
                return Some(());
            }
            _ => return None,
        };
        match self.check_rewards(a, b, ra, rb) {
            Check::Eligible(c, r) => {
                emit(c, r);
                Some(())
            }
            Check::Failed(_) => None,
        }
    }

    /// Validates the prompt, then emits its pairs and returns its status; `Err` names the
    /// first bad response (local index).
    fn select(
        &self,
        count_only: bool,
        seed: u64,
        key: u64,
        scratch: &mut Scratch,
        emit: &mut impl FnMut(usize, usize),
    ) -> Result<Status, (usize, Found)> {
        let method = self.options.method;
        let fast = self.options.pairs_per_prompt == 1;
        // One read validates and, for the methods that can, ranks.
        let streamed = match method {
            Method::MaxMin if fast => stream::<BestAndWorst>(self.view).map(Streamed::Pair),
            Method::MaxMax if fast => match self.options.tie_order {
                TieOrder::Dpov2 => stream::<BestTwo<false>>(self.view).map(Streamed::Pair),
                TieOrder::Lmflow => stream::<BestTwo<true>>(self.view).map(Streamed::Pair),
            },
            Method::MaxRandom => stream::<Best>(self.view).map(Streamed::Best),
            Method::TopBottom if self.options.pairs_per_prompt <= TOP_BOTTOM_STREAMED => {
                match self.options.tie_order {
                    TieOrder::Dpov2 => stream::<Ends<false, true>>(self.view).map(Streamed::Ends),
                    TieOrder::Lmflow => stream::<Ends<true, false>>(self.view).map(Streamed::Ends),
                }
            }
            _ => stream::<Unranked>(self.view).map(|_| Streamed::Nothing),
        };
        // The first bad response in index order; its score and length before its copy index.
        let (streamed, has_copies) = match (streamed, self.check_duplicates()) {
            (Err((kv, _)), Err((kd, of))) if kd < kv => return Err((kd, Found::Duplicate(of))),
            (Err((kv, bad)), _) => return Err((kv, Found::Value(bad))),
            (_, Err((kd, of))) => return Err((kd, Found::Duplicate(of))),
            (Ok(streamed), Ok(copies)) => (streamed, copies),
        };
        let n = self.view.len();
        if n < 2 {
            return Ok(Status::TooFewResponses);
        }
        if has_copies && (0..n).filter(|&k| self.is_candidate(k)).nth(1).is_none() {
            return Ok(Status::DuplicateResponses);
        }
        Ok(match (streamed, method) {
            (Streamed::Pair(Some([(a, ra), (b, rb)])), _) if !has_copies => {
                if let Check::Eligible(c, r) = self.check_rewards(a, b, ra, rb) {
                    emit(c, r);
                    return Ok(Status::Paired);
                }
                self.ranked(scratch, emit)
            }
            (_, Method::Random) => self.draw_random(seed, key, scratch, emit),
            (_, Method::AllPairs) if count_only => self.count_all_pairs(&mut scratch.rewards, emit),
            (Streamed::Ends(Some(ends)), _) if !has_copies => match self.top_bottom(ends) {
                Some(picks) => {
                    emit_picks(picks, emit);
                    Status::Paired
                }
                None => self.ranked(scratch, emit),
            },
            (streamed, Method::MaxRandom) => {
                let best = match streamed {
                    Streamed::Best(Some(best)) if !has_copies => best,
                    _ => self.first_best(),
                };
                self.draw_max_random(best, seed, key, scratch, emit)
            }
            _ => self.ranked(scratch, emit),
        })
    }

    /// Whether some response is a later copy of another; `Err` for an index that does not
    /// name a first occurrence at or before it.
    fn check_duplicates(&self) -> Result<bool, (usize, i64)> {
        let Some(d) = self.duplicate_of else {
            return Ok(false);
        };
        let mut copies = false;
        for (k, &of) in d.iter().enumerate() {
            if of != k as i64 {
                let valid = (0..k as i64).contains(&of) && d[of as usize] == of;
                if !valid {
                    return Err((k, of));
                }
                copies = true;
            }
        }
        Ok(copies)
    }

    /// The first candidate of highest reward.
    fn first_best(&self) -> usize {
        let mut best = usize::MAX;
        for k in (0..self.view.len()).filter(|&k| self.is_candidate(k)) {
            if best == usize::MAX || self.view.reward(k) > self.view.reward(best) {
                best = k;
            }
        }
        best
    }

    /// Candidates into `scratch.ranked`, best first: by penalised reward, equal rewards by
    /// index (the lower first, or the higher with `later_first`).
    /// Also leaves each response's penalised reward in `rewards`.
    fn rank(&self, ranked: &mut Vec<usize>, rewards: &mut Vec<f64>, later_first: bool) {
        rewards.clear();
        rewards.extend(self.view.scan().map(|(r, _)| r));
        ranked.clear();
        ranked.extend((0..self.view.len()).filter(|&k| self.is_candidate(k)));
        let v = &rewards[..];
        // Counting over lanes of local indices, in 8 or 16 of them.
        if v.len() <= 8 {
            rank_by_counting::<8>(v, ranked, later_first);
        } else if v.len() <= SMALL {
            rank_by_counting::<SMALL>(v, ranked, later_first);
        } else {
            ranked.sort_unstable_by(|&x, &y| {
                ranks_above(v, later_first, y, x).cmp(&ranks_above(v, later_first, x, y))
            });
        }
    }

    /// `all_pairs` without the order: emits its eligible pairs (at most `pairs_per_prompt`,
    /// not in preference order, unfiltered not even oriented) and returns the status
    /// [`Self::ranked`] would. Each pair is
    /// checked with its first pick first, as in ranking order: for unequal rewards the
    /// higher, for equal ones the lower index (the higher under the `lmflow` tie order).
    fn count_all_pairs(
        &self,
        rewards: &mut Vec<f64>,
        emit: &mut impl FnMut(usize, usize),
    ) -> Status {
        let o = self.options;
        let later_first = o.tie_order == TieOrder::Lmflow;
        let n = self.view.len();
        rewards.clear();
        rewards.extend(self.view.scan().map(|(r, _)| r));
        let rw = &rewards[..];
        let mut reached = Reached::Nothing;
        let mut emitted = 0;
        if !o.filtered() {
            // Only the tie rule can fail a pair, and only the count is wanted: no orienting.
            // Without copies or ties (nearly every prompt), every pair is eligible: the first
            // `pairs_per_prompt` in index order, a row at a time with no test per pair, after
            // one look for ties ([`has_ties`]).
            if self.duplicate_of.is_none() && (o.keep_ties || !has_ties(rw)) {
                let mut left = o.pairs_per_prompt;
                for i in 0..n {
                    let row = (n - 1 - i).min(left);
                    (i + 1..=i + row).for_each(|j| emit(i, j));
                    left -= row;
                }
                return Status::Paired;
            }
            'plain: for i in (0..n).filter(|&i| self.is_candidate(i)) {
                for j in (i + 1..n).filter(|&j| self.is_candidate(j)) {
                    if o.keep_ties || rw[i] != rw[j] {
                        emit(i, j);
                        emitted += 1;
                        if emitted == o.pairs_per_prompt {
                            break 'plain;
                        }
                    }
                }
            }
            return if emitted > 0 {
                Status::Paired
            } else {
                Status::Tie
            };
        }
        'outer: for i in (0..n).filter(|&i| self.is_candidate(i)) {
            for j in (i + 1..n).filter(|&j| self.is_candidate(j)) {
                let (ri, rj) = (rw[i], rw[j]);
                let swap = ri == rj && later_first;
                let (a, b, ra, rb) = if swap { (j, i, rj, ri) } else { (i, j, ri, rj) };
                match self.check_rewards(a, b, ra, rb) {
                    Check::Eligible(c, r) => {
                        emit(c, r);
                        emitted += 1;
                        if emitted == o.pairs_per_prompt {
                            break 'outer;
                        }
                    }
                    Check::Failed(how_far) => reached = reached.max(how_far),
                }
            }
        }
        if emitted > 0 {
            Status::Paired
        } else {
            reached.status()
        }
    }

    /// `all_pairs` of a prompt of at most [`SMALL`] responses, all finite, without margin or
    /// length limits: what [`Self::ranked`] emits, with less work per pair, written into
    /// `chosen` and `rejected` (as long as the prompt's count of pairs) as flat indices from
    /// `start`. False, having written nothing, for a prompt it does not cover.
    ///
    /// No ranking: each pair of candidates, in index order, is oriented by the sign of its
    /// rewards' difference and sorted as one word, its margin key ([`margin_key`]) with the low
    /// bits ([`LOCAL_LOW`]) replaced by (chosen, rejected) as local indices. Words whose high
    /// bits differ are then in the exact order; those whose high bits are equal (equal
    /// margins, or margins a few units in the last place apart) are put into the exact order
    /// of (margin, order found in the ranking) by one pass ([`exact_pass`]) that compares
    /// their first and second picks' rankings directly. Ties have the largest key, so they
    /// come last, and only the count of pairs is written: no tie unless ties are kept.
    fn small_all_pairs(
        &self,
        start: usize,
        words: &mut [u64; SMALL_PAIRS],
        chosen: &mut [i64],
        rejected: &mut [i64],
    ) -> bool {
        let o = self.options;
        let n = self.view.len();
        if n > SMALL || o.filtered() {
            return false;
        }
        // By local index, and compacted: the candidates' rewards (`-0.0` made `0.0`, see
        // below) and local indices.
        let mut rewards = [0.0; SMALL];
        let (mut compact, mut local) = ([0.0; SMALL], [0; SMALL]);
        let mut m = 0;
        for (k, ((reward, _), slot)) in self.view.scan().zip(&mut rewards).enumerate() {
            *slot = reward;
            compact[m] = reward + 0.0;
            local[m] = k;
            m += usize::from(self.is_candidate(k));
        }
        // Infinite rewards (from a huge penalty) make NaN differences: those prompts rank.
        if !rewards.iter().all(|r| r.is_finite()) {
            return false;
        }
        let words = &mut words[..m * m.saturating_sub(1) / 2];
        let mut rest = &mut words[..];
        for (u, (&ri, &i)) in compact[..m].iter().zip(&local[..m]).enumerate() {
            // Row `u`: its pairs with the later candidates.
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(m - 1 - u);
            rest = tail;
            let pairs = row.iter_mut().zip(&compact[u + 1..m]).zip(&local[u + 1..m]);
            for ((slot, &rj), &j) in pairs {
                // Finite rewards, no `-0.0`: `ri - rj` is `+0.0` for a tie (`-0.0 - 0.0` would
                // be `-0.0`), else negative when `j` is chosen. Of a tie, the lower index is
                // chosen under either tie order (dpov2's first pick; LMFlow's second, as LMFlow
                // ranks later first). The magnitude is the margin `rc - rr` exactly, since
                // negating is exact.
                let difference = (ri - rj).to_bits();
                let second_chosen = (difference as i64) < 0;
                let picks =
                    select_unpredictable(second_chosen, j << SMALL_BITS | i, i << SMALL_BITS | j);
                // The margin key's high bits, `!margin_bits & !LOCAL_LOW`.
                let high = (difference & MAGNITUDE & !LOCAL_LOW) ^ !LOCAL_LOW;
                *slot = high | picks as u64;
            }
        }
        words.sort_unstable();
        if write_small(words, start, chosen, rejected) {
            return true;
        }
        let later_first = o.tie_order == TieOrder::Lmflow;
        exact_pass(words, LOCAL_LOW, |x, y| {
            let ((cx, rx), (cy, ry)) = (pick(x), pick(y));
            let key = |c: usize, r: usize| margin_key(margin(rewards[c], rewards[r]));
            let (kx, ky) = (key(cx, rx), key(cy, ry));
            if kx != ky {
                return kx > ky;
            }
            // Equal margins: by order found, that is by first pick, then by second pick, in
            // ranking order. LMFlow's first pick of a tie is the later index, here `r`.
            let firsts = |c, r| {
                if later_first && rewards[c] == rewards[r] {
                    (r, c)
                } else {
                    (c, r)
                }
            };
            let ((ax, bx), (ay, by)) = (firsts(cx, rx), firsts(cy, ry));
            let ranks_above = |y: usize, x: usize| ranks_above(&rewards, later_first, y, x);
            if ax != ay {
                ranks_above(ay, ax)
            } else {
                ranks_above(by, bx)
            }
        });
        write_small(words, start, chosen, rejected);
        true
    }

    /// `top_bottom` from the two best and two worst of the one read, with their rewards
    /// (`ends`: positions 0, 1, `m - 1`, `m - 2` of the ranking): its `k <= 2` pairs when they
    /// are all eligible (then they are the answer), else `None` ([`Self::ranked`] decides).
    #[inline(always)]
    fn top_bottom(&self, ends: [(usize, f64); 4]) -> Option<Picks> {
        let k = self.options.pairs_per_prompt;
        // Pair i needs positions i < m - 1 - i.
        if k == 2 && self.view.len() < 4 {
            return None;
        }
        let [(t, rt), (n, rn), (b, rb), (a, ra)] = ends;
        // Straight-line code: a loop over `k` pairs of arrays stayed a loop over memory. The
        // filters, checked once for both pairs, come after both tie rules: the order of
        // the checks is not seen, since any failed check leaves the prompt to `ranked`.
        let first = self.orient(t, b, rt, rb)?;
        let second = if k == 2 {
            self.orient(n, a, rn, ra)?
        } else {
            first
        };
        if self.options.filtered()
            && (self.filters(first.0, first.1).is_some()
                || (k == 2 && self.filters(second.0, second.1).is_some()))
        {
            return None;
        }
        Some(([first, second], k))
    }

    /// The deterministic methods: their pairs in preference order, the first
    /// `pairs_per_prompt` eligible ones emitted.
    fn ranked(&self, scratch: &mut Scratch, emit: &mut impl FnMut(usize, usize)) -> Status {
        let o = self.options;
        let method = o.method;
        // LMFlow's max_min takes np.argmax and np.argmin: the first index either way.
        let later_first = o.tie_order == TieOrder::Lmflow && method != Method::MaxMin;
        self.rank(&mut scratch.ranked, &mut scratch.rewards, later_first);
        let ranked = &scratch.ranked;
        let rw = &scratch.rewards[..];
        let m = ranked.len();
        let mut reached = Reached::Nothing;
        let mut emitted = 0;
        // Considers one pair; true once enough pairs are emitted.
        let mut consider = |a: usize, b: usize| match self.check_rewards(a, b, rw[a], rw[b]) {
            Check::Eligible(c, r) => {
                emit(c, r);
                emitted += 1;
                emitted == o.pairs_per_prompt
            }
            Check::Failed(how_far) => {
                reached = reached.max(how_far);
                false
            }
        };
        match method {
            Method::MaxMax => {
                'outer: for u in 0..m {
                    for v in u + 1..m {
                        if consider(ranked[u], ranked[v]) {
                            break 'outer;
                        }
                    }
                }
            }
            Method::MaxMin => {
                let worst_first = &mut scratch.worst_first;
                worst_first.clear();
                worst_first.extend(ranked.iter().rev());
                // Worst first, equal rewards lower index first (np.argmin's choice).
                worst_first.sort_unstable_by(|&x, &y| order(rw[x], rw[y]).then(x.cmp(&y)));
                let position = &mut scratch.position;
                position.clear();
                position.resize(self.view.len(), usize::MAX);
                for (p, &k) in ranked.iter().enumerate() {
                    position[k] = p;
                }
                'outer: for (u, &upper) in ranked.iter().enumerate() {
                    for &lower in worst_first.iter() {
                        if position[lower] > u && consider(upper, lower) {
                            break 'outer;
                        }
                    }
                }
            }
            Method::TopBottom => {
                for i in 0..m / 2 {
                    if consider(ranked[i], ranked[m - 1 - i]) {
                        break;
                    }
                }
            }
            Method::Adjacent | Method::AllPairs => {
                // Every eligible pair of the method, then largest margin first, equal
                // margins in ranking order (the order they were found in).
                let pairs = &mut scratch.pairs;
                pairs.clear();
                let mut keep = |a: usize, b: usize| match self.check_rewards(a, b, rw[a], rw[b]) {
                    Check::Eligible(c, r) => {
                        let found = pairs.len();
                        pairs.push((margin_key(margin(rw[c], rw[r])), found, c, r));
                    }
                    Check::Failed(how_far) => reached = reached.max(how_far),
                };
                if method == Method::Adjacent {
                    for w in ranked.windows(2) {
                        keep(w[0], w[1]);
                    }
                } else {
                    for u in 0..m {
                        for w in u + 1..m {
                            keep(ranked[u], ranked[w]);
                        }
                    }
                }
                emitted = by_margin(pairs, &mut scratch.packed, o.pairs_per_prompt, emit);
            }
            Method::Random | Method::MaxRandom => unreachable!("drawn, not ranked"),
        }
        if emitted > 0 {
            Status::Paired
        } else {
            reached.status()
        }
    }

    /// `random`: each draw is one uniform draw over all pairs of responses, taken if it is
    /// an eligible pair of candidates not drawn before; else one uniform draw over the
    /// eligible pairs not drawn before, in index order. Either way every such pair is
    /// equally likely (1/N + (1 - M/N)/M = 1/M for M of N pairs).
    fn draw_random(
        &self,
        seed: u64,
        key: u64,
        scratch: &mut Scratch,
        emit: &mut impl FnMut(usize, usize),
    ) -> Status {
        let n = self.view.len();
        let mut rng = PromptRng::new(seed, key);
        let taken = &mut scratch.taken;
        taken.clear();
        let mut reached = Reached::Nothing;
        for _ in 0..self.options.pairs_per_prompt {
            let (a, b) = draw_two(&mut rng, n);
            let pair = (a.min(b), a.max(b));
            if self.is_candidate(a) && self.is_candidate(b) && !taken.contains(&pair) {
                if let Check::Eligible(c, r) = self.check(a, b) {
                    emit(c, r);
                    taken.push(pair);
                    continue;
                }
            }
            match self.draw_open(&mut rng, taken, &mut reached) {
                Some((i, j, c, r)) => {
                    emit(c, r);
                    taken.push((i, j));
                }
                None => break,
            }
        }
        if taken.is_empty() {
            reached.status()
        } else {
            Status::Paired
        }
    }

    /// The fallback draw of `random`: uniform over the eligible pairs of candidates not
    /// drawn yet, in index order, as `(i, j, chosen, rejected)`; `None` when there are none.
    /// Also records how far every pair got through the filters.
    #[cold]
    #[inline(never)]
    fn draw_open(
        &self,
        rng: &mut PromptRng,
        taken: &[(usize, usize)],
        reached: &mut Reached,
    ) -> Option<(usize, usize, usize, usize)> {
        let n = self.view.len();
        let candidates = || (0..n).filter(|&k| self.is_candidate(k));
        let open = || {
            candidates()
                .flat_map(move |i| candidates().filter(move |&j| j > i).map(move |j| (i, j)))
        };
        let mut count = 0u64;
        for (i, j) in open() {
            match self.check(i, j) {
                Check::Eligible(..) if !taken.contains(&(i, j)) => count += 1,
                Check::Eligible(..) => {}
                Check::Failed(how_far) => *reached = (*reached).max(how_far),
            }
        }
        if count == 0 {
            return None;
        }
        let t = rng.below(count) as usize;
        open()
            .filter_map(|(i, j)| match self.check(i, j) {
                Check::Eligible(c, r) if !taken.contains(&(i, j)) => Some((i, j, c, r)),
                _ => None,
            })
            .nth(t)
    }

    /// `max_random`: the anchor is the best candidate, or (when no pair with it is
    /// eligible) the highest-ranked candidate with an eligible pair; each draw is one
    /// uniform draw over the best's other responses, taken if eligible and new, else one
    /// uniform draw over the anchor's eligible partners not drawn before, in index order.
    fn draw_max_random(
        &self,
        best: usize,
        seed: u64,
        key: u64,
        scratch: &mut Scratch,
        emit: &mut impl FnMut(usize, usize),
    ) -> Status {
        let n = self.view.len();
        let mut rng = PromptRng::new(seed, key);
        let mut anchor: Option<Option<usize>> = None;
        let mut reached = Reached::Nothing;
        scratch.taken.clear();
        for _ in 0..self.options.pairs_per_prompt {
            let b = draw_other(&mut rng, n, best);
            if self.is_candidate(b) && !scratch.taken.contains(&(b, b)) {
                if let Check::Eligible(c, r) = self.check(best, b) {
                    emit(c, r);
                    scratch.taken.push((b, b));
                    continue;
                }
            }
            let found = *anchor.get_or_insert_with(|| {
                self.rank(&mut scratch.ranked, &mut scratch.rewards, false);
                scratch.ranked.iter().copied().find(|&x| {
                    let mut any = false;
                    for y in (0..n).filter(|&y| y != x && self.is_candidate(y)) {
                        match self.check(x, y) {
                            Check::Eligible(..) => any = true,
                            Check::Failed(how_far) => reached = reached.max(how_far),
                        }
                    }
                    any
                })
            });
            let Some(a) = found else { break };
            let taken = &scratch.taken;
            let open = || {
                (0..n)
                    .filter(move |&y| y != a && self.is_candidate(y) && !taken.contains(&(y, y)))
                    .filter_map(move |y| match self.check(a, y) {
                        Check::Eligible(c, r) => Some((y, c, r)),
                        Check::Failed(_) => None,
                    })
            };
            let count = open().count() as u64;
            if count == 0 {
                break;
            }
            if let Some((y, c, r)) = open().nth(rng.below(count) as usize) {
                emit(c, r);
                scratch.taken.push((y, y));
            }
        }
        if scratch.taken.is_empty() {
            reached.status()
        } else {
            Status::Paired
        }
    }
}

/// Emits the first `k` of `pairs` (as gathered, in the order found) by largest margin, equal
/// margins in the order found; returns how many.
///
/// With few pairs, each is sorted as one word: its key with the low bits replaced by its
/// order found. Sorting words is branch-free and fast; it orders the pairs exactly except
/// among keys that differ only in those low bits, which one insertion pass on the exact
/// (key, order found) then puts right (nearly sorted, so that pass is linear).
fn by_margin(
    pairs: &mut Vec<(u64, usize, usize, usize)>,
    packed: &mut Vec<u64>,
    k: usize,
    emit: &mut impl FnMut(usize, usize),
) -> usize {
    let n = pairs.len();
    let bits = found_bits(n);
    if bits > PACKED_BITS {
        // (key, order found) is unique, so the unstable sort is the stable order.
        if k < n {
            pairs.select_nth_unstable(k - 1);
            pairs.truncate(k);
        }
        pairs.sort_unstable();
        pairs.iter().for_each(|&(_, _, c, r)| emit(c, r));
        return pairs.len();
    }
    let low = (1u64 << bits) - 1;
    packed.clear();
    packed.extend(
        pairs
            .iter()
            .map(|&(key, found, ..)| key & !low | found as u64),
    );
    packed.sort_unstable();
    let exact = |word: u64| {
        let found = (word & low) as usize;
        (pairs[found].0, found)
    };
    exact_pass(packed, low, |x, y| exact(x) > exact(y));
    for &word in packed.iter().take(k) {
        let (_, _, c, r) = pairs[(word & low) as usize];
        emit(c, r);
    }
    n.min(k)
}

/// The (chosen, rejected) local indices of a word of [`Prompt::small_all_pairs`].
#[inline(always)]
fn pick(word: u64) -> (usize, usize) {
    let picks = (word & LOCAL_LOW) as usize;
    (picks >> SMALL_BITS, picks & (SMALL - 1))
}

/// Writes the pairs of the first `chosen.len()` of `words` (sorted words of
/// [`Prompt::small_all_pairs`], at least that many) as flat indices from `start`. True when
/// their order is sure to be exact: no word among them, nor the one after them, has the high
/// bits of the word before it (else [`exact_pass`] may move it).
#[inline(always)]
fn write_small(words: &[u64], start: usize, chosen: &mut [i64], rejected: &mut [i64]) -> bool {
    debug_assert!(chosen.len() <= words.len());
    let same_high = |a: u64, b: u64| (a ^ b) & !LOCAL_LOW == 0;
    // No word has the high bits of its complement.
    let mut previous = !words[0];
    let mut runs = false;
    for ((c_out, r_out), &word) in chosen.iter_mut().zip(rejected.iter_mut()).zip(words) {
        runs |= same_high(word, previous);
        previous = word;
        let (c, r) = pick(word);
        *c_out = (start + c) as i64;
        *r_out = (start + r) as i64;
    }
    let next = words.get(chosen.len());
    !runs && !next.is_some_and(|&word| same_high(word, previous))
}

/// Puts `words`, sorted as packed words (a margin key whose `low` bits are replaced by what
/// tells the pairs apart), into their exact order, `after(x, y)` saying whether word `x`
/// comes after word `y` of the same high bits. Words whose high bits differ are already in
/// that order, so only runs of equal high bits can move: one insertion pass, linear when (as
/// nearly always) none does.
fn exact_pass(words: &mut [u64], low: u64, after: impl Fn(u64, u64) -> bool) {
    let same_high = |w: &[u64]| (w[0] ^ w[1]) & !low == 0;
    if !words.windows(2).any(same_high) {
        return;
    }
    let unsure = |a: u64, b: u64| (a ^ b) & !low == 0 && after(a, b);
    for i in 1..words.len() {
        let word = words[i];
        let mut j = i;
        while j > 0 && unsure(words[j - 1], word) {
            words[j] = words[j - 1];
            j -= 1;
        }
        words[j] = word;
    }
}

/// The low bits a packed word of `n` pairs keeps for its order found (`0..n`).
#[inline]
fn found_bits(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// Pairs of a prompt up to `2^PACKED_BITS` are sorted as single words by [`by_margin`]; few
/// enough that the insertion pass stays cheap even when every key differs only in low bits.
const PACKED_BITS: u32 = 8;

/// Prompts of at most this many responses are ranked by counting ([`rank_by_counting`]) and
/// take [`Prompt::small_all_pairs`], their buffers on the stack.
const SMALL: usize = 1 << SMALL_BITS;

/// The most pairs of a prompt that takes [`Prompt::small_all_pairs`].
const SMALL_PAIRS: usize = SMALL * (SMALL - 1) / 2;

/// The bits of a local index below [`SMALL`].
const SMALL_BITS: u32 = 4;

/// The low bits of [`Prompt::small_all_pairs`]' sort words: (chosen, rejected), as local
/// indices.
const LOCAL_LOW: u64 = (1 << (2 * SMALL_BITS)) - 1;

/// The bits of an `f64` but its sign.
const MAGNITUDE: u64 = !(1 << 63);

/// Whether candidate `y` ranks above candidate `x`: a higher reward, or an equal one and the
/// lower index (the higher with `later_first`). Written with `&` and `|`, not `&&` and
/// `||`, so that it compiles without branches.
#[inline]
fn ranks_above(rewards: &[f64], later_first: bool, y: usize, x: usize) -> bool {
    above((rewards[y], y), (rewards[x], x), later_first)
}

/// [`ranks_above`] for (reward, local index) `y` and `x`.
#[inline(always)]
fn above((ry, y): (f64, usize), (rx, x): (f64, usize), later_first: bool) -> bool {
    let by_index = (later_first & (y > x)) | (!later_first & (y < x));
    (ry > rx) | ((ry == rx) & by_index)
}

/// `ranked`'s candidates, local indices below `W`, put best first ([`ranks_above`]): each
/// goes to the position that counts the candidates above it, those of higher reward in one
/// count over `W` lanes (non-candidates' lanes NaN, never above) that compiles to vector
/// compares with no branch on the rewards, where a sort of a few random rewards mispredicts
/// about once per element; equal rewards, rare, are counted apart.
#[inline]
fn rank_by_counting<const W: usize>(rewards: &[f64], ranked: &mut [usize], later_first: bool) {
    let mut lanes = [f64::NAN; W];
    let mut candidates = [0; W];
    for (slot, &k) in candidates.iter_mut().zip(ranked.iter()) {
        lanes[k] = rewards[k];
        *slot = k;
    }
    for &x in &candidates[..ranked.len()] {
        let rx = lanes[x];
        let higher: usize = lanes.iter().map(|&ry| usize::from(ry > rx)).sum();
        let equal: usize = lanes.iter().map(|&ry| usize::from(ry == rx)).sum();
        // `equal` counts `x` itself.
        let tied_above = if equal > 1 {
            (0..W)
                .filter(|&y| above((lanes[y], y), (rx, x), later_first) && lanes[y] == rx)
                .count()
        } else {
            0
        };
        ranked[higher + tied_above] = x;
    }
}

/// Whether two of `rewards` are equal. Up to [`SMALL`] of them, by counting each one's equals
/// over lanes (the unused ones NaN, equal to nothing): vector compares with no branch on the
/// rewards, where a test per pair branches.
fn has_ties(rewards: &[f64]) -> bool {
    fn by_lanes<const W: usize>(rewards: &[f64]) -> bool {
        let mut lanes = [f64::NAN; W];
        lanes[..rewards.len()].copy_from_slice(rewards);
        let equal = |&r: &f64| lanes.iter().map(|&l| usize::from(l == r)).sum::<usize>();
        // Each reward equals itself.
        rewards.iter().map(equal).sum::<usize>() > rewards.len()
    }
    match rewards.len() {
        0..=8 => by_lanes::<8>(rewards),
        9..=SMALL => by_lanes::<SMALL>(rewards),
        _ => (0..rewards.len()).any(|i| rewards[i + 1..].contains(&rewards[i])),
    }
}

/// A sort key for a margin (`>= 0`, never NaN, never `-0.0`): larger margins give smaller
/// keys, since the bits of non-negative floats order as the floats do.
#[inline]
fn margin_key(margin: f64) -> u64 {
    debug_assert!(margin >= 0.0 && margin.is_sign_positive());
    !margin.to_bits()
}

/// The order of two rewards or margins, never NaN: `-0.0` equals `0.0`, as in Python.
#[inline]
fn order(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// How much `chosen` beats `rejected` by: `0` for equal rewards, also when both are infinite
/// (where the difference would be NaN).
#[inline]
fn margin(chosen: f64, rejected: f64) -> f64 {
    if chosen == rejected {
        0.0
    } else {
        chosen - rejected
    }
}

/// Up to `TOP_BOTTOM_STREAMED` pairs (chosen, rejected), the first `.1` of them valid.
type Picks = ([(usize, usize); TOP_BOTTOM_STREAMED], usize);

/// Emits the valid pairs of `picks`.
#[inline(always)]
fn emit_picks((pairs, k): Picks, emit: &mut impl FnMut(usize, usize)) {
    let [(c0, r0), (c1, r1)] = pairs;
    emit(c0, r0);
    if k == 2 {
        emit(c1, r1);
    }
}

/// What the one read of a prompt ranked.
enum Streamed {
    Pair(Option<[(usize, f64); 2]>),
    Ends(Option<[(usize, f64); 4]>),
    Best(Option<usize>),
    Nothing,
}

/// What a streaming ranking keeps track of while one prompt's rewards stream past.
trait Rank {
    type Out;
    /// The state after response 0, of reward `r0`. Response 1 is pushed like every later
    /// one: a start from two rewards compiled to a branch on which is higher.
    fn first(r0: f64) -> Self;
    /// Response `i >= 1` with reward `r`.
    fn push(&mut self, i: usize, r: f64);
    fn finish(self) -> Self::Out;
    /// What `first`, every `push` and `finish` give for the rewards `r`, from them all at
    /// once ([`lanes`]).
    fn of_lanes<const N: usize>(r: &[f64; N]) -> Self::Out;
}

/// How a prompt's first picks rank it: [`stream`]'s ranking, or `None` for fewer than two
/// responses or a bad value ([`Prompt::select`] then reads the prompt again to say which).
trait Widths {
    fn rank<K: Rank>(view: impl Rewards) -> Option<K::Out>;
}

/// Over lanes when the prompt has 2, 4, 8 or 16 responses, else streamed.
struct AnyWidth;

impl Widths for AnyWidth {
    #[inline(always)]
    fn rank<K: Rank>(view: impl Rewards) -> Option<K::Out> {
        lanes::by_width!(view.len(), |N| Width::<N>::rank::<K>(view), else {
            stream::<K>(view).ok().flatten()
        })
    }
}

/// Over lanes, for a prompt known to have `N` responses.
struct Width<const N: usize>;

impl<const N: usize> Widths for Width<N> {
    #[inline(always)]
    fn rank<K: Rank>(view: impl Rewards) -> Option<K::Out> {
        view.lanes::<N>().map(|r| K::of_lanes(&r))
    }
}

/// One read of a prompt's responses: validated, and ranked by `K`; `Ok(None)` for fewer
/// than two, or `Err` with the first bad response (local index) and what is wrong with it.
#[inline(always)]
fn stream<K: Rank>(responses: impl Rewards) -> Result<Option<K::Out>, (usize, Bad)> {
    let mut scan = responses.scan();
    let (true, Some((r0, mut valid))) = (responses.len() >= 2, scan.next()) else {
        return responses.first_bad().map_or(Ok(None), Err);
    };
    let mut rank = K::first(r0);
    for (i, (r, ok)) in scan.enumerate() {
        valid &= ok;
        rank.push(i + 1, r);
    }
    if let Some(bad) = (!valid).then(|| responses.first_bad()).flatten() {
        return Err(bad);
    }
    Ok(Some(rank.finish()))
}

/// `random`'s draw of a pair of the `n >= 2` responses: two distinct uniform indices.
#[inline]
fn draw_two(rng: &mut PromptRng, n: usize) -> (usize, usize) {
    let a = rng.below(n as u64) as usize;
    (a, draw_other(rng, n, a))
}

/// A uniform draw among the `n >= 2` responses other than `taken`.
#[inline]
fn draw_other(rng: &mut PromptRng, n: usize, taken: usize) -> usize {
    skip(rng.below(n as u64 - 1), taken)
}

/// Maps a uniform draw over the `n - 1` indices other than `taken` onto `0..n`.
#[inline]
fn skip(draw: u64, taken: usize) -> usize {
    let draw = draw as usize;
    draw + usize::from(draw >= taken)
}

/// The larger of two rewards (`b` when they are equal): one `maxsd`, where `f64::max` also
/// handles NaN, which rewards never are.
#[inline(always)]
fn larger(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

/// The smaller of two rewards (`b` when they are equal), as [`larger`].
#[inline(always)]
fn smaller(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// Validation only.
struct Unranked;

impl Rank for Unranked {
    type Out = ();
    #[inline]
    fn first(_: f64) -> Self {
        Self
    }
    #[inline]
    fn push(&mut self, _: usize, _: f64) {}
    #[inline]
    fn finish(self) {}
    #[inline(always)]
    fn of_lanes<const N: usize>(_: &[f64; N]) {}
}

/// The first index of the maximum. Like every streaming ranking here, updated by selects
/// rather than branches, which random rewards would mispredict.
struct Best {
    best: usize,
    hi: f64,
}

impl Rank for Best {
    type Out = usize;
    #[inline]
    fn first(r0: f64) -> Self {
        Self { best: 0, hi: r0 }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        self.best = select_unpredictable(r > self.hi, i, self.best);
        self.hi = larger(r, self.hi);
    }
    #[inline]
    fn finish(self) -> usize {
        self.best
    }
    #[inline(always)]
    fn of_lanes<const N: usize>(r: &[f64; N]) -> usize {
        lanes::lowest(lanes::equal(r, lanes::max(r)))
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
    type Out = [(usize, f64); 2];
    #[inline]
    fn first(r0: f64) -> Self {
        Self {
            best: Best::first(r0),
            worst: 0,
            lo: r0,
        }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        self.best.push(i, r);
        self.worst = select_unpredictable(r < self.lo, i, self.worst);
        self.lo = smaller(r, self.lo);
    }
    /// With their rewards (every reward is `lo` when the two coincide).
    #[inline]
    fn finish(self) -> [(usize, f64); 2] {
        let Best { best, hi } = self.best;
        let worst = if self.worst == best { 1 } else { self.worst };
        [(best, hi), (worst, self.lo)]
    }
    /// The rewards are the extremes found rather than the lanes read back: equal to them,
    /// up to the sign of a zero, which no comparison of rewards sees.
    #[inline(always)]
    fn of_lanes<const N: usize>(r: &[f64; N]) -> [(usize, f64); 2] {
        let (hi, lo) = (lanes::max(r), lanes::min(r));
        let best = lanes::lowest(lanes::equal(r, hi));
        let worst = lanes::lowest(lanes::equal(r, lo));
        // When the two coincide, every reward is `lo`.
        let worst = if worst == best { 1 } else { worst };
        [(best, hi), (worst, lo)]
    }
}

/// `max_max`: the first two entries of the descending order, equal rewards lower index
/// first (or, with `LATER`, higher index first: LMFlow's `np.argsort`). Written as selects
/// rather than branches, which random rewards would mispredict.
struct BestTwo<const LATER: bool> {
    best: usize,
    hi: f64,
    second: usize,
    next: f64,
}

impl<const LATER: bool> Rank for BestTwo<LATER> {
    /// With their rewards.
    type Out = [(usize, f64); 2];
    /// No second yet: `next` is below every reward but `-inf`, and `second` is 1, which the
    /// push of response 1 keeps even when its reward is `-inf`.
    #[inline]
    fn first(r0: f64) -> Self {
        Self {
            best: 0,
            hi: r0,
            second: 1,
            next: f64::NEG_INFINITY,
        }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        let (above_best, above_second) = if LATER {
            (r >= self.hi, r >= self.next)
        } else {
            (r > self.hi, r > self.next)
        };
        // Above the best is above the second too (`hi >= next`). Selects of indices that the
        // compiler is told are unpredictable, so they compile without branches.
        let second = select_unpredictable(above_second, i, self.second);
        self.second = select_unpredictable(above_best, self.best, second);
        self.best = select_unpredictable(above_best, i, self.best);
        // The values are the two largest rewards so far, whichever indices carry them.
        self.next = larger(smaller(r, self.hi), self.next);
        self.hi = larger(r, self.hi);
    }
    #[inline]
    fn finish(self) -> [(usize, f64); 2] {
        [(self.best, self.hi), (self.second, self.next)]
    }
    #[inline(always)]
    fn of_lanes<const N: usize>(r: &[f64; N]) -> [(usize, f64); 2] {
        first_two::<LATER, N>(r, lanes::top_two(r))
    }
}

/// `top_bottom`: the first two and the last two of the ranking (`LATER`: equal rewards
/// rank higher index first), as positions 0, 1, `m - 1`, `m - 2`. The last two are the
/// first two of the reversed order, that is of the negated rewards with the opposite tie
/// rule (`EARLIER == !LATER`).
struct Ends<const LATER: bool, const EARLIER: bool> {
    top: BestTwo<LATER>,
    bottom: BestTwo<EARLIER>,
}

impl<const LATER: bool, const EARLIER: bool> Rank for Ends<LATER, EARLIER> {
    /// With their rewards.
    type Out = [(usize, f64); 4];
    #[inline]
    fn first(r0: f64) -> Self {
        Self {
            top: BestTwo::first(r0),
            bottom: BestTwo::first(-r0),
        }
    }
    #[inline]
    fn push(&mut self, i: usize, r: f64) {
        self.top.push(i, r);
        self.bottom.push(i, -r);
    }
    #[inline]
    fn finish(self) -> [(usize, f64); 4] {
        let [top, next] = self.top.finish();
        let [(b0, low), (b1, above)] = self.bottom.finish();
        [top, next, (b0, -low), (b1, -above)]
    }
    #[inline(always)]
    fn of_lanes<const N: usize>(r: &[f64; N]) -> [(usize, f64); 4] {
        let [top, next] = BestTwo::<LATER>::of_lanes(r);
        let [bottom, above] = first_two::<EARLIER, N>(r, lanes::bottom_two(r));
        [top, next, bottom, above]
    }
}

/// The positions of the values `(first, second)` ([`lanes::top_two`] or
/// [`lanes::bottom_two`] of `r`), with them: each the lowest lane holding it, or with `LATER`
/// the highest, the second's lanes without the first's position (when the two are equal,
/// the first's is among them). The values are those given, equal to the lanes' own up to the
/// sign of a zero, which no comparison of rewards sees.
#[inline(always)]
fn first_two<const LATER: bool, const N: usize>(
    r: &[f64; N],
    (first, second): (f64, f64),
) -> [(usize, f64); 2] {
    let pick = if LATER { lanes::highest } else { lanes::lowest };
    let a = pick(lanes::equal(r, first));
    let b = pick(lanes::equal(r, second) & !(1 << a));
    [(a, first), (b, second)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::{Penalized, Scores};

    /// Gathers `by_margin`'s output for `keys` (in the order found) and the first `k`.
    fn ordered(keys: &[u64], k: usize) -> Vec<usize> {
        let mut pairs: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(f, &key)| (key, f, f, f))
            .collect();
        let mut out = Vec::new();
        by_margin(&mut pairs, &mut Vec::new(), k, &mut |c, _| out.push(c));
        out
    }

    /// The definition: by key, then by order found.
    fn expected(keys: &[u64], k: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&f| (keys[f], f));
        order.truncate(k);
        order
    }

    /// Every array of 2 to 5 rewards drawn from a few values with ties (and -0.0 beside 0.0,
    /// and `-inf`, which a huge length penalty gives).
    fn small_arrays() -> Vec<Vec<f64>> {
        let values = [f64::NEG_INFINITY, -1.0, -0.0, 0.0, 2.0];
        let mut arrays = vec![vec![]];
        let mut all = Vec::new();
        for _ in 0..5 {
            arrays = arrays
                .iter()
                .flat_map(|a: &Vec<f64>| values.iter().map(move |&v| [&a[..], &[v]].concat()))
                .collect();
            all.extend(arrays.iter().filter(|a| a.len() >= 2).cloned());
        }
        all
    }

    /// Indices best first: higher reward, equal rewards by index (higher first if `later`).
    fn sorted(r: &[f64], later: bool) -> Vec<usize> {
        let mut ranked: Vec<usize> = (0..r.len()).collect();
        ranked.sort_by(|&x, &y| {
            let by_index = if later { y.cmp(&x) } else { x.cmp(&y) };
            order(r[y], r[x]).then(by_index)
        });
        ranked
    }

    fn with_rewards(r: &[f64], ks: &[usize]) -> Vec<(usize, f64)> {
        ks.iter().map(|&k| (k, r[k])).collect()
    }

    /// Every streaming ranking of `r` against its definition by a sort, and (for 2, 4, 8 or 16
    /// rewards) the same rankings over lanes, as the first picks take them.
    fn assert_rankings(r: &[f64]) {
        let m = r.len();
        // `-inf` as a finite score less a length penalty that overflows.
        let (scores, lengths): (Vec<f64>, Vec<f64>) = r
            .iter()
            .map(|&x| {
                if x.is_finite() {
                    (x, 0.0)
                } else {
                    (0.0, f64::MAX)
                }
            })
            .unzip();
        let view = Penalized {
            scores: &scores,
            lengths: &lengths,
            length_penalty: 2.0,
        };
        let over_lanes = lanes::by_width!(m, |N| N == m, else false);
        // Each ranking by streaming, and over lanes where the width has them.
        fn both<K: Rank>(view: Penalized<'_, f64>, over_lanes: bool) -> Vec<K::Out> {
            let mut outs = vec![stream::<K>(view).unwrap().unwrap()];
            if over_lanes {
                outs.push(AnyWidth::rank::<K>(view).unwrap());
            }
            outs
        }
        let (dpov2, lmflow) = (sorted(r, false), sorted(r, true));
        for best in both::<Best>(view, over_lanes) {
            assert_eq!(best, dpov2[0], "{r:?}");
        }
        for (two, order) in [
            (both::<BestTwo<false>>(view, over_lanes), &dpov2),
            (both::<BestTwo<true>>(view, over_lanes), &lmflow),
        ] {
            for two in two {
                assert_eq!(two.to_vec(), with_rewards(r, &order[..2]), "{r:?}");
            }
        }
        for (ends, order) in [
            (both::<Ends<false, true>>(view, over_lanes), &dpov2),
            (both::<Ends<true, false>>(view, over_lanes), &lmflow),
        ] {
            let picks = [order[0], order[1], order[m - 1], order[m - 2]];
            for ends in ends {
                assert_eq!(ends.to_vec(), with_rewards(r, &picks), "{r:?}");
            }
        }
        // max_min: np.argmax, then np.argmin among the others.
        let worst = (0..m)
            .filter(|&k| k != dpov2[0])
            .min_by(|&x, &y| order(r[x], r[y]).then(x.cmp(&y)))
            .unwrap();
        for ends in both::<BestAndWorst>(view, over_lanes) {
            assert_eq!(ends.to_vec(), with_rewards(r, &[dpov2[0], worst]), "{r:?}");
        }
    }

    #[test]
    fn streaming_rankings_equal_a_sort() {
        small_arrays().iter().for_each(|r| assert_rankings(r));
    }

    #[test]
    fn rankings_over_lanes_equal_a_sort() {
        // Few distinct values, so that most arrays have ties at both ends.
        let values = [f64::NEG_INFINITY, -1.0, -0.0, 0.0, 2.0, 3.5];
        let mut rng = PromptRng::new(7, 0);
        for width in [8, 16] {
            for _ in 0..20_000 {
                let kinds = 1 + rng.below(values.len() as u64);
                let r: Vec<f64> = (0..width)
                    .map(|_| values[rng.below(kinds) as usize])
                    .collect();
                assert_rankings(&r);
            }
        }
    }

    #[test]
    fn lanes_refuse_a_bad_value() {
        let scores = [1.0, 2.0, f64::NAN, 0.5];
        assert!(AnyWidth::rank::<Best>(Scores(&scores)).is_none());
        let view = Penalized {
            scores: &[1.0, 2.0, 3.0, 0.5],
            lengths: &[1i64, 2, -3, 4],
            length_penalty: 0.5,
        };
        assert!(AnyWidth::rank::<Best>(view).is_none());
        let view = Penalized {
            lengths: &[1i64, 2, 3, 4],
            ..view
        };
        assert_eq!(AnyWidth::rank::<Best>(view), Some(2));
    }

    #[test]
    fn pairs_whose_keys_differ_only_in_the_packed_bits_keep_exact_order() {
        // 28 keys equal above bit 5, differing below it in descending order, with repeats:
        // the packed words alone would order them by order found.
        let keys: Vec<u64> = (0..28u64).map(|f| (7 << 40) | ((27 - f) / 2)).collect();
        assert_eq!(ordered(&keys, 28), expected(&keys, 28));
        assert_eq!(ordered(&keys, 5), expected(&keys, 5));
        let mixed: Vec<u64> = (0..28u64).map(|f| ((f % 3) << 40) | (f * 7 % 11)).collect();
        assert_eq!(ordered(&mixed, 28), expected(&mixed, 28));
    }

    #[test]
    fn many_pairs_take_the_tuple_sort() {
        let keys: Vec<u64> = (0..700u64).map(|f| (f * 7919) % 313).collect();
        assert_eq!(ordered(&keys, 700), expected(&keys, 700));
        assert_eq!(ordered(&keys, 3), expected(&keys, 3));
    }
}
