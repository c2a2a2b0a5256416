"""dpov2: DPO preference pairs from reward-scored generations, and a trainer for them."""

from dpov2.convert import PairOptions, PairSummary, convert_to_paired_dataset
from dpov2.errors import InputError
from dpov2.iterative import iterate
from dpov2.pairing import (
    METHODS,
    PairSelection,
    PairStatus,
    calc_reward_with_length_penalty,
    sampling_paired_idx_from_rewards,
    select_pairs,
)

__all__ = [
    "METHODS",
    "InputError",
    "PairOptions",
    "PairSelection",
    "PairStatus",
    "PairSummary",
    "calc_reward_with_length_penalty",
    "convert_to_paired_dataset",
    "iterate",
    "sampling_paired_idx_from_rewards",
    "select_pairs",
]
