"""Run one stage of a streaming pipeline on a thread of its own.

A backup moves through stages that each wait on something else: the tool's
pipe, AES-GCM, the store's writes (and, restoring, the store's reads and the
tool's stdin). In one generator chain they take turns, and the tool sits on a
full pipe while Hoard encrypts or writes. ``prefetched`` lets the stage that
produces items run ahead of the one that consumes them, by at most ``depth``
items, so memory stays bounded. Pipe and file I/O, AES-GCM and hashlib release
the GIL, so on two or more CPUs the stages really overlap.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
DEPTH = 2  # items (a MiB each in backups) waiting between the two threads


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(items: Iterable[T], depth: int = DEPTH, name: str = "prefetch") -> Iterator[T]:
    """The items of ``items``, produced on another thread at most ``depth`` ahead.

    Exceptions come out where they happened in the sequence, in this thread.
    Closing the returned iterator early (or an error here) stops the producer
    after the item it is working on and closes ``items`` on the producer's
    thread, so a tool behind it is closed as it would be without the thread.
    Nothing starts before the first ``next()``.
    """
    handoff: queue.Queue[T | _End | _Failed] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                handoff.put(item)
                if stop.is_set():
                    return
            handoff.put(_End())
        except BaseException as exc:  # handed over, raised in the consumer
            handoff.put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            got = handoff.get()
            if isinstance(got, _End):
                break
            if isinstance(got, _Failed):
                raise got.exc
            yield got
    finally:
        stop.set()
        # Make room for a producer blocked on a full queue; it then sees ``stop``.
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()
