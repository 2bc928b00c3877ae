"""Helpers shared by workflow steps: loading a cluster, recording progress, and
waiting for something with the reason shown while it lasts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.orm import Session

from hoard.store import models, operations
from hoard.workflows.ensure import NotYet
from hoard.workflows.gate import gate
from hoard.workflows.membership import guard
from hoard.workflows.services import services


def load_cluster(cluster_id: str) -> models.Cluster | None:
    with services().store.session() as s:
        return s.get(models.Cluster, cluster_id)


@contextmanager
def recorded(op_id: str, step: str,
             session: Session | None = None) -> Iterator[models.Operation | None]:
    """Mark ``step`` running (and the one before it done), or failed, in the
    operation the user polls. Its end is written with the next step's start, or
    with the operation's success: one write per step, not two. With ``session``,
    the mark is part of that transaction (a step that is one write itself).
    Yields the operation as marked (its parameters, read with the mark)."""
    guard()
    began = time.time()
    svc = services()
    store = svc.store
    if session is not None:
        op = operations.mark_step(session, op_id, step, "running", begin=True)
    else:
        with store.session() as s:
            op = operations.mark_step(s, op_id, step, "running", begin=True)
    token = _current_step.set((op_id, step))
    try:
        if svc.settings.fail_step == step:
            raise RuntimeError(f"injected failure in step {step!r} (HOARD_FAIL_STEP)")
        yield op
    except NotYet as wait:  # temporary: the step runs again, and says why meanwhile
        wait.began = began
        _undo(session)
        with store.session() as s:
            operations.mark_step(s, op_id, step, "running", f"waiting: {wait.reason}",
                                 begin=session is not None)
        raise
    except Exception as exc:
        _undo(session)
        with store.session() as s:
            operations.mark_step(s, op_id, step, "failed", str(exc), begin=session is not None)
        raise
    finally:
        _current_step.reset(token)
    if step in svc.settings.pause_steps:
        with store.session() as s:
            operations.mark_step(s, op_id, step, "running",
                                 f"paused (HOARD_PAUSE_STEP) on worker {svc.settings.worker_id}")
        with gate().resting():
            time.sleep(svc.settings.pause_seconds)


def _undo(session: Session | None) -> None:
    """A step recorded in its own transaction failed: roll that back first (the
    step's mark is in it, and its row locks would hold the failure's own mark
    written beside it), so the failure is marked as if the step began alone."""
    if session is not None:
        session.rollback()


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


# The operation and step a workflow thread is in (set by ``recorded``).
_current_step: ContextVar[tuple[str, str] | None] = ContextVar("hoard_step", default=None)
SHOW_EVERY = 1.0  # seconds between updates of a waiting step's reason


def wait_for(check: Callable[[], str | None], timeout: float, what: str,
             interval: float = 0.1, slowest: float | None = None,
             temporary: bool = False) -> None:
    """Ask ``check`` until it says nothing is missing (None) or ``timeout`` passes.

    ``check`` answers why it is not done yet ("node 1: starting up"); from the
    wait's first second on, the latest answer is the running step's detail in
    the operation the user polls (at most once a second), so a slow step says
    what it waits for instead of only that it is slow. At the deadline: a
    TimeoutError naming ``what`` and the last reason. With ``slowest``, the
    interval grows by half each time up to it (a check that acts, like starting
    a server again, backs off). With ``temporary`` (an ensure-step's slice), the
    end is ``NotYet`` with the last reason instead: the workflow runs the step
    again until its own deadline."""
    deadline = time.monotonic() + timeout
    # Nothing is shown for a wait shorter than SHOW_EVERY: most waits (a server
    # starting) end within it, and each shown reason is a write.
    shown, shown_at = "", time.monotonic()
    while True:
        reason = check()
        if reason is None:
            return
        now = time.monotonic()
        if now > deadline:
            if temporary:
                raise NotYet(reason, interval)
            raise TimeoutError(f"{what} within {timeout:.0f}s: {reason}")
        where = _current_step.get()
        if where is not None and reason != shown and now - shown_at >= SHOW_EVERY:
            with services().store.session() as s:
                operations.mark_step(s, where[0], where[1], "running", f"waiting: {reason}")
            shown, shown_at = reason, now
        with gate().resting():
            time.sleep(interval)
        if slowest is not None:
            interval = min(interval * 1.5, slowest)
