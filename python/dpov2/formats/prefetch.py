"""Read ahead and write behind: the next batch is read, and the last one written, in background
threads while the caller pairs this one.

Parsing (the Rust JSON reader, Parquet decoding), encoding and compressing output run without
the GIL, so reading batch ``n + 1``, pairing batch ``n`` and writing batch ``n - 1`` overlap.
At most ``depth`` batches wait in between, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["WriteBehind", "prefetch"]

T = TypeVar("T")

_POLL_SECONDS = 0.1


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of ``items``, in order, produced ``depth`` ahead in another thread.

    An exception raised while producing is raised here, at the item where it occurred.
    Leaving early (``break``, an error) stops the producer and closes ``items``.
    """
    slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                slots.put((kind, value), timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as err:  # handed over to the consumer, re-raised there
            offer("error", err)
        finally:
            if isinstance(items, Generator):
                items.close()

    producer = threading.Thread(target=produce, name="dpov2-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()


class WriteBehind(Generic[T]):
    """Calls ``write`` on each item :meth:`put` hands over, in order, in another thread, at
    most ``depth`` items behind the caller; use as a context manager.

    Errors keep their order: a failed ``write`` is raised by the next :meth:`put` or by
    :meth:`close`, and when the ``with`` block fails after handing over items, the block
    waits for them and raises a ``write`` error instead, since that item came first (a
    ``KeyboardInterrupt`` stays as it is). The thread has stopped when the block is left, so
    the caller may then close or delete what ``write`` writes to.
    """

    def __init__(self, write: Callable[[T], None], depth: int = 1) -> None:
        self._write = write
        self._slots: queue.Queue[tuple[bool, T | None]] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._consume, name="dpov2-write", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while True:
            more, item = self._slots.get()
            if not more or self._stop.is_set():
                return
            if self._error is None:
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as err:  # handed over to the caller, re-raised there
                    self._error = err

    def _hand(self, more: bool, item: T | None) -> None:
        while self._thread.is_alive():
            try:
                self._slots.put((more, item), timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Hands ``item`` to the writer thread (waiting while ``depth`` items are pending)."""
        self._raise_error()
        self._hand(True, item)

    def close(self) -> None:
        """Waits until every item is written; raises the first ``write`` error."""
        self._hand(False, None)
        self._thread.join()
        self._raise_error()

    def __enter__(self) -> WriteBehind[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
            return
        if isinstance(error, KeyboardInterrupt):
            self._stop.set()  # the item being written is finished, the others dropped
        self._hand(False, None)
        self._thread.join()
        if not isinstance(error, KeyboardInterrupt) and self._error is not None:
            raise self._error
