"""Memory a process keeps after aligning twice: MemorySafeDPOv2Aligner against DPOv2Aligner.

An iterative DPO loop (generate, score, pair, train, repeat) calls the aligner once per round from
one long-lived process, which needs the GPU back for the next generation round. This script calls
each aligner twice in one Python process and reports the process's memory before and after each
call:

- `memory-safe`: `MemorySafeDPOv2Aligner.align()`; training runs in a child process;
- `in-process`: the caller loads the model, `DPOv2Aligner.align()` trains it, and the caller drops
  its own reference (`del model`), as a loop would before generating again.

Measures: on CUDA, `torch.cuda.memory_allocated` (tensors alive in this process) and the memory
nvidia-smi reports for this process (plus PyTorch's cache and the CUDA context); on CPU, the
resident set size. "kept" is the value after the call minus the baseline taken before the first.

The model is a randomly initialised Llama-style decoder built in code (hidden 1024, 28 layers,
vocabulary padded to 32000: ~0.5B parameters) with the in-code tokenizer from `dpov2.tiny_model`,
saved once to a temporary folder so that the child process can load it; nothing is downloaded.
The data are the first pairs of examples/data/scored_sample.json. Before any call is measured,
`loss_check.py` checks in its own process that dpov2's and TRL's sigmoid losses agree on the
saved model and the first pairs; the script stops if they do not.

    python benches/bench_aligner_cuda.py                      # CUDA, bf16, ~0.5B model
    python benches/bench_aligner_cuda.py --device cpu --tiny  # smoke test of the script itself
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from dpov2 import convert_to_paired_dataset
from dpov2.aligner import DPOv2Aligner, MemorySafeDPOv2Aligner, load_model
from dpov2.args import DatasetArguments, DPOv2AlignerArguments, ModelArguments
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from loss_check import check_in_child

SCORED_SAMPLE = Path(__file__).parent.parent / "examples" / "data" / "scored_sample.json"
MIB = 1 << 20


@dataclass
class Reading:
    """One measurement, in bytes; `smi` is None where nvidia-smi does not list this process."""

    allocated: int
    smi: int | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model (smoke test)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per call")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    parser.add_argument(
        "--log", type=Path, help="write the children's and trainers' output here (default: none)"
    )
    return parser.parse_args(argv)


def save_model(folder: Path, tiny: bool) -> None:
    tokenizer = build_tiny_tokenizer()
    if tiny:
        model = build_tiny_model(tokenizer)
    else:
        model = build_tiny_model(
            tokenizer, hidden_size=1024, num_layers=28, num_heads=16, vocab_size=32000
        )
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:,.2f}M parameters")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def measure(device: str) -> Reading:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        return Reading(torch.cuda.memory_allocated(), nvidia_smi_bytes(os.getpid()))
    return Reading(resident_bytes(), None)


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def nvidia_smi_bytes(pid: int) -> int | None:
    """This process's GPU memory as nvidia-smi reports it (None if it is not listed, e.g. in a
    container with its own PID namespace)."""
    listing = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listing.splitlines():
        app_pid, used = (part.strip() for part in line.split(","))
        if int(app_pid) == pid:
            return int(used) * MIB
    return None


def aligner_args(args: argparse.Namespace, output_dir: Path) -> DPOv2AlignerArguments:
    on_cuda = args.device == "cuda"
    return DPOv2AlignerArguments(
        output_dir=str(output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-6,
        max_length=256,
        max_prompt_length=128,
        use_cpu=not on_cuda,
        bf16=on_cuda,
        activation_checkpointing=on_cuda,
        report_to="none",
        save_strategy="no",
        logging_steps=args.steps,
        disable_tqdm=True,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device; use --device cpu --tiny for a smoke test")
        torch.zeros(1, device="cuda")  # the CUDA context, so that it is part of the baseline
    log = io.StringIO() if args.log is None else open(args.log, "w")  # noqa: SIM115
    rows: list[tuple[str, int, Reading, Reading]] = []
    with tempfile.TemporaryDirectory(prefix="bench-aligner-") as tmp, log:
        folder = Path(tmp)
        save_model(folder / "model", args.tiny)
        pairs = convert_to_paired_dataset(str(SCORED_SAMPLE), sampling_paired_method="max_min")
        pairs.to_json(folder / "pairs.jsonl")
        precision = "bf16" if args.device == "cuda" else "fp32"
        print(
            check_in_child(
                folder / "model", folder / "pairs.jsonl", device=args.device, precision=precision
            )
        )
        model_args = ModelArguments(model_name_or_path=str(folder / "model"))
        data = DatasetArguments(
            dataset_path=str(SCORED_SAMPLE), max_train_samples=args.steps * args.batch_size
        )
        baseline = measure(args.device)
        for call in (1, 2):
            before = measure(args.device)
            config = aligner_args(args, folder / f"memory-safe-{call}")
            MemorySafeDPOv2Aligner(model_args, data, config).align(stream=log)
            rows.append(("memory-safe", call, before, measure(args.device)))
        for call in (1, 2):
            before = measure(args.device)
            config = aligner_args(args, folder / f"in-process-{call}")
            model = load_model(model_args)
            with contextlib.redirect_stdout(log):  # the trainer's metrics
                DPOv2Aligner(model_args, data, config).align(model, None, str(SCORED_SAMPLE))
            del model
            rows.append(("in-process", call, before, measure(args.device)))
    print(format_table(baseline, rows, args.device))


def format_table(
    baseline: Reading, rows: list[tuple[str, int, Reading, Reading]], device: str
) -> str:
    def mib(n: int | None) -> str:
        return "n/a" if n is None else f"{n / MIB:,.0f}"

    def kept(n: int | None, base: int | None) -> str:
        return "n/a" if n is None or base is None else f"{(n - base) / MIB:+,.0f}"

    label = "allocated" if device == "cuda" else "RSS"
    header = f"| aligner | call | {label} before (MiB) | {label} after (MiB) | {label} kept (MiB) |"
    if device == "cuda":
        header += " nvidia-smi after (MiB) | nvidia-smi kept (MiB) |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, call, before, after in rows:
        line = (
            f"| {name} | {call} | {mib(before.allocated)} | {mib(after.allocated)} | "
            f"{kept(after.allocated, baseline.allocated)} |"
        )
        if device == "cuda":
            line += f" {mib(after.smi)} | {kept(after.smi, baseline.smi)} |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
