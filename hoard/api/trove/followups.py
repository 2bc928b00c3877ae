"""What a Trove create asks for beyond a /v2 create (databases, users, a
configuration): checked before the instance is made, applied once it is ACTIVE by
the same functions /v2's account and update routes run.

The follow-up runs in the API process that took the create: an API restart before
the instance is ACTIVE drops it (the instance itself is built regardless)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from fastapi import Request, Response

from hoard.api.auth import Principal
from hoard.api.routes import accounts, cluster_changes
from hoard.api.schemas import ClusterCreate, ClusterPatch, DatabaseCreate, UserCreate
from hoard.api.trove.models import InstanceSpec
from hoard.domain.errors import InvalidInput, NotFound
from hoard.domain.identifiers import check_acl_user, check_sql_name
from hoard.domain.status import ClusterStatus
from hoard.engines.base import AclAccounts, SqlAccounts
from hoard.store.models import Cluster, Configuration
from hoard.workflows.services import Services

log = logging.getLogger(__name__)
MIN_PASSWORD = 8
MAX_PASSWORD = 128
WAIT_SECONDS = 900.0


@dataclass
class Extras:
    databases: list[DatabaseCreate] = field(default_factory=list)
    users: list[tuple[UserCreate, str]] = field(default_factory=list)
    configuration_id: str | None = None


def check_password(password: str | None) -> str:
    """Trove clients always send a password; Hoard takes one of a sane length."""
    if password is None or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a user's password must be {MIN_PASSWORD} to {MAX_PASSWORD} "
                           "characters")
    return password


def plan(svc: Services, principal: Principal, create: ClusterCreate,
         spec: InstanceSpec) -> Extras | None:
    """The follow-up, every name and reference checked now: bad input makes nothing."""
    if not (spec.databases or spec.users or spec.configuration):
        return None
    engine = svc.engines[create.engine]
    extras = Extras()
    if isinstance(engine, SqlAccounts):
        for db in spec.databases:
            check_sql_name("database", db.name, engine.reserved_databases)
            extras.databases.append(DatabaseCreate.model_validate(
                {"name": db.name, "charset": db.character_set, "collation": db.collate}))
    elif spec.databases:
        raise InvalidInput(f"{engine.display_name} has no databases")
    for user in spec.users:
        if isinstance(engine, SqlAccounts):
            check_sql_name("user", user.name, engine.reserved_users)
            names = [check_sql_name("database", d.name, engine.reserved_databases)
                     for d in user.databases]
        elif isinstance(engine, AclAccounts) and not user.databases:
            check_acl_user(user.name, engine.reserved_users)
            names = []
        else:
            raise InvalidInput(f"{engine.display_name} users have no databases")
        extras.users.append((UserCreate(name=user.name, databases=names),
                             check_password(user.password)))
    if spec.configuration:
        with svc.store.session() as s:
            config = s.get(Configuration, spec.configuration)
            if config is None or config.project_id != principal.project_id:
                raise NotFound(f"Configuration group '{spec.configuration}' cannot be found.")
            if config.engine != create.engine or (create.version and
                                                  config.version != create.version):
                raise InvalidInput(f"configuration {config.name!r} is for {config.engine} "
                                   f"{config.version}")
        extras.configuration_id = spec.configuration
    return extras


def start(request: Request, principal: Principal, cluster_id: str, extras: Extras) -> None:
    threading.Thread(target=_apply, args=(request, principal, cluster_id, extras),
                     name=f"trove-followup-{cluster_id}", daemon=True).start()


def _wait_active(svc: Services, cluster_id: str) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with svc.store.session() as s:
            cluster = s.get(Cluster, cluster_id)
            status = cluster.status if cluster else None
        if status == ClusterStatus.ACTIVE:
            return True
        if status not in (ClusterStatus.BUILDING, ClusterStatus.UPDATING):
            return False
        time.sleep(0.25)
    return False


def _apply(request: Request, principal: Principal, cluster_id: str, extras: Extras) -> None:
    svc: Services = request.app.state.services
    try:
        if not _wait_active(svc, cluster_id):
            log.warning("instance %s never became ACTIVE; its databases and users were "
                        "not made", cluster_id)
            return
        # Hoard makes an ``app`` database itself; asking for it again is not an error.
        existing = {d.name for d in accounts.list_databases(
            cluster_id, principal, request)["databases"]} if extras.databases else set()
        for db in extras.databases:
            if db.name in existing:
                continue
            accounts.create_database(cluster_id, db, principal, request, Response())
        for user, password in extras.users:
            accounts.start_user(request, principal, cluster_id, user, password, Response())
        if extras.configuration_id:
            patch = ClusterPatch.model_validate({"configuration_id": extras.configuration_id})
            cluster_changes.update_cluster(cluster_id, patch, principal, request)
    except Exception:
        log.exception("the follow-up of instance %s failed", cluster_id)
