"""The health observer: checks every node over its own protocol, caches the
result in the store (lists never poll nodes), and restarts crashed servers.

It never blocks on one node: checks run in a small thread pool with short
timeouts, and clusters under an operation are left to their workflow.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.store import models
from hoard.workflows.loops import Loop
from hoard.workflows.services import services

log = logging.getLogger(__name__)
OBSERVED = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)


@dataclass(frozen=True)
class Observation:
    node_id: str
    healthy: bool
    detail: str


def observe_node(cluster: models.Cluster, node: models.Node) -> Observation:
    """One node's health; a server that is not running is started again."""
    svc = services()
    engine = svc.engines[cluster.engine]
    ctx = svc.node_context(cluster, node)
    if not svc.provider.is_running(node.id):
        with svc.store.session() as s:
            current = s.get(models.Cluster, cluster.id)
            if current is None or current.status not in OBSERVED:
                return Observation(node.id, False, "taken over by an operation")
        spec = engine.process(ctx, svc.provider.runner(node.id))
        svc.provider.start(node.id, spec)
        log.warning("node %s of cluster %s was not running; restarted", node.id, cluster.name)
        return Observation(node.id, False, "server process was not running; restarted it")
    health = engine.health(ctx, svc.ca_file, timeout=2)
    return Observation(node.id, health.ok, health.detail)


def observe_once(pool: ThreadPoolExecutor) -> int:
    """Check every node of every running cluster once; return how many were checked."""
    svc = services()
    with svc.store.session() as s:
        clusters = s.query(models.Cluster).filter(models.Cluster.status.in_(OBSERVED)).all()
    futures = [
        (cluster, node, pool.submit(observe_node, cluster, node))
        for cluster in clusters
        for node in cluster.nodes
    ]
    results: dict[str, list[Observation]] = {}
    for cluster, node, future in futures:
        try:
            obs = future.result()
        except Exception as exc:  # a broken node must not stop the loop
            obs = Observation(node.id, False, f"observer error: {exc}")
        results.setdefault(cluster.id, []).append(obs)
    with svc.store.session() as s:
        for cluster_id, observations in results.items():
            current = s.get(models.Cluster, cluster_id)
            if current is None or current.status not in OBSERVED:
                continue  # deleted or taken over by an operation meanwhile
            by_id = {o.node_id: o for o in observations}
            for node in current.nodes:
                o = by_id.get(node.id)
                if o is None:
                    continue
                status = NodeStatus.HEALTHY if o.healthy else NodeStatus.UNHEALTHY
                reason = "" if o.healthy else o.detail
                # Write only changes: the store is not a heartbeat log.
                if (node.status, node.status_reason) != (status, reason):
                    node.status, node.status_reason = status, reason
                    node.observed_at = models.utcnow()
            sick = [n for n in current.nodes if n.status != NodeStatus.HEALTHY]
            overall = ClusterStatus.DEGRADED if sick else ClusterStatus.ACTIVE
            why = "; ".join(f"node {n.ordinal}: {n.status_reason}" for n in sick)
            if (current.status, current.status_reason) != (overall, why):
                current.status, current.status_reason = overall, why
    return len(futures)


def observer(interval: float) -> Loop:
    """The observer loop, with a small pool so one slow node cannot stall the rest."""
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="observe")
    return Loop("observer", interval, lambda: observe_once(pool))
