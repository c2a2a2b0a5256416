"""The DPOv2 loss family (LMFlow's `DPOv2Trainer`) as plain tensor functions.

Every loss takes per-example sequence log-probabilities of the policy and the reference for the
chosen and rejected responses, and returns a `PairLoss`: per-example losses plus the
chosen/rejected rewards that are logged. The log-probabilities are summed over response tokens,
except for the losses in `PER_TOKEN_LOSS_TYPES` (`ipo`), which take them averaged per token (the
trainer does the averaging, as LMFlow on TRL 0.8 and TRL 1.16 do). With

    logits = (policy_chosen - policy_rejected)
             - (reference_chosen - reference_rejected + len_penalty_term)

the preference-only losses are `sigmoid`, `hinge`, `ipo`, `cross_entropy` and `raft`; the
margin-aware ones (`kl`, `tv`, `hellinger`, `rev_kl`) pull p = sigmoid(beta * logits) towards a
target probability set by each pair's reward `margin` (chosen score minus rejected score).

Rewards are the raw implicit rewards beta * (policy - reference) log-prob, without the length
penalty, as LMFlow and TRL log them.

The formulas are LMFlow's (`DPOv2Trainer.dpo_loss`). Where LMFlow's float32 arithmetic overflows
(kl, tv, hellinger), the same values are computed in a stable form; each docstring says over which
range LMFlow's version fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

__all__ = [
    "LABEL_SMOOTHING_LOSS_TYPES",
    "LOSSES",
    "MARGIN_LOSS_TYPES",
    "PER_TOKEN_LOSS_TYPES",
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
        label_smoothing: float = 0.0,
    ) -> PairLoss: ...


class _Terms(NamedTuple):
    """What a loss formula works on: the pair's `logits` (see the module docstring), `beta`, the
    `margin`, the chosen response's log-probs (for the losses that look at it alone) and the
    `label_smoothing` (only the losses in `LABEL_SMOOTHING_LOSS_TYPES` get a non-zero one)."""

    logits: torch.Tensor
    beta: float
    margin: torch.Tensor | None
    policy_chosen_logps: torch.Tensor
    reference_chosen_logps: torch.Tensor
    label_smoothing: float


Formula = Callable[[_Terms], torch.Tensor]


def _pair_loss(*, accepts_label_smoothing: bool = False) -> Callable[[Formula], LossFn]:
    """Make the loss whose per-example values a formula gives. The logits and the logged rewards
    are the same for every loss, so they are computed here, once, and each loss is its formula.
    A loss made without `accepts_label_smoothing` refuses a non-zero `label_smoothing` rather than
    ignoring it."""

    def make(formula: Formula) -> LossFn:
        def loss(
            policy_chosen_logps: torch.Tensor,
            policy_rejected_logps: torch.Tensor,
            reference_chosen_logps: torch.Tensor,
            reference_rejected_logps: torch.Tensor,
            *,
            beta: float,
            margin: torch.Tensor | None = None,
            len_penalty_term: torch.Tensor | float = 0.0,
            label_smoothing: float = 0.0,
        ) -> PairLoss:
            if label_smoothing != 0.0 and not accepts_label_smoothing:
                raise ValueError(
                    f"{formula.__name__} does not use label_smoothing (got {label_smoothing}); "
                    f"only {', '.join(sorted(LABEL_SMOOTHING_LOSS_TYPES))} does"
                )
            pi_logratios = policy_chosen_logps - policy_rejected_logps
            ref_logratios = reference_chosen_logps - reference_rejected_logps + len_penalty_term
            logits = pi_logratios - ref_logratios
            terms = _Terms(
                logits, beta, margin, policy_chosen_logps, reference_chosen_logps, label_smoothing
            )
            chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
            rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
            return PairLoss(formula(terms), chosen_rewards, rejected_rewards)

        loss.__name__ = loss.__qualname__ = formula.__name__
        loss.__doc__ = formula.__doc__
        return loss

    return make


def _require_margin(margin: torch.Tensor | None, loss_type: str) -> torch.Tensor:
    if margin is None:
        raise ValueError(
            f"loss_type={loss_type!r} needs a per-example `margin` (chosen score minus rejected "
            "score); got None. Add a float `margin` column to the pair dataset."
        )
    return margin


@_pair_loss(accepts_label_smoothing=True)
def sigmoid_loss(t: _Terms) -> torch.Tensor:
    """DPO's logistic loss, -logsigmoid(beta * logits), as in LMFlow. `margin` is ignored.

    With `label_smoothing` = eps > 0 it is conservative DPO (cDPO), the label flipped with
    probability eps: -(1 - eps) * logsigmoid(beta * logits) - eps * logsigmoid(-beta * logits),
    as TRL 0.8's sigmoid loss. LMFlow's own loss has no label smoothing.
    """
    z = t.beta * t.logits
    if t.label_smoothing == 0.0:
        return -F.logsigmoid(z)
    return -(1.0 - t.label_smoothing) * F.logsigmoid(z) - t.label_smoothing * F.logsigmoid(-z)


@_pair_loss()
def hinge_loss(t: _Terms) -> torch.Tensor:
    """SLiC's hinge loss, relu(1 - beta * logits), as in LMFlow: zero once the pair is separated
    by 1/beta."""
    return torch.relu(1.0 - t.beta * t.logits)


@_pair_loss()
def ipo_loss(t: _Terms) -> torch.Tensor:
    """IPO's squared loss, (logits - 1/(2 beta))^2, on per-token averaged log-probs.

    The caller passes each log-prob divided by its response's token count (`ipo` is in
    `PER_TOKEN_LOSS_TYPES`), as LMFlow does (TRL 0.8's `concatenated_forward` averages when
    loss_type is ipo) and as TRL 1.16 does (it divides each log-ratio by its response length).
    The formula itself is the same for sums; only its inputs differ.
    """
    return (t.logits - 1.0 / (2.0 * t.beta)) ** 2


@_pair_loss()
def cross_entropy_loss(t: _Terms) -> torch.Tensor:
    """-logsigmoid(beta * (policy_chosen - reference_chosen)): raises the chosen response only.

    The rejected response and the length penalty play no part, as in LMFlow.
    """
    return -F.logsigmoid(t.beta * (t.policy_chosen_logps - t.reference_chosen_logps))


@_pair_loss()
def raft_loss(t: _Terms) -> torch.Tensor:
    """RAFT: negative log-likelihood of the chosen response (summed over its tokens), i.e. SFT,
    as in LMFlow."""
    return -t.policy_chosen_logps


@_pair_loss()
def kl_loss(t: _Terms) -> torch.Tensor:
    """KL(p || p_gt) between two Bernoullis: p = min(sigmoid(beta * logits), 0.999) and the target
    p_gt = exp(m) / (1 + exp(m) + 1e-3): LMFlow's formula and values, computed in log space.

    Where LMFlow's float32 version fails (z = beta * logits, m = margin): m > 17.3, where
    1 - p_gt rounds to 0 and log(0) makes the loss inf (and it is already 6% off from m = 16);
    m < -104, where exp(m) underflows and log(p_gt) = -inf; and z < -88.7, where sigmoid
    underflows to 0 and p * log(p) = 0 * -inf = NaN. Here p_gt = sigmoid(m - log(1.001)) (the same
    number), every log comes from logsigmoid, and the 0.999 cap is a clamp of z at log(999),
    above which the gradient is zero as in LMFlow.
    """
    m = _require_margin(t.margin, "kl")
    z = torch.clamp(t.beta * t.logits, max=_LOGIT_MAX)
    log_p, log_not_p = F.logsigmoid(z), F.logsigmoid(-z)
    target_z = m - _KL_TARGET_SHIFT
    log_gt, log_not_gt = F.logsigmoid(target_z), F.logsigmoid(-target_z)
    p = torch.exp(log_p)
    return p * (log_p - log_gt) + (1.0 - p) * (log_not_p - log_not_gt)


@_pair_loss()
def tv_loss(t: _Terms) -> torch.Tensor:
    """Total variation |p - sigmoid(m)| with p = sigmoid(beta * logits): LMFlow's formula.

    LMFlow writes the target as exp(m) / (1 + exp(m)), which is inf / inf = NaN for m > 88.7 in
    float32; the equal sigmoid(m) is used instead. Elsewhere the two agree.
    """
    m = _require_margin(t.margin, "tv")
    return torch.abs(torch.sigmoid(t.beta * t.logits) - torch.sigmoid(m))


@_pair_loss()
def hellinger_loss(t: _Terms) -> torch.Tensor:
    """Squared Hellinger distance 0.5 * ((sqrt p - sqrt q)^2 + (sqrt(1-p) - sqrt(1-q))^2) between
    Bernoulli(p), p = min(sigmoid(beta * logits), 0.999), and Bernoulli(q), q = sigmoid(m):
    LMFlow's formula and values.

    Where LMFlow's float32 version fails (z = beta * logits, m = margin): m > 88.7, where its
    exp(m) / (1 + exp(m)) target is inf / inf = NaN; and z < -88.7, where sigmoid underflows to 0
    and the derivative of sqrt(p) there is infinite, so the gradient is inf * 0 = NaN. Here each
    square root is exp(0.5 * logsigmoid(.)), whose gradient goes smoothly to zero, and the cap is a
    clamp of z at log(999).
    """
    m = _require_margin(t.margin, "hellinger")
    z = torch.clamp(t.beta * t.logits, max=_LOGIT_MAX)
    sqrt_p, sqrt_not_p = torch.exp(0.5 * F.logsigmoid(z)), torch.exp(0.5 * F.logsigmoid(-z))
    sqrt_q, sqrt_not_q = torch.exp(0.5 * F.logsigmoid(m)), torch.exp(0.5 * F.logsigmoid(-m))
    return 0.5 * ((sqrt_p - sqrt_q) ** 2 + (sqrt_not_p - sqrt_not_q) ** 2)


@_pair_loss()
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

# Loss types that take log-probs averaged over each response's tokens instead of summed.
PER_TOKEN_LOSS_TYPES: frozenset[str] = frozenset({"ipo"})

# Loss types that accept a non-zero `label_smoothing`; the others refuse one.
LABEL_SMOOTHING_LOSS_TYPES: frozenset[str] = frozenset({"sigmoid"})


def get_loss(loss_type: str) -> LossFn:
    """Return the loss registered under `loss_type`; a ValueError names the choices otherwise."""
    try:
        return LOSSES[loss_type]
    except KeyError:
        raise ValueError(
            f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSSES)}"
        ) from None
