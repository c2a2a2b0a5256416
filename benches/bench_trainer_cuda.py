"""Throughput and peak memory of DPOv2Trainer against plain trl.DPOTrainer on a ~0.5B decoder.

Three runs on the same synthetic pairs and settings, each in a fresh subprocess so that peak
memory is not polluted by an earlier run:

- `trl`: `trl.DPOTrainer`, sigmoid loss, reference model in memory;
- `dpov2`: `DPOv2Trainer`, sigmoid loss, reference model in memory;
- `dpov2-precomputed`: `DPOv2Trainer` with `precompute_ref_log_probs` (no reference in memory;
  the precompute pass is reported as setup time, not training time).

Before any run is timed, `loss_check.py` checks in its own process that the two trainers'
sigmoid losses agree on the benchmark's model and first batch; the script stops if they do not.

The model is a randomly initialised Llama-style decoder built in code (hidden 1024, 28 layers,
vocabulary padded to 32000: ~0.5B parameters) with the in-code tokenizer from `dpov2.tiny_model`;
nothing is downloaded. Every pair has the same token length, so tokens per step are exact:
2 sequences (chosen, rejected) x batch x (prompt + response + eos) tokens. Tokens/s is tokens per
step over the median step time of the optimizer steps after `--warmup-steps`, with CUDA
synchronised around each step; the median keeps a stray slow step (a GC pause, a busy host) from
skewing a short run.

    python benches/bench_trainer_cuda.py                      # CUDA, bf16, ~0.5B model
    python benches/bench_trainer_cuda.py --device cpu --tiny  # smoke test of the script itself
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, disable_progress_bars
from transformers import PreTrainedModel, PreTrainedTokenizerFast, TrainerCallback
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer

from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Config, DPOv2Trainer
from loss_check import check_in_child

VARIANTS = ("trl", "dpov2", "dpov2-precomputed")
RESULT_PREFIX = "RESULT "


@dataclass
class RunResult:
    variant: str
    params: int
    tokens_per_step: int
    timed_steps: int
    tokens_per_s: float
    peak_memory_bytes: int | None
    setup_s: float


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, with the device synchronised at both ends."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.durations: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self._sync()
        self.durations.append(time.perf_counter() - self._start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny model and few short steps (smoke test)"
    )
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 30; tiny 4)")
    parser.add_argument(
        "--warmup-steps", type=int, help="steps excluded from timing (default 5; tiny 1)"
    )
    parser.add_argument("--batch-size", type=int, help="pairs per step (default 8; tiny 2)")
    parser.add_argument(
        "--prompt-tokens", type=int, help="prompt length in tokens (default 256; tiny 16)"
    )
    parser.add_argument(
        "--response-tokens",
        type=int,
        help="response length in tokens, eos excluded (default 255; tiny 15)",
    )
    parser.add_argument("--hidden-size", type=int, help="default 1024; tiny 64")
    parser.add_argument("--layers", type=int, help="default 28; tiny 2")
    parser.add_argument("--heads", type=int, help="default 16; tiny 4")
    parser.add_argument("--kv-heads", type=int, help="default: same as --heads")
    parser.add_argument(
        "--vocab-size",
        type=int,
        help="model vocabulary, padded past the tokenizer's (default 32000; tiny: tokenizer's)",
    )
    parser.add_argument(
        "--precision", choices=["bf16", "fp32"], default="bf16", help="weights and autocast dtype"
    )
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one run
    args = parser.parse_args(argv)
    sizes = {
        "steps": (30, 4),
        "warmup_steps": (5, 1),
        "batch_size": (8, 2),
        "prompt_tokens": (256, 16),
        "response_tokens": (255, 15),
        "hidden_size": (1024, 64),
        "layers": (28, 2),
        "heads": (16, 4),
        "vocab_size": (32000, None),
    }
    for name, (full, tiny) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if args.warmup_steps >= args.steps:
        parser.error(
            f"--warmup-steps ({args.warmup_steps}) must be smaller than --steps ({args.steps})"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(
            "--device cuda but CUDA is not available; use --device cpu --tiny for a smoke test"
        )
    return args


def synthetic_pairs(tokenizer: PreTrainedTokenizerFast, args: argparse.Namespace) -> Dataset:
    """Pairs of random single-token words: every prompt and response has exactly the requested
    number of tokens, so every row of every batch has the same length."""
    words = sorted(t[1:] for t in tokenizer.get_vocab() if t.startswith("Ġ") and t[1:].isalpha())
    rng = random.Random(args.seed)

    def text(n: int) -> str:
        return "".join(" " + rng.choice(words) for _ in range(n))

    rows = [
        {
            "prompt": text(args.prompt_tokens - 1),  # + bos
            "chosen": text(args.response_tokens),
            "rejected": text(args.response_tokens),
        }
        for _ in range(args.steps * args.batch_size)
    ]
    return Dataset.from_list(rows)


def build_model(tokenizer: PreTrainedTokenizerFast, args: argparse.Namespace) -> PreTrainedModel:
    """The benchmark's decoder, the same for every variant (seeded)."""
    return build_tiny_model(
        tokenizer,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        vocab_size=args.vocab_size,
        max_position_embeddings=args.prompt_tokens + args.response_tokens + 8,
        seed=args.seed,
        dtype=torch.bfloat16 if args.precision == "bf16" else torch.float32,
    )


def check_losses(args: argparse.Namespace) -> str:
    """dpov2's and TRL's sigmoid losses agree on the benchmark's model and first batch (see
    `loss_check.py`); raises SystemExit when they do not, before anything is timed."""
    tokenizer = build_tiny_tokenizer()
    with tempfile.TemporaryDirectory(prefix="bench-loss-check-") as tmp:
        folder = Path(tmp)
        build_model(tokenizer, args).save_pretrained(folder / "model")
        tokenizer.save_pretrained(folder / "model")
        synthetic_pairs(tokenizer, args).to_json(folder / "pairs.jsonl")
        return check_in_child(
            folder / "model", folder / "pairs.jsonl", device=args.device, precision=args.precision
        )


def run_variant(variant: str, args: argparse.Namespace) -> RunResult:
    """Train one variant for `args.steps` steps and measure it."""
    disable_progress_bars()
    tokenizer = build_tiny_tokenizer()
    model = build_model(tokenizer, args)
    params = sum(p.numel() for p in model.parameters())
    settings: dict[str, Any] = {
        "output_dir": tempfile.mkdtemp(prefix=f"bench-{variant}-"),
        "use_cpu": args.device == "cpu",
        "bf16": args.precision == "bf16",
        "per_device_train_batch_size": args.batch_size,
        "max_steps": args.steps,
        "learning_rate": 1e-6,
        "gradient_checkpointing": not args.no_gradient_checkpointing,
        "max_length": None,
        "logging_steps": args.steps,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "seed": args.seed,
    }
    data = synthetic_pairs(tokenizer, args)
    timer = StepTimer(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer: DPOTrainer
    if variant == "trl":
        trainer = DPOTrainer(
            model,
            ref_model=copy.deepcopy(model),
            args=DPOConfig(loss_type=["sigmoid"], **settings),
            train_dataset=data,
            processing_class=tokenizer,
            callbacks=[timer],
        )
    else:
        precompute = variant == "dpov2-precomputed"
        trainer = DPOv2Trainer(
            model,
            ref_model=None if precompute else copy.deepcopy(model),
            args=DPOv2Config(loss_type="sigmoid", precompute_ref_log_probs=precompute, **settings),
            train_dataset=data,
            processing_class=tokenizer,
            callbacks=[timer],
        )
    setup_s = time.perf_counter() - start

    prepared = trainer.train_dataset
    assert isinstance(prepared, Dataset)
    lengths = {len(r["prompt_ids"]) + len(r["chosen_ids"]) for r in prepared}
    lengths |= {len(r["prompt_ids"]) + len(r["rejected_ids"]) for r in prepared}
    if len(lengths) != 1:
        raise RuntimeError(
            f"synthetic pairs should all have one token length, got {sorted(lengths)}"
        )
    tokens_per_step = 2 * args.batch_size * lengths.pop()

    trainer.train()
    timed = timer.durations[args.warmup_steps :]
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
    return RunResult(
        variant=variant,
        params=params,
        tokens_per_step=tokens_per_step,
        timed_steps=len(timed),
        tokens_per_s=tokens_per_step / statistics.median(timed),
        peak_memory_bytes=peak,
        setup_s=setup_s,
    )


def run_in_subprocess(variant: str, argv: list[str]) -> RunResult:
    """Run one variant in a fresh interpreter so its peak memory is its own."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *argv, "--variant", variant],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"variant {variant} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(RESULT_PREFIX))
    return RunResult(**json.loads(line[len(RESULT_PREFIX) :]))


def format_table(results: list[RunResult]) -> str:
    """A markdown table with ratios against plain TRL."""
    base = next(r for r in results if r.variant == "trl")

    def gib(n: int | None) -> str:
        return "n/a" if n is None else f"{n / 2**30:.2f}"

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or b is None else f"{a / b:.2f}x"

    lines = [
        "| run | tokens/s | vs trl | peak mem (GiB) | vs trl | setup (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.variant} | {r.tokens_per_s:,.0f} | {ratio(r.tokens_per_s, base.tokens_per_s)} "
            f"| {gib(r.peak_memory_bytes)} | {ratio(r.peak_memory_bytes, base.peak_memory_bytes)} "
            f"| {r.setup_s:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.variant is not None:
        print(RESULT_PREFIX + json.dumps(asdict(run_variant(args.variant, args))))
        return
    print(check_losses(args))
    results = [run_in_subprocess(variant, argv) for variant in VARIANTS]
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    first = results[0]
    print(
        f"device: {device}; params: {first.params / 1e6:.1f}M; {args.precision}; "
        f"batch {args.batch_size} pairs x {first.tokens_per_step // (2 * args.batch_size)} tokens; "
        f"{first.timed_steps} timed steps after {args.warmup_steps} warm-up; "
        f"gradient checkpointing {'off' if args.no_gradient_checkpointing else 'on'}"
    )
    print(format_table(results))


if __name__ == "__main__":
    main()
