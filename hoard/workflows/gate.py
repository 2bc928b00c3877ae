"""A worker's gate: at most a few workflows do their work at once; the rest wait.

Why: DBOS runs every workflow on a thread of its own, so a burst of operations
(50 creates at once) is 50 threads taking the interpreter's lock from one
another on every statement and every pipe read. Measured in a worker during 50
creates at once, a third of its CPU was the kernel waking and switching those
threads. Let through a few at a time, the same work finishes sooner and costs
less; the others wait on one condition, idle.

Two rules keep the gate from ever holding anything up for long:

- A workflow counts against the gate for its first ``young`` seconds of work
  only. One that runs long (a backup's stream, a replica's copy, a server
  slow to start) stops counting then, so long work never keeps short work
  out, and a place held by a workflow that waits for another one frees
  itself within ``young`` (no deadlock).
- A workflow's waits give its place up while they sleep (``resting``): the
  ensure-steps' durable sleeps and ``steps.wait_for``'s polls. Back from a
  rest, it goes before workflows not yet begun, so work begun finishes first.

``slots`` 0 turns the gate off (every workflow enters at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Gate:
    """At most ``slots`` holders in their first ``young`` seconds at once."""

    def __init__(self, slots: int, young: float = 2.0) -> None:
        self.slots, self.young = slots, young
        lock = threading.Lock()
        # Waiters back from a rest go before newcomers: work begun finishes
        # first, rather than queueing behind a burst that came after it.
        self._back = threading.Condition(lock)
        self._new = threading.Condition(lock)
        self._waiting = {True: 0, False: 0}  # back from a rest?  -> how many wait
        self._since: dict[int, float] = {}  # holder (its thread) -> when it entered

    def _enter(self, back: bool = False) -> None:
        me, cond = threading.get_ident(), self._back if back else self._new
        with cond:
            self._waiting[back] += 1
            try:
                while True:
                    now = time.monotonic()
                    counted = [t for t in self._since.values() if now - t < self.young]
                    others_back = self._waiting[True] - back
                    if len(counted) < self.slots and (back or not others_back):
                        self._since[me] = now
                        self._waiting[back] -= 1
                        if len(counted) + 1 < self.slots:
                            self._wake_one()  # room left (two left at once): pass it on
                        return
                    # Woken when one leaves, or at the latest when the oldest
                    # stops counting.
                    cond.wait(min(counted) + self.young - now if counted else self.young)
            except BaseException:
                self._waiting[back] -= 1
                raise

    def _wake_one(self) -> None:
        """(The lock held.) Wake the next waiter: one back from a rest first."""
        (self._back if self._waiting[True] else self._new).notify()

    def _leave(self) -> None:
        with self._back:
            self._since.pop(threading.get_ident(), None)
            self._wake_one()

    def _inside(self) -> bool:
        """Whether this thread holds a place (only it adds or removes its own)."""
        with self._back:
            return threading.get_ident() in self._since

    @contextmanager
    def held(self) -> Iterator[None]:
        """Do the work inside once let in (at once if this thread is in already)."""
        if self.slots <= 0 or self._inside():
            yield
            return
        self._enter()
        try:
            yield
        finally:
            self._leave()

    @contextmanager
    def resting(self) -> Iterator[None]:
        """A wait inside held work: its place is given up meanwhile, and taken
        again after, ahead of workflows not yet begun."""
        if not self._inside():
            yield
            return
        self._leave()
        try:
            yield
        finally:
            self._enter(back=True)

    def waiting(self) -> tuple[int, int]:
        """How many wait: back from a rest, and not yet begun."""
        with self._back:
            return self._waiting[True], self._waiting[False]

    def counted(self) -> int:
        """How many holders count against the gate now."""
        now = time.monotonic()
        with self._back:
            return sum(1 for t in self._since.values() if now - t < self.young)


_gate = Gate(0)


def configure(slots: int) -> None:
    """Set this process's gate (a worker does so once, from its settings)."""
    global _gate
    _gate = Gate(slots)


def gate() -> Gate:
    return _gate


def gated(workflow: Callable[P, T]) -> Callable[P, T]:
    """A workflow's body, run inside this process's gate."""
    @wraps(workflow)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with _gate.held():
            return workflow(*args, **kwargs)
    return run
