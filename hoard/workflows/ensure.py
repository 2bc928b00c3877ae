"""Ensure-steps: a step that answers "done" or "not yet: ask again in N s because
…", and a workflow loop that asks again until the provider's deadline.

A step that cannot finish yet for a reason that may pass (a server still
starting, its address briefly held by another process) raises ``NotYet``
instead of sleeping on: the step is marked waiting with the reason (what
``GET /v2/operations/{id}`` shows), the workflow sleeps durably
(``DBOS.sleep``) and runs the step again. Every other exception is permanent:
it reaches the workflow at once and the workflow compensates. The deadline
starts at the step's first run and is recorded with it, so a workflow that
another worker resumes keeps the time already spent rather than starting over.
This is the split Kopf makes between temporary and permanent errors, and
CloudNativePG's "requeue after" from an ensure-step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from dbos import DBOS

from hoard.workflows.gate import gate

T = TypeVar("T")
# How long one run of an ensure-step may wait on its own before it answers "not
# yet" and lets the workflow run it again: short enough that a long wait (an
# image pull) survives a worker change with its deadline, long enough that a
# server starting in a second is one run.
SLICE = 10.0


class NotYet(Exception):
    """Temporary: the step's work is not done yet; run it again in ``retry_in``
    seconds (its work is idempotent), until its deadline. ``memo`` is handed to
    that next run: what this one learnt that changes how the next reads what it
    sees (e.g. "the address was held": a server that exits then may be the
    victim of it, not broken)."""

    def __init__(self, reason: str, retry_in: float = 1.0, memo: str = "") -> None:
        super().__init__(reason, retry_in, memo)
        self.reason, self.retry_in, self.memo = reason, retry_in, memo
        # When the run that answered began (``recorded`` sets it to its step's
        # start); recorded with the answer, so a resumed workflow reads the same.
        self.began = time.time()

    def __str__(self) -> str:
        return self.reason


@DBOS.step()
def _clock() -> float:
    """Now, recorded: a resumed workflow reads the same first-run time."""
    return time.time()


def until_done(step: Callable[..., T], *args: Any, deadline: float, what: str) -> T:
    """Run ``step(*args, memo=...)`` (a DBOS step; ``memo`` is the last run's, ""
    at first) until it returns, for at most ``deadline`` seconds from the first run.
    Called from a workflow only. At the deadline: a TimeoutError naming ``what``
    and the step's last reason; any other error propagates at once. The first
    run's start comes with its "not yet": a step done at once records nothing more."""
    started: float | None = None
    memo = ""
    while True:
        try:
            return step(*args, memo=memo)
        except NotYet as wait:
            started = wait.began if started is None else started
            if _clock() + wait.retry_in - started > deadline:
                raise TimeoutError(f"{what} within {deadline:.0f}s: {wait.reason}") from None
            with gate().resting():
                DBOS.sleep(wait.retry_in)
            memo = wait.memo
