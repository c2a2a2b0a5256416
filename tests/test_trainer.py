"""DPOv2Trainer on a tiny in-code model: data plumbing (margins, truncation, masks), reference
options, and training on a learnable toy preference with every loss type."""

from __future__ import annotations

import copy
import logging
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils.import_utils import is_torch_bf16_gpu_available
from trl import DPOConfig, DPOTrainer

from dpov2.losses import LOSSES
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Config, DPOv2Trainer, truncate_pair


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


def _pairs(n: int, seed: int = 0) -> Dataset:
    """A learnable preference: chosen responses repeat ' yes', rejected ones ' no', with varying
    lengths, unique prompts and a random margin per pair."""
    rng = random.Random(seed)
    rows = [
        {
            "prompt": f"Question {i}: is this good?",
            "chosen": " yes" * rng.randint(1, 3),
            "rejected": " no" * rng.randint(1, 4),
            "margin": round(rng.uniform(0.5, 3.0), 3),
        }
        for i in range(n)
    ]
    return Dataset.from_list(rows)


# Settings DPOv2Config shares with TRL's DPOConfig, for runs of either trainer.
_SETTINGS: dict[str, Any] = {
    "use_cpu": True,
    "report_to": [],
    "bf16": False,
    "learning_rate": 5e-3,
    "lr_scheduler_type": "constant",
    "logging_steps": 1,
    "save_strategy": "no",
    "seed": 0,
    "beta": 0.1,
    "max_length": 64,
    "disable_tqdm": True,
}


def _config(tmp_path: Path, **overrides: Any) -> DPOv2Config:
    settings: dict[str, Any] = {
        **_SETTINGS,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "max_steps": 24,
    }
    settings.update(overrides)
    return DPOv2Config(**settings)


def _batch(trainer: DPOv2Trainer, rows: range) -> dict[str, Any]:
    return trainer.data_collator([trainer.train_dataset[i] for i in rows])


def _train_logs(trainer: DPOv2Trainer) -> list[dict[str, float]]:
    trainer.train()
    return [log for log in trainer.state.log_history if "rewards/accuracies" in log]


# --- configuration -----------------------------------------------------------------------------


def test_config_keeps_one_loss_type_and_rejects_unknown_ones(tmp_path: Path) -> None:
    assert _config(tmp_path, loss_type="kl").loss_type == "kl"
    with pytest.raises(ValueError, match="unknown loss_type 'dpo'"):
        _config(tmp_path, loss_type="dpo")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_prompt_length": 64, "max_length": 64}, "must be smaller than max_length"),
        ({"max_prompt_length": 0}, "max_prompt_length must be >= 1"),
        ({"ld_alpha": 0.5}, "ld_alpha"),
        ({"use_weighting": True}, "use_weighting"),
        ({"f_divergence_type": "forward_kl"}, "f_divergence_type"),
        ({"len_penalty": float("nan")}, "len_penalty"),
        ({"loss_type": "hinge", "label_smoothing": 0.1}, "label_smoothing=0.1 is not used by"),
        ({"loss_type": "kl", "label_smoothing": 0.2}, "label_smoothing=0.2 is not used by"),
        ({"label_smoothing": 0.5}, r"label_smoothing must be a finite number in \[0, 0.5\)"),
    ],
)
def test_config_rejects_options_the_losses_do_not_define(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **overrides)


def test_margin_losses_need_a_finite_margin_per_row(tmp_path: Path, tokenizer) -> None:
    model = build_tiny_model(tokenizer)
    no_margin = _pairs(4).remove_columns("margin")
    with pytest.raises(ValueError, match="needs a float `margin` column in the train dataset"):
        DPOv2Trainer(
            model,
            args=_config(tmp_path, loss_type="kl"),
            train_dataset=no_margin,
            processing_class=tokenizer,
        )
    margins = [1.0, 2.0, 0.5, float("nan")]
    bad = _pairs(4).remove_columns("margin").add_column("margin", margins)
    with pytest.raises(ValueError, match="train dataset row 3: margin is nan"):
        DPOv2Trainer(
            model,
            args=_config(tmp_path, loss_type="tv"),
            train_dataset=bad,
            processing_class=tokenizer,
        )


# --- data plumbing -----------------------------------------------------------------------------


def _lengths(out: dict[str, list[int]]) -> tuple[int, int, int]:
    return len(out["prompt_ids"]), len(out["chosen_ids"]), len(out["rejected_ids"])


@pytest.mark.parametrize(
    ("prompt", "chosen", "rejected", "max_prompt_length", "expected"),
    [
        # Fits max_length: kept whole although the prompt is longer than max_prompt_length.
        (1500, 100, 100, 1000, (1500, 100, 100)),
        (1948, 100, 30, 1000, (1948, 100, 30)),  # exactly max_length
        # Too long: the prompt keeps its last 1000 tokens, and then everything fits.
        (1500, 600, 100, 1000, (1000, 600, 100)),
        # Still too long after the prompt is cut: the responses keep their first 1048 tokens.
        (1500, 1200, 1100, 1000, (1000, 1048, 1048)),
        # A short prompt is never cut; the responses keep the 1548 tokens left after it.
        (500, 1800, 100, 1000, (500, 1548, 100)),
        # Without max_prompt_length a prompt is never cut, and may leave no room at all.
        (1500, 600, 100, None, (1500, 548, 100)),
        (2100, 10, 10, None, (2100, 0, 0)),
    ],
)
def test_truncate_pair_cuts_only_pairs_longer_than_max_length_as_lmflow(
    prompt: int,
    chosen: int,
    rejected: int,
    max_prompt_length: int | None,
    expected: tuple[int, int, int],
) -> None:
    prompt_ids, chosen_ids, rejected_ids = (
        list(range(start, start + n))
        for start, n in ((0, prompt), (10_000, chosen), (20_000, rejected))
    )
    out = truncate_pair(
        prompt_ids, chosen_ids, rejected_ids, max_length=2048, max_prompt_length=max_prompt_length
    )
    assert _lengths(out) == expected
    # The prompt keeps its end, the responses their start.
    assert out["prompt_ids"] == prompt_ids[len(prompt_ids) - expected[0] :]
    assert out["chosen_ids"] == chosen_ids[: expected[1]]
    assert out["rejected_ids"] == rejected_ids[: expected[2]]
    assert truncate_pair(prompt_ids, chosen_ids, rejected_ids, None, max_prompt_length) == {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
    }


def test_trainer_truncates_prompt_first_and_drops_prompts_that_fill_max_length(
    tmp_path: Path, tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    long_prompt = "Question: " + "what is the answer? " * 6 + "Answer:"
    pairs = Dataset.from_list(
        [
            {"prompt": long_prompt, "chosen": " yes yes yes yes", "rejected": " no", "margin": 1.0},
            {"prompt": "Question: ok?", "chosen": " yes", "rejected": " no", "margin": 1.0},
        ]
    )
    prompt_ids = tokenizer(long_prompt)["input_ids"]
    # TRL ends each response with EOS.
    chosen = long_prompt + " yes yes yes yes" + tokenizer.eos_token
    chosen_ids = tokenizer(chosen)["input_ids"][len(prompt_ids) :]
    assert len(prompt_ids) > 12 and len(chosen_ids) > 2

    model = build_tiny_model(tokenizer)
    cut = DPOv2Trainer(
        model,
        args=_config(tmp_path, max_length=8, max_prompt_length=6),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    row = cut.train_dataset[0]
    assert row["prompt_ids"] == prompt_ids[-6:]
    assert row["chosen_ids"] == chosen_ids[:2]
    assert len(cut.train_dataset) == 2

    # The same pair within max_length is kept whole, its prompt longer than max_prompt_length.
    room = len(prompt_ids) + len(chosen_ids)
    whole = DPOv2Trainer(
        model,
        args=_config(tmp_path, max_length=room, max_prompt_length=6),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    assert whole.train_dataset[0]["prompt_ids"] == prompt_ids
    assert whole.train_dataset[0]["chosen_ids"] == chosen_ids

    with caplog.at_level(logging.WARNING, logger="dpov2.trainer"):
        dropped = DPOv2Trainer(
            model,
            args=_config(tmp_path, max_length=8),
            train_dataset=pairs,
            processing_class=tokenizer,
        )
    assert len(dropped.train_dataset) == 1
    assert "dropped 1 of 2 train pairs" in caplog.text


def test_a_prompt_that_starts_with_bos_gets_no_second_one(tmp_path: Path, tokenizer) -> None:
    """A prompt already rendered by the chat template (BOS included) tokenises as the same
    conversation given as messages; a plain prompt gets the tokenizer's one BOS."""
    bos = tokenizer.bos_token_id
    assert bos is not None
    messages = [{"role": "user", "content": "Question 1: is this good?"}]
    templated = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert templated.startswith(tokenizer.bos_token)
    assert tokenizer(templated)["input_ids"][:2] == [bos, bos]  # what TRL alone would train on
    pairs = Dataset.from_list(
        [
            {"prompt": templated, "chosen": " yes", "rejected": " no", "margin": 1.0},
            {"prompt": "Question 2: ok?", "chosen": " yes", "rejected": " no", "margin": 1.0},
        ]
    )
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer),
        args=_config(tmp_path),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert trainer.train_dataset[0]["prompt_ids"] == rendered
    plain = trainer.train_dataset[1]["prompt_ids"]
    assert plain[0] == bos and plain.count(bos) == 1


def test_margin_column_reaches_every_batch_row_in_order(tmp_path: Path, tokenizer) -> None:
    pairs = _pairs(20)
    margin_of = dict(zip(pairs["prompt"], pairs["margin"], strict=True))
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer),
        args=_config(tmp_path, loss_type="rev_kl", per_device_train_batch_size=6),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    seen = []
    for batch in trainer.get_train_dataloader():
        n = batch["margin"].shape[0]
        assert batch["margin"].dtype == torch.float32
        prompt_mask = (batch["attention_mask"][:n] == 1) & (batch["completion_mask"][:n] == 0)
        for row, margin in zip(range(n), batch["margin"].tolist(), strict=True):
            prompt = tokenizer.decode(
                batch["input_ids"][row][prompt_mask[row]], skip_special_tokens=True
            )
            assert margin == pytest.approx(margin_of[prompt], rel=1e-6)
            seen.append(prompt)
    assert sorted(seen) == sorted(pairs["prompt"])


def _manual_logps(
    model: torch.nn.Module, batch: dict[str, Any], attention_mask: torch.Tensor
) -> torch.Tensor:
    """Response log-probs from the model's plain logits: log_softmax, pick the next token, sum over
    response tokens only."""
    logits = model(input_ids=batch["input_ids"], attention_mask=attention_mask).logits
    token_logps = F.log_softmax(logits[:, :-1].double(), dim=-1)
    picked = token_logps.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (picked * batch["completion_mask"][:, 1:]).sum(dim=1)


@pytest.mark.parametrize("mask_prompt", [False, True])
def test_logps_sum_response_tokens_and_mask_prompt_hides_the_prompt(
    tmp_path: Path, tokenizer, mask_prompt: bool
) -> None:
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer),
        args=_config(tmp_path, mask_prompt=mask_prompt),
        train_dataset=_pairs(8),
        processing_class=tokenizer,
    )
    batch = _batch(trainer, range(8))
    with torch.no_grad():
        chosen, rejected, _ = trainer.sequence_logps(trainer.model, batch)
        full = _manual_logps(trainer.model, batch, batch["attention_mask"])
        hidden = _manual_logps(
            trainer.model, batch, batch["attention_mask"] * batch["completion_mask"]
        )
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    expected = hidden if mask_prompt else full
    ours = torch.cat([chosen, rejected]).double()
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-4)
    assert (full - hidden).abs().max() > 1e-3  # the two settings really differ
    # The reference is a frozen copy of the initial policy, so it sees the same inputs.
    torch.testing.assert_close(torch.cat([ref_chosen, ref_rejected]), torch.cat([chosen, rejected]))


def test_len_penalty_uses_each_pairs_response_token_counts(tmp_path: Path, tokenizer) -> None:
    penalty, beta = 0.7, 0.1
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer, seed=1),
        ref_model=build_tiny_model(tokenizer, seed=2),
        args=_config(tmp_path, len_penalty=penalty, beta=beta),
        train_dataset=_pairs(8),
        processing_class=tokenizer,
    )
    rows = [trainer.train_dataset[i] for i in range(8)]
    length_gap = torch.tensor(
        [len(r["chosen_ids"]) - len(r["rejected_ids"]) for r in rows], dtype=torch.float32
    )
    assert length_gap.abs().sum() > 0
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        chosen, rejected, _ = trainer.sequence_logps(trainer.model, batch)
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    logits = (chosen - rejected) - (ref_chosen - ref_rejected + penalty * length_gap)
    expected = -F.logsigmoid(beta * logits).mean()
    unpenalised = -F.logsigmoid(beta * ((chosen - rejected) - (ref_chosen - ref_rejected))).mean()
    torch.testing.assert_close(loss, expected)
    assert (loss - unpenalised).abs() > 1e-3


def _scored(trainer: DPOv2Trainer, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Summed policy and reference log-probs and response token counts of one batch."""
    with torch.no_grad():
        chosen, rejected, _ = trainer.sequence_logps(trainer.model, batch)
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    n_chosen, n_rejected = batch["completion_mask"][:, 1:].sum(dim=1).float().chunk(2)
    return {
        "chosen": chosen,
        "rejected": rejected,
        "ref_chosen": ref_chosen,
        "ref_rejected": ref_rejected,
        "n_chosen": n_chosen,
        "n_rejected": n_rejected,
    }


def test_ipo_scores_and_logs_per_token_averaged_logps(tmp_path: Path, tokenizer) -> None:
    """IPO as LMFlow (TRL 0.8 averages log-probs per token for ipo) and TRL 1.16: the loss and
    the logged rewards and log-probs come from each response's log-prob divided by its length."""
    beta, penalty = 0.3, 0.05
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer, seed=1),
        ref_model=build_tiny_model(tokenizer, seed=2),
        args=_config(tmp_path, loss_type="ipo", beta=beta, len_penalty=penalty),
        train_dataset=_pairs(8),
        processing_class=tokenizer,
    )
    batch = _batch(trainer, range(8))
    t = _scored(trainer, batch)
    assert (t["n_chosen"] != t["n_rejected"]).any()  # pairs of different lengths
    avg = {k: t[k] / t["n_" + k.removeprefix("ref_")] for k in ("chosen", "rejected")}
    avg |= {f"ref_{k}": t[f"ref_{k}"] / t[f"n_{k}"] for k in ("chosen", "rejected")}
    gap = penalty * (t["n_chosen"] - t["n_rejected"])
    logits = (avg["chosen"] - avg["rejected"]) - (avg["ref_chosen"] - avg["ref_rejected"] + gap)
    expected = ((logits - 1 / (2 * beta)) ** 2).mean()
    summed = (t["chosen"] - t["rejected"]) - (t["ref_chosen"] - t["ref_rejected"] + gap)
    assert (((summed - 1 / (2 * beta)) ** 2).mean() - expected).abs() > 0.1  # sums differ

    trainer._metrics["train"].clear()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    torch.testing.assert_close(loss, expected)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert logged["rewards/chosen"] == pytest.approx(
        (beta * (avg["chosen"] - avg["ref_chosen"])).mean().item(), rel=1e-5
    )
    assert logged["rewards/rejected"] == pytest.approx(
        (beta * (avg["rejected"] - avg["ref_rejected"])).mean().item(), rel=1e-5
    )
    assert logged["logps/chosen"] == pytest.approx(avg["chosen"].mean().item(), rel=1e-5)
    assert logged["logps/rejected"] == pytest.approx(avg["rejected"].mean().item(), rel=1e-5)
    assert logged["loss/ipo"] == pytest.approx(expected.item(), rel=1e-5)


def test_sigmoid_label_smoothing_is_conservative_dpo(tmp_path: Path, tokenizer) -> None:
    beta, eps = 0.2, 0.15
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer, seed=1),
        ref_model=build_tiny_model(tokenizer, seed=2),
        args=_config(tmp_path, beta=beta, label_smoothing=eps),
        train_dataset=_pairs(8),
        processing_class=tokenizer,
    )
    batch = _batch(trainer, range(8))
    t = _scored(trainer, batch)
    z = beta * ((t["chosen"] - t["rejected"]) - (t["ref_chosen"] - t["ref_rejected"]))
    expected = (-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)).mean()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    torch.testing.assert_close(loss, expected)
    assert (loss + F.logsigmoid(z).mean()).abs() > 1e-3  # differs from the unsmoothed loss


# --- precision ---------------------------------------------------------------------------------


def test_bf16_defaults_to_what_the_hardware_supports(tmp_path: Path, tokenizer) -> None:
    """No GPU here: a config that leaves bf16 unset (and use_cpu off) trains in float32; an
    explicit bf16=True is refused, naming the fix."""
    assert not is_torch_bf16_gpu_available(), "this test is about a machine without bf16 GPU"
    config = DPOv2Config(output_dir=str(tmp_path / "auto"), report_to=[], max_steps=1)
    assert config.bf16 is False and not config.use_cpu
    assert DPOv2Config(output_dir=str(tmp_path), use_cpu=True).bf16 is False
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer),
        args=config,
        train_dataset=_pairs(4),
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 1
    with pytest.raises(ValueError, match=r"doesn't support bf16/gpu.*use_cpu"):
        DPOv2Config(output_dir=str(tmp_path), bf16=True)


# --- reference options -------------------------------------------------------------------------


def test_precomputed_reference_logps_equal_the_live_reference(tmp_path: Path, tokenizer) -> None:
    model = build_tiny_model(tokenizer)
    pre = DPOv2Trainer(
        copy.deepcopy(model),
        args=_config(tmp_path, loss_type="kl", precompute_ref_log_probs=True, max_steps=16),
        train_dataset=_pairs(16),
        processing_class=tokenizer,
    )
    live = DPOv2Trainer(
        copy.deepcopy(model),
        args=_config(tmp_path, loss_type="kl"),
        train_dataset=_pairs(16),
        processing_class=tokenizer,
    )
    assert pre.ref_model is None
    batch = _batch(pre, range(8))
    with torch.no_grad():
        live_chosen, live_rejected = live.compute_ref_log_probs(
            live.ref_model, _batch(live, range(8))
        )
    torch.testing.assert_close(batch["ref_chosen_logps"], live_chosen)
    torch.testing.assert_close(batch["ref_rejected_logps"], live_rejected)
    torch.testing.assert_close(
        batch["margin"], torch.tensor(_pairs(16)["margin"][:8], dtype=torch.float32)
    )

    logs = _train_logs(pre)
    assert logs[0]["rewards/accuracies"] == 0.0
    assert logs[-1]["rewards/accuracies"] >= 0.9


def test_peft_adapter_trains_against_its_base_model(tmp_path: Path, tokenizer) -> None:
    """With peft_config only the LoRA adapter trains, and the reference is the base model with the
    adapter off: its log-probs after training equal those of an untouched copy of the base."""
    model = build_tiny_model(tokenizer)
    base_copy = copy.deepcopy(model)
    base_weights = {name: w.detach().clone() for name, w in model.named_parameters()}
    trainer = DPOv2Trainer(
        model,
        args=_config(tmp_path, loss_type="sigmoid", learning_rate=2e-2, max_steps=12),
        train_dataset=_pairs(32),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        ),
    )
    assert trainer.ref_model is None
    adapter_before = {
        name: w.detach().clone() for name, w in trainer.model.named_parameters() if w.requires_grad
    }
    assert adapter_before and all("lora_" in name for name in adapter_before)
    logs = _train_logs(trainer)
    assert logs[0]["rewards/margins"] == 0.0  # adapter starts as identity: policy == base
    assert logs[-1]["rewards/accuracies"] >= 0.9 and logs[-1]["rewards/margins"] > 0.1

    trained = dict(trainer.model.named_parameters())
    for name, before in adapter_before.items():
        if "lora_B" in name:  # lora_A gets no gradient while lora_B is still zero, after it does
            assert (trained[name] - before).abs().max() > 1e-4, name
    base = dict(trainer.model.get_base_model().named_parameters())
    for name, weight in base_weights.items():
        peft_name = name.replace(".weight", ".base_layer.weight")
        torch.testing.assert_close(base.get(name, base.get(peft_name)), weight)

    batch = _batch(trainer, range(8))
    trainer.model.eval()
    with torch.no_grad():
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
        policy_chosen, _, _ = trainer.sequence_logps(trainer.model, batch)
        base_logps = _manual_logps(base_copy, batch, batch["attention_mask"])
    torch.testing.assert_close(
        torch.cat([ref_chosen, ref_rejected]).double(), base_logps, rtol=1e-5, atol=1e-4
    )
    assert (policy_chosen - ref_chosen).abs().max() > 0.1  # the adapter is on for the policy


# --- metrics and data formats ------------------------------------------------------------------

_TOKEN_METRICS = (
    "entropy",
    "num_tokens",
    "logits/chosen",
    "logits/rejected",
    "mean_token_accuracy",
)


def test_logs_trls_metrics_with_trls_values(tmp_path: Path, tokenizer) -> None:
    """A short run logs every metric TRL's DPOTrainer logs, under the same names and with the same
    values, step by step (same model, data, seed and sigmoid loss)."""
    policy, reference = build_tiny_model(tokenizer, seed=1), build_tiny_model(tokenizer, seed=2)
    common = {**_SETTINGS, "max_steps": 3, "per_device_train_batch_size": 4}
    runs = {}
    for name, trainer_cls, config_cls in (
        ("ours", DPOv2Trainer, DPOv2Config),
        ("trl", DPOTrainer, DPOConfig),
    ):
        trainer = trainer_cls(
            copy.deepcopy(policy),
            ref_model=copy.deepcopy(reference),
            args=config_cls(output_dir=str(tmp_path / name), **common),
            train_dataset=_pairs(12),
            processing_class=tokenizer,
        )
        trainer.train()
        runs[name] = [log for log in trainer.state.log_history if "entropy" in log]
    ours, trl = runs["ours"], runs["trl"]
    assert len(ours) == len(trl) == 3
    for our_log, trl_log in zip(ours, trl, strict=True):
        assert set(trl_log) <= set(our_log) | {"total_flos"}
        for key in [*_TOKEN_METRICS, "loss", "rewards/margins", "logps/chosen"]:
            assert our_log[key] == pytest.approx(trl_log[key], rel=1e-4, abs=1e-5), key
    vocab = math.log(len(tokenizer))
    for log in ours:
        assert 0 < log["entropy"] <= vocab
        assert 0 <= log["mean_token_accuracy"] <= 1
        assert math.isfinite(log["logits/chosen"]) and math.isfinite(log["logits/rejected"])
    tokens = [log["num_tokens"] for log in ours]
    assert tokens[0] > 4 * 6 and tokens == sorted(tokens) and len(set(tokens)) == 3


def _conversations(explicit: bool) -> Dataset:
    """TRL's conversational preference formats: explicit (prompt messages, then one assistant
    message per response) or implicit (whole conversations, no prompt column)."""
    rows = []
    for i in range(8):
        prompt = [{"role": "user", "content": f"Question {i}: is this good?"}]
        chosen = [{"role": "assistant", "content": " yes" * (1 + i % 2)}]
        rejected = [{"role": "assistant", "content": " no" * (1 + i % 3)}]
        if explicit:
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        else:
            row = {"chosen": prompt + chosen, "rejected": prompt + rejected}
        rows.append({**row, "margin": 0.5 + i / 4})
    return Dataset.from_list(rows)


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_prompt", "implicit_prompt"])
def test_conversational_pairs_train_with_their_margins(
    tmp_path: Path, tokenizer, explicit: bool
) -> None:
    beta = 0.5
    pairs = _conversations(explicit)
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer, seed=1),
        ref_model=build_tiny_model(tokenizer, seed=2),
        args=_config(tmp_path, loss_type="rev_kl", beta=beta, max_steps=2),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    question = [{"role": "user", "content": "Question 0: is this good?"}]
    rendered = tokenizer.apply_chat_template(question, add_generation_prompt=True)["input_ids"]
    assert row["prompt_ids"] == rendered
    assert tokenizer.decode(row["chosen_ids"]) == " yes" + tokenizer.eos_token

    batch = _batch(trainer, range(8))
    torch.testing.assert_close(batch["margin"], torch.tensor(pairs["margin"]))
    t = _scored(trainer, batch)
    z = beta * ((t["chosen"] - t["rejected"]) - (t["ref_chosen"] - t["ref_rejected"]))

    def rev_kl(margin: torch.Tensor) -> torch.Tensor:
        target = torch.sigmoid(margin)
        return (-target * F.logsigmoid(z) - (1 - target) * F.logsigmoid(-z)).mean()

    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        flipped = trainer.compute_loss(trainer.model, {**batch, "margin": -batch["margin"]})
    torch.testing.assert_close(loss, rev_kl(batch["margin"]))
    torch.testing.assert_close(flipped, rev_kl(-batch["margin"]))
    assert (loss - flipped).abs() > 1e-3
    trainer.train()
    assert trainer.state.global_step == 2

    # The same dataset trains with TRL's own DPOTrainer, which ignores the margin column.
    plain = DPOTrainer(
        build_tiny_model(tokenizer, seed=1),
        ref_model=build_tiny_model(tokenizer, seed=2),
        args=DPOConfig(output_dir=str(tmp_path / "trl"), **{**_SETTINGS, "max_steps": 1}),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    plain.train()
    assert plain.train_dataset[0]["prompt_ids"] == rendered
    assert plain.state.global_step == 1


# --- training ----------------------------------------------------------------------------------


def test_gradient_checkpointing_and_bf16_do_not_change_the_run(tmp_path: Path, tokenizer) -> None:
    runs, layer_calls, output_dtypes = {}, {}, {}
    for name, overrides in {
        "plain": {"gradient_checkpointing": False},
        "checkpointed": {"gradient_checkpointing": True},
        "bf16": {"gradient_checkpointing": True, "bf16": True},
    }.items():
        model = build_tiny_model(tokenizer)
        trainer = DPOv2Trainer(
            model,
            args=_config(tmp_path / name, max_steps=4, **overrides),
            train_dataset=_pairs(32),
            processing_class=tokenizer,
        )
        # What each option switches on, seen from inside the policy's forward passes: a
        # checkpointed layer's modules run again in the backward pass, and under bf16 autocast
        # its projections compute in bfloat16.
        calls, dtypes = [0], set()

        def record(
            module: torch.nn.Module,
            inputs: Any,
            out: torch.Tensor,
            calls: list[int] = calls,
            dtypes: set[torch.dtype] = dtypes,
        ) -> None:
            calls[0] += 1
            dtypes.add(out.dtype)

        model.model.layers[0].self_attn.q_proj.register_forward_hook(record)
        runs[name] = [log["loss"] for log in _train_logs(trainer)]
        layer_calls[name], output_dtypes[name] = calls[0], dtypes
    assert layer_calls["plain"] == 4  # one forward pass of the policy per step
    assert layer_calls["checkpointed"] == 2 * layer_calls["plain"]  # recomputed once
    assert layer_calls["bf16"] == layer_calls["checkpointed"]
    assert output_dtypes == {
        "plain": {torch.float32},
        "checkpointed": {torch.float32},
        "bf16": {torch.bfloat16},
    }
    assert runs["checkpointed"] == pytest.approx(runs["plain"], rel=1e-5)
    assert runs["bf16"] == pytest.approx(runs["plain"], abs=0.01)


@pytest.mark.parametrize("loss_type", list(LOSSES))
def test_training_raises_reward_accuracy_and_margin_then_saves_and_generates(
    tmp_path: Path, tokenizer, loss_type: str
) -> None:
    trainer = DPOv2Trainer(
        build_tiny_model(tokenizer),
        args=_config(tmp_path, loss_type=loss_type),
        train_dataset=_pairs(32),
        processing_class=tokenizer,
    )
    logs = _train_logs(trainer)
    # Step 1 scores the untouched policy against its own copy: every reward is zero.
    assert logs[0]["rewards/accuracies"] == 0.0 and logs[0]["rewards/margins"] == 0.0
    assert f"loss/{loss_type}" in logs[0]
    last = logs[-4:]
    assert min(log["rewards/accuracies"] for log in last) >= 0.9
    assert sum(log["rewards/margins"] for log in last) / len(last) > 0.3

    out = tmp_path / "final"
    trainer.save_model(str(out))
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, trainer.model.state_dict()[name])
    saved_tokenizer = AutoTokenizer.from_pretrained(str(out))
    prompt = saved_tokenizer("Question 3: is this good?", return_tensors="pt")
    generated = reloaded.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
