"""The DPOv2 losses against LMFlow's formulas written out in float64, and against TRL's own loss."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from dpov2.losses import LABEL_SMOOTHING_LOSS_TYPES, LOSSES, MARGIN_LOSS_TYPES, get_loss
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Config, DPOv2Trainer

# (policy_chosen, policy_rejected, reference_chosen, reference_rejected, margin, beta, len_term)
Case = tuple[float, float, float, float, float, float, float]
CASES: list[Case] = [
    (-10.0, -12.0, -11.0, -11.5, 1.5, 0.1, 0.0),  # logits 1.5, p below every target
    (-10.0, -12.0, -11.0, -11.5, 1.5, 0.1, 0.3),  # same with a length penalty: logits 1.2
    (-20.0, -5.0, -10.0, -10.0, -0.5, 0.5, -1.0),  # logits -14: strongly wrong preference
    (-3.0, -30.0, -8.0, -9.0, 0.2, 1.0, 2.0),  # logits 24: p clipped at 0.999 in kl/hellinger
    (-6.0, -7.0, -6.5, -6.0, 2.0, 2.0, 0.0),  # logits 1.5: beta * logits = 3 overshoots margin 2
]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logits(c: Case) -> float:
    pc, pr, rc, rr, _m, _b, lp = c
    return (pc - pr) - (rc - rr + lp)


def _ref_sigmoid(c: Case, label_smoothing: float = 0.0) -> float:
    z = c[5] * _logits(c)
    return -(1 - label_smoothing) * math.log(_sig(z)) - label_smoothing * math.log(_sig(-z))


def _ref_hinge(c: Case) -> float:
    return max(0.0, 1.0 - c[5] * _logits(c))


def _ref_ipo(c: Case) -> float:
    return (_logits(c) - 1.0 / (2.0 * c[5])) ** 2


def _ref_cross_entropy(c: Case) -> float:
    return -math.log(_sig(c[5] * (c[0] - c[2])))


def _ref_raft(c: Case) -> float:
    return -c[0]


def _ref_kl(c: Case) -> float:
    m, b = c[4], c[5]
    p = min(_sig(b * _logits(c)), 0.999)
    not_p = max(_sig(-b * _logits(c)), 1 - 0.999)
    # q = exp(m) / (1 + exp(m) + 1e-3), and 1 - q written as one fraction so it survives large m.
    q = math.exp(m) / (1.0 + math.exp(m) + 1e-3)
    not_q = (1.0 + 1e-3) / (1.0 + math.exp(m) + 1e-3)
    return p * (math.log(p) - math.log(q)) + not_p * (math.log(not_p) - math.log(not_q))


def _ref_tv(c: Case) -> float:
    m, b = c[4], c[5]
    return abs(_sig(b * _logits(c)) - math.exp(m) / (1.0 + math.exp(m)))


def _ref_hellinger(c: Case) -> float:
    m, b = c[4], c[5]
    p = min(_sig(b * _logits(c)), 0.999)
    not_p = max(_sig(-b * _logits(c)), 1 - 0.999)
    q, not_q = math.exp(m) / (1.0 + math.exp(m)), 1.0 / (1.0 + math.exp(m))
    return 0.5 * ((math.sqrt(p) - math.sqrt(q)) ** 2 + (math.sqrt(not_p) - math.sqrt(not_q)) ** 2)


def _ref_rev_kl(c: Case) -> float:
    m, b = c[4], c[5]
    x = b * _logits(c)
    return -_sig(m) * math.log(_sig(x)) - (1 - _sig(m)) * math.log(_sig(-x))


REFERENCE: dict[str, Callable[[Case], float]] = {
    "sigmoid": _ref_sigmoid,
    "hinge": _ref_hinge,
    "ipo": _ref_ipo,
    "cross_entropy": _ref_cross_entropy,
    "raft": _ref_raft,
    "kl": _ref_kl,
    "tv": _ref_tv,
    "hellinger": _ref_hellinger,
    "rev_kl": _ref_rev_kl,
}


def _run(loss_type: str, cases: list[Case], dtype: torch.dtype = torch.float64):
    """Evaluate one loss case by case: (losses, d loss / d policy_chosen, rewards), stacked."""
    losses, grads, chosen_rewards, rejected_rewards = [], [], [], []
    for pc_value, pr, rc, rr, margin, beta, len_term in cases:
        pc = torch.tensor([pc_value], dtype=dtype, requires_grad=True)
        pr_t, rc_t, rr_t, m_t, len_t = (
            torch.tensor([v], dtype=dtype) for v in (pr, rc, rr, margin, len_term)
        )
        out = get_loss(loss_type)(
            pc, pr_t, rc_t, rr_t, beta=beta, margin=m_t, len_penalty_term=len_t
        )
        out.losses.sum().backward()
        assert pc.grad is not None
        losses.append(out.losses.detach())
        grads.append(pc.grad)
        chosen_rewards.append(out.chosen_rewards)
        rejected_rewards.append(out.rejected_rewards)
    return (
        torch.cat(losses),
        torch.cat(grads),
        (torch.cat(chosen_rewards), torch.cat(rejected_rewards)),
    )


def _finite_difference(loss_type: str, c: Case, h: float = 1e-6) -> float:
    ref = REFERENCE[loss_type]
    up, down = (c[0] + h, *c[1:]), (c[0] - h, *c[1:])
    return (ref(up) - ref(down)) / (2 * h)  # type: ignore[arg-type]


def test_registry_names_every_loss_type() -> None:
    assert set(LOSSES) == set(REFERENCE)
    assert set(MARGIN_LOSS_TYPES) == {"kl", "tv", "hellinger", "rev_kl"}
    with pytest.raises(ValueError, match=r"unknown loss_type 'dpo'.*sigmoid"):
        get_loss("dpo")


@pytest.mark.parametrize("loss_type", list(REFERENCE))
def test_loss_values_match_lmflow_formulas_in_float64(loss_type: str) -> None:
    losses, _, _ = _run(loss_type, CASES)
    expected = torch.tensor([REFERENCE[loss_type](c) for c in CASES], dtype=torch.float64)
    torch.testing.assert_close(losses, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss_type", list(REFERENCE))
def test_gradient_wrt_chosen_logp_matches_finite_differences(loss_type: str) -> None:
    _, grad, _ = _run(loss_type, CASES)
    expected = torch.tensor([_finite_difference(loss_type, c) for c in CASES], dtype=torch.float64)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def _target_probability(loss_type: str, c: Case) -> float:
    m = c[4]
    return math.exp(m) / (1 + math.exp(m) + 1e-3) if loss_type == "kl" else _sig(m)


@pytest.mark.parametrize("loss_type", list(REFERENCE))
def test_gradient_sign_wrt_chosen_logp(loss_type: str) -> None:
    """Raising the chosen log-prob lowers the loss, unless the pair already overshoots its target:
    IPO's 1/(2 beta) log-ratio, or the margin's probability for the margin-aware losses."""
    _, grad, _ = _run(loss_type, CASES)
    for c, g in zip(CASES, grad.tolist(), strict=True):
        beta, logits = c[5], _logits(c)
        if loss_type == "hinge" and beta * logits >= 1:
            assert g == 0.0, c  # separated pairs contribute nothing
        elif loss_type in ("kl", "hellinger") and _sig(beta * logits) > 0.999:
            assert g == 0.0, c  # LMFlow's cap saturates
        elif loss_type == "ipo":
            assert math.copysign(1, g) == math.copysign(1, logits - 1 / (2 * beta)), c
        elif loss_type in MARGIN_LOSS_TYPES:
            overshoot = _sig(beta * logits) - _target_probability(loss_type, c)
            assert math.copysign(1, g) == math.copysign(1, overshoot), c
        else:
            assert g < 0, c


def test_sigmoid_with_label_smoothing_is_cdpo_and_other_losses_refuse_it() -> None:
    eps = 0.2
    for c in CASES:
        pc, pr, rc, rr, _m, _beta, len_term = (torch.tensor([v], dtype=torch.float64) for v in c)
        out = get_loss("sigmoid")(
            pc, pr, rc, rr, beta=c[5], len_penalty_term=len_term, label_smoothing=eps
        )
        assert out.losses.item() == pytest.approx(_ref_sigmoid(c, eps), rel=1e-12)
        assert out.losses.item() != pytest.approx(_ref_sigmoid(c), rel=1e-3)
    assert set(LABEL_SMOOTHING_LOSS_TYPES) == {"sigmoid"}
    x = torch.zeros(2)
    for loss_type in set(LOSSES) - LABEL_SMOOTHING_LOSS_TYPES:
        with pytest.raises(ValueError, match="does not use label_smoothing"):
            get_loss(loss_type)(x, x, x, x, beta=0.1, margin=x, label_smoothing=0.1)


def test_rewards_are_raw_beta_log_ratios_without_length_penalty() -> None:
    _, _, (chosen_rewards, rejected_rewards) = _run("sigmoid", CASES)
    for c, chosen, rejected in zip(
        CASES, chosen_rewards.tolist(), rejected_rewards.tolist(), strict=True
    ):
        assert chosen == pytest.approx(c[5] * (c[0] - c[2]))
        assert rejected == pytest.approx(c[5] * (c[1] - c[3]))


@pytest.mark.parametrize("loss_type", sorted(MARGIN_LOSS_TYPES))
def test_margin_losses_stay_finite_where_lmflow_overflows_in_float32(loss_type: str) -> None:
    """m = 200 overflows exp(m) in float32, m = 20 rounds LMFlow's 1 - p_gt to 0 (kl), and
    beta * logits = -150 underflows sigmoid to 0; the float64 formula is still representable there
    and is the value to match."""
    cases: list[Case] = [
        (-160.0, -10.0, -10.0, -10.0, 200.0, 1.0, 0.0),
        (-1.0, -2.0, -1.0, -1.0, 200.0, 1.0, 0.0),
        (-1.0, -2.0, -1.0, -1.0, 20.0, 1.0, 0.0),
        (-100.0, -2.0, -1.0, -1.0, 20.0, 1.0, 0.0),
    ]
    losses, grad, _ = _run(loss_type, cases, dtype=torch.float32)
    assert torch.isfinite(losses).all() and torch.isfinite(grad).all()
    expected = torch.tensor([REFERENCE[loss_type](c) for c in cases], dtype=torch.float32)
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-5)
    assert (grad <= 0).all()  # both pairs fall short of a near-certain target


@pytest.mark.parametrize("loss_type", sorted(MARGIN_LOSS_TYPES))
def test_margin_losses_require_a_margin(loss_type: str) -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="margin"):
        get_loss(loss_type)(x, x, x, x, beta=0.1)


# --- agreement with TRL's own DPOTrainer loss -------------------------------------------------


def _toy_pairs() -> Dataset:
    prompts = [
        "Question: is this good?",
        "User: hello",
        "Question: what is the answer?",
        "Prompt: write",
    ]
    rows = [
        {
            "prompt": p,
            "chosen": " yes" * (1 + i % 3),
            "rejected": " no" * (1 + (i + 1) % 4),
            "margin": 1.0,
        }
        for i, p in enumerate(prompts)
    ]
    return Dataset.from_list(rows)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_matches_trl_dpo_trainer_loss(loss_type: str, tmp_path) -> None:
    """TRL 1.16 computes its loss inline in `DPOTrainer._compute_loss`, so both trainers score the
    same batch with the same policy and reference. Both IPOs average the log-probs per token."""
    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_model(tokenizer, seed=1)
    # Different weights for the reference, so that the log-ratios are not zero.
    reference = build_tiny_model(tokenizer, seed=2)
    common = {"use_cpu": True, "report_to": [], "bf16": False, "beta": 0.3, "max_length": 64}
    trl_trainer = DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(reference),
        args=DPOConfig(output_dir=str(tmp_path / "trl"), loss_type=[loss_type], **common),
        train_dataset=_toy_pairs(),
        processing_class=tokenizer,
    )
    ours = DPOv2Trainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(reference),
        args=DPOv2Config(output_dir=str(tmp_path / "ours"), loss_type=loss_type, **common),
        train_dataset=_toy_pairs(),
        processing_class=tokenizer,
    )
    rows = [trl_trainer.train_dataset[i] for i in range(len(trl_trainer.train_dataset))]
    trl_batch = trl_trainer.data_collator(rows)
    batch = ours.data_collator([ours.train_dataset[i] for i in range(len(ours.train_dataset))])
    torch.testing.assert_close(batch["input_ids"], trl_batch["input_ids"])

    with torch.no_grad():
        trl_loss = trl_trainer.compute_loss(trl_trainer.model, trl_batch)
        our_loss = ours.compute_loss(ours.model, batch)
    assert trl_loss.item() > 0.0
    torch.testing.assert_close(our_loss, trl_loss, rtol=1e-5, atol=1e-6)
