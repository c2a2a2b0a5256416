"""Read ahead: produce the next batch in a background thread while the caller works on this one.

Parsing (pyarrow's JSON reader, Parquet decoding, the Rust splitter) runs without the GIL, so
reading batch ``n + 1`` overlaps with pairing and writing batch ``n``. At most ``depth``
batches wait in between, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

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
