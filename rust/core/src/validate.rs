//! Input checks, run before any selection so that a bad request fails whole, naming the
//! first offending prompt. The order of the checks is part of the contract: the Python
//! reference runs them in the same order and raises the same messages.

use rayon::prelude::*;

use crate::PairError;

pub(crate) fn check_penalty(length_penalty: f64, has_lengths: bool) -> Result<(), PairError> {
    if !length_penalty.is_finite() {
        return Err(PairError::NonFinitePenalty(length_penalty));
    }
    if length_penalty != 0.0 && !has_lengths {
        return Err(PairError::PenaltyWithoutLengths);
    }
    Ok(())
}

pub(crate) fn check_same_len(scores: &[f64], lengths: Option<&[f64]>) -> Result<(), PairError> {
    match lengths {
        Some(lengths) if lengths.len() != scores.len() => Err(PairError::LengthMismatch {
            scores: scores.len(),
            lengths: lengths.len(),
        }),
        _ => Ok(()),
    }
}

/// Offsets must start at 0, never decrease, and end exactly at the number of scores.
pub(crate) fn check_offsets(offsets: &[i64], n_scores: usize) -> Result<(), PairError> {
    let (&first, _) = offsets.split_first().ok_or(PairError::EmptyOffsets)?;
    if first != 0 {
        return Err(PairError::OffsetsStart(first));
    }
    for (prompt, bounds) in offsets.windows(2).enumerate() {
        let (start, end) = (bounds[0], bounds[1]);
        if end < start {
            return Err(PairError::OffsetsDecrease { prompt, start, end });
        }
        if end > n_scores as i64 {
            return Err(PairError::OffsetsPastEnd {
                prompt,
                end,
                n_scores,
            });
        }
    }
    let end = offsets[offsets.len() - 1];
    if end != n_scores as i64 {
        return Err(PairError::OffsetsShort { end, n_scores });
    }
    Ok(())
}

/// Scores must be finite; lengths finite and non-negative. Reports the first bad response in
/// flat order (its score before its length). `offsets` must already have passed
/// [`check_offsets`].
pub(crate) fn check_values(
    scores: &[f64],
    lengths: Option<&[f64]>,
    offsets: &[i64],
) -> Result<(), PairError> {
    const BLOCK: usize = 1 << 16;
    let first_bad = scores
        .par_chunks(BLOCK)
        .enumerate()
        .filter_map(|(b, block)| {
            let start = b * BLOCK;
            let lengths = lengths.map(|l| &l[start..start + block.len()]);
            first_bad(block, lengths).map(|i| start + i)
        })
        .min();
    first_bad.map_or(Ok(()), |index| {
        Err(value_error(index, scores, lengths, offsets))
    })
}

/// The position of the first bad response in a slice, `None` if all are good. The common,
/// all-good case is a branch-free pass the compiler can vectorise.
#[inline]
pub(crate) fn first_bad(scores: &[f64], lengths: Option<&[f64]>) -> Option<usize> {
    let good_length = |l: f64| l.is_finite() && l >= 0.0;
    match lengths {
        Some(lengths) => {
            let all_good = scores
                .iter()
                .zip(lengths)
                .fold(true, |ok, (&s, &l)| ok & s.is_finite() & good_length(l));
            if all_good {
                return None;
            }
            scores
                .iter()
                .zip(lengths)
                .position(|(&s, &l)| !s.is_finite() || !good_length(l))
        }
        None => {
            if scores.iter().fold(true, |ok, s| ok & s.is_finite()) {
                return None;
            }
            scores.iter().position(|s| !s.is_finite())
        }
    }
}

/// The error for the bad response at flat `index`, located by prompt.
pub(crate) fn value_error(
    index: usize,
    scores: &[f64],
    lengths: Option<&[f64]>,
    offsets: &[i64],
) -> PairError {
    // The prompt that owns `index`: the last one starting at or before it (empty prompts
    // before it share its start and are skipped by taking the last).
    let prompt = offsets.partition_point(|&o| o <= index as i64) - 1;
    let response = index - offsets[prompt] as usize;
    let score = scores[index];
    if !score.is_finite() {
        return PairError::BadScore {
            index,
            prompt,
            response,
            value: score,
        };
    }
    let value = lengths.map_or(0.0, |lengths| lengths[index]);
    PairError::BadLength {
        index,
        prompt,
        response,
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_errors_name_the_first_offending_prompt() {
        assert_eq!(check_offsets(&[], 0), Err(PairError::EmptyOffsets));
        assert_eq!(check_offsets(&[1, 2], 2), Err(PairError::OffsetsStart(1)));
        assert_eq!(
            check_offsets(&[0, 2, 1, 0], 3),
            Err(PairError::OffsetsDecrease {
                prompt: 1,
                start: 2,
                end: 1
            })
        );
        assert_eq!(
            check_offsets(&[0, 4, 5], 3),
            Err(PairError::OffsetsPastEnd {
                prompt: 0,
                end: 4,
                n_scores: 3
            })
        );
        assert_eq!(
            check_offsets(&[0, 2], 3),
            Err(PairError::OffsetsShort {
                end: 2,
                n_scores: 3
            })
        );
        assert_eq!(check_offsets(&[0, 0, 3, 3], 3), Ok(()));
    }

    #[test]
    fn bad_values_are_located_past_empty_prompts() {
        let offsets = [0, 2, 2, 2, 4];
        let err = check_values(&[0.0, 1.0, 2.0, f64::INFINITY], None, &offsets).unwrap_err();
        assert_eq!(
            err,
            PairError::BadScore {
                index: 3,
                prompt: 3,
                response: 1,
                value: f64::INFINITY
            }
        );
        let err = check_values(&[0.0; 4], Some(&[1.0, 1.0, -1.0, 1.0]), &offsets).unwrap_err();
        assert_eq!(
            err,
            PairError::BadLength {
                index: 2,
                prompt: 3,
                response: 0,
                value: -1.0
            }
        );
    }
}
