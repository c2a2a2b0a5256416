use std::str::FromStr;

use crate::PairError;

/// How the two responses of a pair are picked from one prompt's responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Two distinct responses, each unordered pair equally likely.
    Random,
    /// The best against the worst.
    MaxMin,
    /// The best against the second best.
    MaxMax,
    /// The best against a uniformly random other response.
    MaxRandom,
}

impl Method {
    /// The names accepted by [`Method::from_str`], in documentation order.
    pub const NAMES: [&'static str; 4] = ["random", "max_min", "max_max", "max_random"];
}

impl FromStr for Method {
    type Err = PairError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "random" => Ok(Self::Random),
            "max_min" => Ok(Self::MaxMin),
            "max_max" => Ok(Self::MaxMax),
            "max_random" => Ok(Self::MaxRandom),
            other => Err(PairError::UnknownMethod(other.to_owned())),
        }
    }
}
