use rayon::prelude::*;

use crate::validate::{check_penalty, check_same_len, check_values};
use crate::PairError;

/// The penalised reward of one response: `score - length_penalty * length`.
///
/// Kept as one expression (multiply, then subtract, no fused multiply-add) so that it rounds
/// exactly as the Python reference does.
#[inline]
pub(crate) fn penalized(score: f64, length: f64, length_penalty: f64) -> f64 {
    score - length_penalty * length
}

/// `scores - length_penalty * lengths`, element-wise, after the same checks as selection
/// (finite scores, finite non-negative lengths of the same count, finite penalty).
pub fn penalized_rewards(
    scores: &[f64],
    lengths: &[f64],
    length_penalty: f64,
) -> Result<Vec<f64>, PairError> {
    check_penalty(length_penalty, true)?;
    check_same_len(scores, Some(lengths))?;
    let whole = [0, scores.len() as i64];
    check_values(scores, Some(lengths), &whole)?;
    Ok(scores
        .par_iter()
        .zip(lengths.par_iter())
        .map(|(&s, &l)| penalized(s, l, length_penalty))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_lowers_long_responses_and_negative_penalty_raises_them() {
        assert_eq!(
            penalized_rewards(&[1.0, 1.0], &[0.0, 10.0], 0.1).unwrap(),
            vec![1.0, 0.0]
        );
        assert_eq!(
            penalized_rewards(&[1.0, 1.0], &[0.0, 10.0], -0.1).unwrap(),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_position() {
        let err = penalized_rewards(&[1.0, f64::NAN], &[1.0, 1.0], 0.1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "scores[1] is nan (prompt 0, response 1); scores must be finite"
        );
        let err = penalized_rewards(&[1.0], &[1.0, 2.0], 0.1).unwrap_err();
        assert!(matches!(
            err,
            PairError::LengthMismatch {
                scores: 1,
                lengths: 2
            }
        ));
    }
}
