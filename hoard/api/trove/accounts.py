"""Databases, users and root of an instance, through /v2's account functions.
Users bring their own password here (Trove clients require one); it is length-checked
and travels sealed like the passwords /v2 generates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from hoard.api import changes
from hoard.api.auth import Principal
from hoard.api.routes import accounts, clusters
from hoard.api.schemas import DatabaseCreate, UserCreate
from hoard.api.trove.auth import tenant
from hoard.api.trove.catalog import services
from hoard.api.trove.initial_accounts import check_password
from hoard.api.trove.models import DatabaseRef, Lenient, UserRef
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.domain.status import OperationStatus

router = APIRouter(prefix="/{project_id}/instances/{instance_id}")
Tenant = Annotated[Principal, Depends(tenant)]
ROOT_WAIT_SECONDS = 30.0  # Trove's root enable answers with the password in effect


class Databases(Lenient):
    databases: list[DatabaseRef]


class Users(Lenient):
    users: list[UserRef]


class UserChange(Lenient):
    user: dict[str, Any]


def user_name(name: str) -> str:
    """Trove names a user ``name@host``; Hoard's users connect from any host."""
    user, _, host = name.partition("@")
    if host not in ("", "%"):
        raise InvalidInput("Hoard's users connect from any host ('%')")
    return user


def _accepted() -> Response:
    return Response(status_code=202)


@router.get("/databases")
def list_databases(instance_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    found = accounts.list_databases(instance_id, principal, request)["databases"]
    return {"databases": [{"name": d.name, "character_set": d.charset, "collate": d.collation}
                          for d in found]}


@router.post("/databases", status_code=202, response_class=Response)
def create_databases(instance_id: str, body: Databases, principal: Tenant,
                     request: Request) -> Response:
    for db in body.databases:
        create = DatabaseCreate.model_validate(
            {"name": db.name, "charset": db.character_set, "collation": db.collate})
        accounts.create_database(instance_id, create, principal, request, Response())
    return _accepted()


@router.delete("/databases/{name}", status_code=202, response_class=Response)
def delete_database(instance_id: str, name: str, principal: Tenant,
                    request: Request) -> Response:
    accounts.delete_database(instance_id, name, principal, request, Response())
    return _accepted()


def _user_view(u: Any) -> dict[str, Any]:
    return {"name": u.name, "host": "%", "databases": [{"name": d} for d in u.databases]}


@router.get("/users")
def list_users(instance_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    found = accounts.list_users(instance_id, principal, request)["users"]
    return {"users": [_user_view(u) for u in found]}


def _find_user(instance_id: str, name: str, principal: Principal, request: Request) -> Any:
    wanted = user_name(name)
    for u in accounts.list_users(instance_id, principal, request)["users"]:
        if u.name == wanted:
            return u
    raise NotFound(f"User {wanted} cannot be found on the instance.")


@router.post("/users", status_code=202, response_class=Response)
def create_users(instance_id: str, body: Users, principal: Tenant,
                 request: Request) -> Response:
    checked = [(UserCreate(name=user_name(u.name), databases=[d.name for d in u.databases]),
                check_password(u.password)) for u in body.users]
    for create, password in checked:
        accounts.start_user(request, principal, instance_id, create, password, Response())
    return _accepted()


@router.get("/users/{name}")
def show_user(instance_id: str, name: str, principal: Tenant,
              request: Request) -> dict[str, Any]:
    return {"user": _user_view(_find_user(instance_id, name, principal, request))}


@router.delete("/users/{name}", status_code=202, response_class=Response)
def delete_user(instance_id: str, name: str, principal: Tenant,
                request: Request) -> Response:
    accounts.delete_user(instance_id, user_name(name), principal, request, Response())
    return _accepted()


@router.put("/users/{name}", status_code=202, response_class=Response)
def update_user(instance_id: str, name: str, body: UserChange, principal: Tenant,
                request: Request) -> Response:
    """A new password; Hoard's users keep their name and host."""
    change = body.user
    current = user_name(name)
    if change.get("name", current) != current or change.get("host", "%") != "%":
        raise InvalidInput("Hoard's users keep their name and connect from any host; only "
                           "the password can change")
    if "password" in change:
        accounts.set_password(request, principal, instance_id, current,
                              check_password(change["password"]), Response())
    return _accepted()


@router.put("/users", status_code=202, response_class=Response)
def change_passwords(instance_id: str, body: Users, principal: Tenant,
                     request: Request) -> Response:
    checked = [(user_name(u.name), check_password(u.password)) for u in body.users]
    for name, password in checked:
        accounts.set_password(request, principal, instance_id, name, password, Response())
    return _accepted()


@router.get("/users/{name}/databases")
def user_databases(instance_id: str, name: str, principal: Tenant,
                   request: Request) -> dict[str, Any]:
    user = _find_user(instance_id, name, principal, request)
    return {"databases": [{"name": d} for d in user.databases]}


@router.put("/users/{name}/databases", status_code=202, response_class=Response)
def grant(instance_id: str, name: str, body: Databases, principal: Tenant,
          request: Request) -> Response:
    for db in body.databases:
        accounts.grant(instance_id, user_name(name), db.name, principal, request, Response())
    return _accepted()


@router.delete("/users/{name}/databases/{database}", status_code=202,
               response_class=Response)
def revoke(instance_id: str, name: str, database: str, principal: Tenant,
           request: Request) -> Response:
    accounts.revoke(instance_id, user_name(name), database, principal, request, Response())
    return _accepted()


@router.post("/root")
def enable_root(instance_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    """The tenant's admin account with a new password, as Trove's root enable gives
    root one (Hoard never hands out a superuser): /v2's admin rotation."""
    result = accounts.rotate_admin_password(instance_id, principal, request, Response())
    op = changes.wait(services(request), result.operation.id, ROOT_WAIT_SECONDS)
    if op.status != OperationStatus.SUCCEEDED:
        raise Conflict(f"the new password is still being set (operation {op.id}); ask again "
                       "when it ends")
    assert result.user is not None
    return {"user": {"name": result.user.name, "password": result.user.password}}


@router.get("/root")
def root_enabled(instance_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    """Always true: every Hoard instance has its tenant admin account."""
    clusters.show_cluster(instance_id, principal, request)
    return {"rootEnabled": True}


@router.delete("/root", status_code=202, response_class=Response)
def disable_root(instance_id: str, principal: Tenant, request: Request) -> Response:
    clusters.show_cluster(instance_id, principal, request)
    raise InvalidInput("the tenant's admin account cannot be disabled")
