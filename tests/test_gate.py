"""The worker's gate (hoard/workflows/gate.py): a few workflows at once, none
held up for long, and waits give their place up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hoard.workflows.gate import Gate


def _run_all(gate: Gate, bodies: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=lambda b=b: _inside(gate, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the threads never got there"
        time.sleep(0.01)


def _inside(gate: Gate, body: Callable[[], None]) -> None:
    with gate.held():
        body()


class Peak:
    """The most bodies seen running at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def body(self, seconds: float) -> Callable[[], None]:
        def run() -> None:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(seconds)
            with self.lock:
                self.now -= 1
        return run


def test_at_most_slots_run_at_once_and_every_one_runs() -> None:
    gate, peak = Gate(3), Peak()
    done: list[int] = []
    body = peak.body(0.3)  # long enough for three to be in at once on a busy machine

    def counted() -> None:
        body()
        done.append(1)

    _run_all(gate, [counted] * 12)
    assert peak.most == 3
    assert len(done) == 12
    assert gate.counted() == 0


def test_no_slots_means_no_gate() -> None:
    gate = Gate(0)
    met: list[int] = []
    barrier = threading.Barrier(8, timeout=5)  # all eight inside at once, or it breaks
    _run_all(gate, [lambda: met.append(barrier.wait()) for _ in range(8)])
    assert sorted(met) == list(range(8))


def test_a_long_holder_stops_counting_after_young_seconds() -> None:
    gate = Gate(1, young=0.3)
    inside = threading.Event()
    release = threading.Event()
    entered: list[float] = []

    def long() -> None:
        entered.append(time.monotonic())  # at most the moment it is let in
        with gate.held():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=long)
    holder.start()
    inside.wait(5)
    with gate.held():  # let in once the long one is no longer young, not when it ends
        waited = time.monotonic() - entered[0]
        assert holder.is_alive() and not release.is_set()
    release.set()
    holder.join(5)
    assert waited >= 0.3, waited


def test_a_resting_holder_gives_its_place_up_and_takes_it_again() -> None:
    gate = Gate(1, young=30)
    resting, rested, order = threading.Event(), threading.Event(), []

    def waits() -> None:
        with gate.held():
            with gate.resting():
                resting.set()
                rested.wait(5)
            order.append("resumed")

    first = threading.Thread(target=waits)
    first.start()
    resting.wait(5)
    with gate.held():  # at once: the first one rests
        order.append("second")
        rested.set()
        _until(lambda: gate.waiting() == (1, 0))  # the first wakes, and waits for this place
        assert gate.counted() == 1
    first.join(5)
    assert order == ["second", "resumed"]


def test_held_is_reentrant_on_one_thread_and_resting_outside_is_a_no_op() -> None:
    gate = Gate(1, young=30)
    with gate.resting():
        pass
    with gate.held(), gate.held():  # a workflow run from another, on its thread
        assert gate.counted() == 1
    assert gate.counted() == 0


def test_one_back_from_a_rest_goes_before_newcomers() -> None:
    gate, order = Gate(1, young=30), []
    resting, rest_over, x_inside, x_leave = (threading.Event() for _ in range(4))

    def rests() -> None:
        with gate.held():
            with gate.resting():
                resting.set()
                rest_over.wait(5)
            order.append("back")

    def newcomer() -> None:
        with gate.held():
            order.append("newcomer")

    def holder() -> None:
        with gate.held():
            x_inside.set()
            x_leave.wait(5)
            order.append("holder")

    r = threading.Thread(target=rests)
    r.start()
    resting.wait(5)
    x = threading.Thread(target=holder)
    x.start()
    x_inside.wait(5)
    n = threading.Thread(target=newcomer)
    n.start()
    _until(lambda: gate.waiting() == (0, 1))  # the newcomer waits first
    rest_over.set()
    _until(lambda: gate.waiting() == (1, 1))  # then the one back from its rest
    x_leave.set()
    for t in (r, x, n):
        t.join(5)
    assert order == ["holder", "back", "newcomer"]


def test_places_freed_together_let_in_as_many_waiters() -> None:
    """Two leave at once, with one back from a rest and one newcomer waiting: both
    get in at once (the first let in passes the spare place on), not after
    ``young``, though both wake-ups went to the first."""
    gate, entered = Gate(2, young=30), []
    resting, rest_over, leave = threading.Event(), threading.Event(), threading.Event()
    inside = threading.Barrier(3, timeout=10)

    def rests() -> None:
        with gate.held():
            with gate.resting():
                resting.set()
                rest_over.wait(10)
            entered.append("back")
            leave.wait(60)  # stays in: its own leaving must not be what lets the other in

    def holder() -> None:
        with gate.held():
            inside.wait()
            leave.wait(60)

    def newcomer() -> None:
        with gate.held():
            entered.append("newcomer")

    r = threading.Thread(target=rests)
    r.start()
    resting.wait(5)
    holders = [threading.Thread(target=holder) for _ in range(2)]
    for h in holders:
        h.start()
    inside.wait()  # both places taken
    n = threading.Thread(target=newcomer)
    n.start()
    _until(lambda: gate.waiting() == (0, 1))
    rest_over.set()
    _until(lambda: gate.waiting() == (1, 1))
    # Both holders leave before either waiter runs (what a busy machine's
    # scheduling can do): two wake-ups under one hold of the gate's lock, both
    # meant for the one back from its rest, as there is one waiting then.
    with gate._back:
        for h in holders:
            assert h.ident is not None
            gate._since.pop(h.ident)
            gate._wake_one()
    try:
        _until(lambda: sorted(entered) == ["back", "newcomer"])  # not after young's 30 s
    finally:
        leave.set()
    for t in (*holders, r, n):
        t.join(10)
        assert not t.is_alive()
