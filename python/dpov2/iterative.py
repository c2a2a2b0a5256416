"""``dpov2 iterate``: iterative (online) DPO, round after round. Each round generates responses
to its prompt set with the current policy, scores them with a reward model, pairs them and
trains; the next round starts from the model it trained.

Each stage runs in a child process of its own (``dpov2 generate``, ``dpov2 score``, ``dpov2
pair``, ``dpov2 align --memory-safe``), so that nothing a stage loads stays in memory, on the
host or the GPU, when the next one starts. A stage writes into a temporary folder that becomes
``output_dir/iter_N/<stage>/`` only when the stage succeeds, with ``stage.json`` recording its
command, duration and peak memory (and, for ``score``, ``reward.json`` the statistics of its
scores); a stage whose folder exists is done and never redone, so the same command after a
crash, a kill or Ctrl-C resumes at the first unfinished stage.

The config is LMFlow's ``configs/iterative_dpo.yaml``: one flat mapping, of which each stage
takes the keys it knows (:func:`split_config`): ``dpov2 generate``'s and ``dpov2 score``'s
fields (LMFlow's inference and scoring names), the pairing keys of :data:`PAIR_KEYS`, and
everything ``dpov2 align`` reads. The reference model stays the first policy in every round
(``reference_model_name_or_path`` when given), unless ``update_reference_model`` makes each
round's reference the policy it starts from. The per-round report (:func:`round_report`) is
built from what the stages wrote, printed after each round and kept as
``output_dir/report.json``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from dpov2.errors import InputError
from dpov2.formats.atomic import atomic_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "IGNORED_KEYS",
    "ITERATE_KEYS",
    "PAIR_KEYS",
    "STAGES",
    "Plan",
    "iterate",
    "plan_iterations",
    "round_report",
    "split_config",
]

#: The stages of a round, in order, each a folder ``iter_N/<stage>`` when done; ``reference``
#: (the reference log-probs of the pairs, stored with them) runs with
#: ``precompute_ref_log_probs`` only.
STAGES = ("generate", "score", "pair", "reference", "train")
#: The file each stage writes in its folder (``train`` writes a model there).
STAGE_OUTPUTS = {
    "generate": "responses.jsonl",
    "score": "scored.jsonl",
    "pair": "pairs.jsonl",
    "reference": "pairs.parquet",  # the only format that keeps the log-prob columns
}
STAGE_RECORD = "stage.json"
PAIR_SUMMARY = "summary.json"
REWARD_STATS = "reward.json"  # in the score stage's folder, what the report says of its scores
TRAINER_STATE = "trainer_state.json"  # written by the aligner beside the model
REPORT = "report.json"
REPORT_PLOT = "report.png"
REPORT_VERSION = 1

#: The keys ``dpov2 iterate`` reads itself (LMFlow's names, and dpov2's own), with their
#: defaults; every other key goes to the stages that know it.
ITERATE_KEYS: dict[str, Any] = {
    "dataset_path_list": None,  # the prompt sets, one per round
    "output_dir": None,
    "initial_iter_idx": 0,  # the first round to run is dataset_path_list[initial_iter_idx]
    "do_response_generation": True,
    "do_scoring": True,
    "do_dpo_align": True,  # pairing and training
    "update_reference_model": False,  # dpov2's: each round's reference is the policy it starts from
    "reward_model_name_or_path": None,  # for the score stage
}
#: LMFlow keys that are accepted and not used, and why (a key asking for something dpov2 does
#: not do is said at the start of a run, see :func:`ignored_notes`).
IGNORED_KEYS: dict[str, str] = {
    "use_vllm": "vLLM generation is not built yet; responses are generated with transformers",
    "vllm_gpu_memory_utilization": "used with vLLM only",
    "vllm_tensor_parallel_size": "used with vLLM only",
    "enable_distributed_inference": "generation and scoring run in one process, on one device",
    "distributed_inference_num_instances": "generation and scoring run in one process",
    "overwrite_cache": "dpov2 keeps no dataset cache",
}
#: Config keys for the pair stage, and the ``dpov2 pair`` option each one sets. LMFlow's
#: four come from the parsed aligner arguments (their defaults and checks are the aligner's,
#: so a round pairs as ``dpov2 align`` pairs a scored file); the others are dpov2's.
PAIR_KEYS: dict[str, str] = {
    "sampling_paired_method": "method",
    "length_penalty": "length_penalty",
    "margin_scale": "margin_scale",
    "random_seed": "seed",
    "pairs_per_prompt": "pairs_per_prompt",
    "tie_order": "tie_order",
    "keep_ties": "keep_ties",
    "min_margin": "min_margin",
    "margin_from": "margin_from",
    "max_length_ratio": "max_length_ratio",
    "max_length_diff": "max_length_diff",
    "pairing_key": "key",
    "skip_invalid": "skip_invalid",
}
_FROM_ALIGNER = ("sampling_paired_method", "length_penalty", "margin_scale", "random_seed")
# Keys iterate sets for each round; a config that gives them is refused, naming the key.
_SET_PER_ROUND = {
    "dataset_path": "dataset_path_list",
    "results_path": "output_dir",
    "eval_dataset_path": "dataset_path_list",
    "overwrite": "output_dir",
}


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A checked iterative run: the prompt sets, where each round goes, and each stage's
    settings (keys as the stage reads them, without what is set per round)."""

    output_dir: Path
    prompt_sets: tuple[Path, ...]
    first_round: int  # 1-based: the round of prompt_sets[first_round - 1]
    model: str
    reference: str | None  # None: the policy each round starts from
    stages: tuple[str, ...]  # a round's stages, in order (``reference`` only when asked)
    runs: frozenset[str]  # those of them this run does (the others' do_* flags are false)
    generate: dict[str, Any]
    score: dict[str, Any]
    pair: list[str]  # dpov2 pair's flags
    align: dict[str, Any]
    notes: tuple[str, ...]

    def round_folder(self, number: int) -> Path:
        return self.output_dir / f"iter_{number}"

    def policy(self, number: int) -> str:
        """The model round ``number`` starts from: the first policy, or what the round before
        trained."""
        return self.model if number == 1 else str(self.round_folder(number - 1) / "train")

    def reference_of(self, number: int) -> str | None:
        """Round ``number``'s reference model; None: a frozen copy of its policy."""
        if self.reference is None or self.reference == self.policy(number):
            return None
        return self.reference


def split_config(settings: Mapping[str, Any], file: str | None) -> dict[str, dict[str, Any]]:
    """Which keys of an iterative config each part reads: ``iterate``, ``ignored``,
    ``generate``, ``score``, ``pair`` and ``align`` (a key may go to several stages, as
    ``trust_remote_code`` does).

    Raises:
        InputError: a key that no stage reads, or one that iterate sets for each round.
    """
    from dpov2.args import align_option_names
    from dpov2.generate import GenerateArguments
    from dpov2.score import ScoreArguments

    stage_fields = {
        "generate": {f.name for f in dataclasses.fields(GenerateArguments)},
        "score": {f.name for f in dataclasses.fields(ScoreArguments)},
        "pair": set(PAIR_KEYS) - set(_FROM_ALIGNER),
        "align": set(align_option_names()),
    }
    parts: dict[str, dict[str, Any]] = {
        "iterate": {},
        "ignored": {},
        **{k: {} for k in stage_fields},
    }
    for key, value in settings.items():
        if key in _SET_PER_ROUND:
            raise InputError(
                f"is set for each round by dpov2 iterate (from {_SET_PER_ROUND[key]}); remove it",
                file=file,
                field=key,
            )
        if key in ITERATE_KEYS:
            parts["iterate"][key] = value
            continue
        if key in IGNORED_KEYS:
            parts["ignored"][key] = value
            continue
        takers = [stage for stage, names in stage_fields.items() if key in names]
        if not takers:
            raise InputError(
                "is not a key of dpov2 iterate or of any of its stages (generate, score, pair, "
                "align); see the README's iterative DPO section",
                file=file,
                field=key,
            )
        for stage in takers:
            parts[stage][key] = value
    return parts


def plan_iterations(
    settings: Mapping[str, Any], file: str | None = None, *, here: Path | None = None
) -> Plan:
    """The checked plan of an iterative config (``file`` names it in errors; relative paths
    are relative to ``here``, by default the working directory). Every stage's settings are
    checked here, with round 1's paths, so that a mistake stops the run before anything is
    loaded.

    Raises:
        InputError: a missing or bad key, a missing prompt set, a stage setting its stage
            refuses, naming ``file`` and the key.
    """
    from dpov2.args import align_args_from, as_bool
    from dpov2.generate import GenerateArguments, stage_args_from
    from dpov2.score import ScoreArguments

    parts = split_config(settings, file)
    own = {**ITERATE_KEYS, **parts["iterate"]}
    for name in ("dataset_path_list", "output_dir"):
        if not own[name]:
            raise InputError("missing; expected it in the config", file=file, field=name)
    base = Path.cwd() if here is None else here
    prompt_sets = own["dataset_path_list"]
    if isinstance(prompt_sets, str) or not isinstance(prompt_sets, list) or not prompt_sets:
        raise InputError(
            f"expected a list of prompt files or folders, got {prompt_sets!r}",
            file=file,
            field="dataset_path_list",
        )
    paths = tuple(base / str(each) for each in prompt_sets)
    for index, path in enumerate(paths):
        if not path.exists():
            raise InputError(
                f"no such file or folder: {path}", file=file, field=f"dataset_path_list[{index}]"
            )
    first = own["initial_iter_idx"]
    if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first < len(paths):
        raise InputError(
            f"expected an index into dataset_path_list (0 to {len(paths) - 1}), got {first!r}",
            file=file,
            field="initial_iter_idx",
        )
    run = {stage: as_bool(own[_FLAGS[stage]], _FLAGS[stage], file) for stage in STAGES}
    model = parts["align"].get("model_name_or_path") or parts["generate"].get("model_name_or_path")
    if not model:
        raise InputError("missing; the first policy", file=file, field="model_name_or_path")
    reference = parts["align"].pop("reference_model_name_or_path", None)
    if as_bool(own["update_reference_model"], "update_reference_model", file):
        if reference:
            raise InputError(
                "update_reference_model makes each round's reference the policy the round "
                "starts from; do not also give reference_model_name_or_path",
                file=file,
                field="update_reference_model",
            )
    else:
        reference = reference or str(model)
    output_dir = base / str(own["output_dir"])
    first_folder = output_dir / "iter_1"

    generate = {k: v for k, v in parts["generate"].items() if k != "model_name_or_path"}
    stage_args_from(
        GenerateArguments,
        {
            **generate,
            "model_name_or_path": str(model),
            "dataset_path": str(paths[0]),
            "results_path": str(first_folder / STAGE_OUTPUTS["generate"]),
        },
        file,
    )
    score = {**parts["score"]}
    if own["reward_model_name_or_path"]:
        score["reward_model_name_or_path"] = own["reward_model_name_or_path"]
    elif run["score"]:
        raise InputError("missing; the reward model", file=file, field="reward_model_name_or_path")
    if run["score"]:
        stage_args_from(
            ScoreArguments,
            {
                **score,
                "dataset_path": str(first_folder / STAGE_OUTPUTS["generate"]),
                "results_path": str(first_folder / STAGE_OUTPUTS["score"]),
            },
            file,
        )
    align = {k: v for k, v in parts["align"].items() if k != "model_name_or_path"}
    aligner = align_args_from(
        {
            **align,
            "model_name_or_path": str(model),
            "dataset_path": str(first_folder / STAGE_OUTPUTS["pair"]),
            "output_dir": str(first_folder / "train"),
        },
        file,
    )
    if aligner.model.use_lora:
        raise InputError(
            "each round starts from the model the round before trained, and a LoRA round saves "
            "only an adapter: dpov2 iterate trains full models (set use_lora false)",
            file=file,
            field="use_lora",
        )
    pair = {**parts["pair"]}
    pair.update({key: getattr(aligner.aligner, key) for key in _FROM_ALIGNER})
    flags = _pair_flags(pair, file)
    return Plan(
        output_dir=output_dir,
        prompt_sets=paths,
        first_round=first + 1,
        model=str(model),
        reference=None if not reference else str(reference),
        stages=tuple(
            stage
            for stage in STAGES
            if stage != "reference" or aligner.aligner.precompute_ref_log_probs
        ),
        runs=frozenset(stage for stage in STAGES if run[stage]),
        generate=generate,
        score=score,
        pair=flags,
        align=align,
        notes=ignored_notes(parts["ignored"], file),
    )


def ignored_notes(ignored: Mapping[str, Any], file: str | None) -> tuple[str, ...]:
    """One line for each ignored key whose value asks for what dpov2 does not do."""
    from dpov2.args import as_bool

    notes = []
    for key in ("use_vllm", "enable_distributed_inference"):
        if key in ignored and as_bool(ignored[key], key, file, strict=False):
            notes.append(f"{key} is not used: {IGNORED_KEYS[key]}")
    return tuple(notes)


def _pair_flags(pair: Mapping[str, Any], file: str | None) -> list[str]:
    """``dpov2 pair``'s flags for the pair keys, checked as ``dpov2 pair`` checks them."""
    from dpov2.args import InputErrorParser, as_bool
    from dpov2.cli import add_pair_arguments, pair_options

    parser = InputErrorParser([], prog="dpov2 pair", add_help=False)  # errors as InputError
    add_pair_arguments(parser)
    actions = {action.dest: action for action in parser._actions}
    flags: list[str] = []
    for key, value in pair.items():
        action = actions[PAIR_KEYS[key]]
        flag = action.option_strings[0]
        if action.nargs == 0:  # a switch
            if as_bool(value, key, file):
                flags.append(flag)
        elif value is not None:
            flags += [flag, str(value)]
    try:
        pair_options(parser.parse_args(["scored", "pairs", *flags]))
    except InputError as err:
        raise InputError(err.message, file=file, field=err.field) from None
    return flags


# --- running stages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRecord:
    """What ``stage.json`` says of a finished stage."""

    stage: str
    round: int
    command: list[str]
    started: str  # ISO 8601, UTC
    seconds: float
    peak_rss_mb: float  # the stage's processes, from the kernel
    gpu_memory_used_mb: dict[str, list[int]] | None  # before and after, per GPU

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_child(command: Sequence[str]) -> tuple[int, float, float]:
    """Runs ``command`` with this process's streams; returns its exit code, seconds and peak
    resident memory in MB (the largest of it and of the processes it waited for). The child
    dies with this process (Linux), and an interrupt here stops it before it is raised.

    Ctrl-C and SIGTERM are held back while the child is forked: the fork runs Python's
    at-fork hooks, where an interrupt would be printed and lost, and the run would go on."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        parent = os.getpid()
        child = subprocess.Popen(list(command), env=env, preexec_fn=lambda: _in_child(mask, parent))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # an interrupt held back is raised now
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}
_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _in_child(mask: set[int | signal.Signals], parent: int) -> None:
    """In the child before it runs the command: the parent's signal mask back, and SIGTERM
    when the parent dies (a SIGKILL leaves no one to stop it otherwise; a parent that died
    before that was set stops the child here)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)


def gpu_memory_used() -> list[int] | None:
    """Memory in use on each GPU, in MB, by ``nvidia-smi`` (None without one): asked of the
    driver, so this process never holds a CUDA context."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = [smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True)
        return [int(line) for line in out.stdout.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


class StageFailed(Exception):
    """A stage's process exited with an error (it said what, on stderr)."""

    def __init__(self, stage: str, number: int, returncode: int) -> None:
        self.returncode = returncode
        super().__init__(f"round {number}, {stage}: the stage exited with code {returncode}")


def run_stage(
    stage: str,
    number: int,
    folder: Path,
    command: Callable[[Path], list[str]],
    out: TextIO,
    *,
    finish: Callable[[Path], object] | None = None,
) -> StageRecord:
    """Runs one stage into ``folder`` unless it is there already (then returns its record).
    ``command`` gives the stage's command writing into a temporary folder, which becomes
    ``folder``, with ``stage.json``, only when the command succeeds; ``finish``, when given,
    then adds what iterate records of the stage's output to that folder, so that it is
    published with the stage or not at all.

    Raises:
        StageFailed: the stage's process failed; nothing is left under ``folder``.
    """
    record_file = folder / STAGE_RECORD
    if record_file.is_file():
        print(f"dpov2 iterate: round {number}, {stage}: done earlier ({folder})", file=out)
        return StageRecord(**json.loads(record_file.read_text(encoding="utf-8")))
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"dpov2 iterate: round {number}, {stage}", file=out, flush=True)
    with atomic_folder(folder, overwrite=True, owned=lambda _: False) as tmp:
        argv = command(tmp)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        before = gpu_memory_used()
        returncode, seconds, peak = run_child(argv)
        if returncode != 0:
            raise StageFailed(stage, number, returncode)
        after = gpu_memory_used()
        if finish is not None:
            finish(tmp)
        gpu = None if before is None or after is None else {"before": before, "after": after}
        shown = [arg.replace(str(tmp), str(folder)) for arg in argv]  # where its files end up
        record = StageRecord(stage, number, shown, started, round(seconds, 3), round(peak, 1), gpu)
        (tmp / STAGE_RECORD).write_text(json.dumps(record.to_json(), indent=2) + "\n")
    print(f"dpov2 iterate: round {number}, {stage}: done ({folder})", file=out, flush=True)
    return record


def _stage_config(tmp: Path, name: str, settings: Mapping[str, Any]) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return path


def _dpov2(*args: str) -> list[str]:
    return [sys.executable, "-m", "dpov2", *args]


def run_round(plan: Plan, number: int, out: TextIO) -> dict[str, Any]:
    """Runs the unfinished stages of round ``number``; returns its report."""
    folder = plan.round_folder(number)
    prompts = plan.prompt_sets[number - 1]
    paths = {stage: folder / stage for stage in STAGES}
    outputs = {stage: paths[stage] / name for stage, name in STAGE_OUTPUTS.items()}

    def generate(tmp: Path) -> list[str]:
        settings = {
            **plan.generate,
            "model_name_or_path": plan.policy(number),
            "dataset_path": str(prompts),
            "results_path": str(tmp / STAGE_OUTPUTS["generate"]),
        }
        return _dpov2("generate", str(_stage_config(tmp, "generate", settings)))

    def score(tmp: Path) -> list[str]:
        settings = {
            **plan.score,
            "dataset_path": str(outputs["generate"]),
            "results_path": str(tmp / STAGE_OUTPUTS["score"]),
        }
        return _dpov2("score", str(_stage_config(tmp, "score", settings)))

    def pair(tmp: Path) -> list[str]:
        result, summary = tmp / STAGE_OUTPUTS["pair"], tmp / PAIR_SUMMARY
        scored = str(outputs["score"])
        return _dpov2(
            "pair", scored, str(result), *plan.pair, "--summary-json", str(summary), "--quiet"
        )

    def align_settings(tmp: Path, pairs: Path) -> dict[str, Any]:
        """The round's ``dpov2 align`` config, which ``reference`` reads too."""
        settings = {
            **plan.align,
            "model_name_or_path": plan.policy(number),
            "dataset_path": str(pairs),
            "output_dir": str(tmp),
        }
        if "run_name" in plan.align:  # as LMFlow names each round's run
            settings["run_name"] = f"{plan.align['run_name']}_iter_{number}"
        reference = plan.reference_of(number)
        if reference is not None:
            settings["reference_model_name_or_path"] = reference
        return settings

    def reference(tmp: Path) -> list[str]:
        config = _stage_config(tmp, "align", align_settings(tmp, outputs["pair"]))
        result = tmp / STAGE_OUTPUTS["reference"]
        return _dpov2("reference-logps", str(config), "--output", str(result))

    def train(tmp: Path) -> list[str]:
        pairs = outputs[plan.stages[plan.stages.index("train") - 1]]
        config = _stage_config(tmp, "align", align_settings(tmp, pairs))
        return _dpov2("align", "--memory-safe", str(config))

    commands = {
        "generate": generate,
        "score": score,
        "pair": pair,
        "reference": reference,
        "train": train,
    }
    finishes = {"score": record_reward_stats}
    for stage in plan.stages:
        if stage in plan.runs:
            _check_input(plan, number, stage, paths)
            run_stage(stage, number, paths[stage], commands[stage], out, finish=finishes.get(stage))
    return round_report(folder, number, prompts)


#: The key that runs each stage (``reference`` also needs ``precompute_ref_log_probs``).
_FLAGS = {
    "generate": "do_response_generation",
    "score": "do_scoring",
    "pair": "do_dpo_align",
    "reference": "do_dpo_align",
    "train": "do_dpo_align",
}


def _check_input(plan: Plan, number: int, stage: str, paths: Mapping[str, Path]) -> None:
    """Refuses to run ``stage`` when what it reads is neither done nor to be done: the model
    the round before trained (for the stages that load the policy), or the stage before."""
    if stage in ("generate", "train") and number > 1:
        trained = plan.round_folder(number - 1) / "train"
        if not (trained / STAGE_RECORD).is_file():
            why = (
                f"initial_iter_idx is {number - 1}"
                if number == plan.first_round
                else "do_dpo_align is false"
            )
            raise InputError(
                f"round {number} starts from the model round {number - 1} trained, and "
                f"{trained} is not there ({why})"
            )
    index = plan.stages.index(stage)
    if index == 0:
        return
    previous = plan.stages[index - 1]
    if not (paths[previous] / STAGE_RECORD).is_file():
        raise InputError(
            f"round {number}'s {stage} reads {paths[previous]}, which is not there: "
            f"{_FLAGS[previous]} is false and no earlier run wrote it"
        )


# --- the report -------------------------------------------------------------------------------


def round_report(folder: Path, number: int, prompts: Path) -> dict[str, Any]:
    """The report of a round, from what its finished stages wrote: the reward of the
    generated responses, the pairs kept and dropped, training's loss and reward accuracy, and
    each stage's time and peak memory (``None`` for what a stage not done would say)."""
    stages = {}
    for stage in STAGES:
        record = folder / stage / STAGE_RECORD
        if record.is_file():
            data = json.loads(record.read_text(encoding="utf-8"))
            stages[stage] = {k: data[k] for k in ("seconds", "peak_rss_mb", "gpu_memory_used_mb")}
    reward = None
    if "score" in stages:
        reward = recorded_reward_stats(folder / "score")
    pairs = None
    if "pair" in stages:
        summary = json.loads((folder / "pair" / PAIR_SUMMARY).read_text(encoding="utf-8"))
        margin = summary["margin"]
        pairs = {
            "prompts": summary["prompts"],
            "pairs": summary["pairs"],
            "margin_mean": None if margin is None else margin["mean"],
        }
    train = None
    if "train" in stages:
        train = training_stats(folder / "train" / TRAINER_STATE)
    return {
        "round": number,
        "prompts": str(prompts),
        "reward": reward,
        "pairs": pairs,
        "train": train,
        "stages": stages,
    }


def record_reward_stats(folder: Path) -> dict[str, Any]:
    """The :func:`reward_stats` of the scores in a score stage's ``folder``, written there as
    ``reward.json`` (whole or not at all), so that no report reads the scores again."""
    from dpov2.report import write_json

    stats = reward_stats(folder / STAGE_OUTPUTS["score"])
    write_json(stats, folder / REWARD_STATS, overwrite=True)
    return stats


def recorded_reward_stats(folder: Path) -> dict[str, Any]:
    """The reward statistics a finished score stage in ``folder`` recorded; for a stage that
    finished before iterate recorded them, computed from its scores and recorded now."""
    path = folder / REWARD_STATS
    if path.is_file():
        stats: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return stats
    return record_reward_stats(folder)


def reward_stats(path: Path) -> dict[str, Any]:
    """Count, mean, standard deviation, min and max of every response's score in a scored
    dataset, read batch by batch."""
    from dpov2.arrays import to_numpy
    from dpov2.formats import open_scored

    count, total, square, low, high = 0, 0.0, 0.0, math.inf, -math.inf
    for batch in open_scored(path).batches:
        scores = to_numpy(
            batch.table.column("output").combine_chunks().values.field("score"), np.float64
        )
        if scores.size:
            count += scores.size
            total += float(scores.sum())
            square += float(np.square(scores).sum())
            low, high = min(low, float(scores.min())), max(high, float(scores.max()))
    if count == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = total / count
    return {
        "count": count,
        "mean": mean,
        "std": math.sqrt(max(square / count - mean * mean, 0.0)),
        "min": low,
        "max": high,
    }


def training_stats(path: Path) -> dict[str, Any]:
    """Steps, mean training loss, and the last logged loss, reward accuracy and reward
    margin, from the trainer's saved state."""
    state = json.loads(path.read_text(encoding="utf-8"))
    history = state.get("log_history", [])
    summary: dict[str, Any] = next(
        (entry for entry in reversed(history) if "train_loss" in entry), {}
    )
    logged = [entry for entry in history if "loss" in entry]
    last = logged[-1] if logged else summary  # (which has the metrics of unlogged steps)
    return {
        "steps": state.get("global_step"),
        "train_loss": summary.get("train_loss"),
        "loss": last.get("loss"),
        "reward_accuracy": last.get("rewards/accuracies"),
        "reward_margin": last.get("rewards/margins"),
    }


def format_round(report: Mapping[str, Any]) -> str:
    """A round's report as a few lines for the terminal."""
    lines = [f"dpov2 iterate: round {report['round']} ({report['prompts']})"]
    details = {
        "score": _reward_line(report["reward"]),
        "pair": _pairs_line(report["pairs"]),
        "train": _train_line(report["train"]),
    }
    for stage, stats in report["stages"].items():
        line = f"  {stage:<8} {stats['seconds']:>8.1f} s  peak {stats['peak_rss_mb']:>8,.0f} MB"
        if details.get(stage):
            line += "  " + details[stage]
        lines.append(line)
    return "\n".join(lines)


def _reward_line(reward: Mapping[str, Any] | None) -> str:
    if not reward or reward["mean"] is None:
        return ""
    return f"reward {reward['mean']:.4f} +- {reward['std']:.4f} ({reward['count']} responses)"


def _pairs_line(pairs: Mapping[str, Any] | None) -> str:
    if not pairs:
        return ""
    prompts = pairs["prompts"]
    dropped = ", ".join(f"{n} {reason}" for reason, n in prompts["dropped"].items() if n)
    margin = "" if pairs["margin_mean"] is None else f", mean margin {pairs['margin_mean']:.4f}"
    kept = f"{pairs['pairs']} pairs from {prompts['read']} prompts"
    return f"{kept} (dropped: {dropped or 'none'}){margin}"


def _train_line(train: Mapping[str, Any] | None) -> str:
    if not train:
        return ""
    parts = [f"{train['steps']} step{'' if train['steps'] == 1 else 's'}"]
    if train["train_loss"] is not None:
        parts.append(f"mean loss {train['train_loss']:.4f}")
    if train["reward_accuracy"] is not None:
        parts.append(f"last reward accuracy {train['reward_accuracy']:.3f}")
    return ", ".join(parts)


def write_report(plan: Plan, rounds: Sequence[Mapping[str, Any]], *, plot: bool) -> None:
    """``report.json`` (and with ``plot`` ``report.png``) in ``output_dir``, replaced whole."""
    from dpov2.report import write_json

    data = {
        "version": REPORT_VERSION,
        "model": plan.model,
        "reference": plan.reference,
        "rounds": list(rounds),
    }
    write_json(data, plan.output_dir / REPORT, overwrite=True)
    if plot:
        from dpov2.formats.atomic import atomic_output

        figure = report_figure(rounds)
        with atomic_output(plan.output_dir / REPORT_PLOT, overwrite=True) as file:
            figure.savefig(file, format="png", dpi=100)


def report_figure(rounds: Sequence[Mapping[str, Any]]) -> Figure:
    """Reward, pairs, margin, loss and reward accuracy by round."""
    from matplotlib.figure import Figure

    numbers = [r["round"] for r in rounds]

    def series(part: str, name: str) -> list[float]:
        return [math.nan if not r[part] or r[part][name] is None else r[part][name] for r in rounds]

    figure = Figure(figsize=(12, 3.5))
    reward, pairs, train = figure.subplots(1, 3)
    reward.errorbar(
        numbers, series("reward", "mean"), yerr=series("reward", "std"), marker="o", capsize=4
    )
    reward.set(title="reward of the generated responses", xlabel="round", ylabel="mean +- std")
    pairs.plot(numbers, series("pairs", "pairs"), marker="o", label="pairs")
    margins = pairs.twinx()
    margins.plot(
        numbers, series("pairs", "margin_mean"), marker="s", color="tab:orange", label="mean margin"
    )
    pairs.set(title="pairs and mean margin", xlabel="round", ylabel="pairs")
    margins.set(ylabel="mean margin")
    train.plot(numbers, series("train", "train_loss"), marker="o", label="mean loss")
    train.plot(
        numbers, series("train", "reward_accuracy"), marker="s", label="last reward accuracy"
    )
    train.set(title="training", xlabel="round")
    train.legend()
    for axes in (reward, pairs, train):
        axes.set_xticks(numbers)
    figure.tight_layout()
    return figure


# --- the loop ---------------------------------------------------------------------------------


def read_settings(config: str | os.PathLike[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A config file's mapping with ``overrides`` on top."""
    from dpov2.args import read_config

    return {**read_config(Path(config)), **overrides}


def iterate(
    config: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    plot: bool = False,
    out: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Runs the iterative DPO of ``config`` (LMFlow's ``iterative_dpo.yaml`` keys, with
    ``overrides`` on top), resuming at the first unfinished stage; returns the report of every
    round from the first (also in ``output_dir/report.json``). Relative paths in the config
    are relative to the working directory, as in LMFlow.

    Raises:
        InputError: a bad config, or a stage's input that is not there.
        StageFailed: a stage's process failed (it printed why); finished stages are kept.
    """
    stream = sys.stdout if out is None else out
    file = os.fspath(config)
    plan = plan_iterations(read_settings(config, overrides or {}), file)
    for note in plan.notes:
        print(f"dpov2 iterate: {note}", file=stream)
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    reports = [
        round_report(plan.round_folder(n), n, plan.prompt_sets[n - 1])
        for n in range(1, plan.first_round)
    ]
    for number in range(plan.first_round, len(plan.prompt_sets) + 1):
        reports.append(run_round(plan, number, stream))
        print(format_round(reports[-1]), file=stream, flush=True)
        write_report(plan, reports, plot=plot)
    return reports


def parse_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """``--key value`` (or ``--key=value``) pairs, values read as YAML reads them."""
    import yaml

    overrides: dict[str, Any] = {}
    items = list(argv)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or len(flag) == 2:
            raise InputError(f"expected --KEY VALUE, got {flag!r}")
        key, sep, value = flag[2:].partition("=")
        if not sep:
            if not items:
                raise InputError(f"--{key} needs a value")
            value = items.pop(0)
        overrides[key] = yaml.safe_load(value)
    return overrides
