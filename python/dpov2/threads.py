"""The one thread setting of dpov2's native code.

Every function that runs parallel Rust work takes ``num_threads``; :func:`resolve_threads`
is the one place it is checked and ``None`` given its meaning: the environment variable
``DPOV2_NUM_THREADS``, else the number of CPUs this process may use (its affinity and cgroup
quota, not the machine's core count). The bound and the variable are defined once, in
``rust/bindings/threads.rs``; results never depend on the count.
"""

from __future__ import annotations

import numpy as np

from dpov2 import _core

__all__ = ["MAX_THREADS", "NUM_THREADS_ENV", "resolve_threads"]

MAX_THREADS: int = _core.MAX_THREADS
NUM_THREADS_ENV: str = _core.NUM_THREADS_ENV


def resolve_threads(num_threads: int | None = None) -> int:
    """The thread count ``num_threads`` stands for, from 1 to :data:`MAX_THREADS`.

    Raises:
        TypeError: ``num_threads`` is neither ``None`` nor an integer (``bool`` included).
        ValueError: it is outside ``1..MAX_THREADS``, or ``None`` and ``DPOV2_NUM_THREADS``
            is set to anything but such an integer.
    """
    if num_threads is None:
        return _core.resolve_threads(None)
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads must be an integer or None, got {type(num_threads).__name__}")
    return _core.resolve_threads(int(num_threads))
