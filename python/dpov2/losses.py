"""The DPOv2 loss family (LMFlow's `DPOv2Trainer`) as plain tensor functions.

Every loss takes per-example sequence log-probabilities (summed over response tokens) of the policy
and the reference for the chosen and rejected responses, and returns a `PairLoss`: per-example
losses plus the chosen/rejected rewards that are logged. With

    logits = (policy_chosen - policy_rejected)
             - (reference_chosen - reference_rejected + len_penalty_term)

the preference-only losses are `sigmoid`, `hinge`, `ipo`, `cross_entropy` and `raft`; the
margin-aware ones (`kl`, `tv`, `hellinger`, `rev_kl`) pull p = sigmoid(beta * logits) towards a
target probability set by each pair's reward `margin` (chosen score minus rejected score).

Rewards are the raw implicit rewards beta * (policy - reference) log-prob, without the length
penalty, as LMFlow and TRL log them.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

__all__ = [
    "LOSSES",
    "MARGIN_LOSS_TYPES",
    "LossFn",
    "PairLoss",
    "cross_entropy_loss",
    "get_loss",
    "hellinger_loss",
    "hinge_loss",
    "ipo_loss",
    "kl_loss",
    "raft_loss",
    "rev_kl_loss",
    "sigmoid_loss",
    "tv_loss",
]

# LMFlow caps p at 0.999 in the kl and hellinger losses; capping p is capping beta * logits here.
_P_MAX = 0.999
_LOGIT_MAX = math.log(_P_MAX / (1.0 - _P_MAX))
# LMFlow's kl target is exp(m) / (1 + exp(m) + 1e-3) = sigmoid(m - log(1 + 1e-3)).
_KL_TARGET_SHIFT = math.log1p(1e-3)


class PairLoss(NamedTuple):
    """Per-example losses and raw implicit rewards, each of shape (batch,)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class LossFn(Protocol):
    """Signature shared by every loss in `LOSSES`."""

    def __call__(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
        *,
        beta: float,
        margin: torch.Tensor | None = None,
        len_penalty_term: torch.Tensor | float = 0.0,
    ) -> PairLoss: ...


def _logits(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    len_penalty_term: torch.Tensor | float,
) -> torch.Tensor:
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps + len_penalty_term
    return pi_logratios - ref_logratios


def _pair_loss(
    losses: torch.Tensor,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
) -> PairLoss:
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return PairLoss(losses, chosen_rewards, rejected_rewards)


def _require_margin(margin: torch.Tensor | None, loss_type: str) -> torch.Tensor:
    if margin is None:
        raise ValueError(
            f"loss_type={loss_type!r} needs a per-example `margin` (chosen score minus rejected "
            "score); got None. Add a float `margin` column to the pair dataset."
        )
    return margin


def sigmoid_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """DPO's logistic loss, -logsigmoid(beta * logits). `margin` is ignored."""
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    losses = -F.logsigmoid(beta * logits)
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def hinge_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """SLiC's hinge loss, relu(1 - beta * logits): zero once the pair is separated by 1/beta."""
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    losses = torch.relu(1.0 - beta * logits)
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """IPO's squared loss, (logits - 1/(2 beta))^2, on summed log-probs as in LMFlow.

    TRL's `ipo` divides each log-ratio by its response length first; pass per-token averaged
    log-probs to get TRL's variant.
    """
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    losses = (logits - 1.0 / (2.0 * beta)) ** 2
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def cross_entropy_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """-logsigmoid(beta * (policy_chosen - reference_chosen)): raises the chosen response only.

    The rejected response and the length penalty play no part, as in LMFlow.
    """
    losses = -F.logsigmoid(beta * (policy_chosen_logps - reference_chosen_logps))
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def raft_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """RAFT: negative log-likelihood of the chosen response (summed over its tokens), i.e. SFT."""
    losses = -policy_chosen_logps
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def kl_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """KL(p || p_gt) between two Bernoullis: p = min(sigmoid(beta * logits), 0.999) and the target
    p_gt = exp(m) / (1 + exp(m) + 1e-3).

    Same values as LMFlow, computed in log space. LMFlow's exp(m) overflows to inf/inf = NaN for
    m > 88 (float32), and its log(p) is log(0) = -inf, giving 0 * -inf = NaN, once sigmoid
    underflows for very negative logits. Here p_gt = sigmoid(m - log(1.001)) (the same number),
    both logs come from logsigmoid, and the 0.999 cap is a clamp of beta * logits at log(999),
    above which the gradient is zero as in LMFlow.
    """
    m = _require_margin(margin, "kl")
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    z = torch.clamp(beta * logits, max=_LOGIT_MAX)
    log_p, log_not_p = F.logsigmoid(z), F.logsigmoid(-z)
    target_z = m - _KL_TARGET_SHIFT
    log_gt, log_not_gt = F.logsigmoid(target_z), F.logsigmoid(-target_z)
    p = torch.exp(log_p)
    losses = p * (log_p - log_gt) + (1.0 - p) * (log_not_p - log_not_gt)
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def tv_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """Total variation |p - sigmoid(m)| with p = sigmoid(beta * logits).

    LMFlow writes the target as exp(m) / (1 + exp(m)), which is NaN for m > 88 (float32); the
    equal sigmoid(m) is used instead.
    """
    m = _require_margin(margin, "tv")
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    losses = torch.abs(torch.sigmoid(beta * logits) - torch.sigmoid(m))
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def hellinger_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """Squared Hellinger distance 0.5 * ((sqrt p - sqrt q)^2 + (sqrt(1-p) - sqrt(1-q))^2) between
    Bernoulli(p), p = min(sigmoid(beta * logits), 0.999), and Bernoulli(q), q = sigmoid(m).

    Same values as LMFlow. LMFlow's sqrt(p) has an infinite derivative at p = 0, so the gradient is
    inf * 0 = NaN once sigmoid underflows, and its exp(m) target overflows for large m. Here each
    square root is exp(0.5 * logsigmoid(.)), whose gradient goes smoothly to zero, and the cap is a
    clamp of beta * logits at log(999).
    """
    m = _require_margin(margin, "hellinger")
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    z = torch.clamp(beta * logits, max=_LOGIT_MAX)
    sqrt_p, sqrt_not_p = torch.exp(0.5 * F.logsigmoid(z)), torch.exp(0.5 * F.logsigmoid(-z))
    sqrt_q, sqrt_not_q = torch.exp(0.5 * F.logsigmoid(m)), torch.exp(0.5 * F.logsigmoid(-m))
    losses = 0.5 * ((sqrt_p - sqrt_q) ** 2 + (sqrt_not_p - sqrt_not_q) ** 2)
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


def rev_kl_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    margin: torch.Tensor | None = None,
    len_penalty_term: torch.Tensor | float = 0.0,
) -> PairLoss:
    """Cross-entropy of p = sigmoid(beta * logits) against the soft label sigmoid(m):
    -sigmoid(m) * logsigmoid(beta * logits) - (1 - sigmoid(m)) * logsigmoid(-beta * logits).

    With m -> +inf it is the sigmoid loss. LMFlow's formula is already stable; it is kept as is.
    """
    m = _require_margin(margin, "rev_kl")
    logits = _logits(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        len_penalty_term,
    )
    target = torch.sigmoid(m)
    losses = -target * F.logsigmoid(beta * logits) - (1.0 - target) * F.logsigmoid(-beta * logits)
    return _pair_loss(
        losses,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    )


LOSSES: dict[str, LossFn] = {
    "sigmoid": sigmoid_loss,
    "hinge": hinge_loss,
    "ipo": ipo_loss,
    "cross_entropy": cross_entropy_loss,
    "raft": raft_loss,
    "kl": kl_loss,
    "tv": tv_loss,
    "hellinger": hellinger_loss,
    "rev_kl": rev_kl_loss,
}

# Loss types whose target comes from the per-example `margin`; they fail without one.
MARGIN_LOSS_TYPES: frozenset[str] = frozenset({"kl", "tv", "hellinger", "rev_kl"})


def get_loss(loss_type: str) -> LossFn:
    """Return the loss registered under `loss_type`; a ValueError names the choices otherwise."""
    try:
        return LOSSES[loss_type]
    except KeyError:
        raise ValueError(
            f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSSES)}"
        ) from None
