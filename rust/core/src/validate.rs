//! The checks made before any data is read. The checks made while reading (offsets, scores,
//! lengths) are in `select.rs`, fused with selection. The order of all checks is part of the
//! contract: the Python reference runs them in the same order and raises the same messages.

use crate::rewards::Bad;
use crate::{Lengths, PairError};

pub(crate) fn check_penalty(length_penalty: f64, has_lengths: bool) -> Result<(), PairError> {
    if !length_penalty.is_finite() {
        return Err(PairError::NonFinitePenalty(length_penalty));
    }
    if length_penalty != 0.0 && !has_lengths {
        return Err(PairError::PenaltyWithoutLengths);
    }
    Ok(())
}

pub(crate) fn check_same_len(
    n_scores: usize,
    lengths: Option<Lengths<'_>>,
) -> Result<(), PairError> {
    match lengths {
        Some(lengths) if lengths.len() != n_scores => Err(PairError::LengthMismatch {
            scores: n_scores,
            lengths: lengths.len(),
        }),
        _ => Ok(()),
    }
}

/// The error for the bad response at flat `index`, response `response` of `prompt`.
pub(crate) fn value_error(bad: Bad, index: usize, prompt: usize, response: usize) -> PairError {
    match bad {
        Bad::Score(value) => PairError::BadScore {
            index,
            prompt,
            response,
            value,
        },
        Bad::Length(value) => PairError::BadLength {
            index,
            prompt,
            response,
            value,
        },
    }
}
