"""Before a CUDA benchmark times anything: dpov2's and TRL's sigmoid losses agree on one batch.

A speed or memory figure for `DPOv2Trainer` against `trl.DPOTrainer` means something only if both
compute the same loss. This builds both trainers on the same model, reference and pairs, takes
the same first batch through each trainer's own tokenisation and collator, and compares the two
losses under each trainer's own precision context (autocast in bf16). Run by
`bench_trainer_cuda.py` and `bench_aligner_cuda.py` in a child process, so that nothing it
allocates stays in the process they measure; it exits non-zero when the losses differ.

    python benches/loss_check.py MODEL_DIR --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, disable_progress_bars
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer

from dpov2.trainer import DPOv2Config, DPOv2Trainer

#: Relative tolerance per precision: the two trainers run the same arithmetic, but in bf16 the
#: fused and unfused log-softmax round differently.
TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2}


def first_batch_loss(trainer: DPOTrainer, size: int) -> float:
    """The trainer's loss on the first `size` pairs of its prepared train set, without gradients."""
    dataset = trainer.train_dataset
    assert isinstance(dataset, Dataset)
    batch = trainer._prepare_inputs(trainer.data_collator([dataset[i] for i in range(size)]))
    trainer.model.eval()
    with torch.no_grad(), trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(trainer.model, batch)
    return float(loss)


def perturbed_copy(model: PreTrainedModel, scale: float = 0.05) -> PreTrainedModel:
    """A reference that differs from the policy: with the policy itself as reference every
    log-ratio is 0 and both losses are log(2) whatever they compute."""
    reference = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in reference.parameters():
            noise = torch.randn(weight.shape, generator=generator) * scale
            weight.add_(noise.to(weight.dtype))
    return reference


def sigmoid_losses(
    model_dir: Path, pairs: Dataset, *, device: str, precision: str
) -> tuple[float, float]:
    """(TRL's, dpov2's) sigmoid loss on the first batch of `pairs`, same model and reference."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    settings: dict[str, Any] = {
        "output_dir": tempfile.mkdtemp(prefix="loss-check-"),
        "use_cpu": device == "cpu",
        "bf16": precision == "bf16",
        "per_device_train_batch_size": len(pairs),
        "max_length": None,
        "report_to": [],
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    reference = perturbed_copy(model)
    trl_trainer = DPOTrainer(
        model,
        ref_model=reference,
        args=DPOConfig(loss_type=["sigmoid"], **settings),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    ours = DPOv2Trainer(
        model,
        ref_model=copy.deepcopy(reference),
        args=DPOv2Config(loss_type="sigmoid", **settings),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    return first_batch_loss(trl_trainer, len(pairs)), first_batch_loss(ours, len(pairs))


def check_in_child(model_dir: Path, pairs_file: Path, *, device: str, precision: str) -> str:
    """Runs the check in a fresh interpreter; returns its report line, raises when it fails."""
    command = [sys.executable, str(Path(__file__).resolve()), str(model_dir), str(pairs_file)]
    command += ["--device", device, "--precision", precision]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"loss check failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path, help="a saved model and tokenizer")
    parser.add_argument("pairs", type=Path, help="a JSON Lines file of prompt/chosen/rejected")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--precision", choices=sorted(TOLERANCE), default="bf16")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    disable_progress_bars()
    pairs = Dataset.from_json(str(args.pairs)).select_columns(["prompt", "chosen", "rejected"])
    pairs = pairs.select(range(min(args.batch_size, len(pairs))))
    trl_loss, dpov2_loss = sigmoid_losses(
        args.model_dir, pairs, device=args.device, precision=args.precision
    )
    tolerance = TOLERANCE[args.precision]
    report = (
        f"sigmoid loss on one batch of {len(pairs)} pairs ({args.precision}): "
        f"trl {trl_loss:.6g}, dpov2 {dpov2_loss:.6g}"
    )
    if abs(trl_loss - dpov2_loss) > tolerance * max(abs(trl_loss), 1e-12):
        sys.exit(f"{report}: they differ by more than {tolerance:g} relative")
    print(f"{report}: agree within {tolerance:g} relative")


if __name__ == "__main__":
    main()
