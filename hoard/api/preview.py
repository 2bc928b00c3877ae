"""The plan of a change (``PATCH /v2/clusters/{id}?dry_run=true``): what applies
live, what needs a restart and when it happens, and the downtime to expect.

It is reckoned the way the update workflow reckons it
(hoard/workflows/cluster_update.py): the engine's effective settings before and
after the change, split by ``Engine.is_dynamic``. A resize restarts at once
only if a restart-only setting changed; a configuration's restart-only
settings wait in ``pending_restart`` for the maintenance window or an explicit
action; a stopped cluster takes everything when it starts. Nothing here
writes: the request was validated, and rehearsed, by the code the real change
runs (hoard/api/routes/cluster_changes.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy.orm import Session

from hoard.api.schemas import ChangePlan, Downtime, FieldChange
from hoard.domain import maintenance
from hoard.domain.status import ClusterStatus
from hoard.store.models import Cluster, Configuration, utcnow
from hoard.workflows.members import replicated
from hoard.workflows.services import Services

Applies = Literal["live", "restart", "pending_restart"]
NO_DOWNTIME = Downtime(kind="none", failover=False, detail="the cluster serves throughout")


def _split(svc: Services, cluster: Cluster, size: str, storage_gb: int,
           values: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Settings that would change on any node, as (live, restart-only)."""
    engine = svc.engines[cluster.engine]
    changed: set[str] = set()
    for node in cluster.nodes:
        if node.host is None or node.port is None:
            continue  # not placed: nothing runs yet
        before = engine.settings(svc.node_context(cluster, node))
        after = engine.settings(svc.node_context(cluster, node, size=size, parameters=values,
                                                 storage_gb=storage_gb))
        changed |= {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    live = sorted(k for k in changed if engine.is_dynamic(k))
    return live, sorted(changed - set(live))


def _values(s: Session, cluster: Cluster, params: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration values the cluster would have after the change."""
    if "configuration_id" not in params:
        return dict(cluster.configuration.values) if cluster.configuration else {}
    config_id = params["configuration_id"]
    config = s.get(Configuration, config_id) if isinstance(config_id, str) else None
    return dict(config.values) if config else {}


def _words(live: list[str], restart: list[str]) -> str:
    parts = [f"live: {', '.join(live)}"] if live else []
    parts += [f"restart: {', '.join(restart)}"] if restart else []
    return "settings " + "; ".join(parts) if parts else "no engine setting changes"


def pending_applies(cluster: Cluster, pending: list[str],
                    window: Mapping[str, Any] | None, now: dt.datetime | None = None) -> str:
    """When settings waiting for a restart would be applied."""
    if not pending:
        return ""
    action = f"POST /v2/clusters/{cluster.id}/actions/apply-pending"
    if cluster.status == ClusterStatus.STOPPED:
        return f"when the cluster starts (POST /v2/clusters/{cluster.id}/actions/start)"
    if not window:
        return f"at the next restart: no maintenance window is set; {action} applies them now"
    opening = maintenance.next_opening(window, now or utcnow())
    return (f"in the maintenance window ({maintenance.describe(window)}), next open from "
            f"{opening:%Y-%m-%dT%H:%MZ}; {action} applies them now")


def _restart_downtime(cluster: Cluster, why: str) -> Downtime:
    if replicated(cluster):
        return Downtime(kind="rolling", failover=True,
                        detail=f"{why}: the replicas one at a time, then the primary, which "
                               "hands over to a replica (one failover: writes pause for it)")
    return Downtime(kind="restart", failover=False,
                    detail=f"{why}: the cluster is unavailable while its server restarts")


def _storage_downtime(svc: Services, cluster: Cluster) -> Downtime:
    if all(svc.provider_for(n).grows_storage_live(n.id) for n in cluster.nodes):
        return NO_DOWNTIME
    if replicated(cluster):
        return Downtime(kind="rolling", failover=True,
                        detail="each node is stopped in turn while its storage grows; the "
                               "primary's stop is a failover (writes pause for it)")
    return Downtime(kind="restart", failover=False,
                    detail="the node is stopped while its storage grows, then started")


def plan_update(svc: Services, s: Session, cluster: Cluster, params: Mapping[str, Any]
                ) -> ChangePlan:
    """The plan of an update (size, storage, configuration, durability)."""
    stopped = cluster.status == ClusterStatus.STOPPED
    size = str(params.get("size") or cluster.size)
    storage = int(params.get("storage_gb") or cluster.storage_gb)
    values = _values(s, cluster, params)
    live, static = _split(svc, cluster, size, storage, values)
    restarts = "size" in params and bool(static) and not stopped
    pending = [] if restarts else sorted(set(static) | set(cluster.pending_restart or []))
    downtime = NO_DOWNTIME
    if restarts:
        downtime = _restart_downtime(cluster, "a resize restarts every node for "
                                              + ", ".join(static))
    elif "storage_gb" in params and not stopped:
        downtime = _storage_downtime(svc, cluster)
    changes = [_field(svc, s, cluster, name, value, stopped, restarts)
               for name, value in params.items()]
    return ChangePlan(
        operation="update", changes=changes, live=[] if stopped else live,
        restart=sorted(set(static) | set(cluster.pending_restart or [])) if restarts else [],
        pending_restart=pending,
        pending_applies=pending_applies(cluster, pending, cluster.maintenance_window),
        downtime=downtime)


def _field(svc: Services, s: Session, cluster: Cluster, name: str, value: Any,
           stopped: bool, restarts: bool) -> FieldChange:
    """One field of an update, with the settings it alone would change."""
    current = getattr(cluster, name)
    if stopped:
        return FieldChange(field=name, current=current, requested=value, applies="at_start",
                           detail="the cluster is stopped: written now, taken when it starts")
    if name == "durability":
        return FieldChange(field=name, current=current, requested=value, applies="live",
                           detail="the engine's HA machinery takes it without a restart")
    one = {name: value}
    live, static = _split(svc, cluster, str(one.get("size") or cluster.size),
                          int(one.get("storage_gb") or cluster.storage_gb),
                          _values(s, cluster, one))
    words = _words(live, static)
    applies: Applies
    if name == "size":
        applies = "restart" if restarts else "live"
        detail = (f"CPU and memory limits change live; {words}"
                  + ("; a resize restarts at once for them" if restarts else ""))
    elif name == "storage_gb":
        grows = all(svc.provider_for(n).grows_storage_live(n.id) for n in cluster.nodes)
        applies = "live" if grows else "restart"
        detail = ("the volume grows " + ("with the server running" if grows else
                                         "with each node stopped meanwhile") + f"; {words}")
    else:
        applies = "pending_restart" if static else "live"
        detail = words + ("; restart-only settings wait for a restart" if static else "")
    return FieldChange(field=name, current=current, requested=value, applies=applies,
                       detail=detail)


def plan_scale(cluster: Cluster, nodes: int, leaving: list[str]) -> ChangePlan:
    """Growing or shrinking a replicated cluster: nodes join or leave, no restart."""
    if nodes > cluster.node_count:
        detail = (f"{nodes - cluster.node_count} node(s) join and copy the data from the "
                  "cluster; it serves meanwhile")
    else:
        gone = [str(n.ordinal) for n in cluster.nodes if n.id in leaving]
        detail = (f"node(s) {', '.join(gone)} leave (replicas first); the cluster serves "
                  "meanwhile, with fewer replicas behind the read-only endpoint")
    return _operation_only(cluster, "scale", FieldChange(
        field="nodes", current=cluster.node_count, requested=nodes, applies="operation",
        detail=detail))


def plan_metadata(cluster: Cluster, requested: Mapping[str, Any]) -> ChangePlan:
    """Labels, deletion protection, maintenance window, storage autoscaling: the
    cluster's record only."""
    changes = [FieldChange(field=name, current=getattr(cluster, name), requested=value,
                           applies="at_once", detail="recorded at once; nothing restarts")
               for name, value in requested.items()]
    window = requested.get("maintenance_window", cluster.maintenance_window)
    pending = sorted(cluster.pending_restart or [])
    return ChangePlan(operation=None, changes=changes, live=[], restart=[],
                      pending_restart=pending,
                      pending_applies=pending_applies(cluster, pending, window),
                      downtime=NO_DOWNTIME)


def plan_pooler(cluster: Cluster, requested: dict[str, Any] | None) -> ChangePlan:
    """Opening, changing or closing the pooler: the servers are not touched."""
    if requested is None:
        detail = ("the pooler stops (its clients are disconnected) and its address is "
                  "given up; the cluster's own endpoints serve on")
    elif cluster.pooler is None:
        detail = "a pooler starts at an address of its own, port 6432"
    else:
        detail = ("the pooler reloads its settings; connected clients stay (a lower "
                  "max_client_conn refuses new ones past it)")
    return _operation_only(cluster, "pooler", FieldChange(
        field="pooler", current=cluster.pooler, requested=requested, applies="operation",
        detail=detail))


def _operation_only(cluster: Cluster, operation: str, change: FieldChange) -> ChangePlan:
    """A change made by its own operation, with no restart and no downtime; the
    restarts already pending stay pending."""
    pending = sorted(cluster.pending_restart or [])
    return ChangePlan(
        operation=operation, changes=[change], live=[], restart=[], pending_restart=pending,
        pending_applies=pending_applies(cluster, pending, cluster.maintenance_window),
        downtime=NO_DOWNTIME)
