"""Pairing a dataset split into shards on a Ray cluster, with the single-machine result.

The shards are files (JSON Lines, LMFlow JSON or Parquet) named by a folder, a glob pattern or
a list, and taken in the order of their sorted names. They stand for one dataset, their
concatenation in that order, and every instance keeps the random key it has there: its row
in the shard plus the number of instances in the shards before it. The key, and so the pair,
is therefore the same as ``dpov2 pair`` on the concatenated file gives, for any number of
shards, of workers, and any order the workers finish in (see
:func:`dpov2.convert.pair_batches`). Nothing else is needed from the user; name the shards so
that they sort in the dataset's order (``part-00000.parquet``, ``part-00001.parquet``, ...).

The run has two Ray Data stages over the list of shards, one task per shard:

1. count the instances of each shard (Parquet: from the file's metadata; JSON: by reading
   it), to give each shard its first key;
2. read each shard with dpov2's own reader and pair it batch by batch with
   :func:`dpov2.convert.pair_batches`, the single-machine function; ``map_batches`` yields
   Arrow tables of pairs, plus one record per unpaired instance saying why.

Ray's own ``read_json``/``read_parquet`` are not used: neither tells a row's position in its
file, which both the key and an error message need, and pyarrow's JSON reader accepts and
rejects other lines than dpov2's. An invalid row therefore stops the run with the error the
single-machine command gives for that shard (file, row within it, field).

The output is either one file or a folder of shards:

- one file: the driver receives the pairs in order (Ray Data's ``preserve_order``) and writes
  them with the single-machine writer, so the file, in any format, is byte for byte the one
  ``dpov2 pair`` writes. The texts all pass through the driver: simple, and fine while one
  machine can write the output;
- ``output_shards=True``: every worker writes the pairs of each input shard ``k`` to
  ``OUTPUT/part-{k:05d}`` (Parquet by default) itself, and only margins, keys, lengths and
  outcomes reach the driver, so the write scales with the workers. The parts, in name order,
  hold the rows of the single file in its order (for JSON Lines, their concatenation is its
  bytes).
  OUTPUT must be on a file system every worker shares, as the input shards must be.

Either output appears only once complete. The summary is built from the same per-instance
outcomes, margins and keys, so it equals the single-machine one too.

``ray`` (the ``dpov2[ray]`` extra) is imported here only, when a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from dpov2.arrays import from_numpy
from dpov2.convert import pair_batches
from dpov2.convert.options import PAIRED, PairOptions, pairs_schema
from dpov2.convert.result import PairedBatch
from dpov2.convert.summary import PairSummary, pair_lengths
from dpov2.errors import InputError
from dpov2.formats import (
    OUTPUT_SUFFIXES,
    atomic_folder,
    check_output_path,
    dataset_files,
    detect_format,
    open_scored,
    open_writer,
)
from dpov2.formats.atomic import check_apart, check_output_folder
from dpov2.formats.parquet import parquet_rows

__all__ = ["Shard", "find_shards", "write_pairs_on_ray"]

SHARD_FORMATS = ("jsonl", "json", "parquet")
# Columns added to the pairs for the driver: the instance's key and its Outcome. Unpaired
# instances are rows with null pair columns. An instance's pairs after its first carry
# MORE_PAIRS instead of an outcome, so that each instance is counted once.
KEY = "__dpov2_key"
OUTCOME = "__dpov2_outcome"
CHOSEN_LENGTH = "__dpov2_chosen_length"
REJECTED_LENGTH = "__dpov2_rejected_length"
MORE_PAIRS = 255
# With length limits, the pairs the instance gives without them (see PairedBatch.before_limits)
# follow as rows marked BEFORE_LIMITS, with only their key, margin and lengths.
BEFORE_LIMITS = 254
# Of the records, what the summary needs (all that leaves a worker that writes its pairs).
SUMMARY_COLUMNS = ["margin", KEY, CHOSEN_LENGTH, REJECTED_LENGTH, OUTCOME]
DEFAULT_SHARD_FORMAT = "parquet"


@dataclasses.dataclass(frozen=True)
class Shard:
    """One input file: its format, its position among the shards, the key of its first
    instance (the instances in the shards before it) and how many of its instances to pair."""

    path: str
    format: str
    index: int
    first_key: int
    rows: int


def find_shards(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    input_format: str | None = None,
) -> list[tuple[Path, str]]:
    """The shard files and their formats, sorted by name: ``source`` is a file, a folder (its
    files with a JSON Lines, JSON or Parquet extension), a glob pattern, or a list of files.

    Raises:
        InputError: nothing found, or a file of an unknown or unsupported format.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            paths = [p for p, _ in dataset_files(path, input_format)]
        elif path.exists():
            paths = [path]
        else:
            paths = [Path(p) for p in glob.glob(os.fspath(path)) if Path(p).is_file()]
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise InputError(
            "no shards found; expected a file, a folder of .jsonl, .ndjson, .json or .parquet "
            "files, or a glob pattern matching some",
            file=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
        )
    shards = []
    for path in sorted(paths, key=os.fspath):
        fmt = detect_format(path, input_format)
        if fmt not in SHARD_FORMATS:
            raise InputError(
                f"a shard must be a file of one of the formats {', '.join(SHARD_FORMATS)}",
                file=str(path),
            )
        shards.append((path, fmt))
    return shards


def write_pairs_on_ray(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    options: PairOptions,
    *,
    address: str | None = None,
    workers: int | None = None,
    use_fast: bool = True,
    input_format: str | None = None,
    output_format: str | None = None,
    batch_size: int = 8192,
    max_samples: int | None = None,
    overwrite: bool = False,
    output_shards: bool = False,
) -> PairSummary:
    """Pairs the shards of ``source`` (see :func:`find_shards`) on Ray into the file
    ``output``, exactly as :func:`dpov2.convert.write_pairs` pairs their concatenation, or,
    with ``output_shards``, into the folder ``output``, one part per input shard written by
    the worker that paired it (``output_format``, Parquet by default; see the module notes).

    ``address`` is that of a running Ray cluster (``ray.init``'s; ``"auto"`` finds a local
    one); without it a Ray instance is started on this machine for the run, unless the process
    is already connected to one. ``workers`` caps the shards paired at once (default: as many
    as the cluster has CPUs). ``use_fast`` picks the pairing path as in
    :func:`dpov2.convert.write_pairs`. The shards must be readable by every worker, at the
    same path; the output is written by this process.

    Raises:
        InputError: no shards, an invalid option, an existing output (replaced with
            ``overwrite`` only if it holds nothing but parts an earlier run wrote), an output
            that is, holds or lies inside an input, or (unless
            ``options.skip_invalid``) an invalid row, named by shard file, row and field.
    """
    found = find_shards(source, input_format)
    given = [Path(source)] if isinstance(source, (str, os.PathLike)) else []
    check_apart(Path(output), [*given, *(path for path, _ in found)])
    if output_shards:
        check_output_folder(Path(output), overwrite=overwrite, owned=_is_part)
    else:
        check_output_path(Path(output), overwrite=overwrite)
    if max_samples is not None and max_samples < 0:
        raise InputError(f"max samples must be >= 0, got {max_samples}")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    pairing = functools.partial(
        _pair_shards, options=options, use_fast=use_fast, batch_size=batch_size
    )
    summary = PairSummary()
    with _ray(address), _raising_input_errors():
        shards = _plan(found, max_samples, workers)
        if output_shards:
            fmt = DEFAULT_SHARD_FORMAT if output_format is None else output_format
            detect_format(Path(output), fmt, output=True)  # refuses an unknown format
            with atomic_folder(Path(output), overwrite=overwrite, owned=_is_part) as folder:
                parts = functools.partial(pairing, parts=str(folder), parts_format=fmt)
                for table in _records_in_order(shards, parts, workers):
                    _add_records(summary, table)
            return summary
        prompt_type: pa.DataType = pa.string()
        writer_started = False
        with open_writer(output, output_format, overwrite=overwrite) as writer:
            for table in _records_in_order(shards, pairing, workers):
                pairs = _add_records(summary, table)
                if pairs.num_rows:
                    prompt_type = _same_prompt_type(pairs, prompt_type, writer_started)
                    writer.write(pairs)
                    writer_started = True
            writer.finish(pairs_schema(prompt_type, options.provenance))
    return summary


def _same_prompt_type(pairs: pa.Table, earlier: pa.DataType, check: bool) -> pa.DataType:
    """The pairs' prompt type, which must be that of the pairs before (when ``check``): each
    shard's reader fixes its own, where one file has one for all its rows."""
    kind: pa.DataType = pairs.schema.field("prompt").type
    if check and kind != earlier:
        raise InputError(
            f"a shard has prompts of type {kind} where the shards before have {earlier}; all "
            "shards must hold prompts of one type (text, or chat messages with the same fields)"
        )
    return kind


def _plan(
    found: list[tuple[Path, str]], max_samples: int | None, workers: int | None
) -> list[Shard]:
    """Each shard's first key and the number of its instances to pair (all of them, or up to
    ``max_samples`` in all), from a parallel count; shards past ``max_samples`` are left out."""
    import ray.data

    listing = [{"path": str(path), "format": fmt} for path, fmt in found]
    counted = (
        ray.data.from_items(listing, override_num_blocks=len(listing))
        .map(_count_rows, **_task_args(workers))
        .take_all()
    )
    rows = {item["path"]: int(item["rows"]) for item in counted}
    shards: list[Shard] = []
    first_key = 0
    for item in listing:
        n = rows[item["path"]]
        if max_samples is not None:
            n = min(n, max_samples - first_key)
        if n > 0:
            shards.append(Shard(item["path"], item["format"], len(shards), first_key, n))
            first_key += n
    return shards


def _count_rows(item: dict[str, Any]) -> dict[str, Any]:
    """The number of instances in one shard, as its reader yields them. An empty file is an
    empty shard (writers of sharded datasets leave some), where ``dpov2 pair`` refuses one."""
    path = Path(item["path"])
    if path.stat().st_size == 0:
        rows = 0
    elif item["format"] == "parquet":
        rows = parquet_rows(path)
    else:
        source = open_scored(path, input_format=item["format"], threads=TASK_CPUS)
        rows = sum(batch.table.num_rows for batch in source.batches)
    return {"path": item["path"], "rows": rows}


def _records_in_order(
    shards: list[Shard], pair: Callable[[pa.Table], Iterator[pa.Table]], workers: int | None
) -> Iterator[pa.Table]:
    """The pairing stage, one task per shard running ``pair``: its record tables, in shard
    order."""
    if not shards:
        return
    import ray.data

    items = [dataclasses.asdict(shard) for shard in shards]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        pair, batch_size=1, batch_format="pyarrow", **_task_args(workers)
    )
    dataset.context.execution_options.preserve_order = True
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")


#: CPUs each task asks Ray for, and so the threads it reads and pairs with.
TASK_CPUS = 1


def _task_args(workers: int | None) -> dict[str, Any]:
    """``TASK_CPUS`` per task, at most ``workers`` tasks at once."""
    import ray.data

    compute = None if workers is None else ray.data.TaskPoolStrategy(size=workers)
    return {"num_cpus": TASK_CPUS, "compute": compute}


def _pair_shards(
    table: pa.Table,
    *,
    options: PairOptions,
    use_fast: bool,
    batch_size: int,
    parts: str | None = None,
    parts_format: str = DEFAULT_SHARD_FORMAT,
) -> Iterator[pa.Table]:
    """Runs on a worker: reads the shards listed in ``table``, pairs them batch by batch and
    yields their records; with ``parts`` (a folder), writes each shard's pairs there and
    yields only what the summary needs."""
    options = dataclasses.replace(options, num_threads=TASK_CPUS)
    for shard in table.to_pylist():
        source = open_scored(
            shard["path"],
            input_format=shard["format"],
            batch_size=batch_size,
            max_samples=shard["rows"],
            threads=TASK_CPUS,
        )
        batches = pair_batches(source, options, use_fast=use_fast, key_offset=shard["first_key"])
        if parts is None:
            for paired, _ in batches:
                yield _records(paired)
            continue
        part = Path(parts) / _part_name(shard["index"], parts_format)
        with open_writer(part, parts_format, threads=TASK_CPUS) as writer:
            schema = None
            for paired, _ in batches:
                if paired.table.num_rows:
                    writer.write(paired.table)
                schema = paired.table.schema  # the shard's prompt type, even without pairs
                yield _records(paired).select(SUMMARY_COLUMNS)
            assert schema is not None  # a planned shard has at least one instance
            writer.finish(schema)


def _part_name(index: int, fmt: str) -> str:
    """The file of input shard ``index`` in an ``output_shards`` folder."""
    return f"part-{index:05d}{OUTPUT_SUFFIXES[fmt]}"


_PART = re.compile(
    r"part-\d{5,}(" + "|".join(re.escape(suffix) for suffix in OUTPUT_SUFFIXES.values()) + ")"
)


def _is_part(name: str) -> bool:
    """Whether ``name`` is one that :func:`_part_name` gives: what ``--overwrite`` may replace."""
    return _PART.fullmatch(name) is not None


def _records(paired: PairedBatch) -> pa.Table:
    """The pairs with their keys, lengths (for the summary) and outcome, then a row for each
    unpaired instance with only its outcome (the summary needs no more of it), then, with
    length limits, the pairs without them (key, margin and lengths only)."""
    pairs = paired.table.append_column(KEY, pa.array(paired.rows, pa.int64()))
    chosen_lengths, rejected_lengths = pair_lengths(paired.table)
    pairs = pairs.append_column(CHOSEN_LENGTH, from_numpy(chosen_lengths))
    pairs = pairs.append_column(REJECTED_LENGTH, from_numpy(rejected_lengths))
    first = np.ones(pairs.num_rows, dtype=bool)
    first[1:] = paired.rows[1:] != paired.rows[:-1]  # an instance's pairs are consecutive
    marks = np.where(first, np.uint8(PAIRED), np.uint8(MORE_PAIRS))
    pairs = pairs.append_column(OUTCOME, pa.array(marks))
    tables = [pairs]
    unpaired = paired.outcomes[paired.outcomes != PAIRED]
    if len(unpaired):
        nulls = [pa.nulls(len(unpaired), field.type) for field in pairs.schema][:-1]
        tables.append(pa.Table.from_arrays([*nulls, pa.array(unpaired)], schema=pairs.schema))
    before = paired.before_limits
    if before is not None and len(before.rows):
        n = len(before.rows)
        chosen_lengths, rejected_lengths = pair_lengths(before.table)
        given = {
            "margin": from_numpy(before.margins),
            KEY: pa.array(before.rows, pa.int64()),
            CHOSEN_LENGTH: from_numpy(chosen_lengths),
            REJECTED_LENGTH: from_numpy(rejected_lengths),
            OUTCOME: pa.array(np.full(n, BEFORE_LIMITS, np.uint8)),
        }
        columns = [given.get(field.name, pa.nulls(n, field.type)) for field in pairs.schema]
        tables.append(pa.Table.from_arrays(columns, schema=pairs.schema))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _add_records(summary: PairSummary, table: pa.Table) -> pa.Table:
    """Counts a record table into ``summary``; returns its pairs."""
    marks = table.column(OUTCOME).to_numpy()
    before = marks == BEFORE_LIMITS
    if before.any():
        summary.add_before_limits(*_pair_figures(table.filter(pa.array(before))))
    paired = (marks == PAIRED) | (marks == MORE_PAIRS)
    pairs = table if paired.all() else table.filter(pa.array(paired))
    instances = marks[(marks != MORE_PAIRS) & ~before]
    summary.add(instances, *_pair_figures(pairs))
    return pairs.drop_columns([KEY, CHOSEN_LENGTH, REJECTED_LENGTH, OUTCOME])


def _pair_figures(
    records: pa.Table,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], tuple[Any, Any]]:
    """The margins, keys and (chosen, rejected) lengths of pair records."""
    lengths = (records.column(CHOSEN_LENGTH).to_numpy(), records.column(REJECTED_LENGTH).to_numpy())
    return records.column("margin").to_numpy(), records.column(KEY).to_numpy(), lengths


@contextlib.contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Connects to the cluster at ``address``, or starts a local Ray instance for the run;
    a process already connected keeps its connection."""
    try:
        import ray
        import ray.data  # configures the "ray.data" logger, so before it is quietened
    except ImportError:
        raise InputError(
            "--engine ray needs Ray; install it with: pip install 'dpov2[ray]'"
        ) from None
    # Ray Data logs every stage on stderr, and a failed task's traceback, which would bury
    # the summary or the one-line error. A failure also reaches this process as the
    # exception (a bug keeps its traceback there), and the logs stay in Ray's session folder.
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.CRITICAL)
    try:
        if ray.is_initialized():
            yield
        else:
            ray.init(
                address=address,
                include_dashboard=False if address is None else None,
                log_to_driver=False,
                configure_logging=False,
            )
            try:
                yield
            finally:
                ray.shutdown()
    finally:
        data_logger.setLevel(level)


@contextlib.contextmanager
def _raising_input_errors() -> Iterator[None]:
    """A user mistake found on a worker reaches the driver wrapped in Ray's exceptions (which
    may subclass it, with the worker's traceback in the message); it is raised here as the
    plain :class:`InputError` the single-machine run raises."""
    from ray.exceptions import RayError

    try:
        yield
    except Exception as err:
        cause = _input_error_in(err, RayError)
        if cause is None or cause is err:
            raise
        raise InputError(
            cause.message, file=cause.file, row=cause.row, field=cause.field, byte=cause.byte
        ) from None


def _input_error_in(err: BaseException, wrapper: type[BaseException]) -> InputError | None:
    """The first :class:`InputError` that is not a ``wrapper`` along the causes of ``err``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InputError) and not isinstance(current, wrapper):
            return current
        current = current.__cause__ or getattr(current, "cause", None) or current.__context__
    return None
