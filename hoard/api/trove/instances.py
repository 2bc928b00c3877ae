"""/v1.0/{project}/instances: each call checked and translated, then handed to the
function the matching /v2 route runs (create, show, list, delete, update, actions)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError

from hoard.api import lean
from hoard.api.auth import Principal
from hoard.api.routes import cluster_changes, clusters
from hoard.api.schemas import ClusterCreate, ClusterPatch, ClusterView, Switchover
from hoard.api.trove import initial_accounts
from hoard.api.trove.auth import tenant
from hoard.api.trove.catalog import find_engine, find_version, services
from hoard.api.trove.models import InstanceCreate, InstanceSpec, InstanceUpdate
from hoard.api.trove.views import instance_view
from hoard.domain.catalog import SIZES
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.store.models import Cluster, Operation

router = APIRouter(prefix="/{project_id}/instances")
Tenant = Annotated[Principal, Depends(tenant)]
LIFECYCLE: dict[str, Literal["restart", "stop", "start"]] = {
    "restart": "restart", "stop": "stop", "start": "start"}


def base_url(request: Request, project_id: str) -> str:
    return str(request.base_url).rstrip("/") + f"/v1.0/{project_id}"


def strict(model: type[Any], data: dict[str, Any]) -> Any:
    """Validate with /v2's model; its complaint becomes a 400 badRequest."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"{where}: {message}".lstrip(": ")) from None


def size_of(flavor_ref: str | int) -> str:
    """A flavor given by id, name or link (the last part of the link)."""
    name = str(flavor_ref).rstrip("/").rsplit("/", 1)[-1]
    if name not in SIZES:
        raise NotFound(f"Resource Flavor '{flavor_ref}' cannot be found.")
    return name


def _current_change(request: Request, cluster_id: str) -> tuple[str, dict[str, Any]] | None:
    """The kind and parameters of the operation holding an UPDATING cluster."""
    with services(request).store.session() as s:
        cluster = s.get(Cluster, cluster_id)
        op = s.get(Operation, cluster.operation_id) if cluster and cluster.operation_id else None
        return (op.kind, dict(op.params or {})) if op else None


def _view(request: Request, project_id: str, c: ClusterView) -> dict[str, Any]:
    change = _current_change(request, c.id) if c.status == "UPDATING" else None
    return instance_view(c, base_url(request, project_id), change)


def cluster_create(request: Request, spec: InstanceSpec) -> ClusterCreate:
    """The /v2 create the Trove one means."""
    svc = services(request)
    if spec.replica_of is not None:
        raise InvalidInput("Hoard's replicas are members of a replicated instance: create it "
                           "with replica_count instead of adding replica_of later")
    if spec.datastore is None or not spec.datastore.type:
        raise InvalidInput("datastore.type is required; see GET /datastores")
    engine = find_engine(svc, spec.datastore.type)
    version = (find_version(svc, engine, spec.datastore.version)
               if spec.datastore.version else None)
    data: dict[str, Any] = {"name": spec.name, "engine": engine.name, "version": version,
                            "size": size_of(spec.flavorRef),
                            "nodes": 1 + (spec.replica_count or 0)}
    if spec.volume is not None and spec.volume.size is not None:
        data["storage_gb"] = spec.volume.size
    if spec.restorePoint is not None:
        data["restore"] = {"backup_id": spec.restorePoint.backupRef}
    if spec.configuration is not None:
        data["configuration_id"] = spec.configuration
    body: ClusterCreate = strict(ClusterCreate, data)
    return body


@router.post("")
def create_instance(project_id: str, body: InstanceCreate, principal: Tenant,
                    request: Request) -> dict[str, Any]:
    """200 with the instance in BUILD; it turns ACTIVE once the databases and users
    in the request are made (by the create workflow, checked before it starts)."""
    create = cluster_create(request, body.instance)
    accounts = initial_accounts.plan(services(request), create, body.instance)
    accepted = clusters.create(services(request), principal, create, accounts)
    return {"instance": _view(request, project_id, accepted.cluster)}


@router.get("")
def list_instances(project_id: str, principal: Tenant, request: Request,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 20,
                   marker: str | None = None) -> dict[str, Any]:
    """A page of instances, keyset-paged exactly as GET /v2/clusters."""
    clusters._check_marker(marker)
    params = {"limit": str(limit)} | ({"marker": marker} if marker else {})
    page = orjson.loads(lean.page(services(request), principal, params))
    found = [ClusterView.model_validate(row) for row in page["clusters"]]
    answer: dict[str, Any] = {"instances": [_view(request, project_id, c) for c in found]}
    if page.get("next") and found:
        answer["links"] = [{"rel": "next", "href": f"{base_url(request, project_id)}"
                            f"/instances?limit={limit}&marker={found[-1].id}"}]
    return answer


@router.get("/{instance_id}")
def show_instance(project_id: str, instance_id: str, principal: Tenant,
                  request: Request) -> dict[str, Any]:
    return {"instance": _view(request, project_id,
                              clusters.show_cluster(instance_id, principal, request))}


@router.delete("/{instance_id}", status_code=202, response_class=Response)
def delete_instance(instance_id: str, principal: Tenant, request: Request) -> Response:
    clusters.delete_cluster(instance_id, principal, request, final_backup=False)
    return Response(status_code=202)


def _patch(instance_id: str, principal: Principal, request: Request,
           fields: dict[str, Any]) -> Response:
    cluster_changes.update_cluster(instance_id, strict(ClusterPatch, fields), principal,
                                   request, Response())
    return Response(status_code=202)


@router.put("/{instance_id}", status_code=202, response_class=Response)
def modify_instance(instance_id: str, body: InstanceUpdate, principal: Tenant,
                    request: Request) -> Response:
    """Trove's ``modify``: attach the configuration given, or detach when none is."""
    return _patch(instance_id, principal, request,
                  {"configuration_id": body.instance.get("configuration")})


@router.patch("/{instance_id}", status_code=202, response_class=Response)
def edit_instance(instance_id: str, body: InstanceUpdate, principal: Tenant,
                  request: Request) -> Response:
    """Trove's ``edit``: a configuration to attach, or ``remove_configuration``. Hoard
    clusters keep their name; replication is set at create."""
    changes = body.instance
    current = clusters.show_cluster(instance_id, principal, request)
    if "name" in changes and changes["name"] != current.name:
        raise InvalidInput("Hoard instances keep the name they were created with")
    if changes.get("detach_replica_source") or changes.get("replica_of"):
        raise InvalidInput("Hoard's replicas are members of a replicated instance; they "
                           "cannot be detached")
    if changes.get("remove_configuration"):
        return _patch(instance_id, principal, request, {"configuration_id": None})
    if "configuration" in changes:
        return _patch(instance_id, principal, request,
                      {"configuration_id": changes["configuration"]})
    return Response(status_code=202)


@router.post("/{instance_id}/action", status_code=202, response_class=Response)
def instance_action(instance_id: str, body: dict[str, Any], principal: Tenant,
                    request: Request) -> Response:
    """``restart``, ``resize`` (``flavorRef`` or ``volume.size``),
    ``promote_to_replica_source`` (a switchover), and Hoard's ``stop`` and ``start``:
    one action per request, as in Trove."""
    if len(body) != 1:
        raise InvalidInput("give exactly one action: restart, resize, stop or start")
    action, args = next(iter(body.items()))
    if action in LIFECYCLE:
        cluster_changes.cluster_action(instance_id, LIFECYCLE[action], principal, request)
        return Response(status_code=202)
    if action == "resize" and isinstance(args, dict):
        if "flavorRef" in args and "volume" not in args:
            return _patch(instance_id, principal, request, {"size": size_of(args["flavorRef"])})
        volume = args.get("volume")
        if isinstance(volume, dict) and "size" in volume and "flavorRef" not in args:
            return _patch(instance_id, principal, request, {"storage_gb": volume["size"]})
        raise InvalidInput("resize takes either flavorRef or volume.size")
    if action == "promote_to_replica_source":
        cluster_changes.switchover(instance_id, Switchover(node_id=_best_replica(
            clusters.show_cluster(instance_id, principal, request))), principal, request)
        return Response(status_code=202)
    if action in ("eject_replica_source", "reset_status"):
        raise InvalidInput(f"Hoard fails over replicated instances itself when their primary "
                           f"is lost; {action!r} is not available")
    raise InvalidInput(f"unknown action {action!r}")


def _best_replica(cluster: ClusterView) -> str:
    """The healthy replica least behind the primary: where a switchover loses least
    time. Trove promotes the replica it is called on; a Hoard instance holds its
    replicas, so the instance is named and Hoard picks."""
    replicas = [m for m in cluster.members if m.role == "replica" and m.status == "HEALTHY"]
    if cluster.nodes < 2:
        raise InvalidInput("a single-node instance has no replica to promote; create it with "
                           "replica_count")
    if not replicas:
        raise Conflict("no healthy replica to promote right now")
    return min(replicas, key=lambda m: (m.lag_bytes is None, m.lag_bytes or 0, m.ordinal)).id


@router.get("/{instance_id}/log")
def list_logs(instance_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    """No guest logs to publish: Hoard has no agent and no Swift. The instance's
    history is GET /v2/clusters/{id}/events."""
    clusters.show_cluster(instance_id, principal, request)
    return {"logs": []}
