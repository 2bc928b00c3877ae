"""The health observer: checks every node over its own protocol, caches the
result in the store (lists never poll nodes), and restarts what crashed.

It never blocks on one node: checks run in a small thread pool with short
timeouts, and clusters under an operation are left to their workflow.

Replicated clusters: the observer does not fail over (the engine's HA
machinery does, on its own, in seconds). It restarts a member whose
processes died, so it rejoins as a replica, restarts a dead endpoint proxy
(and, for any cluster, a dead connection pooler, whose users it also keeps in
step with the cluster's roles),
records each node's role and lag as the machinery reports them, and writes an
event for every node that goes down or comes back and for every change of
primary. A cluster with a node down is DEGRADED until the node is back.

Storage: each pass reads every node's storage use from the provider and keeps
it on the node (rewritten when it moves by 1% of the size or more, or crosses
an alarm threshold). Past 80% and 95% used, the cluster's status_reason says so
and an event is written once per crossing, up or back down. A node
whose storage is full is reported as such ("storage full (N of M bytes used):
resize the storage"), whatever else its server says: engines that hit the end
of their disk fail with messages that never name it.

Metrics: a pass that is due (``HOARD_METRICS_INTERVAL``) also takes a sample of
every node it checks (hoard/workflows/sampling.py), written with the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.domain.storage import StorageUsage, alarm_event, alarm_note, standing_alarm
from hoard.engines.base import MemberState
from hoard.ids import new_id
from hoard.store import events, locks, models, operations
from hoard.workflows import pooler
from hoard.workflows.loops import Loop
from hoard.workflows.members import (
    ensure_endpoint,
    node_running,
    record_roles,
    replicated,
    start_node,
    states,
    topology,
)
from hoard.workflows.membership import my_clusters
from hoard.workflows.sampling import Sampling, node_sample, prune, record
from hoard.workflows.services import services

log = logging.getLogger(__name__)
OBSERVED = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)


@dataclass(frozen=True)
class Observation:
    node_id: str
    healthy: bool
    detail: str
    storage: StorageUsage | None = None
    metrics: Mapping[str, float] | None = None  # a sample, on passes that take one


def with_storage(cluster: models.Cluster, o: Observation) -> Observation:
    """The observation with the node's storage use; a full storage is the reason
    the node is unhealthy, whatever its server answered."""
    usage = services().provider_for(cluster).storage_usage(o.node_id, cluster.storage_gb)
    if usage is not None and usage.full:
        return Observation(o.node_id, False, usage.describe(), usage)
    return replace(o, storage=usage)


def _still_ours(cluster_id: str) -> bool:
    """Whether the cluster is still left to the observer (no operation took it)."""
    with services().store.session() as s:
        current = s.get(models.Cluster, cluster_id)
        return current is not None and current.status in OBSERVED


def observe_node(cluster: models.Cluster, node: models.Node) -> Observation:
    """One standalone node's health; a server that is not running is started again."""
    svc = services()
    engine = svc.engines[cluster.engine]
    ctx = svc.node_context(cluster, node)
    if not svc.provider_for(node).is_running(node.id):
        if not _still_ours(cluster.id):
            return Observation(node.id, False, "taken over by an operation")
        start_node(cluster, node, ctx)
        log.warning("node %s of cluster %s was not running; restarted", node.id, cluster.name)
        return Observation(node.id, False, "server process was not running; restarted it")
    health = engine.health(ctx, svc.ca_file, timeout=2)
    return Observation(node.id, health.ok, health.detail)


def _observe_one(cluster: models.Cluster, node: models.Node,
                 sample: bool = False) -> list[Observation]:
    o = with_storage(cluster, observe_node(cluster, node))
    if sample:
        o = replace(o, metrics=node_sample(cluster, node, o.healthy, o.storage))
    return [o]


def observe_replicated(cluster: models.Cluster, sample: bool = False) -> list[Observation]:
    """Every member's health as the HA machinery reports it; restart dead members
    (they rejoin as replicas) and a dead endpoint proxy."""
    svc = services()
    topo = topology(cluster)
    restarted: dict[str, str] = {}
    for node in cluster.nodes:
        if not node_running(cluster, node) and _still_ours(cluster.id):
            if not svc.provider_for(node).has_storage(node.id):
                _replace(cluster, node)
                return [Observation(node.id, False, "storage lost; replacing the node")]
            names = start_node(cluster, node, topo=topo)
            restarted[node.id] = f"{', '.join(names)} not running; restarted"
            log.warning("node %s of cluster %s: %s", node.id, cluster.name, restarted[node.id])
    if not svc.provider_for(cluster).endpoint_running(cluster.id) and _still_ours(cluster.id):
        ensure_endpoint(cluster, topo)
        log.warning("endpoint of cluster %s was not running; restarted", cluster.name)
    observed: list[MemberState] = states(cluster, topo)
    record_roles(cluster.id, observed)
    found = [with_storage(cluster, Observation(o.node_id, o.healthy and o.node_id not in restarted,
                                               restarted.get(o.node_id) or o.detail))
             for o in observed]
    if not sample:
        return found
    nodes, lags = {n.id: n for n in cluster.nodes}, {o.node_id: o.lag_bytes for o in observed}
    return [replace(o, metrics=node_sample(cluster, nodes[o.node_id], o.healthy, o.storage,
                                           lags.get(o.node_id)))
            if o.node_id in nodes else o for o in found]


def _replace(cluster: models.Cluster, node: models.Node) -> None:
    """Start the workflow that makes a node whose storage is gone again (the
    machinery has already failed over if it was the primary)."""
    from hoard.workflows import cluster_scale, runtime  # runtime imports the workflows

    op_id = new_id()
    with services().store.session() as s:
        if not locks.claim_cluster(s, cluster.id, op_id):
            return  # another operation runs; the next pass looks again
        row = s.get(models.Cluster, cluster.id)
        if row is None or row.status not in OBSERVED:
            locks.release_cluster(s, cluster.id, op_id)
            return
        row.status, row.status_reason = ClusterStatus.UPDATING, ""
        op = operations.new_operation(s, row.project_id, row.id, "replace",
                                      cluster_scale.REPLACE_STEPS,
                                      detail=f"node {node.ordinal}",
                                      params={"node_id": node.id}, op_id=op_id)
        events.record(s, row.id, "node.down",
                      f"node {node.ordinal} is down and its storage is gone", op.id)
    log.warning("node %s of cluster %s lost its storage; replacing it", node.id, cluster.name)
    runtime.start(op)


def observe_once(pool: ThreadPoolExecutor, batch: int, sampling: Sampling | None = None) -> int:
    """Check every node of every running cluster once; return how many were checked.

    Clusters are walked in id order, ``batch`` at a time (keyset paging), each
    batch checked and recorded before the next is loaded: a pass holds one batch
    in memory and one short transaction per batch, however many clusters exist.
    With ``sampling``, a pass that is due takes every node's metrics as well."""
    checked, after = 0, ""
    sample = sampling is not None and sampling.due()
    if sampling is not None and sampling.prune_due():
        prune(sampling)
    while True:
        with services().store.session() as s:
            clusters = list(s.scalars(
                select(models.Cluster).options(selectinload(models.Cluster.nodes))
                .where(models.Cluster.status.in_(OBSERVED), models.Cluster.id > after,
                       my_clusters())
                .order_by(models.Cluster.id).limit(batch)))
        if not clusters:
            return checked
        checked += _observe_batch(pool, clusters, sample)
        after = clusters[-1].id


def _observe_batch(pool: ThreadPoolExecutor, clusters: list[models.Cluster],
                   sample: bool = False) -> int:
    pending: list[tuple[models.Cluster, list[models.Node], Future[list[Observation]]]] = []
    poolers = [(c, pool.submit(pooler.upkeep, c)) for c in clusters if c.pooler_host]
    for cluster in clusters:
        if replicated(cluster):
            pending.append((cluster, list(cluster.nodes),
                            pool.submit(observe_replicated, cluster, sample)))
        else:
            for node in cluster.nodes:
                pending.append((cluster, [node], pool.submit(_observe_one, cluster, node, sample)))
    results: dict[str, list[Observation]] = {}
    for cluster, nodes, future in pending:
        try:
            observations = future.result()
        except Exception as exc:  # a broken node must not stop the loop
            observations = [Observation(n.id, False, f"observer error: {exc}") for n in nodes]
        results.setdefault(cluster.id, []).extend(observations)
    record({o.node_id: o.metrics for found in results.values() for o in found
            if o.metrics is not None})
    for cluster, upkeep in poolers:
        try:
            upkeep.result()
        except Exception as exc:  # the next pass tries again
            log.warning("pooler of cluster %s: %s", cluster.name, exc)
    # Most passes change nothing: only clusters whose observations differ from
    # what the batch loaded are read again and written, so a quiet pass costs one
    # read per batch, not a transaction per cluster.
    loaded = {c.id: c for c in clusters}
    changed = {cid: obs for cid, obs in results.items() if _differs(loaded[cid], obs)}
    if changed:
        with services().store.session() as s:
            for cluster_id, observations in changed.items():
                _record(s, cluster_id, observations)
    return sum(len(nodes) for _, nodes, _ in pending)


def _paired(nodes: list[models.Node], observations: list[Observation]
            ) -> Iterator[tuple[models.Node, Observation]]:
    """Each node that was observed, with its observation."""
    by_id = {o.node_id: o for o in observations}
    return ((node, by_id[node.id]) for node in nodes if node.id in by_id)


def _node_record(o: Observation) -> tuple[NodeStatus, str]:
    """The status and reason an observation gives a node."""
    return (NodeStatus.HEALTHY, "") if o.healthy else (NodeStatus.UNHEALTHY, o.detail)


def _recorded(node: models.Node) -> StorageUsage | None:
    """The node's storage use as last recorded, if it has been observed."""
    if node.storage_used_bytes is None or not node.storage_total_bytes:
        return None
    return StorageUsage(node.storage_used_bytes, node.storage_total_bytes)


def _level(node: models.Node) -> int:
    """The node's standing storage alarm (0 if none or never observed)."""
    if node.storage_alarm is not None:
        return node.storage_alarm
    recorded = _recorded(node)
    return recorded.alarm if recorded is not None else 0


def _overall(nodes: list[models.Node]) -> tuple[ClusterStatus, str]:
    """A cluster's status and reason from its nodes' records: the reason names each
    sick node's, and each node whose storage is past an alarm threshold (a node
    already reported full is not reported twice)."""
    sick = [n for n in nodes if n.status != NodeStatus.HEALTHY]
    reasons = []
    for n in nodes:
        if n in sick:
            reasons.append(f"node {n.ordinal}: {n.status_reason}")
        usage = _recorded(n)
        note = alarm_note(usage, _level(n)) if usage is not None else ""
        if note and not (n in sick and n.status_reason.startswith("storage full")):
            reasons.append(f"node {n.ordinal}: {note}")
    return (ClusterStatus.DEGRADED if sick else ClusterStatus.ACTIVE), "; ".join(reasons)


def _differs(cluster: models.Cluster, observations: list[Observation]) -> bool:
    """Whether recording the observations would change the cluster as it was loaded."""
    for node, o in _paired(list(cluster.nodes), observations):
        if o.storage is not None and _moved(node, o.storage):
            return True
        if (node.status, node.status_reason) != _node_record(o):
            return True
    return (cluster.status, cluster.status_reason) != _overall(list(cluster.nodes))


def _record(s: Session, cluster_id: str, observations: list[Observation]) -> None:
    current = s.get(models.Cluster, cluster_id)
    if current is None or current.status not in OBSERVED:
        return  # deleted or taken over by an operation meanwhile
    for node, o in _paired(list(current.nodes), observations):
        if o.storage is not None and _moved(node, o.storage):
            was = _level(node)
            now = standing_alarm(o.storage, was)
            crossed = alarm_event(node.ordinal, was, now, o.storage)
            if crossed is not None:
                events.record(s, cluster_id, *crossed)
            node.storage_used_bytes = o.storage.used_bytes
            node.storage_total_bytes = o.storage.total_bytes
            node.storage_alarm = now
        status, reason = _node_record(o)
        # Write only changes: the store is not a heartbeat log.
        if (node.status, node.status_reason) != (status, reason):
            if node.status != status:
                kind, words = (("node.recovered", "is healthy again") if o.healthy else
                               ("node.down", f"is down: {o.detail}"))
                events.record(s, cluster_id, kind, f"node {node.ordinal} {words}")
            node.status, node.status_reason = status, reason
            node.observed_at = models.utcnow()
    overall, why = _overall(list(current.nodes))
    if (current.status, current.status_reason) != (overall, why):
        current.status, current.status_reason = overall, why


def _moved(node: models.Node, usage: StorageUsage) -> bool:
    """Whether the recorded storage use is worth rewriting: first seen, a new size,
    the standing alarm moved, or 1% of the size away (the store is not a
    heartbeat log)."""
    recorded = _recorded(node)
    if recorded is None or recorded.total_bytes != usage.total_bytes:
        return True
    held = _level(node)
    if standing_alarm(usage, held) != held:
        return True
    return abs(recorded.used_bytes - usage.used_bytes) * 100 >= usage.total_bytes


def observer(interval: float, batch: int, sampling: Sampling | None = None) -> Loop:
    """The observer loop, with a small pool so one slow node cannot stall the rest."""
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="observe")
    return Loop("observer", interval, lambda: observe_once(pool, batch, sampling))
