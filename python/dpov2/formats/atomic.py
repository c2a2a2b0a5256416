"""Write an output file, or a folder of files, so that it appears whole or not at all.

Data goes to a hidden temporary file (or folder) beside the target (same file system, so the
final rename is atomic) and is renamed into place only when the writer finishes without
error. An interrupted or failed run removes its temporary file and never leaves anything
under the output name; an existing output is replaced only when asked, and an output folder
only when it holds nothing but what dpov2 writes there. A temporary name carries the writer's
host and pid, so that a run killed outright (SIGKILL, a lost machine) leaves a partial file the
next run into the same output recognises as dead and removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from dpov2.errors import InputError

__all__ = [
    "atomic_folder",
    "atomic_output",
    "check_apart",
    "check_output_folder",
    "check_output_path",
    "published_outputs",
    "remove_dead_partials",
]

# The temporary names: `.{output name}.{host}.{pid}.{8 random characters}{suffix}`.
_TEMPORARY_SUFFIXES = (".partial", ".old")
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
# Every output this process has put in place, in order: a run interrupted after its output
# appeared must not say that nothing was written.
_PUBLISHED: list[Path] = []


def published_outputs() -> list[Path]:
    """The outputs this process has put in place so far, oldest first."""
    return list(_PUBLISHED)


def check_apart(output: Path, inputs: Iterable[Path]) -> None:
    """Refuses an output that is, contains or lies inside one of ``inputs`` (files or
    folders): replacing it, or the folder it is written in, could destroy the input."""
    out = output.resolve()
    for given in inputs:
        source = given.resolve()
        if out == source:
            where = "is the input"
        elif source in out.parents:
            where = f"is inside the input folder {given}"
        elif out in source.parents:
            where = f"holds the input {given}"
        else:
            continue
        raise InputError(f"OUTPUT {where}; choose an output apart from the input", file=str(output))


def check_output_path(path: Path, *, overwrite: bool) -> None:
    """Refuses, before any work is done, an output that exists or whose folder does not."""
    if path.exists() and not overwrite:
        raise InputError("already exists; pass --overwrite to replace it", file=str(path))
    if path.is_dir():
        raise InputError("is a folder; expected a file name", file=str(path))
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist", file=str(path))


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` when the ``with`` block exits normally."""
    check_output_path(path, overwrite=overwrite)
    remove_dead_partials(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_temporary_prefix(path), suffix=".partial", dir=path.parent
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        _publish(tmp, path, overwrite=overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Moves the finished file into place; without ``overwrite`` a file that appeared
    meanwhile is left alone (a hard link fails if the name is taken, where rename would not)."""
    os.chmod(tmp, 0o666 & ~_umask())
    if overwrite:
        os.replace(tmp, path)
        _PUBLISHED.append(path)
        return
    try:
        os.link(tmp, path)
        _PUBLISHED.append(path)
    except FileExistsError:
        raise InputError("already exists; pass --overwrite to replace it", file=str(path)) from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise InputError(
                "already exists; pass --overwrite to replace it", file=str(path)
            ) from None
        os.replace(tmp, path)
        _PUBLISHED.append(path)


@contextlib.contextmanager
def atomic_folder(path: Path, *, overwrite: bool, owned: Callable[[str], bool]) -> Iterator[Path]:
    """An empty folder that becomes ``path`` when the ``with`` block exits normally, for
    outputs written as several files (by several processes, on a shared file system).

    With ``overwrite``, an existing ``path`` is replaced only if every entry in it is a file
    whose name ``owned`` accepts (what an earlier run wrote there); anything else is named
    and refused, before any work and again just before the replacement.
    """
    check_output_folder(path, overwrite=overwrite, owned=owned)
    remove_dead_partials(path)
    prefix = _temporary_prefix(path)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():  # only with overwrite: the old folder goes once the new one is there
            _check_only_owned(path, owned)
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            _PUBLISHED.append(path)
            shutil.rmtree(old)
        else:
            try:
                os.rename(tmp, path)  # refuses a folder that appeared meanwhile, unless empty
            except OSError:
                raise InputError(
                    "already exists; pass --overwrite to replace it", file=str(path)
                ) from None
            _PUBLISHED.append(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def check_output_folder(path: Path, *, overwrite: bool, owned: Callable[[str], bool]) -> None:
    """Refuses, before any work is done, what :func:`atomic_folder` would refuse: a file, an
    existing folder (without ``overwrite``, or holding anything ``owned`` does not accept), or
    a missing parent folder."""
    if path.exists() and not path.is_dir():
        raise InputError("is a file; expected a folder name", file=str(path))
    if path.exists() and not overwrite:
        raise InputError("already exists; pass --overwrite to replace it", file=str(path))
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist", file=str(path))
    _check_only_owned(path, owned)


def _check_only_owned(path: Path, owned: Callable[[str], bool]) -> None:
    """Refuses to replace a folder that holds anything but files ``owned`` accepts."""
    if not path.is_dir():
        return
    foreign = sorted(
        entry.name + ("/" if entry.is_dir() else "")
        for entry in path.iterdir()
        if entry.is_dir() or not owned(entry.name)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise InputError(
            f"holds {shown}, which dpov2 did not write; --overwrite replaces only a folder of "
            "dpov2's parts: choose another OUTPUT or empty it",
            file=str(path),
        )


def remove_dead_partials(path: Path) -> None:
    """Removes the temporary files and folders that runs writing ``path`` on this host left
    when they died without cleaning up: those whose pid is no longer a live process."""
    pattern = re.compile(
        rf"\.{re.escape(path.name)}\.{re.escape(_HOST)}\.(\d+)\.[A-Za-z0-9_]{{8}}"
        rf"({'|'.join(map(re.escape, _TEMPORARY_SUFFIXES))})"
    )
    with contextlib.suppress(FileNotFoundError):
        for entry in path.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or _alive(int(match.group(1))):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}.{os.getpid()}."


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    """The process umask (reading it requires setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
