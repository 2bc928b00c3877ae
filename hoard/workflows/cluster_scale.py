"""Change a replicated cluster's membership: grow, shrink, switch over, and
promote a replica out into a standalone cluster of its own.

Every step is an "ensure" step that may run twice. New nodes get their data
from the running cluster by the engine's own means (a base backup, SST, a
resync); a node leaves only after the machinery was told (and, if it was the
primary, after a switchover), so no acknowledged write is lost by a shrink.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from hoard.domain.catalog import SIZES
from hoard.domain.placement import Host
from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.ids import new_id
from hoard.store import events, models, operations
from hoard.workflows.cluster_create import (
    install_tls,
    ports_taken,
    wait_formed,
    wait_ready,
)
from hoard.workflows.gate import gated
from hoard.workflows.members import (
    configure_node,
    ensure_endpoint,
    ha_engine,
    held_reason,
    hold_node,
    record_roles,
    start_joiners,
    start_node,
    states,
    topology,
    wait_primary,
)
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason, wait_for

SCALE_STEPS = ["change membership", "open endpoints"]
REPLACE_STEPS = ["replace node", "open endpoints"]
SWITCHOVER_STEPS = ["switch over"]
PROMOTE_STEPS = ["detach node", "start standalone", "open endpoints"]


def _cluster(cluster_id: str) -> models.Cluster:
    cluster = load_cluster(cluster_id)
    if cluster is None:
        raise RuntimeError("the cluster no longer exists")
    return cluster


def _add_rows(cluster_id: str, nodes: int) -> None:
    """The new nodes' rows (PENDING until they have joined), up to ``nodes``."""
    svc = services()
    with svc.store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        assert row is not None
        next_ordinal = max((n.ordinal for n in row.nodes), default=-1) + 1
        for ordinal in range(next_ordinal, next_ordinal + nodes - len(row.nodes)):
            row.nodes.append(models.Node(
                id=new_id(), ordinal=ordinal, role="replica", provider=row.provider,
                status=NodeStatus.PENDING, status_reason="", limits={}))


def _grow(cluster: models.Cluster) -> None:
    """Place, prepare and start every node that has no address yet (rows made by
    the API), then wait until they have joined."""
    svc = services()
    engine = ha_engine(cluster)
    new_ids = {n.id for n in cluster.nodes if n.status == NodeStatus.PENDING}  # the API's rows
    with svc.store.session() as s:
        taken = ports_taken(s)
        placed = [Host(n.host, n.zone or "") for n in cluster.nodes if n.host]
        stored = s.get(models.Cluster, cluster.id)
        assert stored is not None
        for row in stored.nodes:
            if row.id not in new_ids or row.port is not None:
                continue
            p = svc.provider_for(row).place(row.id, taken, cluster.storage_gb, engine.ha_ports,
                                            placed)
            row.host, row.port, row.zone, row.ports = p.host, p.port, p.zone, p.ports
            row.limits = svc.provider_for(row).apply_limits(row.id, SIZES[cluster.size],
                                                   cluster.storage_gb)
            taken |= {p.port, *p.ports.values()}
            placed.append(Host(p.host, p.zone))
            hold_node(stored, row)
    cluster = _cluster(cluster.id)
    # A held node's pod may wait for room or an image: say why while it does,
    # and fail at the start deadline naming it (change_failed removes the new nodes).
    joining = [n for n in cluster.nodes if n.id in new_ids]
    wait_for(lambda: held_reason(joining), svc.provider_for(cluster).deadlines.start,
             "the new nodes were not ready", interval=0.2, slowest=2.0)
    topo = topology(cluster)
    for node in cluster.nodes:
        ctx, runner = svc.node_context(cluster, node), svc.provider_for(node).runner(node.id)
        if node.id in new_ids:
            install_tls(cluster, node)
            engine.prepare_member(ctx, topo, runner, founder=False)
        configure_node(cluster, node, ctx, topo)
    start_joiners(cluster, topo, cluster.nodes)
    wait_formed(cluster, topo)


def _shrink(cluster: models.Cluster, leaving: list[str]) -> None:
    """Tell the machinery, stop and destroy each leaving node; rewrite the rest."""
    svc = services()
    engine = ha_engine(cluster)
    for node_id in leaving:
        cluster = _cluster(cluster.id)
        node = next((n for n in cluster.nodes if n.id == node_id), None)
        if node is None:
            continue  # already gone: a retried step
        topo = topology(cluster)
        ctxs = [svc.node_context(cluster, n) for n in cluster.nodes]
        if svc.provider_for(node).is_running(node.id):
            engine.remove_member(ctxs, topo, svc.ca_file, node.id)
        svc.provider_for(node).destroy(node.id)
        with svc.store.session() as s:
            row = s.get(models.Node, node.id)
            if row is not None:
                s.delete(row)
            events.record(s, cluster.id, "node.removed", f"node {node.ordinal} removed")
    cluster = _cluster(cluster.id)
    topo = topology(cluster)
    for node in cluster.nodes:
        configure_node(cluster, node, topo=topo)
    wait_formed(cluster, topo)


@DBOS.step()
def change_membership(op_id: str, cluster_id: str, params: dict[str, Any]) -> None:
    with recorded(op_id, "change membership"):
        cluster = _cluster(cluster_id)
        if params.get("leaving"):
            _shrink(cluster, list(params["leaving"]))
        else:
            _add_rows(cluster_id, int(params["nodes"]))
            _grow(_cluster(cluster_id))


@DBOS.step()
def open_endpoints_and_finish(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "open endpoints"):
        cluster = _cluster(cluster_id)
        topo = topology(cluster)
        ensure_endpoint(cluster, topo)
        record_roles(cluster_id, states(cluster, topo))
    _settle(cluster_id)
    with svc.store.session() as s:
        operations.finish(s, op_id)


def _settle(cluster_id: str) -> None:
    """Back to ACTIVE with every node counted; the observer refines the health."""
    with services().store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        if row is None:
            return
        row.node_count = len(row.nodes)
        row.status, row.status_reason = ClusterStatus.ACTIVE, ""
        for node in row.nodes:
            if node.status == NodeStatus.PENDING:
                node.status, node.status_reason = NodeStatus.HEALTHY, ""


@DBOS.step()
def change_failed(op_id: str, cluster_id: str, reason: str) -> None:
    """A failed membership change: nodes that never joined are removed, the cluster
    serves on with the others (DEGRADED until the observer sees it whole)."""
    svc = services()
    cluster = load_cluster(cluster_id)
    if cluster is not None:
        for node in cluster.nodes:
            if node.status == NodeStatus.PENDING:
                svc.provider_for(node).destroy(node.id)
    with svc.store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        if row is not None:
            for node in list(row.nodes):
                if node.status == NodeStatus.PENDING:
                    s.delete(node)
            row.node_count = len([n for n in row.nodes if n.status != NodeStatus.PENDING])
            row.status, row.status_reason = ClusterStatus.DEGRADED, reason
        operations.finish(s, op_id, error=reason)


@DBOS.workflow()
@gated
def scale_cluster(op_id: str, cluster_id: str, params: dict[str, Any]) -> None:
    try:
        change_membership(op_id, cluster_id, params)
        open_endpoints_and_finish(op_id, cluster_id)
    except Exception as exc:
        change_failed(op_id, cluster_id, short_reason(exc))


@DBOS.step()
def replace_node(op_id: str, cluster_id: str, node_id: str) -> None:
    """A member whose storage is gone is made again as a new node (a new id, so
    the machinery never mistakes it for the lost one, whose lock or membership
    may still be on record), with fresh storage and address, once the others
    have a primary again; it copies the data as any new member does."""
    svc = services()
    with recorded(op_id, "replace node"):
        with svc.store.session() as s:
            lost = s.get(models.Node, node_id)
            if lost is not None:  # not yet swapped: a retry skips this
                svc.provider_for(lost).destroy(node_id)
                row = s.get(models.Cluster, cluster_id)
                assert row is not None
                if lost.role == "primary":
                    events.record(s, cluster_id, "cluster.primary_changed",
                                  f"node {lost.ordinal}, the primary, was lost; the others "
                                  "elect a new one", operation_id=op_id)
                row.nodes.remove(lost)
                row.nodes.append(models.Node(
                    id=new_id(), ordinal=lost.ordinal, role="replica",
                    provider=row.provider, status=NodeStatus.PENDING,
                    status_reason="replacing a node whose storage was lost", limits={}))
                events.record(s, cluster_id, "node.replacing",
                              f"node {lost.ordinal} lost its storage; making a new one",
                              operation_id=op_id)
        cluster = _cluster(cluster_id)
        survivors = [n for n in cluster.nodes if n.status != NodeStatus.PENDING]
        topo = topology(cluster, survivors)  # after a failover
        wait_primary(cluster, topo)
        record_roles(cluster_id, states(cluster, topo))
        _grow(_cluster(cluster_id))


@DBOS.workflow()
@gated
def replace_lost_node(op_id: str, cluster_id: str, node_id: str) -> None:
    try:
        replace_node(op_id, cluster_id, node_id)
        open_endpoints_and_finish(op_id, cluster_id)
    except Exception as exc:
        change_failed(op_id, cluster_id, short_reason(exc))


@DBOS.step()
def switch_over(op_id: str, cluster_id: str, target: str) -> None:
    svc = services()
    with recorded(op_id, "switch over"):
        cluster = _cluster(cluster_id)
        topo = topology(cluster)
        ctxs = [svc.node_context(cluster, n) for n in cluster.nodes]
        ha_engine(cluster).switchover(ctxs, topo, svc.ca_file, target)
        record_roles(cluster_id, states(cluster, topo))
    _settle(cluster_id)
    with svc.store.session() as s:
        operations.finish(s, op_id)


@DBOS.workflow()
@gated
def switchover_cluster(op_id: str, cluster_id: str, target: str) -> None:
    try:
        switch_over(op_id, cluster_id, target)
    except Exception as exc:
        change_failed(op_id, cluster_id, short_reason(exc))


# --- promote a replica out ------------------------------------------------------


@DBOS.step()
def detach_node(op_id: str, cluster_id: str, node_id: str, new_cluster_id: str) -> None:
    """Take the node out of its cluster (switching over first if it is the primary),
    turn its data into a standalone node's, and move it to the new cluster."""
    svc = services()
    with recorded(op_id, "detach node"):
        cluster = _cluster(cluster_id)
        node = next((n for n in cluster.nodes if n.id == node_id), None)
        if node is None:
            return  # moved already: a retried step
        engine = ha_engine(cluster)
        topo = topology(cluster)
        ctxs = [svc.node_context(cluster, n) for n in cluster.nodes]
        if svc.provider_for(node).is_running(node.id):
            engine.remove_member(ctxs, topo, svc.ca_file, node.id)
        svc.provider_for(node).stop(node.id)
        engine.detach(svc.node_context(cluster, node), svc.provider_for(node).runner(node.id))
        with svc.store.session() as s:
            row = s.get(models.Node, node_id)
            assert row is not None
            row.cluster_id, row.ordinal, row.role = new_cluster_id, 0, "primary"
            row.ports, row.lag_bytes = {}, None
            source = s.get(models.Cluster, cluster_id)
            assert source is not None
            source.node_count -= 1
            events.record(s, cluster_id, "node.promoted_out",
                          f"node {node.ordinal} left to become cluster {new_cluster_id}")


@DBOS.step()
def start_standalone(op_id: str, new_cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "start standalone"):
        cluster = _cluster(new_cluster_id)
        node = cluster.nodes[0]
        configure_node(cluster, node)
        start_node(cluster, node)
        wait_ready(cluster, node)
        with svc.store.session() as s:
            row = s.get(models.Cluster, new_cluster_id)
            assert row is not None
            row.status, row.status_reason = ClusterStatus.ACTIVE, ""
            row.nodes[0].status, row.nodes[0].status_reason = NodeStatus.HEALTHY, ""
            events.record(s, new_cluster_id, "cluster.promoted",
                          "made from a replica promoted out of its cluster")


@DBOS.step()
def promote_failed(op_id: str, cluster_id: str, new_cluster_id: str, reason: str) -> None:
    with services().store.session() as s:
        new = s.get(models.Cluster, new_cluster_id)
        if new is not None and new.status != ClusterStatus.ACTIVE:
            new.status, new.status_reason = ClusterStatus.FAILED, reason
        source = s.get(models.Cluster, cluster_id)
        if source is not None:
            source.status, source.status_reason = ClusterStatus.DEGRADED, reason
        operations.finish(s, op_id, error=reason)


@DBOS.workflow()
@gated
def promote_node(op_id: str, cluster_id: str, params: dict[str, Any]) -> None:
    new_cluster_id = params["new_cluster_id"]
    try:
        detach_node(op_id, cluster_id, params["node_id"], new_cluster_id)
        start_standalone(op_id, new_cluster_id)
        open_endpoints_and_finish(op_id, cluster_id)
    except Exception as exc:
        promote_failed(op_id, cluster_id, new_cluster_id, short_reason(exc))
