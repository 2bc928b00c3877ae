"""Changing a running cluster: PATCH (resize, storage, configuration), actions
(restart, stop, start) and the cluster's history of events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from hoard.api import autoscale, changes, offers, preview
from hoard.api.auth import Principal, authenticate
from hoard.api.changes import get_cluster
from hoard.api.routes.clusters import check_pooler
from hoard.api.schemas import (
    ID_SCHEMA,
    Accepted,
    Changed,
    ClusterPatch,
    ClusterView,
    EventPage,
    EventView,
    PromoteNode,
    Switchover,
)
from hoard.api.views import cluster_view, utc
from hoard.domain import parameters
from hoard.domain.abilities import Ability
from hoard.domain.catalog import SIZES
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.domain.pooler import describe
from hoard.domain.status import ClusterStatus
from hoard.engines.base import Replication
from hoard.ids import is_id, new_id
from hoard.store import locks
from hoard.store.models import Cluster, Configuration, Event, Project
from hoard.workflows import cluster_scale, cluster_update
from hoard.workflows import pooler as pooler_steps
from hoard.workflows.services import Services

router = APIRouter(prefix="/v2/clusters", tags=["clusters"])
Auth = Annotated[Principal, Depends(authenticate)]
RUNNING = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)
METADATA = frozenset({"labels", "deletion_protection", "maintenance_window",
                      "storage_autoscale"})


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@dataclass(frozen=True)
class Planned:
    """A validated change, before its operation begins: what ``changes.begin`` takes."""

    kind: str
    steps: list[str]
    allowed: tuple[ClusterStatus, ...]
    params: dict[str, object]
    detail: str
    quota: changes.Guard


DRY_RUN = ("Answer 200 with the plan (what applies live, what needs a restart and when, "
           "the downtime to expect) and change nothing; a change that would be refused is "
           "refused with the same answer")


@router.patch("/{cluster_id}", status_code=202, response_model=Changed)
def update_cluster(
    cluster_id: str, body: ClusterPatch, principal: Auth, request: Request,
    response: Response, dry_run: Annotated[bool, Query(description=DRY_RUN)] = False,
) -> Changed:
    """Resize, grow storage, attach or detach (``null``) a configuration, open,
    change or close (``null``) the connection pooler (on its own); or, on
    their own and at once (200, no operation), labels, deletion protection and the
    maintenance window. With ``dry_run=true``: the plan, nothing changed.

    Dynamic settings apply live. A resize restarts only if a changed setting
    needs it; a configuration's restart-only settings wait in ``pending_restart``
    for the maintenance window (or ``POST .../actions/apply-pending``).
    """
    svc = _services(request)
    fields = body.model_fields_set
    if not fields:
        raise InvalidInput("nothing to change: give size, storage_gb, configuration_id, "
                           "durability, nodes, pooler, labels, deletion_protection, "
                           "maintenance_window or storage_autoscale")
    if fields & METADATA:
        if fields - METADATA:
            raise InvalidInput("change labels, deletion_protection, maintenance_window and "
                               "storage_autoscale on their own, not with other fields")
        response.status_code = 200
        if dry_run:
            with svc.store.session() as s:
                cluster = get_cluster(s, principal, cluster_id)
                plan = preview.plan_metadata(cluster, _metadata(svc, s, cluster, body))
                return Changed(cluster=cluster_view(cluster), operation=None, plan=plan)
        return Changed(cluster=_set_metadata(svc, principal, cluster_id, body), operation=None)
    planned = _plan(svc, principal, cluster_id, body)
    if dry_run:
        response.status_code = 200
        changes.rehearse(svc, principal, cluster_id, planned.kind, planned.allowed,
                         planned.quota)
        with svc.store.session() as s:
            cluster = get_cluster(s, principal, cluster_id)
            if planned.kind == "scale":
                leaving = planned.params.get("leaving")
                plan = preview.plan_scale(cluster, int(str(planned.params["nodes"])),
                                          list(leaving) if isinstance(leaving, list) else [])
            elif planned.kind == "pooler":
                asked = planned.params["pooler"]
                plan = preview.plan_pooler(cluster, dict(asked) if isinstance(asked, dict)
                                           else None)
            else:
                plan = preview.plan_update(svc, s, cluster, planned.params)
            return Changed(cluster=cluster_view(cluster), operation=None, plan=plan)
    accepted = changes.begin(svc, principal, cluster_id, planned.kind, planned.steps,
                             planned.allowed, ClusterStatus.UPDATING, params=planned.params,
                             detail=planned.detail, quota=planned.quota)
    return Changed(cluster=accepted.cluster, operation=accepted.operation)


def _plan(svc: Services, principal: Principal, cluster_id: str, body: ClusterPatch
          ) -> Planned:
    """The fields that a workflow changes, validated, as one update (or a scale)."""
    fields = body.model_fields_set
    if "nodes" in fields:
        if len(fields) > 1:
            raise InvalidInput("change nodes on its own, not with other fields")
        return _scale(svc, principal, cluster_id, body.nodes)
    if "pooler" in fields:
        if len(fields) > 1:
            raise InvalidInput("change pooler on its own, not with other fields")
        return _pooler(svc, principal, cluster_id, body)
    params: dict[str, object] = {}
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        if "size" in fields:
            if body.size not in SIZES:
                raise InvalidInput(f"unknown size {body.size!r}; available: {', '.join(SIZES)}")
            if body.size != cluster.size:
                params["size"] = body.size
        if "storage_gb" in fields and body.storage_gb is not None:
            if body.storage_gb < cluster.storage_gb:
                raise InvalidInput(f"storage can grow, not shrink: the cluster has "
                                   f"{cluster.storage_gb} GB")
            if body.storage_gb != cluster.storage_gb:
                autoscale.refuse_past_max(cluster.storage_autoscale, body.storage_gb)
                changes.check_storage_quota(s, cluster, body.storage_gb)
                params["storage_gb"] = body.storage_gb
        if "durability" in fields and body.durability != cluster.durability:
            engine = svc.engines[cluster.engine]
            if cluster.rw_port is None or not isinstance(engine, Replication):
                raise InvalidInput("durability applies to replicated clusters (2-5 nodes)")
            if body.durability not in engine.durabilities:
                raise InvalidInput(
                    f"{engine.display_name} clusters keep durability "
                    f"{' or '.join(map(repr, engine.durabilities))}, not {body.durability!r}")
            params["durability"] = body.durability
        if "configuration_id" in fields and body.configuration_id != cluster.configuration_id:
            if body.configuration_id is not None:
                config = s.get(Configuration, body.configuration_id)
                if config is None or config.project_id != principal.project_id:
                    raise NotFound(f"no configuration {body.configuration_id!r}")
                if (config.engine, config.version) != (cluster.engine, cluster.version):
                    raise InvalidInput(
                        f"configuration {config.name!r} is for {config.engine} "
                        f"{config.version}; the cluster runs {cluster.engine} {cluster.version}")
            params["configuration_id"] = body.configuration_id
        if params.keys() & {"size", "storage_gb", "configuration_id"}:
            _check_fit(svc, s, cluster, params)
    if not params:
        raise InvalidInput("nothing to change: the cluster already has these values")
    detail = ", ".join(f"{k}={v}" for k, v in params.items())
    # A stopped cluster can be changed too: the new settings apply when it starts.
    seen = (cluster.size, cluster.storage_gb, cluster.configuration_id, cluster.durability)

    def still_fits(s: Session, claimed: Cluster) -> None:
        # What was checked above, checked again now that the change holds the cluster
        # and the project: the storage quota is taken atomically with the change.
        if (claimed.size, claimed.storage_gb, claimed.configuration_id,
                claimed.durability) != seen:
            raise Conflict("the cluster changed while this request was checked; look "
                           "again and retry")
        if "storage_gb" in params:
            changes.check_storage_quota(s, claimed, int(str(params["storage_gb"])))

    return Planned("update", cluster_update.UPDATE_STEPS, (*RUNNING, ClusterStatus.STOPPED),
                   params, detail, still_fits)


def _metadata(svc: Services, s: Session, cluster: Cluster, body: ClusterPatch
              ) -> dict[str, Any]:
    """The record-only fields asked, checked, as they would be stored."""
    asked: dict[str, Any] = {}
    if body.labels is not None:
        asked["labels"] = dict(body.labels)
    if body.deletion_protection is not None:
        asked["deletion_protection"] = body.deletion_protection
    if "maintenance_window" in body.model_fields_set:
        window = body.maintenance_window
        asked["maintenance_window"] = window.model_dump() if window else None
    if "storage_autoscale" in body.model_fields_set:
        if body.storage_autoscale is not None:
            offers.require(svc, cluster.provider, Ability.STORAGE_AUTOSCALE)
        locks.hold_project(s, cluster.project_id)  # the quota, checked alone
        project = s.get(Project, cluster.project_id)
        assert project is not None
        asked["storage_autoscale"] = autoscale.checked(
            s, project, body.storage_autoscale, cluster.storage_gb, cluster.node_count,
            counted_gb=cluster.storage_gb)
    return asked


def _set_metadata(svc: Services, principal: Principal, cluster_id: str,
                  body: ClusterPatch) -> ClusterView:
    """Labels, deletion protection, the maintenance window and storage
    autoscaling: the cluster's own record, no workflow."""
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        for name, value in _metadata(svc, s, cluster, body).items():
            setattr(cluster, name, value)
            if name == "storage_autoscale":
                cluster.autoscale_limit_gb = None  # a new limit is said again
        s.flush()
        return cluster_view(cluster)


def _check_fit(svc: Services, s: Session, cluster: Cluster, params: dict[str, object]) -> None:
    """Refuse a size, storage or configuration that leaves a sized setting more of
    the node's memory or of the storage than it may take (see Parameter): checked
    against the cluster as the change would leave it, for what the change touches.
    A storage too small for the configuration's WAL sizes is refused here too."""
    if "configuration_id" in params:
        config_id = params["configuration_id"]
        config = s.get(Configuration, config_id) if isinstance(config_id, str) else None
        values = dict(config.values) if config else {}
    else:
        values = dict(cluster.configuration.values) if cluster.configuration else {}
    size, storage = params.get("size", cluster.size), params.get("storage_gb", cluster.storage_gb)
    assert isinstance(size, str) and isinstance(storage, int)
    parameters.check_fit(svc.engines[cluster.engine].parameters(), values, SIZES[size], storage,
                         memory=bool(params.keys() & {"size", "configuration_id"}),
                         storage=bool(params.keys() & {"storage_gb", "configuration_id"}))


def _scale(svc: Services, principal: Principal, cluster_id: str, nodes: int | None) -> Planned:
    """Grow (new nodes join and copy the data from the cluster) or shrink
    (replicas leave first, the highest-numbered first)."""
    if nodes is None:
        raise InvalidInput("nodes must be a number from 1 to 5")
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        if cluster.rw_port is None:
            raise InvalidInput("a standalone cluster keeps one node: its address is the "
                               "node's own; create a replicated cluster (nodes 2-5), "
                               "restoring a backup of this one, to get stable endpoints")
        if nodes == cluster.node_count:
            raise InvalidInput(f"nothing to change: the cluster already has {nodes} nodes")
        offers.require(svc, cluster.provider, Ability.REPLICATED_CLUSTERS)
        params: dict[str, object] = {"nodes": nodes}
        if nodes > cluster.node_count:
            project = s.get(Project, cluster.project_id)
            assert project is not None
            extra = nodes - cluster.node_count
            changes.check_quota(s, project, clusters=0, nodes=extra,
                                storage_gb=extra * cluster.storage_gb)
        else:
            by_preference = sorted(cluster.nodes, key=lambda n: (n.role != "primary",
                                                                 n.ordinal), reverse=True)
            params["leaving"] = [n.id for n in by_preference[:cluster.node_count - nodes]]
    seen = cluster.node_count

    def still_fits(s: Session, claimed: Cluster) -> None:
        if claimed.node_count != seen:
            raise Conflict("the cluster changed while this request was checked; look "
                           "again and retry")
        if nodes > seen:
            project = s.get(Project, claimed.project_id)
            assert project is not None
            changes.check_quota(s, project, clusters=0, nodes=nodes - seen,
                                storage_gb=(nodes - seen) * claimed.storage_gb)

    return Planned("scale", cluster_scale.SCALE_STEPS, RUNNING, params, f"nodes={nodes}",
                   still_fits)


def _pooler(svc: Services, principal: Principal, cluster_id: str, body: ClusterPatch
            ) -> Planned:
    """Open, change or close (null) the cluster's connection pooler."""
    asked = body.pooler.model_dump() if body.pooler is not None else None
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        if asked is not None:
            check_pooler(svc, cluster.engine, cluster.provider)
        elif cluster.pooler is None:
            raise InvalidInput("nothing to change: the cluster has no pooler")
        if asked == cluster.pooler:
            raise InvalidInput("nothing to change: the pooler already has these settings")
        seen = cluster.pooler

    def unchanged(s: Session, claimed: Cluster) -> None:
        if claimed.pooler != seen:
            raise Conflict("the cluster changed while this request was checked; look "
                           "again and retry")

    step = pooler_steps.OPEN if asked else pooler_steps.CLOSE
    return Planned("pooler", [step], RUNNING, {"pooler": asked, "previous": seen},
                   describe(asked), unchanged)


@router.post("/{cluster_id}/switchover", status_code=202, response_model=Accepted)
def switchover(cluster_id: str, body: Switchover, principal: Auth,
               request: Request) -> Accepted:
    """Planned switchover: make a chosen replica the primary, losing no
    acknowledged write. The read-write endpoint follows."""
    svc = _services(request)
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        node = next((n for n in cluster.nodes if n.id == body.node_id), None)
        if node is None:
            raise InvalidInput(f"node {body.node_id!r} is not in this cluster")
        if cluster.rw_port is None:
            raise InvalidInput("a standalone cluster has no replica to switch over to")
        if node.role == "primary":
            raise InvalidInput(f"node {node.ordinal} is already the primary")
    return changes.begin(svc, principal, cluster_id, "switchover",
                         cluster_scale.SWITCHOVER_STEPS, RUNNING, ClusterStatus.UPDATING,
                         params={"node_id": body.node_id}, detail=f"to node {node.ordinal}")


@router.post("/{cluster_id}/nodes/{node_id}/promote", status_code=202,
             response_model=Accepted)
def promote(cluster_id: str, node_id: str, body: PromoteNode, principal: Auth,
            request: Request) -> Accepted:
    """Promote a replica out into a new standalone cluster with a copy of the data
    (its accounts included). The source cluster keeps serving with one node less."""
    svc = _services(request)
    with svc.store.session() as s:
        locks.hold_project(s, principal.project_id)  # the cluster quota, checked alone
        cluster = get_cluster(s, principal, cluster_id)
        node = next((n for n in cluster.nodes if n.id == node_id), None)
        if node is None:
            raise NotFound(f"node {node_id!r} is not in this cluster")
        if cluster.rw_port is None or cluster.node_count < 2:
            raise InvalidInput("only a replicated cluster with 2 or more nodes can give one up")
        if s.scalar(select(Cluster.id).where(Cluster.project_id == principal.project_id,
                                             Cluster.name == body.name)):
            raise Conflict(f"a cluster named {body.name!r} already exists in this project")
        project = s.get(Project, cluster.project_id)
        assert project is not None
        changes.check_quota(s, project, clusters=1, nodes=0, storage_gb=0)
        new = Cluster(
            id=new_id(), project_id=cluster.project_id, name=body.name, engine=cluster.engine,
            provider=cluster.provider,
            version=cluster.version, size=cluster.size, node_count=1,
            storage_gb=cluster.storage_gb, status=ClusterStatus.BUILDING, status_reason="",
            configuration_id=cluster.configuration_id, admin_user=cluster.admin_user,
            admin_password=cluster.admin_password, service_password=cluster.service_password)
        s.add(new)
        new_cluster_id = new.id
    try:
        return changes.begin(svc, principal, cluster_id, "promote", cluster_scale.PROMOTE_STEPS,
                             RUNNING, ClusterStatus.UPDATING,
                             params={"node_id": node_id, "new_cluster_id": new_cluster_id},
                             detail=f"node {node.ordinal} becomes cluster {body.name}")
    except Exception:
        with svc.store.session() as s:
            orphan = s.get(Cluster, new_cluster_id)
            if orphan is not None:
                s.delete(orphan)
        raise


@router.post("/{cluster_id}/actions/{action}", status_code=202, response_model=Accepted)
def cluster_action(
    cluster_id: str, action: Literal["restart", "stop", "start", "apply-pending"],
    principal: Auth, request: Request,
) -> Accepted:
    """Restart (applies pending settings), stop (data kept) or start a cluster;
    apply-pending: the restart that applies settings waiting in ``pending_restart``
    now, without waiting for the maintenance window (refused when none wait)."""
    svc = _services(request)
    allowed = (ClusterStatus.STOPPED,) if action == "start" else RUNNING
    if action != "apply-pending":
        return changes.begin(svc, principal, cluster_id, action, [action], allowed,
                             ClusterStatus.UPDATING)

    def pending(s: Session, claimed: Cluster) -> None:
        if not claimed.pending_restart:
            raise InvalidInput("nothing waits for a restart: pending_restart is empty")
    return changes.begin(svc, principal, cluster_id, "restart", ["restart"], allowed,
                         ClusterStatus.UPDATING, detail="apply pending settings",
                         quota=pending)


@router.get("/{cluster_id}/events", response_model=EventPage)
def list_events(
    cluster_id: str, principal: Auth, request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    marker: Annotated[str | None, Query(description="Last id of the previous page",
                                        json_schema_extra=ID_SCHEMA)] = None,
) -> EventPage:
    """What happened to the cluster, oldest first, and why anything failed."""
    if marker is not None and not is_id(marker):
        raise InvalidInput(f"marker {marker!r} is not an event id")
    with _services(request).store.session() as s:
        get_cluster(s, principal, cluster_id)
        query = select(Event).where(Event.cluster_id == cluster_id)
        if marker:
            query = query.where(Event.id > marker)
        rows = list(s.scalars(query.order_by(Event.id).limit(limit + 1)))
    views = [EventView(id=e.id, kind=e.kind, message=e.message, operation_id=e.operation_id,
                       created_at=utc(e.created_at)) for e in rows[:limit]]
    next_url = (f"/v2/clusters/{cluster_id}/events?limit={limit}&marker={views[-1].id}"
                if len(rows) > limit else None)
    return EventPage(events=views, next=next_url)
