"""Durable execution with DBOS: workflows and their steps are checkpointed in the
state store's database, and a restarted worker resumes them where they stopped.

Why DBOS (see docs/architecture.md): it is a library, not a server to run; it
keeps its checkpoints in the same SQLite file or PostgreSQL database family as
the state store, so the embedded default needs nothing extra; and recovery of
pending workflows at launch is built in.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID
from sqlalchemy import select

from hoard import __version__
from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.settings import Settings
from hoard.store import liveness, models, operations
from hoard.workflows import (
    accounts,
    backups,
    cluster_create,
    cluster_delete,
    cluster_scale,
    cluster_update,
    gate,
    pooler,
    verification,
)
from hoard.workflows.dispatch import Dispatcher, announce
from hoard.workflows.loops import Loop
from hoard.workflows.membership import Membership, install_fence
from hoard.workflows.services import services

log = logging.getLogger(__name__)


# API processes built before operations were announced (hoard/workflows/
# dispatch.py) put them on this DBOS queue; workers still take from it, so old
# API processes and new workers run side by side during an upgrade (expand,
# then contract: the release after the next stops registering it).
OPERATIONS_QUEUE = "hoard-operations"
QUEUE_POLL = 1.0  # seconds between a worker's looks at that queue
# Seconds an operation may wait for its announcement before a worker's outbox
# pass starts it: short, since starting one twice is harmless (dispatch.py),
# and an operation announced while its shard moved between workers waits this.
OUTBOX_AGE = 1.0


class _Runtime:
    membership: Membership | None = None  # set in a worker process
    dispatcher: Dispatcher | None = None  # a worker's listener, on PostgreSQL
    announcing: bool = False  # set in an API-only process


_runtime = _Runtime()


def _config(settings: Settings) -> DBOSConfig:
    return {
        "name": "hoard",
        "system_database_url": settings.workflow_store_url,
        # A fixed version: workflows started by this release resume after a restart
        # even if unrelated code changed. Bump with releases that change step order.
        "application_version": __version__,
        "executor_id": settings.worker_id,
        "log_level": "WARNING",
        # Pinged after resting, not on every checkout (hoard/store/liveness.py).
        "db_engine_kwargs": {"pool_pre_ping": False},
    }


def launch(settings: Settings) -> Membership:
    """Join the workers (a lease, fencing every write), then start DBOS: it
    recovers this worker's own unfinished workflows, and runs what API
    processes queue."""
    membership = Membership(services().store, settings.worker_id, settings.lease_seconds,
                            lambda ids: DBOS._recover_pending_workflows(ids))
    membership.join()
    liveness.install()
    install_fence(services().store, membership)
    gate.configure(settings.workflow_slots)  # before DBOS recovers this worker's own
    DBOS(config=_config(settings))
    DBOS.launch()
    DBOS.register_queue(OPERATIONS_QUEUE, polling_interval_sec=QUEUE_POLL)
    membership.start()
    _runtime.membership = membership
    if settings.database_url:  # other processes may record operations: listen
        _runtime.dispatcher = Dispatcher(services().store, membership.owned, _start_here)
        _runtime.dispatcher.start()
    resume_unstarted(min_age=0.0)
    return membership


def connect() -> None:
    """An API-only process (on PostgreSQL: the CLI refuses SQLite): operations
    are announced to the workers."""
    _runtime.announcing = True


def stop_taking_work() -> None:
    """The first step of a drain: announced operations are left to other workers."""
    if _runtime.dispatcher is not None:
        _runtime.dispatcher.stop()
        _runtime.dispatcher = None


def migrate_workflows(settings: Settings) -> None:
    """Create or upgrade DBOS's own tables (``hoard migrate``)."""
    DBOS.migrate(settings.workflow_store_url)


def shutdown(drain_seconds: float = 0.0) -> None:
    """Stop: let running workflows finish for up to ``drain_seconds``, then give
    the lease up, so another worker takes over what is left at once."""
    _runtime.announcing = False
    stop_taking_work()
    if _runtime.membership is None:
        return
    DBOS.destroy(workflow_completion_timeout_sec=int(drain_seconds))
    _runtime.membership.leave()
    _runtime.membership = None


def start(op: models.Operation) -> None:
    """Start the workflow for an operation. The workflow id is the operation id, so
    the same operation never runs twice."""
    if op.cluster_id is None:
        raise ValueError(f"operation {op.id} has no cluster")
    if _runtime.membership is not None:  # a worker here: run it at once
        _start_here(op)
        return
    if not _runtime.announcing:
        raise RuntimeError("no worker in this process and not connected to announce")
    announce(services().store, op)


def _start_here(op: models.Operation) -> None:
    """Run an operation's workflow in this worker (again: a no-op)."""
    assert op.cluster_id is not None
    target, args = _workflow(op.kind, op.id, op.cluster_id, dict(op.params))
    with SetWorkflowID(op.id):
        DBOS.start_workflow(target, *args)


Started = tuple[Callable[..., None], tuple[Any, ...]]
Starter = Callable[[str, str, dict[str, Any]], Started]


def _account_change(kind: str) -> Starter:
    return lambda op, c, p: (accounts.account_change, (op, c, kind, p))


def _cluster_action(kind: str) -> Starter:
    return lambda op, c, p: (cluster_update.cluster_action, (op, c, kind))


# Operation kinds: each names its workflow and the arguments it takes from the
# operation (id, cluster id, params). A new kind is a workflow and one line here.
OPERATIONS: dict[str, Starter] = {
    **{kind: _account_change(kind) for kind in accounts.PLANS},
    **{kind: _cluster_action(kind) for kind in cluster_update.ACTIONS},
    "create": lambda op, c, p: (cluster_create.create_cluster, (op, c)),
    "delete": lambda op, c, p: (cluster_delete.delete_cluster, (op, c)),
    "update": lambda op, c, p: (cluster_update.update_cluster, (op, c, p)),
    "backup": lambda op, c, p: (backups.backup_cluster, (op, c, p["backup_id"])),
    "scale": lambda op, c, p: (cluster_scale.scale_cluster, (op, c, p)),
    "switchover": lambda op, c, p: (cluster_scale.switchover_cluster, (op, c, p["node_id"])),
    "replace": lambda op, c, p: (cluster_scale.replace_lost_node, (op, c, p["node_id"])),
    "promote": lambda op, c, p: (cluster_scale.promote_node, (op, c, p)),
    "pooler": lambda op, c, p: (pooler.change_pooler, (op, c, p)),
    verification.KIND: lambda op, c, p: (verification.verify_backup, (op, c, p)),
}


def _workflow(kind: str, op_id: str, cluster_id: str, params: dict[str, Any]) -> Started:
    """The registered workflow function for an operation of ``kind``, and its arguments."""
    return OPERATIONS[kind](op_id, cluster_id, params)


def resume_unstarted(min_age: float = OUTBOX_AGE) -> int:
    """Queue the workflows of operations recorded but never started (the API
    process committed the operation and died before starting it), for the
    clusters in this worker's shards. An operation younger than ``min_age`` is
    left to its API process. Queueing is idempotent: one workflow per id. An
    operation whose workflow has ended but is still running is settled."""
    membership = _runtime.membership
    if membership is None:
        return 0
    svc = services()
    limit = models.utcnow() - dt.timedelta(seconds=min_age)
    with membership.pass_over_shards() as shards, svc.store.session() as s:
        pending = list(s.scalars(select(models.Operation).join(
            models.Cluster, models.Cluster.id == models.Operation.cluster_id).where(
            models.Operation.status == OperationStatus.RUNNING,
            models.Operation.created_at <= limit, models.Cluster.shard.in_(sorted(shards)))))
    started = 0
    if not pending:
        return 0
    # One query for all (a burst of creates is many running operations each pass).
    known = {w.workflow_id: w.status for w in DBOS.list_workflows(
        workflow_ids=[op.id for op in pending], load_input=False, load_output=False)}
    for op in pending:
        if known.get(op.id) in ENDED:
            status = DBOS.get_workflow_status(op.id)  # with its error
            if status is not None:
                settle_ended(op.id, status.status, status.error)
        elif op.id not in known:
            log.info("starting workflow for recorded operation %s", op.id)
            _start_here(op)
            started += 1
    return started


# DBOS states in which a workflow will never run another step.
ENDED = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
# What a cluster left mid-change by a workflow that ended without saying so becomes:
# the observer moves a DEGRADED cluster back to ACTIVE once its nodes answer.
AFTER_LOST_WORKFLOW = {ClusterStatus.BUILDING: ClusterStatus.FAILED,
                       ClusterStatus.UPDATING: ClusterStatus.DEGRADED}


def settle_ended(op_id: str, state: str, error: Any) -> None:
    """Fail an operation whose workflow ended without recording an outcome (an
    exception outside every step's handler, or DBOS giving up on recovery), so the
    cluster's claim is released instead of refusing every later change with 409."""
    reason = (f"the operation's workflow ended ({state.lower()}) without finishing it"
              + (f": {str(error).splitlines()[0][:300]}" if error else ""))
    log.error("operation %s: %s", op_id, reason)
    with services().store.session() as s:
        op = s.get(models.Operation, op_id)
        if op is None or op.status != OperationStatus.RUNNING:
            return
        if op.kind == verification.KIND:  # its throwaway node goes too
            verification.abandon(op)
        cluster = s.get(models.Cluster, op.cluster_id) if op.cluster_id else None
        if cluster is not None and cluster.status in AFTER_LOST_WORKFLOW:
            cluster.status = AFTER_LOST_WORKFLOW[ClusterStatus(cluster.status)]
            cluster.status_reason = reason
        operations.finish(s, op_id, error=reason)


def outbox(interval: float) -> Loop:
    return Loop("outbox", interval, resume_unstarted)
