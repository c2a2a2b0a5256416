"""Write an output file, or a folder of files, so that it appears whole or not at all.

Data goes to a hidden temporary file (or folder) beside the target (same file system, so the
final rename is atomic) and is renamed into place only when the writer finishes without
error. An interrupted or failed run removes its temporary file and never leaves anything
under the output name; an existing output is replaced only when asked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dpov2.errors import InputError

__all__ = ["atomic_folder", "atomic_output", "check_output_path"]


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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
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
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise InputError("already exists; pass --overwrite to replace it", file=str(path)) from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise InputError(
                "already exists; pass --overwrite to replace it", file=str(path)
            ) from None
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_folder(path: Path, *, overwrite: bool) -> Iterator[Path]:
    """An empty folder that becomes ``path`` when the ``with`` block exits normally, for
    outputs written as several files (by several processes, on a shared file system)."""
    if path.exists() and not path.is_dir():
        raise InputError("is a file; expected a folder name", file=str(path))
    if path.exists() and not overwrite:
        raise InputError("already exists; pass --overwrite to replace it", file=str(path))
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist", file=str(path))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():  # only with overwrite: the old folder goes once the new one is there
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            try:
                os.rename(tmp, path)  # refuses a folder that appeared meanwhile, unless empty
            except OSError:
                raise InputError(
                    "already exists; pass --overwrite to replace it", file=str(path)
                ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    """The process umask (reading it requires setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
