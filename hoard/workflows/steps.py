"""Helpers shared by workflow steps: loading a cluster, recording progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from hoard.store import models, operations
from hoard.workflows.membership import guard
from hoard.workflows.services import services


def load_cluster(cluster_id: str) -> models.Cluster | None:
    with services().store.session() as s:
        return s.get(models.Cluster, cluster_id)


@contextmanager
def recorded(op_id: str, step: str) -> Iterator[None]:
    """Mark ``step`` running, then done or failed, in the operation the user polls."""
    guard()
    svc = services()
    store = svc.store
    with store.session() as s:
        operations.mark_step(s, op_id, step, "running")
    try:
        if svc.settings.fail_step == step:
            raise RuntimeError(f"injected failure in step {step!r} (HOARD_FAIL_STEP)")
        yield
    except Exception as exc:
        with store.session() as s:
            operations.mark_step(s, op_id, step, "failed", str(exc))
        raise
    if step in svc.settings.pause_steps:
        with store.session() as s:
            operations.mark_step(s, op_id, step, "running",
                                 f"paused (HOARD_PAUSE_STEP) on worker {svc.settings.worker_id}")
        time.sleep(svc.settings.pause_seconds)
    with store.session() as s:
        operations.mark_step(s, op_id, step, "done")


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
