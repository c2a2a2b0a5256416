"""The ``dpov2`` command: ``dpov2 pair INPUT OUTPUT [options]``, ``dpov2 inspect PAIRS``,
``dpov2 align CONFIG|FLAGS``, ``dpov2 reference-logps CONFIG|FLAGS --output PAIRS``,
``dpov2 generate CONFIG|FLAGS``, ``dpov2 score CONFIG|FLAGS`` and ``dpov2 iterate CONFIG``.

Each subcommand is a :class:`Command` (its arguments and what runs them) in :data:`COMMANDS`;
another one (``align``, say) is added by writing its two functions and listing it there.
User mistakes (bad options, bad input data, an existing output) end with exit code 2 and one
line on stderr, failed reads and writes (permissions, a full disk) with exit code 1 and one
line; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from dpov2.convert import MARGIN_SOURCES, PairOptions, write_pairs
from dpov2.convert.lengths import length_unit
from dpov2.convert.options import KEYS
from dpov2.convert.summary import stats_json
from dpov2.errors import InputError
from dpov2.formats import INPUT_FORMATS, OUTPUT_FORMATS, ScoredSource, open_scored
from dpov2.formats.atomic import published_outputs
from dpov2.pairing import METHODS, TIE_ORDERS
from dpov2.report import check_output, inspect_pairs, write_json, write_plot

__all__ = ["COMMANDS", "Command", "main"]

EXIT_USER_ERROR = 2
EXIT_IO_ERROR = 1


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    # Arguments its parser does not know are left in `args.rest` for `run` to parse, rather
    # than refused: `align` parses its many training flags itself, so that the trainer they
    # come from is imported only when `align` runs.
    parses_rest: bool = False


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``dpov2`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = _parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (code 2)
        return int(exit_.code or 0)
    already = len(published_outputs())
    _keep_freed_memory()
    try:
        with _sigterm_as_interrupt():
            return int(args.command.run(args))
    except InputError as err:
        print(f"dpov2 {args.command.name}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # a file that cannot be read or written: no bug, no traceback
        print(f"dpov2 {args.command.name}: error: {err}", file=sys.stderr)
        return EXIT_IO_ERROR
    except KeyboardInterrupt:
        written = ", ".join(map(str, published_outputs()[already:])) or "no output"
        print(f"dpov2 {args.command.name}: interrupted; {written} written", file=sys.stderr)
        return 130


# glibc's `mallopt` parameters: how much free memory past the top of a heap `malloc` keeps
# for reuse instead of handing it back to the system, and the size from which it maps each
# allocation on its own (unmapped again when freed) instead of taking it from a heap; 32 MiB is
# the most glibc takes on 64-bit systems.
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_TOP_PAD_BYTES = 64 << 20
_MMAP_THRESHOLD_BYTES = 32 << 20


def _keep_freed_memory() -> None:
    """Has glibc's ``malloc`` keep freed memory for reuse: 64 MiB past the top of each heap,
    and buffers up to 32 MiB taken from a heap rather than mapped apart. Every batch
    allocates and frees buffers of megabytes; memory handed back comes again as fresh pages,
    each faulted in and zeroed by the kernel. Setting the pad switches off glibc's own
    raising of the mapping threshold, and left it wherever it had got to: in some runs each
    batch's 8 MiB column buffers were mapped and unmapped again. On ``dpov2 pair`` of 1M
    prompts x 8 responses, the pad alone gave 50-490k page faults from run to run (JSON
    Lines to JSON Lines; 280-320k to Parquet); with the threshold set too, 48-54k in every
    run (80k to Parquet). Only the CLI does this (a library must leave its host's allocator
    alone); other C libraries are left as they are."""
    if platform.libc_ver()[0] != "glibc":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_TOP_PAD, _TOP_PAD_BYTES)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments, with those left for the command to parse in ``args.rest``."""
    args, rest = parser.parse_known_args(argv)
    if rest and not args.command.parses_rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpov2", description="DPO preference pairs from reward-scored generations."
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(command=command)
    return parser


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that temporary output files are removed."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- dpov2 pair -------------------------------------------------------------------------------


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="scored dataset: file, or save_to_disk folder")
    parser.add_argument("output", type=Path, help="pair dataset file to write")
    select = parser.add_argument_group("pair selection")
    select.add_argument(
        "--method", default="random", help=f"one of {', '.join(METHODS)} (default: random)"
    )
    select.add_argument(
        "--pairs-per-prompt",
        type=int,
        default=1,
        metavar="K",
        help="at most K pairs per prompt (default 1)",
    )
    select.add_argument(
        "--length-penalty",
        type=float,
        default=0.0,
        help="rank by score - PENALTY * length (> 0 favours shorter responses; default 0)",
    )
    select.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="measure lengths in tokens of this local tokenizer (default: characters)",
    )
    select.add_argument("--seed", type=int, default=42, help="default: 42")
    select.add_argument(
        "--keep-ties", action="store_true", help="keep pairs of equal rewards (LMFlow does)"
    )
    select.add_argument(
        "--tie-order",
        default="dpov2",
        help=f"one of {', '.join(TIE_ORDERS)}: how equal rewards are ordered, and which of a "
        "kept tie is chosen (lmflow: as LMFlow; default: dpov2)",
    )
    select.add_argument(
        "--max-length-ratio",
        type=float,
        metavar="R",
        help="only pairs whose longer response is at most R times the shorter (R >= 1)",
    )
    select.add_argument(
        "--max-length-diff",
        type=float,
        metavar="D",
        help="only pairs whose lengths differ by at most D (D >= 0)",
    )
    select.add_argument(
        "--key",
        default="row",
        help=f"one of {', '.join(KEYS)}: key each prompt's draws by its row (default) or by "
        "its prompt and response texts (same pairs however rows are ordered or sharded)",
    )
    margin = parser.add_argument_group("margin")
    margin.add_argument("--margin-scale", type=float, default=1.0, help="default: 1.0")
    margin.add_argument(
        "--margin-from",
        choices=MARGIN_SOURCES,
        default="raw",
        help="margin from raw scores (default, as LMFlow) or from length-penalised rewards",
    )
    margin.add_argument("--min-margin", type=float, help="drop pairs whose margin is lower")
    data = parser.add_argument_group("input and output")
    data.add_argument("--input-format", choices=INPUT_FORMATS, help="default: from the name")
    data.add_argument("--output-format", choices=OUTPUT_FORMATS, help="default: from the name")
    data.add_argument(
        "--skip-invalid",
        action="store_true",
        help="drop and count invalid rows instead of stopping at the first",
    )
    data.add_argument("--max-samples", type=int, help="read only the first N prompts")
    data.add_argument(
        "--batch-size",
        type=int,
        default=8192,
        help="at most N prompts per batch, fewer to keep batches near 8 MiB (default 8192)",
    )
    data.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    data.add_argument(
        "--summary-json",
        type=Path,
        metavar="FILE",
        help="also write the summary as JSON to FILE (schema in the README; --overwrite)",
    )
    data.add_argument(
        "--provenance",
        action="store_true",
        help="add chosen_score, rejected_score, chosen_index, rejected_index",
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--no-fast",
        dest="use_fast",
        action="store_false",
        help="use the pure-Python reference path (same output, much slower)",
    )
    run.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads for reading and pairing (default: $DPOV2_NUM_THREADS, else the CPUs "
        "this process may use)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default), or ray: pair the shards of INPUT (a file, a folder or a glob "
        "of .jsonl/.json/.parquet files, in name order) on Ray; the output is the same",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --engine ray: a running cluster (default: start Ray on this machine)",
    )
    run.add_argument(
        "--workers",
        type=int,
        help="with --engine ray: shards paired at once (default: one per CPU of the cluster)",
    )
    run.add_argument(
        "--output-shards",
        action="store_true",
        help="with --engine ray: OUTPUT is a folder; each worker writes the pairs of input shard "
        "K to OUTPUT/part-K (Parquet unless --output-format), on a file system all share",
    )


#: The flag of each pair option whose errors name it.
PAIR_FLAGS = {
    "method": "--method",
    "tie_order": "--tie-order",
    "key": "--key",
    "pairs_per_prompt": "--pairs-per-prompt",
    "max_length_ratio": "--max-length-ratio",
    "max_length_diff": "--max-length-diff",
}


def pair_options(args: argparse.Namespace) -> PairOptions:
    """The pair options of parsed ``dpov2 pair`` arguments; errors name their flag."""
    try:
        return PairOptions(
            method=args.method,
            length_penalty=args.length_penalty,
            length_unit=length_unit(args.tokenizer),
            margin_scale=args.margin_scale,
            margin_from=args.margin_from,
            seed=args.seed,
            min_margin=args.min_margin,
            keep_ties=args.keep_ties,
            tie_order=args.tie_order,
            pairs_per_prompt=args.pairs_per_prompt,
            max_length_ratio=args.max_length_ratio,
            max_length_diff=args.max_length_diff,
            key=args.key,
            skip_invalid=args.skip_invalid,
            provenance=args.provenance,
            num_threads=args.threads,
        )
    except InputError as err:
        if err.field not in PAIR_FLAGS:
            raise
        raise InputError(f"{PAIR_FLAGS[err.field]}: {err.message}") from None


def run_pair(args: argparse.Namespace) -> int:
    options = pair_options(args)
    if args.summary_json is not None:
        others = {"INPUT": args.input, "OUTPUT": args.output}
        check_output(args.summary_json, others, overwrite=args.overwrite)
    start = time.perf_counter()
    if args.engine == "ray":
        from dpov2.convert.ray_engine import write_pairs_on_ray  # imports ray when it runs

        summary = write_pairs_on_ray(
            args.input,
            args.output,
            options,
            address=args.ray_address,
            workers=args.workers,
            use_fast=args.use_fast,
            input_format=args.input_format,
            output_format=args.output_format,
            batch_size=args.batch_size,
            max_samples=args.max_samples,
            overwrite=args.overwrite,
            output_shards=args.output_shards,
        )
    else:
        if args.ray_address is not None or args.workers is not None or args.output_shards:
            raise InputError("--ray-address, --workers and --output-shards go with --engine ray")
        source = open_scored(
            args.input,
            input_format=args.input_format,
            batch_size=args.batch_size,
            max_samples=args.max_samples,
            threads=args.threads,
        )
        with _progress_bar(source, disable=args.quiet) as advance:
            summary = write_pairs(
                source,
                args.output,
                options,
                use_fast=args.use_fast,
                output_format=args.output_format,
                overwrite=args.overwrite,
                progress=advance,
            )
    seconds = time.perf_counter() - start
    if args.summary_json is not None:
        write_json(summary.to_json(), args.summary_json, overwrite=args.overwrite)
    if not args.quiet:
        for line in summary.lines():
            print(line)
        rate = summary.prompts_read / seconds if seconds > 0 else float("inf")
        print(f"wrote {args.output} in {seconds:.1f} s ({rate:,.0f} prompts/s)")
    return 0


@contextlib.contextmanager
def _progress_bar(source: ScoredSource, *, disable: bool) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar over the source's bytes (JSON) or rows (Parquet, datasets), with prompts/s,
    shown only on a terminal and once the run has lasted two seconds."""
    from tqdm import tqdm

    by_bytes = source.unit == "B"
    bar = tqdm(
        total=source.total,
        unit="B" if by_bytes else " prompts",
        unit_scale=True,
        desc="pairing",
        delay=2.0,
        disable=True if disable else None,  # None: only on a terminal
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    prompts = 0

    def advance(consumed: int, batch_prompts: int) -> None:
        nonlocal prompts
        prompts += batch_prompts
        if by_bytes:
            rate = prompts / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{prompts:,} prompts, {rate:,.0f} prompts/s", refresh=False)
        bar.update(consumed)

    with bar:
        yield advance


# --- dpov2 inspect ----------------------------------------------------------------------------


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pairs", type=Path, help="pair dataset: file, or save_to_disk folder")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="draw the margin histogram and chosen-vs-rejected lengths (needs dpov2[plot])",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing plot")
    parser.add_argument("--batch-size", type=int, default=8192, help="rows per batch of JSON")


def run_inspect(args: argparse.Namespace) -> int:
    if args.plot is not None:
        check_output(args.plot, {"PAIRS": args.pairs}, overwrite=args.overwrite)
    stats = inspect_pairs(args.pairs, batch_size=args.batch_size)
    if args.plot is not None:
        write_plot(stats, args.plot, title=args.pairs.name, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(stats_json(stats), indent=2, allow_nan=False))
    else:
        print(f"pairs: {stats.pairs}")
        if stats.pairs and not stats.margin_count:
            print("margin: none in the file")
        for line in stats.lines():
            print(line)
    return 0


# --- dpov2 align ------------------------------------------------------------------------------

ALIGN_USAGE = "dpov2 align [--memory-safe] [CONFIG] [--FLAG VALUE ...]"
ALIGN_EPILOG = (
    "CONFIG is a JSON or YAML file of argument names and values; flags override it. The flags "
    "are the fields of dpov2.args: ModelArguments (--model_name_or_path: a folder, a Hub name, "
    "or dpov2:tiny), the same with a reference_ prefix for the reference model (default: a "
    "frozen copy of the policy), DatasetArguments (--dataset_path, --eval_dataset_path, "
    "--max_train_samples) and DPOv2AlignerArguments (--output_dir, --beta, --loss_type, "
    "--sampling_paired_method, --length_penalty, --margin_scale, and every transformers "
    "TrainingArguments option). LMFlow's names are read as the options they name: "
    "--evaluation_strategy (--eval_strategy), --preprocessing_num_workers (--dataset_num_proc), "
    "--use_flash_attention (--attn_implementation flash_attention_2)."
)


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = ALIGN_USAGE
    parser.epilog = ALIGN_EPILOG
    parser.add_argument(
        "--memory-safe",
        action="store_true",
        help="train in a child process (accelerate launch when accelerate_config_file is set), "
        "so that this process never holds the model",
    )


def run_align(args: argparse.Namespace) -> int:
    # Imported here: the trainer's imports (torch, transformers, TRL) take seconds.
    from dpov2.aligner import AlignmentError, MemorySafeDPOv2Aligner, run_alignment
    from dpov2.args import parse_align_args

    parsed = parse_align_args(args.rest)
    logging.basicConfig(format="%(message)s")  # (no-op if logging is set up already)
    logging.getLogger("dpov2").setLevel(logging.INFO)  # what was paired, how many processes
    if not args.memory_safe:
        run_alignment(parsed)
        return 0
    aligner = MemorySafeDPOv2Aligner(parsed.model, parsed.data, parsed.aligner, parsed.reference)
    try:
        aligner.align()
    except AlignmentError as err:
        # Exit code 2: the child has said what was wrong, in one line on stderr; anything else
        # (a traceback, a launcher's failure) gets this line after it.
        if err.returncode != EXIT_USER_ERROR:
            print(
                f"dpov2 align: error: the training process exited with code {err.returncode}",
                file=sys.stderr,
            )
        return err.returncode
    return 0


# --- dpov2 reference-logps --------------------------------------------------------------------


def add_reference_logps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "dpov2 reference-logps [CONFIG] [--FLAG VALUE ...] --output PAIRS.parquet [--input PAIRS]"
    )
    parser.epilog = (
        "CONFIG and the flags are those of dpov2 align, for the run that will train on the "
        "pairs: the reference (reference_model_name_or_path, else the policy), the tokenizer, "
        "conversation_template, max_length, max_prompt_length, mask_prompt, torch_dtype and "
        "bf16/fp16 decide the log-probs and go into their tag. dpov2 align trains on the output "
        "without running the reference when the tag matches, and refuses it otherwise."
    )
    parser.add_argument("--output", type=Path, required=True, help="pair file to write (.parquet)")
    parser.add_argument(
        "--input", type=Path, help="pair dataset (any format; default: dataset_path)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run_reference_logps(args: argparse.Namespace) -> int:
    from dpov2.args import parse_align_args
    from dpov2.formats.atomic import check_apart
    from dpov2.reference_logps import write_reference_logps

    parsed = parse_align_args(args.rest)
    source = args.input if args.input is not None else parsed.data.dataset_path
    if source is None:
        raise InputError("no pairs given; pass --input or set dataset_path")
    check_apart(args.output, [Path(source)])
    written, kept = write_reference_logps(source, args.output, parsed, overwrite=args.overwrite)
    print(f"wrote {written} pairs to {args.output}; {kept} with reference log-probs", end="")
    print(f" ({written - kept} dropped by the trainer's truncation)" if kept < written else "")
    return 0


# --- dpov2 generate, dpov2 score ----------------------------------------------------------------

STAGE_EPILOG = (
    "CONFIG is a JSON or YAML file of LMFlow's key names and values; flags of the same names "
    "override it. The output (results_path: .json for LMFlow's format, .jsonl, .parquet) is "
    "written whole or not at all, never over an input, and over an existing file only with "
    "--overwrite."
)


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "dpov2 generate [CONFIG] [--FLAG VALUE ...]"
    parser.epilog = (
        "Keys: model_name_or_path (a folder, a Hub name or dpov2:tiny), dataset_path (prompts: "
        "LMFlow text_only, text2text or conversation JSON, or JSON Lines rows with input or "
        "prompt), results_path, overwrite, apply_chat_template, conversation_template, "
        "num_output_sequences, temperature, top_p, top_k, max_new_tokens, random_seed, "
        "inference_batch_size (or vllm_inference_batch_size), torch_dtype, "
        "use_flash_attention, trust_remote_code. " + STAGE_EPILOG
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def run_generate(args: argparse.Namespace) -> int:
    from dpov2.generate import GenerateArguments, generate, parse_stage_args

    parsed = parse_stage_args(GenerateArguments, args.rest, "dpov2 generate")
    start = time.perf_counter()
    with _stage_bar("generating", disable=args.quiet) as advance:
        prompts = generate(parsed, progress=advance)
    if not args.quiet:
        responses = prompts * parsed.num_output_sequences
        seconds = time.perf_counter() - start
        print(
            f"wrote {responses} responses to {prompts} prompts to {parsed.results_path} "
            f"in {seconds:.1f} s"
        )
    return 0


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "dpov2 score [CONFIG] [--FLAG VALUE ...]"
    parser.epilog = (
        "Keys: reward_model_name_or_path (a sequence-classification model with one label, or "
        "dpov2:tiny-reward), dataset_path (text_to_textlist, as dpov2 generate writes it), "
        "results_path, overwrite, reward_model_inference_batch_size (prompts per forward pass), "
        "reward_model_inference_block_size, reward_torch_dtype, reward_use_flash_attention, "
        "reward_arch_type (text_regression), trust_remote_code. " + STAGE_EPILOG
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def run_score(args: argparse.Namespace) -> int:
    from dpov2.generate import parse_stage_args
    from dpov2.score import ScoreArguments, score

    parsed = parse_stage_args(ScoreArguments, args.rest, "dpov2 score")
    start = time.perf_counter()
    with _stage_bar("scoring", disable=args.quiet) as advance:
        result = score(parsed, progress=advance)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(
            f"wrote {result.responses} scored responses to {result.prompts} prompts to "
            f"{parsed.results_path} in {seconds:.1f} s"
        )
        if result.truncated:
            print(
                f"{result.truncated} prompt + response texts were cut to "
                f"{parsed.reward_model_inference_block_size} tokens "
                "(reward_model_inference_block_size)"
            )
    return 0


@contextlib.contextmanager
def _stage_bar(desc: str, *, disable: bool) -> Iterator[Callable[[int], None]]:
    """A tqdm bar counting prompts, shown only on a terminal and after two seconds."""
    from tqdm import tqdm

    bar = tqdm(
        unit=" prompts", desc=desc, delay=2.0, disable=True if disable else None, dynamic_ncols=True
    )
    with bar:
        yield bar.update


# --- dpov2 iterate -----------------------------------------------------------------------------


def add_iterate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "dpov2 iterate CONFIG [--plot] [--KEY VALUE ...]"
    parser.epilog = (
        "CONFIG is LMFlow's iterative_dpo.yaml (or JSON): dataset_path_list (a prompt set per "
        "round), output_dir, model_name_or_path, reward_model_name_or_path, and the keys of "
        "dpov2 generate, dpov2 score, dpov2 align and the pairing (see the README). --KEY VALUE "
        "overrides a key (values read as YAML). Each stage runs in its own process and lands "
        "in output_dir/iter_N/<stage> when done; the same command after a failure or Ctrl-C "
        "resumes at the first unfinished stage."
    )
    parser.add_argument("config", type=Path, help="the iterative DPO config")
    parser.add_argument(
        "--plot", action="store_true", help="also draw output_dir/report.png (needs matplotlib)"
    )


def run_iterate(args: argparse.Namespace) -> int:
    from dpov2.iterative import StageFailed, iterate, parse_overrides

    try:
        iterate(args.config, parse_overrides(args.rest), plot=args.plot)
    except StageFailed as err:
        print(
            f"dpov2 iterate: error: {err}; finished stages are kept, and the same command "
            "resumes after them",
            file=sys.stderr,
        )
        return err.returncode if err.returncode > 0 else EXIT_IO_ERROR
    return 0


COMMANDS: tuple[Command, ...] = (
    Command(
        "pair",
        "Turn a scored dataset (text_to_scored_textlist) into DPO pairs (prompt, chosen, "
        "rejected, margin).",
        add_pair_arguments,
        run_pair,
    ),
    Command(
        "inspect",
        "Print the counts, margin and length statistics of a pair dataset (any format).",
        add_inspect_arguments,
        run_inspect,
    ),
    Command(
        "align",
        "Train a model with DPOv2 on a scored or paired dataset (LMFlow's DPOv2 aligner).",
        add_align_arguments,
        run_align,
        parses_rest=True,
    ),
    Command(
        "reference-logps",
        "Compute the reference log-probs of a pair dataset once and store them with the "
        "pairs, for dpov2 align to train on without running the reference model.",
        add_reference_logps_arguments,
        run_reference_logps,
        parses_rest=True,
    ),
    Command(
        "generate",
        "Generate num_output_sequences responses per prompt with a causal LM "
        "(LMFlow's text_to_textlist).",
        add_generate_arguments,
        run_generate,
        parses_rest=True,
    ),
    Command(
        "score",
        "Score every generated response with a reward model (text_to_scored_textlist, what "
        "dpov2 pair reads).",
        add_score_arguments,
        run_score,
        parses_rest=True,
    ),
    Command(
        "iterate",
        "Iterative DPO: generate, score, pair and train, round after round, each stage in its "
        "own process (LMFlow's iterative_dpo.yaml).",
        add_iterate_arguments,
        run_iterate,
        parses_rest=True,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main())
