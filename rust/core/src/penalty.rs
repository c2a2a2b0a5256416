use rayon::prelude::*;

use crate::rewards::{with_rewards, Rewards};
use crate::validate::{check_penalty, check_same_len, value_error};
use crate::{Lengths, PairError};

/// Responses per parallel task.
const BLOCK: usize = 1 << 16;

/// `scores - length_penalty * lengths`, element-wise, after the same checks as selection
/// (finite scores, finite non-negative lengths of the same count, finite penalty), made in
/// the same read of the data as the arithmetic. Errors locate the response as prompt 0.
pub fn penalized_rewards(
    scores: &[f64],
    lengths: Lengths<'_>,
    length_penalty: f64,
) -> Result<Vec<f64>, PairError> {
    check_penalty(length_penalty, true)?;
    check_same_len(scores.len(), Some(lengths))?;
    with_rewards!(scores, Some(lengths), length_penalty, |view| penalize_all(
        view
    ))
}

fn penalize_all(view: impl Rewards) -> Result<Vec<f64>, PairError> {
    let mut rewards = vec![0.0; view.len()];
    let first_bad = rewards
        .par_chunks_mut(BLOCK)
        .enumerate()
        .filter_map(|(b, out)| {
            let start = b * BLOCK;
            let block = view.cut(start, start + out.len());
            let mut valid = true;
            for (o, (r, ok)) in out.iter_mut().zip(block.scan()) {
                *o = r;
                valid &= ok;
            }
            let (k, bad) = (!valid).then(|| block.first_bad()).flatten()?;
            Some((start + k, bad))
        })
        .min_by_key(|&(index, _)| index);
    match first_bad {
        Some((index, bad)) => Err(value_error(bad, index, 0, index)),
        None => Ok(rewards),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_lowers_long_responses_and_negative_penalty_raises_them() {
        let lengths = [0.0, 10.0];
        assert_eq!(
            penalized_rewards(&[1.0, 1.0], lengths[..].into(), 0.1).unwrap(),
            vec![1.0, 0.0]
        );
        let lengths = [0i64, 10];
        assert_eq!(
            penalized_rewards(&[1.0, 1.0], lengths[..].into(), -0.1).unwrap(),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_position() {
        let lengths = [1.0, 1.0];
        let err = penalized_rewards(&[1.0, f64::NAN], lengths[..].into(), 0.1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "scores[1] is nan (prompt 0, response 1); scores must be finite"
        );
        // The lowest bad index wins across parallel blocks.
        let mut lengths = vec![1i32; 3 * BLOCK];
        lengths[2 * BLOCK + 5] = -1;
        lengths[BLOCK + 7] = -3;
        let err = penalized_rewards(&vec![0.0; 3 * BLOCK], lengths[..].into(), 0.1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "lengths[{0}] is negative (prompt 0, response {0}); lengths must be finite and >= 0",
                BLOCK + 7
            )
        );
        let lengths = [1.0, 2.0];
        let err = penalized_rewards(&[1.0], lengths[..].into(), 0.1).unwrap_err();
        assert!(matches!(
            err,
            PairError::LengthMismatch {
                scores: 1,
                lengths: 2
            }
        ));
    }
}
