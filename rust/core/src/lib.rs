//! Preference-pair selection for DPO over flat, per-prompt-offset reward arrays.
//!
//! The inputs are the layout a columnar dataset already has: one `scores` array with every
//! response of every prompt, an optional `lengths` array beside it, and `offsets` (length
//! `n_prompts + 1`) so that prompt `p` owns responses `offsets[p]..offsets[p + 1]`. Lengths
//! are read in the dtype they come in (`f64`, `i64` or `i32`, see [`Lengths`]).
//! Nothing here knows about Python; the PyO3 layer only converts arrays and errors.
//!
//! Semantics (shared, element for element, with the pure-Python reference in
//! `python/dpov2/pairing/reference.py`; the README's "Pair selection" is the definition):
//! - penalised reward `r = score - length_penalty * length`;
//! - candidates: the responses that are not a later copy of another (`duplicate_of`);
//! - a pair of candidates is eligible if it passes the tie rule (equal `r` only with
//!   `keep_ties`), `min_margin` and the length limits;
//! - each method orders pairs by preference (`max_min`, `max_max`, `top_bottom`,
//!   `adjacent`, `all_pairs`) or draws them uniformly among the eligible ones (`random`,
//!   `max_random`), and yields up to `pairs_per_prompt` eligible pairs;
//! - of a pair, the higher `r` is `chosen`; the tie order decides ranking ties and which of
//!   a kept tie is chosen (`dpov2`: lower index first, first pick; `lmflow`: LMFlow's);
//! - random draws come from a SplitMix64 stream seeded by `(seed, key)` where the key is the
//!   prompt's global position or its given key, so they never depend on batching or thread
//!   count.

mod buffers;
mod content;
mod error;
mod lanes;
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
