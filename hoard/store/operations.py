"""Recording an operation's steps and outcome as a workflow moves through it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hoard.domain.status import OperationStatus
from hoard.ids import new_id
from hoard.store import events, locks
from hoard.store.models import Cluster, Operation, utcnow


def new_operation(
    session: Session, project_id: str, cluster_id: str, kind: str, steps: list[str],
    detail: str = "", params: dict[str, Any] | None = None, op_id: str | None = None,
) -> Operation:
    op = Operation(
        id=op_id or new_id(), project_id=project_id, cluster_id=cluster_id, kind=kind,
        status=OperationStatus.RUNNING, progress=0, error="", params=params or {},
        steps=[{"name": s, "status": "pending"} for s in steps],
    )
    session.add(op)
    if session.get(Cluster, cluster_id) is not None:
        events.record(session, cluster_id, "operation.started",
                      f"{kind} started{': ' + detail if detail else ''}", op.id)
    return op


def mark_step(session: Session, op_id: str, step: str, status: str, detail: str = "",
              *, begin: bool = False) -> Operation | None:
    """Set one step's status and recompute progress (steps done / steps planned).

    ``begin``: the workflow starts ``step``, so the step it ran before ended well:
    one still marked running is marked done in the same write. A step's own end
    is not written separately: half the writes of a workflow's progress.
    The operation marked (None if there is none), for what else it holds."""
    op = session.get(Operation, op_id)
    if op is None:
        return None
    now = utcnow().isoformat() + "Z"
    steps = [dict(s) for s in op.steps]
    for s in steps:
        if s["name"] == step:
            _set(s, status, now, detail)
        elif begin and s["status"] == "running":
            _set(s, "done", now)
    _store(op, steps)
    return op


def _set(s: dict[str, Any], status: str, now: str, detail: str = "") -> None:
    s["status"] = status
    s.setdefault("started_at", now)
    if status in ("done", "failed"):
        s["finished_at"] = now
    if detail:
        s["detail"] = detail
    elif status == "done" and str(s.get("detail", "")).startswith("waiting: "):
        del s["detail"]  # what it waited for is no longer news


def _store(op: Operation, steps: list[dict[str, Any]]) -> None:
    op.steps = steps
    done = sum(1 for s in steps if s["status"] in ("done", "skipped"))
    op.progress = int(100 * done / len(steps)) if steps else 100


def finish(session: Session, op_id: str, error: str = "", error_status: int = 500) -> None:
    """End an operation (once) and say so in its cluster's history."""
    op = session.get(Operation, op_id)
    if op is None or op.status != OperationStatus.RUNNING:
        return
    op.status = OperationStatus.FAILED if error else OperationStatus.SUCCEEDED
    op.error = error
    op.error_status = error_status if error else None
    # A step still running ran to its end (see mark_step), or, on an error, is
    # where it ended: one that waited until its deadline ends there, not the workflow.
    now = utcnow().isoformat() + "Z"
    steps = [dict(s) for s in op.steps]
    for s in steps:
        if s["status"] == "running":
            _set(s, "failed" if error else "done", now, error)
    _store(op, steps)
    if not error:
        op.progress = 100
    op.finished_at = utcnow()
    if op.cluster_id:
        locks.release_cluster(session, op.cluster_id, op.id)
    if op.cluster_id and session.get(Cluster, op.cluster_id) is not None:
        if error:
            events.record(session, op.cluster_id, "operation.failed",
                          f"{op.kind} failed: {error}", op.id)
        else:
            events.record(session, op.cluster_id, "operation.succeeded",
                          f"{op.kind} succeeded", op.id)
