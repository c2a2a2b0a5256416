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
from collections.abc import Callable
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


class _Terms(NamedTuple):
    """What a loss formula works on: the pair's `logits` (see the module docstring), `beta`, the
    `margin`, and the chosen response's log-probs (for the losses that look at it alone)."""

    logits: torch.Tensor
    beta: float
    margin: torch.Tensor | None
    policy_chosen_logps: torch.Tensor
    reference_chosen_logps: torch.Tensor


def _pair_loss(formula: Callable[[_Terms], torch.Tensor]) -> LossFn:
    """The loss whose per-example values `formula` gives. The logits and the logged rewards are
    the same for every loss, so they are computed here, once, and each loss is its formula."""

    def loss(
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
        *,
        beta: float,
        margin: torch.Tensor | None = None,
        len_penalty_term: torch.Tensor | float = 0.0,
    ) -> PairLoss:
        pi_logratios = policy_chosen_logps - policy_rejected_logps
        ref_logratios = reference_chosen_logps - reference_rejected_logps + len_penalty_term
        logits = pi_logratios - ref_logratios
        terms = _Terms(logits, beta, margin, policy_chosen_logps, reference_chosen_logps)
        chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
        rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
        return PairLoss(formula(terms), chosen_rewards, rejected_rewards)

    loss.__name__ = loss.__qualname__ = formula.__name__
    loss.__doc__ = formula.__doc__
    return loss


def _require_margin(margin: torch.Tensor | None, loss_type: str) -> torch.Tensor:
    if margin is None:
        raise ValueError(
            f"loss_type={loss_type!r} needs a per-example `margin` (chosen score minus rejected "
            "score); got None. Add a float `margin` column to the pair dataset."
        )
    return margin


@_pair_loss
def sigmoid_loss(t: _Terms) -> torch.Tensor:
    """DPO's logistic loss, -logsigmoid(beta * logits). `margin` is ignored."""
    return -F.logsigmoid(t.beta * t.logits)


@_pair_loss
def hinge_loss(t: _Terms) -> torch.Tensor:
    """SLiC's hinge loss, relu(1 - beta * logits): zero once the pair is separated by 1/beta."""
    return torch.relu(1.0 - t.beta * t.logits)


@_pair_loss
def ipo_loss(t: _Terms) -> torch.Tensor:
    """IPO's squared loss, (logits - 1/(2 beta))^2, on summed log-probs as in LMFlow.

    TRL's `ipo` divides each log-ratio by its response length first; pass per-token averaged
    log-probs to get TRL's variant.
    """
    return (t.logits - 1.0 / (2.0 * t.beta)) ** 2


@_pair_loss
def cross_entropy_loss(t: _Terms) -> torch.Tensor:
    """-logsigmoid(beta * (policy_chosen - reference_chosen)): raises the chosen response only.

    The rejected response and the length penalty play no part, as in LMFlow.
    """
    return -F.logsigmoid(t.beta * (t.policy_chosen_logps - t.reference_chosen_logps))


@_pair_loss
def raft_loss(t: _Terms) -> torch.Tensor:
    """RAFT: negative log-likelihood of the chosen response (summed over its tokens), i.e. SFT."""
    return -t.policy_chosen_logps


@_pair_loss
def kl_loss(t: _Terms) -> torch.Tensor:
    """KL(p || p_gt) between two Bernoullis: p = min(sigmoid(beta * logits), 0.999) and the target
    p_gt = exp(m) / (1 + exp(m) + 1e-3).

    Same values as LMFlow, computed in log space. LMFlow's exp(m) overflows to inf/inf = NaN for
    m > 88 (float32), and its log(p) is log(0) = -inf, giving 0 * -inf = NaN, once sigmoid
    underflows for very negative logits. Here p_gt = sigmoid(m - log(1.001)) (the same number),
    both logs come from logsigmoid, and the 0.999 cap is a clamp of beta * logits at log(999),
    above which the gradient is zero as in LMFlow.
    """
    m = _require_margin(t.margin, "kl")
    z = torch.clamp(t.beta * t.logits, max=_LOGIT_MAX)
    log_p, log_not_p = F.logsigmoid(z), F.logsigmoid(-z)
    target_z = m - _KL_TARGET_SHIFT
    log_gt, log_not_gt = F.logsigmoid(target_z), F.logsigmoid(-target_z)
    p = torch.exp(log_p)
    return p * (log_p - log_gt) + (1.0 - p) * (log_not_p - log_not_gt)


@_pair_loss
def tv_loss(t: _Terms) -> torch.Tensor:
    """Total variation |p - sigmoid(m)| with p = sigmoid(beta * logits).

    LMFlow writes the target as exp(m) / (1 + exp(m)), which is NaN for m > 88 (float32); the
    equal sigmoid(m) is used instead.
    """
    m = _require_margin(t.margin, "tv")
    return torch.abs(torch.sigmoid(t.beta * t.logits) - torch.sigmoid(m))


@_pair_loss
def hellinger_loss(t: _Terms) -> torch.Tensor:
    """Squared Hellinger distance 0.5 * ((sqrt p - sqrt q)^2 + (sqrt(1-p) - sqrt(1-q))^2) between
    Bernoulli(p), p = min(sigmoid(beta * logits), 0.999), and Bernoulli(q), q = sigmoid(m).

    Same values as LMFlow. LMFlow's sqrt(p) has an infinite derivative at p = 0, so the gradient is
    inf * 0 = NaN once sigmoid underflows, and its exp(m) target overflows for large m. Here each
    square root is exp(0.5 * logsigmoid(.)), whose gradient goes smoothly to zero, and the cap is a
    clamp of beta * logits at log(999).
    """
    m = _require_margin(t.margin, "hellinger")
    z = torch.clamp(t.beta * t.logits, max=_LOGIT_MAX)
    sqrt_p, sqrt_not_p = torch.exp(0.5 * F.logsigmoid(z)), torch.exp(0.5 * F.logsigmoid(-z))
    sqrt_q, sqrt_not_q = torch.exp(0.5 * F.logsigmoid(m)), torch.exp(0.5 * F.logsigmoid(-m))
    return 0.5 * ((sqrt_p - sqrt_q) ** 2 + (sqrt_not_p - sqrt_not_q) ** 2)


@_pair_loss
def rev_kl_loss(t: _Terms) -> torch.Tensor:
    """Cross-entropy of p = sigmoid(beta * logits) against the soft label sigmoid(m):
    -sigmoid(m) * logsigmoid(beta * logits) - (1 - sigmoid(m)) * logsigmoid(-beta * logits).

    With m -> +inf it is the sigmoid loss. LMFlow's formula is already stable; it is kept as is.
    """
    m = _require_margin(t.margin, "rev_kl")
    target, z = torch.sigmoid(m), t.beta * t.logits
    return -target * F.logsigmoid(z) - (1.0 - target) * F.logsigmoid(-z)


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
