"""Change a running cluster: resize, reconfigure, restart, stop, start.

A change is planned by comparing the engine's effective settings before and
after it. Dynamic settings are applied live; settings that need a restart are
applied at once by a resize ("restart only when needed") and left pending by a
configuration change, which shows them in the cluster's ``pending_restart``
until ``POST /actions/restart``. A failed change puts the old settings back;
a restart (of a resize, or the restart action) that fails puts back the
settings the servers last started with and starts them again with those, so a
setting that keeps a server from starting never leaves it down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbos import DBOS

from hoard.domain.catalog import SIZES
from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.store import events, models, operations
from hoard.workflows.cluster_create import start_all, wait_formed, wait_ready
from hoard.workflows.gate import gated
from hoard.workflows.members import configure_node, replicated, start_node, topology
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason

UPDATE_STEPS = ["apply settings", "restart", "record"]


@dataclass(frozen=True)
class Target:
    """What a cluster's nodes are configured for: size, storage and parameters."""

    size: str
    storage_gb: int
    params: dict[str, Any]


def _target(cluster: models.Cluster, changes: dict[str, Any]) -> Target:
    """Size, storage and parameters the cluster will have once ``changes`` are made."""
    size = changes.get("size") or cluster.size
    storage = changes.get("storage_gb") or cluster.storage_gb
    if "configuration_id" in changes:
        config_id = changes["configuration_id"]
        if config_id is None:
            return Target(size, storage, {})
        with services().store.session() as s:
            config = s.get(models.Configuration, config_id)
            return Target(size, storage, dict(config.values) if config else {})
    return Target(size, storage,
                  dict(cluster.configuration.values) if cluster.configuration else {})


def _previous(cluster: models.Cluster, changes: dict[str, Any]) -> Target | None:
    """For an edit of the attached configuration (its row already holds the new
    values): the values the cluster was configured with before it."""
    if "previous" not in changes:
        return None
    return Target(cluster.size, cluster.storage_gb, dict(changes["previous"]))


def _running(cluster: models.Cluster, changes: dict[str, Any] | None = None) -> Target:
    """What the servers run with: the recorded size, storage and configuration
    (before an edit of it, for an edit), but for restart-only parameters the
    values they last started with while settings wait for a restart (dynamic
    ones were applied live already)."""
    target = _previous(cluster, changes or {}) or _target(cluster, {})
    if cluster.running_parameters is None:
        return target
    static = {p.name for p in services().engines[cluster.engine].parameters() if not p.dynamic}
    params = {k: v for k, v in target.params.items() if k not in static}
    params.update({k: v for k, v in cluster.running_parameters.items() if k in static})
    return Target(target.size, target.storage_gb, params)


def _differing(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The settings whose values differ (or that one side lacks), sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _configure_all(cluster: models.Cluster, target: Target,
                   current: Target | None = None) -> list[str]:
    """Write the settings for ``target`` to every node, apply the dynamic ones
    live, and return the settings that still need a restart. What changes is
    reckoned from the recorded cluster, or from ``current`` when the nodes were
    given something else (a change being rolled back)."""
    svc = services()
    engine = svc.engines[cluster.engine]
    pending: set[str] = set()
    for node in cluster.nodes:
        before = engine.settings(svc.node_context(cluster, node) if current is None else
                                 svc.node_context(cluster, node, size=current.size,
                                                  parameters=current.params,
                                                  storage_gb=current.storage_gb))
        ctx = svc.node_context(cluster, node, size=target.size, parameters=target.params,
                               storage_gb=target.storage_gb)
        after = engine.settings(ctx)
        changed = _differing(before, after)
        configure_node(cluster, node, ctx)
        live = [k for k in changed if engine.is_dynamic(k)]
        if live and svc.provider_for(node).is_running(node.id):
            engine.apply_live(ctx, svc.ca_file, live)
        pending.update(k for k in changed if not engine.is_dynamic(k))
    return sorted(pending)


def _restart_nodes(cluster: models.Cluster, target: Target) -> None:
    """One node at a time. A replicated cluster's replicas go first and its
    machinery fails over (cleanly: the stopped primary hands over) for the last."""
    svc = services()
    nodes = sorted(cluster.nodes, key=lambda n: n.role == "primary")
    for node in nodes:
        ctx = svc.node_context(cluster, node, size=target.size, parameters=target.params,
                               storage_gb=target.storage_gb)
        svc.provider_for(node).stop(node.id)
        start_node(cluster, node, ctx)
        wait_ready(cluster, node, ctx)
    if replicated(cluster):
        wait_formed(cluster, topology(cluster))


def _roll_back(cluster: models.Cluster, failed: Target, bring_up: bool,
               changes: dict[str, Any]) -> None:
    """Write back the settings the servers ran with before the ``failed`` change
    (limits too; dynamic ones applied live again) and, with ``bring_up``, start
    every node that is not running with them and wait until the cluster serves."""
    svc = services()
    running = _running(cluster, changes)
    for node in cluster.nodes:
        svc.provider_for(node).apply_limits(node.id, SIZES[running.size], running.storage_gb)
    _configure_all(cluster, running, current=failed)
    if bring_up:
        start_all(cluster)


def _grow_storage(cluster: models.Cluster, storage_gb: int, op_id: str) -> None:
    """Grow each node's storage with its server running where the provider can;
    else stop the node around the growth. A node whose server is down though its
    cluster is not stopped (a full disk can stop one) is started again once it
    has room. Each node's event says which way it went."""
    svc = services()
    for node in cluster.nodes:
        provider = svc.provider_for(node)
        growth = provider.grow_storage(node.id, storage_gb)
        if growth.done and growth.online:
            how = "online: the server kept running" + (f"; {growth.note}" if growth.note
                                                       else "")
            # A server stuck for want of space (in crash recovery, say) goes on by
            # itself now: the change's settings are applied once it answers.
            wait_ready(cluster, node, svc.node_context(cluster, node))
        elif growth.done and node.status == NodeStatus.STOPPED:
            how = "the node is stopped"
        else:
            ctx = svc.node_context(cluster, node)
            if growth.done:
                how = "the server was down: started again with room to write"
            else:
                how = f"restarted for it: {growth.note}"
                provider.stop(node.id)
            try:
                if not growth.done and not provider.grow_storage(node.id, storage_gb).done:
                    raise RuntimeError(f"node {node.ordinal}: storage cannot grow")
            finally:  # grown or not, the node serves again
                start_node(cluster, node, ctx)
            wait_ready(cluster, node, ctx)
        with svc.store.session() as s:
            events.record(s, cluster.id, "node.storage_grown",
                          f"node {node.ordinal}: storage grown to {storage_gb} GB ({how})",
                          op_id)


def _settled(cluster: models.Cluster) -> ClusterStatus:
    """Where a change leaves a cluster: STOPPED if none of its servers runs (a
    stopped cluster stays stopped), else ACTIVE (the observer refines it)."""
    running = any(services().provider_for(n).is_running(n.id) for n in cluster.nodes)
    return ClusterStatus.ACTIVE if running else ClusterStatus.STOPPED


@DBOS.step()
def is_stopped(cluster_id: str) -> bool:
    cluster = load_cluster(cluster_id)
    return cluster is not None and _settled(cluster) == ClusterStatus.STOPPED


def _set_status(cluster_id: str, status: ClusterStatus, **fields: Any) -> None:
    with services().store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is None:
            return
        cluster.status = status
        cluster.status_reason = ""
        for key, value in fields.items():
            setattr(cluster, key, value)
        node_status = NodeStatus.STOPPED if status == ClusterStatus.STOPPED else (
            NodeStatus.HEALTHY)
        for node in cluster.nodes:
            node.status, node.status_reason = node_status, ""


@DBOS.step()
def apply_settings(op_id: str, cluster_id: str, changes: dict[str, Any]) -> list[str]:
    """Limits and settings for the new size and parameters; returns restart-only names."""
    svc = services()
    with recorded(op_id, "apply settings"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        target = _target(cluster, changes)
        # The members' files are written for the new durability; the engine's
        # machinery takes it live (Patroni's synchronous mode, through its DCS).
        cluster.durability = changes.get("durability") or cluster.durability
        if "storage_gb" in changes:
            _grow_storage(cluster, target.storage_gb, op_id)
        for node in cluster.nodes:
            limits = svc.provider_for(node).apply_limits(node.id, SIZES[target.size],
                                                         target.storage_gb)
            with svc.store.session() as s:
                row = s.get(models.Node, node.id)
                if row is not None:
                    row.limits = limits
        return _configure_all(cluster, target, _previous(cluster, changes))


@DBOS.step()
def restart_for_update(op_id: str, cluster_id: str, changes: dict[str, Any],
                       pending: list[str]) -> None:
    svc = services()
    with recorded(op_id, "restart"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        _restart_nodes(cluster, _target(cluster, changes))
        with svc.store.session() as s:
            events.record(s, cluster_id, "cluster.restarted",
                          f"restarted to apply {', '.join(pending)}", op_id)


@DBOS.step()
def record_update(op_id: str, cluster_id: str, changes: dict[str, Any],
                  pending: list[str]) -> None:
    svc = services()
    with recorded(op_id, "record"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        fields: dict[str, Any] = {k: v for k, v in changes.items() if k in (
            "size", "storage_gb", "configuration_id", "durability")}
        fields["pending_restart"] = pending
        # While settings wait, remember what the servers started with (the first
        # change's "before": a second one changes nothing that is running).
        before = cluster.running_parameters
        if before is None:
            before = dict(changes["previous"]) if "previous" in changes else (
                dict(cluster.configuration.values) if cluster.configuration else {})
        fields["running_parameters"] = before if pending else None
        _set_status(cluster_id, _settled(cluster), **fields)
        if pending:
            with svc.store.session() as s:
                events.record(s, cluster_id, "cluster.restart_required",
                              f"restart required to apply {', '.join(pending)}", op_id)
    with svc.store.session() as s:
        operations.finish(s, op_id)


def _restart_attempted(op_id: str) -> bool:
    """Whether the update's restart step began: it runs only on a running cluster,
    so the nodes it stopped must run again."""
    with services().store.session() as s:
        op = s.get(models.Operation, op_id)
        return op is not None and any(
            step["name"] == "restart" and step["status"] not in ("pending", "skipped")
            for step in op.steps)


def _fail_with_rollback(op_id: str, cluster_id: str, kind: str, reason: str,
                        changes: dict[str, Any], bring_up: bool) -> None:
    """Put back what the servers ran with (starting them again if ``bring_up``),
    say so in the events, and fail the operation with the reason. If that fails
    too, the cluster is DEGRADED with both reasons and the observer takes over."""
    svc = services()
    cluster = load_cluster(cluster_id)
    error = reason
    if cluster is not None:
        try:
            _roll_back(cluster, _target(cluster, changes), bring_up, changes)
            if "previous" in changes:
                error = _edit_waits(cluster, changes, reason)
        except Exception as exc:
            error = f"{reason}; putting the previous settings back failed: {short_reason(exc)}"
            with svc.store.session() as s:
                row = s.get(models.Cluster, cluster_id)
                if row is not None:
                    row.status, row.status_reason = ClusterStatus.DEGRADED, error
        else:
            _set_status(cluster_id, ClusterStatus.ACTIVE if bring_up else _settled(cluster))
            if bring_up:
                error = f"{reason}; rolled back: the servers run with their previous settings"
                with svc.store.session() as s:
                    events.record(s, cluster_id, "cluster.rolled_back",
                                  f"{kind} failed: {reason}; the servers were started again "
                                  "with the settings they ran with before", op_id)
    with svc.store.session() as s:
        operations.finish(s, op_id, error=error)


def _edit_waits(cluster: models.Cluster, changes: dict[str, Any], reason: str) -> str:
    """An edit of the attached configuration that could not be applied: the
    configuration holds the new values (its other clusters may have them), this
    cluster's servers the previous ones. Record that truthfully: what differs
    waits for the cluster's next restart, which applies the configuration."""
    svc = services()
    engine = svc.engines[cluster.engine]
    node = cluster.nodes[0]
    before = engine.settings(svc.node_context(cluster, node, parameters=changes["previous"]))
    after = engine.settings(svc.node_context(cluster, node))
    waiting = _differing(before, after)
    with svc.store.session() as s:
        row = s.get(models.Cluster, cluster.id)
        if row is not None:
            row.pending_restart = sorted(set(row.pending_restart) | set(waiting))
            row.running_parameters = row.running_parameters or dict(changes["previous"])
    return (f"{reason}; the servers keep their previous settings: "
            f"{', '.join(waiting) or 'nothing'} applies at the next restart")


@DBOS.step()
def revert_update(op_id: str, cluster_id: str, reason: str,
                  changes: dict[str, Any] | None = None) -> None:
    """Put the recorded (old) settings and limits back, bring back up any node the
    restart left down, then fail the operation."""
    _fail_with_rollback(op_id, cluster_id, "update", reason, changes or {},
                        _restart_attempted(op_id))


@DBOS.workflow()
@gated
def update_cluster(op_id: str, cluster_id: str, changes: dict[str, Any]) -> None:
    try:
        pending = apply_settings(op_id, cluster_id, changes)
        if "size" in changes and pending and not is_stopped(cluster_id):
            # A restart applies everything on disk, earlier pending settings too.
            restart_for_update(op_id, cluster_id, changes, pending)
            pending = []
        else:
            skip_step(op_id, "restart")
            pending = sorted(set(pending) | set(pending_settings(cluster_id)))
        record_update(op_id, cluster_id, changes, pending)
    except Exception as exc:
        revert_update(op_id, cluster_id, short_reason(exc), changes)


@DBOS.step()
def skip_step(op_id: str, step: str) -> None:
    with services().store.session() as s:
        operations.mark_step(s, op_id, step, "skipped")


@DBOS.step()
def pending_settings(cluster_id: str) -> list[str]:
    """Settings already waiting for a restart (a second change adds to them)."""
    cluster = load_cluster(cluster_id)
    return list(cluster.pending_restart) if cluster else []


# --- restart, stop, start -------------------------------------------------------


def _restart(cluster: models.Cluster) -> None:
    # Files are written again first: the restart applies what the store records.
    target = _target(cluster, {})
    _configure_all(cluster, target)
    _restart_nodes(cluster, target)
    _set_status(cluster.id, ClusterStatus.ACTIVE, pending_restart=[], running_parameters=None)


def _stop(cluster: models.Cluster) -> None:
    for node in cluster.nodes:
        services().provider_for(node).stop(node.id)
    _set_status(cluster.id, ClusterStatus.STOPPED)


def _start(cluster: models.Cluster) -> None:
    # Files are written again first: settings changed while stopped apply now.
    start_all(cluster, configure=True)
    _set_status(cluster.id, ClusterStatus.ACTIVE, pending_restart=[], running_parameters=None)


ACTIONS = {"restart": _restart, "stop": _stop, "start": _start}


@DBOS.step()
def action_step(op_id: str, cluster_id: str, action: str) -> None:
    with recorded(op_id, action):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        ACTIONS[action](cluster)
    with services().store.session() as s:
        operations.finish(s, op_id)


@DBOS.step()
def action_failed(op_id: str, cluster_id: str, reason: str, action: str = "") -> None:
    """A restart or start that failed puts back the settings the servers last
    started with and starts them again; a stop that failed says so, and the
    observer takes over the status."""
    if action in ("restart", "start"):
        _fail_with_rollback(op_id, cluster_id, action, reason, {}, bring_up=True)
        return
    with services().store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is not None:
            cluster.status = ClusterStatus.DEGRADED
            cluster.status_reason = reason
        operations.finish(s, op_id, error=reason)


@DBOS.workflow()
@gated
def cluster_action(op_id: str, cluster_id: str, action: str) -> None:
    try:
        action_step(op_id, cluster_id, action)
    except Exception as exc:
        action_failed(op_id, cluster_id, short_reason(exc), action)
