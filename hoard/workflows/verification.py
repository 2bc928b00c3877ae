"""Backups that prove themselves: restore one into a throwaway node, run the
engine's own checks and count every table, record the outcome, destroy the node.

A durable workflow whose last steps always run: whatever failed before (the
download's checksum, the engine's restore or checks, a start), the throwaway
node is destroyed, then the outcome is recorded on the backup (and, passed, on
its cluster) with an event: ``backup.verified`` or
``backup.verification_failed`` with the reason. A worker that dies mid-way
leaves the workflow to another, which finishes it the same way.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from dbos import DBOS
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hoard.domain.status import OperationStatus
from hoard.engines.base import VerifiesRestores
from hoard.ids import new_id
from hoard.store import events, models, operations
from hoard.workflows import scratch
from hoard.workflows.gate import gated
from hoard.workflows.scratch import Scratch
from hoard.workflows.services import Services, services
from hoard.workflows.steps import recorded, short_reason

KIND = "verify"
RESTORE, START, CHECK, REMOVE = ("restore into a throwaway node", "start the throwaway node",
                                 "run the engine's checks", "remove the throwaway node")
STEPS = [RESTORE, START, CHECK, REMOVE]
FALLBACK_SIZE = "nano"  # a deleted cluster's backup: its size is gone with it


def claim(s: Session, backup_id: str, op_id: str) -> bool:
    """Make ``op_id`` the backup's one running verification (compare-and-set on
    ``verifying_operation_id``); a claim left by an operation that ended without
    releasing it (its workflow lost) does not count."""
    current = s.scalar(select(models.Backup.verifying_operation_id)
                       .where(models.Backup.id == backup_id))
    if current is not None:
        holder = s.get(models.Operation, current)
        if holder is not None and holder.status == OperationStatus.RUNNING:
            return False
    same = (models.Backup.verifying_operation_id.is_(None) if current is None
            else models.Backup.verifying_operation_id == current)
    result = s.execute(update(models.Backup).where(models.Backup.id == backup_id, same)
                       .values(verifying_operation_id=op_id)
                       .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def new_verification(svc: Services, s: Session, backup: models.Backup,
                     detail: str) -> models.Operation | None:
    """Record a verification of ``backup`` (None if one is running already); the
    caller commits, then starts its workflow. The throwaway node's id, size and
    provider are chosen now, so any worker that runs the operation uses them."""
    op_id = new_id()
    if not claim(s, backup.id, op_id):
        return None
    cluster = s.get(models.Cluster, backup.cluster_id)
    node = Scratch(node_id=new_id(), backup_id=backup.id,
                   provider=cluster.provider if cluster else svc.settings.provider,
                   size=cluster.size if cluster else FALLBACK_SIZE)
    return operations.new_operation(s, backup.project_id, backup.cluster_id, KIND, STEPS,
                                    detail=detail, op_id=op_id,
                                    params={"backup_id": backup.id,
                                            "scratch": dataclasses.asdict(node)})


def _node(data: dict[str, Any]) -> Scratch:
    return Scratch(**data)


@DBOS.step()
def began() -> float:
    """When the restore began (recorded: a resumed workflow keeps it)."""
    return time.time()


@DBOS.step()
def restore_scratch(op_id: str, data: dict[str, Any]) -> dict[str, Any]:
    with recorded(op_id, RESTORE):
        svc = services()
        placed = scratch.place(svc, _node(data))
        scratch.restore(svc, placed)
        return dataclasses.asdict(placed)


@DBOS.step()
def start_scratch(op_id: str, data: dict[str, Any]) -> None:
    with recorded(op_id, START):
        scratch.start(services(), _node(data))


@DBOS.step()
def check_scratch(op_id: str, data: dict[str, Any]) -> dict[str, Any]:
    with recorded(op_id, CHECK):
        svc = services()
        node = _node(data)
        with svc.store.session() as s:
            backup = s.get(models.Backup, node.backup_id)
        if backup is None:
            raise RuntimeError(f"backup {node.backup_id} was deleted")
        engine = svc.engines[backup.engine]
        if not isinstance(engine, VerifiesRestores):
            raise RuntimeError(f"{engine.display_name} has no checks of its own to run")
        found = engine.verify(scratch.context(svc, node, backup), svc.ca_file,
                              scratch.provider(svc, node).runner(node.node_id))
        return {"checks": found.checks, "counts": found.counts, "ended": time.time()}


@DBOS.step()
def remove_scratch(op_id: str, data: dict[str, Any]) -> None:
    with recorded(op_id, REMOVE):
        scratch.destroy(services(), _node(data))


@DBOS.step()
def record_outcome(op_id: str, backup_id: str, result: dict[str, Any] | None,
                   reason: str, seconds: float, removed: bool) -> None:
    """The outcome on the backup (and a pass on its cluster), an event, the
    operation's end; the backup's claim released."""
    svc = services()
    now = models.utcnow()
    with svc.store.session() as s:
        backup = s.get(models.Backup, backup_id)
        cluster_id = backup.cluster_id if backup is not None else None
        if backup is not None:
            backup.verification = {
                "status": "failed" if result is None else "passed",
                "seconds": round(seconds, 1),
                "counts": {} if result is None else result["counts"],
                "checks": [] if result is None else result["checks"],
                "reason": reason, "at": now.isoformat() + "Z", "operation_id": op_id}
            if result is not None:
                backup.verified_at = now
            if backup.verifying_operation_id == op_id:
                backup.verifying_operation_id = None
        cluster = s.get(models.Cluster, cluster_id) if cluster_id else None
        if cluster is not None:
            if result is not None:
                cluster.last_verified_restorable_at = now
                cluster.last_verified_restorable_seconds = round(seconds, 1)
                events.record(s, cluster.id, "backup.verified",
                              f"backup {backup_id} restored and checked in {seconds:.1f} s: "
                              f"{len(result['counts'])} tables counted", op_id)
            else:
                events.record(s, cluster.id, "backup.verification_failed",
                              f"backup {backup_id} failed its verification: {reason}", op_id)
    with svc.store.session() as s:
        if removed:  # its end is written here, before the operation's (which may fail)
            operations.mark_step(s, op_id, REMOVE, "done")
        operations.finish(s, op_id, error=reason if result is None else "")


@DBOS.workflow()
@gated
def verify_backup(op_id: str, cluster_id: str, params: dict[str, Any]) -> None:
    node = dict(params["scratch"])
    start = began()
    result: dict[str, Any] | None = None
    reason = ""
    try:
        node = restore_scratch(op_id, node)
        start_scratch(op_id, node)
        result = check_scratch(op_id, node)
    except Exception as exc:
        reason = short_reason(exc)
    removed = True
    try:
        remove_scratch(op_id, node)
    except Exception as exc:  # the outcome says so; nothing is reported as passed
        reason = f"the throwaway node could not be removed: {short_reason(exc)}"
        result, removed = None, False
    ended = result["ended"] if result is not None else finished()
    record_outcome(op_id, params["backup_id"], result, reason, ended - start, removed)


def abandon(op: models.Operation) -> None:
    """After the workflow library gave a verification up for good (the outbox
    settles its operation): remove its throwaway node and release the backup."""
    params = dict(op.params or {})
    if "scratch" in params:
        scratch.destroy(services(), _node(params["scratch"]))
    with services().store.session() as s:
        s.execute(update(models.Backup).where(
            models.Backup.id == params.get("backup_id"),
            models.Backup.verifying_operation_id == op.id).values(verifying_operation_id=None)
            .execution_options(synchronize_session=False))


@DBOS.step()
def finished() -> float:
    return time.time()
