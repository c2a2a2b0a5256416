//! Preference-pair selection for DPO over flat, per-prompt-offset reward arrays.
//!
//! The inputs are the layout a columnar dataset already has: one `scores` array with every
//! response of every prompt, an optional `lengths` array beside it, and `offsets` (length
//! `n_prompts + 1`) so that prompt `p` owns responses `offsets[p]..offsets[p + 1]`. Lengths
//! are read in the dtype they come in (`f64`, `i64` or `i32`, see [`Lengths`]).
//! Nothing here knows about Python; the PyO3 layer only converts arrays and errors.
//!
//! Semantics (shared, element for element, with the pure-Python reference in
//! `python/dpov2/pairing/reference.py`):
//! - penalised reward `r = score - length_penalty * length`;
//! - `max_min`: best vs worst, `max_max`: best vs second best, `max_random`: best vs a
//!   uniformly random other response, `random`: two distinct responses uniformly at random;
//! - of the two picked, the higher penalised reward is `chosen`; equal rewards are a tie,
//!   dropped unless `keep_ties`, in which case the first pick stays `chosen`;
//! - ties in ranking go to the lowest index;
//! - random draws come from a SplitMix64 stream seeded by `(seed, key)` where the key is the
//!   prompt's global position, so they never depend on batching or thread count.

mod content;
mod error;
mod method;
mod penalty;
mod rewards;
mod rng;
mod select;
mod validate;

pub use content::{checked_offsets, content_key, duplicate_of, Fnv1a};
pub use error::PairError;
pub use method::{MarginFrom, Method, TieOrder};
pub use penalty::penalized_rewards;
pub use rewards::Lengths;
pub use rng::PromptRng;
pub use select::{select_pairs, Inputs, Options, Selection, Status};
