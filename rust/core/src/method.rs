use std::str::FromStr;

use crate::PairError;

/// How the pairs of one prompt are picked from its candidates (see the README's "Pair
/// selection" for each method's preference order over pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Distinct pairs drawn uniformly among the eligible ones.
    Random,
    /// The best against the worst.
    MaxMin,
    /// The best against the second best.
    MaxMax,
    /// The best against uniformly drawn other candidates.
    MaxRandom,
    /// Every eligible pair, largest margin first.
    AllPairs,
    /// Candidates next to each other in the ranking, largest margin first.
    Adjacent,
    /// The i-th best against the i-th worst.
    TopBottom,
}

impl Method {
    /// The names accepted by [`Method::from_str`], in documentation order.
    pub const NAMES: [&'static str; 7] = [
        "random",
        "max_min",
        "max_max",
        "max_random",
        "all_pairs",
        "adjacent",
        "top_bottom",
    ];
    const ALL: [Self; 7] = [
        Self::Random,
        Self::MaxMin,
        Self::MaxMax,
        Self::MaxRandom,
        Self::AllPairs,
        Self::Adjacent,
        Self::TopBottom,
    ];
}

impl FromStr for Method {
    type Err = PairError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|&n| n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| PairError::UnknownMethod(name.to_owned()))
    }
}

/// How equal penalised rewards are ordered: which of two tied responses ranks first, and
/// which of a tied pair (kept with `keep_ties`) is `chosen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieOrder {
    /// The lower index ranks first; the first pick of a tied pair is chosen.
    Dpov2,
    /// As LMFlow: sort-based rankings put the higher index first (its `np.argsort`),
    /// `max_min`'s best and worst and `max_random`'s best are the first index (its
    /// `np.argmax`/`np.argmin`); the second pick of a tied pair is chosen.
    Lmflow,
}

impl TieOrder {
    pub const NAMES: [&'static str; 2] = ["dpov2", "lmflow"];
}

impl FromStr for TieOrder {
    type Err = PairError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "dpov2" => Ok(Self::Dpov2),
            "lmflow" => Ok(Self::Lmflow),
            other => Err(PairError::UnknownTieOrder(other.to_owned())),
        }
    }
}

/// What the margin of a pair (tested against `min_margin`) is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarginFrom {
    /// Raw scores, LMFlow's definition.
    Raw,
    /// Penalised rewards.
    Penalized,
}

impl MarginFrom {
    pub const NAMES: [&'static str; 2] = ["raw", "penalized"];
}

impl FromStr for MarginFrom {
    type Err = PairError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "raw" => Ok(Self::Raw),
            "penalized" => Ok(Self::Penalized),
            other => Err(PairError::UnknownMarginSource(other.to_owned())),
        }
    }
}
