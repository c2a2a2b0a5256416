//! The checks made before any data is read. The checks made while reading (offsets, scores,
//! lengths) are in `select.rs`, fused with selection. The order of all checks is part of the
//! contract: the Python reference runs them in the same order and raises the same messages.

use crate::rewards::Bad;
use crate::{Lengths, Options, PairError};

/// Every option, in the documented order (the method and tie order are parsed before).
pub(crate) fn check_options(options: &Options, has_lengths: bool) -> Result<(), PairError> {
    if options.pairs_per_prompt == 0 {
        return Err(PairError::NoPairsPerPrompt);
    }
    check_penalty(options.length_penalty, has_lengths)?;
    if !options.margin_scale.is_finite() {
        return Err(PairError::NonFiniteMarginScale(options.margin_scale));
    }
    if let Some(m) = options.min_margin.filter(|m| !m.is_finite()) {
        return Err(PairError::NonFiniteMinMargin(m));
    }
    if let Some(r) = options
        .max_length_ratio
        .filter(|r| !(r.is_finite() && *r >= 1.0))
    {
        return Err(PairError::BadLengthRatio(r));
    }
    if let Some(d) = options
        .max_length_diff
        .filter(|d| !(d.is_finite() && *d >= 0.0))
    {
        return Err(PairError::BadLengthDiff(d));
    }
    let limits = options.max_length_ratio.is_some() || options.max_length_diff.is_some();
    if limits && !has_lengths {
        return Err(PairError::LimitsWithoutLengths);
    }
    Ok(())
}

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
