"""The databases and users a Trove create asks for: checked before the instance is
made (bad input makes nothing), then made by the create workflow itself, as a
durable step before the instance is ACTIVE (as Trove's guest agent makes them
before it reports ACTIVE). A worker lost midway resumes the step like any other."""

from __future__ import annotations

from typing import Any

from hoard.api.routes.accounts import DEFAULT_CATEGORIES, DEFAULT_KEYS
from hoard.api.schemas import ClusterCreate, DatabaseCreate
from hoard.api.trove.models import InstanceSpec
from hoard.domain.errors import InvalidInput
from hoard.domain.identifiers import check_acl_user, check_sql_name
from hoard.engines.base import AclAccounts, SqlAccounts
from hoard.workflows.services import Services

MIN_PASSWORD = 8
MAX_PASSWORD = 128


def check_password(password: str | None) -> str:
    """Trove clients always send a password; Hoard takes one of a sane length."""
    if password is None or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a user's password must be {MIN_PASSWORD} to {MAX_PASSWORD} "
                           "characters")
    return password


def plan(svc: Services, create: ClusterCreate, spec: InstanceSpec) -> dict[str, Any] | None:
    """What the create workflow is to make, every name checked now and every
    password sealed; None when the request asks for nothing."""
    if not (spec.databases or spec.users):
        return None
    engine = svc.engines[create.engine]
    databases: list[dict[str, Any]] = []
    if isinstance(engine, SqlAccounts):
        for db in spec.databases:
            check_sql_name("database", db.name, engine.reserved_databases)
            checked = DatabaseCreate.model_validate(
                {"name": db.name, "charset": db.character_set, "collation": db.collate})
            databases.append({"name": checked.name, "charset": checked.charset,
                              "collation": checked.collation})
    elif spec.databases:
        raise InvalidInput(f"{engine.display_name} has no databases")
    known = {d["name"] for d in databases} | (
        {engine.default_database} if isinstance(engine, SqlAccounts) else set())
    users: list[dict[str, Any]] = []
    for user in spec.users:
        sealed = svc.box.seal(check_password(user.password))
        if isinstance(engine, SqlAccounts):
            name = check_sql_name("user", user.name, engine.reserved_users)
            grants = [check_sql_name("database", d.name, engine.reserved_databases)
                      for d in user.databases]
            missing = sorted(set(grants) - known)
            if missing:
                raise InvalidInput(f"user {name!r}: no such database: {', '.join(missing)}")
            users.append({"name": name, "password": sealed, "databases": grants})
        elif isinstance(engine, AclAccounts) and not user.databases:
            users.append({"name": check_acl_user(user.name, engine.reserved_users),
                          "password": sealed, "keys": DEFAULT_KEYS,
                          "categories": DEFAULT_CATEGORIES})
        else:
            raise InvalidInput(f"{engine.display_name} users have no databases")
    names = [u["name"] for u in users]
    if len(set(names)) != len(names):
        raise InvalidInput("each user may be given once")
    return {"databases": databases, "users": users}
