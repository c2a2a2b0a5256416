use std::fmt;

/// Everything that can be wrong with a selection request, each naming where it went wrong.
///
/// The `Display` text is the user-facing message; the Python reference path raises the very
/// same text, which the test suite checks.
#[derive(Debug, Clone, PartialEq)]
pub enum PairError {
    UnknownMethod(String),
    NonFinitePenalty(f64),
    PenaltyWithoutLengths,
    LengthMismatch {
        scores: usize,
        lengths: usize,
    },
    EmptyOffsets,
    OffsetsStart(i64),
    OffsetsDecrease {
        prompt: usize,
        start: i64,
        end: i64,
    },
    OffsetsPastEnd {
        prompt: usize,
        end: i64,
        n_scores: usize,
    },
    OffsetsShort {
        end: i64,
        n_scores: usize,
    },
    KeyOverflow {
        first_key: u64,
        n_prompts: usize,
    },
    BadScore {
        index: usize,
        prompt: usize,
        response: usize,
        value: f64,
    },
    BadLength {
        index: usize,
        prompt: usize,
        response: usize,
        value: f64,
    },
}

/// Names what is wrong with a rejected value as Python would print it (`nan`, `inf`,
/// `-inf`), or says `negative`, so both paths print identical text without depending on
/// how either language formats other floats.
pub(crate) fn describe(value: f64) -> &'static str {
    if value.is_nan() {
        "nan"
    } else if value == f64::INFINITY {
        "inf"
    } else if value == f64::NEG_INFINITY {
        "-inf"
    } else {
        "negative"
    }
}

impl fmt::Display for PairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMethod(name) => write!(
                f,
                "unknown sampling method '{name}'; expected one of: {}",
                crate::Method::NAMES.join(", ")
            ),
            Self::NonFinitePenalty(v) => {
                write!(f, "length_penalty must be finite, got {}", describe(*v))
            }
            Self::PenaltyWithoutLengths => {
                write!(f, "length_penalty is non-zero but no lengths were given")
            }
            Self::LengthMismatch { scores, lengths } => write!(
                f,
                "lengths has {lengths} entries but scores has {scores}; they must match"
            ),
            Self::EmptyOffsets => {
                write!(f, "offsets is empty; it needs n_prompts + 1 entries, starting at 0")
            }
            Self::OffsetsStart(first) => write!(f, "offsets[0] must be 0, got {first}"),
            Self::OffsetsDecrease { prompt, start, end } => write!(
                f,
                "offsets decrease at prompt {prompt}: offsets[{prompt}]={start} > offsets[{}]={end}",
                prompt + 1
            ),
            Self::OffsetsPastEnd { prompt, end, n_scores } => write!(
                f,
                "offsets run past the arrays at prompt {prompt}: offsets[{}]={end} but there are {n_scores} scores",
                prompt + 1
            ),
            Self::OffsetsShort { end, n_scores } => write!(
                f,
                "offsets end at {end} but there are {n_scores} scores; every response must belong to a prompt"
            ),
            Self::KeyOverflow { first_key, n_prompts } => write!(
                f,
                "first_key={first_key} with {n_prompts} prompts runs past 2**64 - 1"
            ),
            Self::BadScore { index, prompt, response, value } => write!(
                f,
                "scores[{index}] is {} (prompt {prompt}, response {response}); scores must be finite",
                describe(*value)
            ),
            Self::BadLength { index, prompt, response, value } => write!(
                f,
                "lengths[{index}] is {} (prompt {prompt}, response {response}); lengths must be finite and >= 0",
                describe(*value)
            ),
        }
    }
}

impl std::error::Error for PairError {}
