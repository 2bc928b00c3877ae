"""/v2/clusters: create, list, show, delete, credentials."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hoard.api import autoscale, changes, lean, offers
from hoard.api.auth import Principal, authenticate
from hoard.api.changes import get_cluster
from hoard.api.routes.backups import plan_restore
from hoard.api.schemas import (
    CA_FILE_PLACEHOLDER,
    ID_SCHEMA,
    Accepted,
    ClusterCreate,
    ClusterPage,
    ClusterView,
    ConnectCommand,
    CredentialsView,
)
from hoard.api.views import cluster_view, endpoints, operation_view
from hoard.domain import parameters
from hoard.domain.abilities import Ability
from hoard.domain.catalog import SIZES
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.domain.names import check_labels
from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.engines.base import Credentials, Pooling, Replication
from hoard.ids import is_id, new_id
from hoard.security.secrets import generate_password
from hoard.store import locks, operations
from hoard.store.models import Cluster, Configuration, Node, Project
from hoard.workflows import cluster_create, cluster_delete, runtime
from hoard.workflows.scheduler import delete_backup, new_backup
from hoard.workflows.services import Services

router = APIRouter(prefix="/v2/clusters", tags=["clusters"])
Auth = Annotated[Principal, Depends(authenticate)]
ADMIN_USER = "admin"
# SQLite serializes writers anyway; this keeps the quota check and the insert in
# one critical section there. On PostgreSQL the project row lock does it.


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _resolve_version(svc: Services, body: ClusterCreate, provider: str) -> str:
    """The version to create: the one asked for, if the cluster's provider offers it,
    else that provider's newest."""
    engine = svc.engines.get(body.engine)
    if engine is None:
        raise InvalidInput(
            f"unknown engine {body.engine!r}; available: {', '.join(sorted(svc.engines))}"
        )
    versions = svc.versions(engine, provider)
    if not versions:
        raise InvalidInput(f"provider {provider!r} offers no version of engine {body.engine!r}")
    if body.version is None:
        return versions[0]
    offers.check_version(svc, engine, provider, body.version)
    return body.version


def _check_replication(svc: Services, body: ClusterCreate) -> str:
    """The durability the cluster will keep; refuse what its engine cannot do."""
    engine = svc.engines[body.engine]
    if body.nodes == 1:
        if body.durability == "sync":
            raise InvalidInput("durability 'sync' needs a replica: ask for 2 or more nodes")
        return "async"
    if not isinstance(engine, Replication):
        raise InvalidInput(f"{engine.display_name} clusters have a single node")
    durability = body.durability or engine.durabilities[0]
    if durability not in engine.durabilities:
        raise InvalidInput(f"{engine.display_name} clusters keep durability "
                           f"{' or '.join(map(repr, engine.durabilities))}, not {durability!r}")
    return durability


def check_pooler(svc: Services, engine_name: str, provider: str) -> None:
    """A pooler is for engines that have one, on providers that run one."""
    engine = svc.engines[engine_name]
    if not isinstance(engine, Pooling):
        raise InvalidInput(f"pooler: {engine.display_name} clusters have no connection "
                           "pooler (PostgreSQL clusters do)")
    offers.require(svc, provider, Ability.CONNECTION_POOLER)


def _configuration(svc: Services, s: Session, principal: Principal, body: ClusterCreate,
                   version: str) -> str | None:
    """The configuration the cluster starts with, if one is asked for: the project's,
    for the same engine and version, its sized values within the cluster's size and
    storage. Read under the project's lock, which its edits also take."""
    if body.configuration_id is None:
        return None
    if not is_id(body.configuration_id):
        raise InvalidInput(f"configuration_id {body.configuration_id!r} is not an id")
    config = s.get(Configuration, body.configuration_id)
    if config is None or config.project_id != principal.project_id:
        raise NotFound(f"no configuration {body.configuration_id!r}")
    if (config.engine, config.version) != (body.engine, version):
        raise InvalidInput(f"configuration {config.name!r} is for {config.engine} "
                           f"{config.version}; the cluster would run {body.engine} {version}")
    parameters.check_fit(svc.engines[body.engine].parameters(), dict(config.values),
                         SIZES[body.size], body.storage_gb)
    return config.id


@router.post("", status_code=202, response_model=Accepted)
def create_cluster(body: ClusterCreate, principal: Auth, request: Request) -> Accepted:
    """Start building a cluster; poll the returned operation to follow it."""
    return create(_services(request), principal, body)


def create(svc: Services, principal: Principal, body: ClusterCreate,
           accounts: dict[str, Any] | None = None) -> Accepted:
    """Record the cluster and its create operation, and start the workflow.

    ``accounts`` (databases and users to make before the cluster is ACTIVE, passwords
    sealed) is for callers that take them at create, as the Trove API does: the
    create workflow makes them as one of its durable steps."""
    provider = body.provider or svc.settings.provider
    if provider not in svc.providers:
        raise InvalidInput(f"unknown provider {provider!r}; available: "
                           f"{', '.join(svc.providers)}")
    offers.require(svc, provider, *offers.asked_by(body))
    version = _resolve_version(svc, body, provider)
    if body.size not in SIZES:
        raise InvalidInput(f"unknown size {body.size!r}; available: {', '.join(SIZES)}")
    durability = _check_replication(svc, body)
    if body.pooler is not None:
        check_pooler(svc, body.engine, provider)
    restore = plan_restore(svc, principal, body) if body.restore else None
    if restore:  # the backup's version, on the provider the restored cluster lives on
        offers.check_version(svc, svc.engines[body.engine], provider, restore["version"])
    # A restored cluster keeps the accounts (and passwords) its backup holds.
    admin_user = restore["admin_user"] if restore else ADMIN_USER
    admin_password = restore["admin_password"] if restore else svc.box.seal(generate_password())
    service_password = (restore["service_password"] if restore
                        else svc.box.seal(generate_password()))
    try:
        with svc.store.session() as s:
            # The rows go in first and the project's lock comes last, held only
            # for the checks and the commit: creates in one project queue on
            # it, and a burst of them queued on every insert too. (A name
            # already taken fails the insert: the unique index.)
            version = restore["version"] if restore else version
            op_id = new_id()
            cluster = Cluster(
                id=new_id(), project_id=principal.project_id, name=body.name,
                engine=body.engine, operation_id=op_id, provider=provider,
                version=version, size=body.size,
                node_count=body.nodes, storage_gb=body.storage_gb, durability=durability,
                status=ClusterStatus.BUILDING, status_reason="", admin_user=admin_user,
                labels=dict(body.labels), deletion_protection=body.deletion_protection,
                maintenance_window=(body.maintenance_window.model_dump()
                                    if body.maintenance_window else None),
                pooler=body.pooler.model_dump() if body.pooler else None,
                admin_password=admin_password, service_password=service_password,
            )
            cluster.nodes = [
                Node(id=new_id(), ordinal=i, role="primary" if i == 0 else "replica",
                     provider=provider, status=NodeStatus.PENDING, status_reason="",
                     limits={})
                for i in range(body.nodes)
            ]
            s.add(cluster)
            steps = cluster_create.steps_for(body.nodes > 1, bool(restore), bool(accounts),
                                             body.pooler is not None)
            params: dict[str, Any] = {"replicated": body.nodes > 1}
            if body.pooler is not None:
                params["pooler"] = True
            if restore:
                params["restore"] = {"backup_id": restore["backup_id"], "time": restore["time"]}
            if accounts:
                params["accounts"] = accounts
            op = operations.new_operation(s, principal.project_id, cluster.id, "create",
                                          steps, params=params, op_id=op_id)
            s.flush()
            locks.hold_project(s, principal.project_id)  # quota checked alone
            project = s.get(Project, principal.project_id)
            assert project is not None
            changes.check_quota(s, project, clusters=1, nodes=body.nodes,
                                 storage_gb=body.nodes * body.storage_gb, excluding=cluster.id)
            # Its own storage is counted now: the policy asks for the rest.
            cluster.storage_autoscale = autoscale.checked(
                s, project, body.storage_autoscale, body.storage_gb, body.nodes,
                counted_gb=body.storage_gb)
            cluster.configuration_id = _configuration(svc, s, principal, body, version)
            s.flush()
            accepted = Accepted(cluster=cluster_view(cluster), operation=operation_view(op))
    except IntegrityError:
        raise Conflict(f"a cluster named {body.name!r} already exists in this project") from None
    runtime.start(op)
    return accepted


def _check_selector(selector: str) -> str:
    """``key=value`` pairs, comma-separated, each by the label rules, a key once."""
    pairs = [part.partition("=") for part in selector.split(",")]
    if any(not eq for _, eq, _ in pairs):
        raise InvalidInput(f"label {selector!r}: give key=value pairs, comma-separated")
    labels = {k: v for k, _, v in pairs}
    if len(labels) != len(pairs):
        raise InvalidInput(f"label {selector!r}: a key is given twice")
    try:
        check_labels(labels)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return selector


def _check_marker(marker: str | None) -> None:
    if marker is not None and not is_id(marker):
        raise InvalidInput(f"marker {marker!r} is not a cluster id")


@router.get("", response_model=ClusterPage)
def list_clusters(
    principal: Auth,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    marker: Annotated[str | None, Query(description="Last id of the previous page",
                                        json_schema_extra=ID_SCHEMA)] = None,
    status: Annotated[ClusterStatus | None, Query()] = None,
    engine: Annotated[str | None, Query(max_length=32)] = None,
    label: Annotated[str | None, Query(
        max_length=2048, description="key=value[,key=value...]: clusters with every "
                                     "one of these labels")] = None,
) -> Response:
    """Clusters of this project, oldest first, keyset-paged: page N costs what page 2 costs.
    Plainly valid requests are answered before FastAPI (hoard/api/lean.py); this
    route judges the rest and gives the OpenAPI document its shape."""
    _check_marker(marker)
    params = {"limit": str(limit)}
    if marker is not None:
        params["marker"] = marker
    if status is not None:
        params["status"] = status.value
    if engine is not None:
        params["engine"] = engine
    if label is not None:
        params["label"] = _check_selector(label)
    return Response(lean.page(_services(request), principal, params),
                    media_type="application/json")


@router.get("/{cluster_id}", response_model=ClusterView)
def show_cluster(cluster_id: str, principal: Auth, request: Request) -> ClusterView:
    with _services(request).store.session() as s:
        return cluster_view(get_cluster(s, principal, cluster_id))


@router.delete("/{cluster_id}", status_code=202, response_model=Accepted)
def delete_cluster(
    cluster_id: str, principal: Auth, request: Request,
    final_backup: Annotated[bool, Query(description="Back up first; if that fails, "
                                                     "nothing is deleted")] = False,
) -> Accepted:
    """Stop and remove every node, then the cluster. Its backups stay until their
    retention removes them."""
    svc = _services(request)
    # BUILDING is left out: a create ends (ACTIVE or FAILED) before a delete starts.
    allowed = set(ClusterStatus) - {ClusterStatus.BUILDING}
    if not final_backup:
        return changes.begin(svc, principal, cluster_id, "delete", cluster_delete.STEPS,
                             allowed, ClusterStatus.DELETING, quota=_unprotected)
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        _unprotected(s, cluster)
        if cluster.status not in (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED):
            raise Conflict(f"a final backup needs the cluster running; it is {cluster.status}")
        backup = new_backup(cluster, "final")
        s.add(backup)
    try:
        return changes.begin(svc, principal, cluster_id, "delete",
                             cluster_delete.FINAL_BACKUP_STEPS, allowed, ClusterStatus.DELETING,
                             params={"final_backup_id": backup.id}, detail="with final backup",
                             quota=_unprotected)
    except Exception:
        delete_backup(backup.id)
        raise


def _unprotected(s: Session, cluster: Cluster) -> None:
    """Read with the delete's claim on the cluster: a protection turned on just
    before is seen."""
    if cluster.deletion_protection:
        raise Conflict(f"cluster {cluster.name!r} has deletion protection on; turn it off "
                       "first (PATCH {\"deletion_protection\": false})")


@router.get("/{cluster_id}/credentials", response_model=CredentialsView)
def credentials(cluster_id: str, principal: Auth, request: Request) -> CredentialsView:
    """The tenant's admin account, and a URI that works from anywhere with the engine's
    client and Hoard's CA certificate (``ca_cert_url``); nothing in it is a path on
    Hoard's own host."""
    svc = _services(request)
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        writable = next((e for e in endpoints(cluster) if e.role == "read-write"), None)
        if cluster.status not in (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED) or (
            writable is None
        ):
            raise Conflict(
                f"the cluster is {cluster.status}; credentials are available once it is ACTIVE"
            )
        creds = Credentials(cluster.admin_user, svc.box.open(cluster.admin_password))
        engine = svc.engines[cluster.engine]
        host, port = writable.host, writable.port
        client = engine.client_command(host, port, creds, CA_FILE_PLACEHOLDER)
        return CredentialsView(
            username=creds.user, password=creds.password, host=host, port=port,
            uri=engine.connection_uri(host, port, creds),
            ca_cert_url=str(request.url_for("ca_certificate")),
            connect_command=ConnectCommand(argv=client.argv, env=client.env,
                                           ca_file_placeholder=CA_FILE_PLACEHOLDER),
        )
