use std::fmt;

/// Everything that can be wrong with a selection request, each naming where it went wrong.
///
/// The `Display` text is the user-facing message; the Python reference path raises the very
/// same text, which the test suite checks.
#[derive(Debug, Clone, PartialEq)]
pub enum PairError {
    UnknownMethod(String),
    UnknownTieOrder(String),
    UnknownMarginSource(String),
    NoPairsPerPrompt,
    BadLengthRatio(f64),
    BadLengthDiff(f64),
    NonFiniteMarginScale(f64),
    NonFiniteMinMargin(f64),
    LimitsWithoutLengths,
    DuplicatesMismatch {
        scores: usize,
        duplicates: usize,
    },
    KeysMismatch {
        prompts: usize,
        keys: usize,
    },
    BadDuplicate {
        index: usize,
        prompt: usize,
        response: usize,
        value: i64,
    },
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
    describe_below(value, "negative")
}

/// [`describe`] with `below` for a finite value under the allowed range.
pub(crate) fn describe_below(value: f64, below: &'static str) -> &'static str {
    if value.is_nan() {
        "nan"
    } else if value == f64::INFINITY {
        "inf"
    } else if value == f64::NEG_INFINITY {
        "-inf"
    } else {
        below
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
            Self::UnknownTieOrder(name) => write!(
                f,
                "unknown tie order '{name}'; expected one of: {}",
                crate::TieOrder::NAMES.join(", ")
            ),
            Self::UnknownMarginSource(name) => write!(
                f,
                "unknown margin source '{name}'; expected one of: {}",
                crate::MarginFrom::NAMES.join(", ")
            ),
            Self::NoPairsPerPrompt => write!(f, "pairs_per_prompt must be >= 1, got 0"),
            Self::BadLengthRatio(v) => write!(
                f,
                "max_length_ratio is {}; it must be finite and >= 1",
                describe_below(*v, "below 1")
            ),
            Self::BadLengthDiff(v) => write!(
                f,
                "max_length_diff is {}; it must be finite and >= 0",
                describe(*v)
            ),
            Self::NonFiniteMarginScale(v) => {
                write!(f, "margin_scale must be finite, got {}", describe(*v))
            }
            Self::NonFiniteMinMargin(v) => {
                write!(f, "min_margin must be finite, got {}", describe(*v))
            }
            Self::LimitsWithoutLengths => write!(
                f,
                "max_length_ratio and max_length_diff need lengths, but no lengths were given"
            ),
            Self::DuplicatesMismatch { scores, duplicates } => write!(
                f,
                "duplicate_of has {duplicates} entries but scores has {scores}; they must match"
            ),
            Self::KeysMismatch { prompts, keys } => write!(
                f,
                "keys has {keys} entries but there are {prompts} prompts; they must match"
            ),
            Self::BadDuplicate { index, prompt, response, value } => write!(
                f,
                "duplicate_of[{index}] is {value} (prompt {prompt}, response {response}); it must \
                 be the index within the prompt of a response at or before it that is its own \
                 first occurrence"
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
