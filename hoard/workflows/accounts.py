"""Databases and users inside a cluster, as short durable workflows.

Every change first checks the engine's current state (so a conflict fails
before anything is made), then runs its steps; if a later step fails, the
earlier ones are undone in reverse: a database asked for with its user leaves
neither behind.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dbos import DBOS

from hoard.domain.errors import Conflict, HoardError, InvalidInput, NotFound
from hoard.engines.base import AclAccounts, Credentials, Engine, NodeContext, SqlAccounts
from hoard.store import events, models, operations
from hoard.workflows import pooler
from hoard.workflows.gate import gated
from hoard.workflows.members import primary
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason

PLANS: dict[str, list[str]] = {
    "database.create": ["check", "create database", "create user", "grant access"],
    "database.delete": ["check", "drop database"],
    "user.create": ["check", "create user", "grant access"],
    "user.delete": ["check", "drop user"],
    "user.rotate": ["check", "set password"],
    "user.grant": ["check", "grant access"],
    "user.revoke": ["check", "revoke access"],
    # The tenant's admin account: the engine first, then the record. Hoard itself
    # signs in with its own account, so no step ever needs the admin's password.
    "admin.rotate": ["set password", "record password"],
}
UNDO = {"create database": "drop database", "create user": "drop user"}


def steps_for(action: str, spec: dict[str, Any]) -> list[str]:
    """The plan for one request (a database without a user skips the user steps)."""
    plan = PLANS[action]
    if action == "database.create" and not spec.get("user"):
        plan = plan[:2]
    if action == "user.create" and not spec.get("databases"):
        plan = plan[:2]
    return plan


def _target(cluster_id: str) -> tuple[Engine, NodeContext, str]:
    svc = services()
    cluster = load_cluster(cluster_id)
    if cluster is None:
        raise NotFound("the cluster no longer exists")
    engine, ctx, _ = primary(cluster)
    return engine, ctx, svc.ca_file


def _user_name(action: str, spec: dict[str, Any]) -> str:
    """The user an account step acts on (a database create names it under "user")."""
    return str(spec["user"]["name"] if action == "database.create" else spec["name"])


def _check(engine: Engine, ctx: NodeContext, ca: str, action: str, spec: dict[str, Any]) -> None:
    users = {u.name for u in engine.list_users(ctx, ca)} if isinstance(
        engine, SqlAccounts | AclAccounts) else set()
    dbs = {d.name for d in engine.list_databases(ctx, ca)} if isinstance(
        engine, SqlAccounts) else set()
    if action == "database.create":
        if spec["name"] in dbs:
            raise Conflict(f"database {spec['name']!r} already exists")
        if spec.get("user") and spec["user"]["name"] in users:
            raise Conflict(f"user {spec['user']['name']!r} already exists")
    elif action == "database.delete":
        if spec["name"] not in dbs:
            raise NotFound(f"no database {spec['name']!r}")
    elif action == "user.create":
        if spec["name"] in users:
            raise Conflict(f"user {spec['name']!r} already exists")
        missing = [d for d in spec.get("databases", []) if d not in dbs]
        if missing:
            raise InvalidInput(f"no such database: {', '.join(missing)}")
    else:
        if spec["name"] not in users:
            raise NotFound(f"no user {spec['name']!r}")
        if "database" in spec and spec["database"] not in dbs:
            raise NotFound(f"no database {spec['database']!r}")


@DBOS.step()
def run_step(op_id: str, cluster_id: str, action: str, step: str, spec: dict[str, Any]) -> None:
    box = services().box
    with recorded(op_id, step):
        engine, ctx, ca = _target(cluster_id)
        if action == "admin.rotate":
            _admin_step(engine, ctx, ca, cluster_id, step, spec["password"])
        elif step == "check":
            _check(engine, ctx, ca, action, spec)
        elif isinstance(engine, SqlAccounts):
            _sql_step(engine, ctx, ca, action, step, spec, box.open)
        elif isinstance(engine, AclAccounts):
            _acl_step(engine, ctx, ca, step, spec, box.open)
    if step == steps_for(action, spec)[-1]:
        # The pooler (if any) knows the account as it is now, before the answer.
        pooler.sync_users(cluster_id)


def _sql_step(engine: SqlAccounts, ctx: NodeContext, ca: str, action: str, step: str,
              spec: dict[str, Any], unseal: Any) -> None:
    if step == "create database":
        try:
            engine.create_database(ctx, ca, spec["name"], spec.get("charset"),
                                   spec.get("collation"))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    elif step == "drop database":
        engine.drop_database(ctx, ca, spec["name"])
    elif step == "create user":
        password = spec["user"]["password"] if action == "database.create" else spec["password"]
        engine.create_user(ctx, ca, _user_name(action, spec), unseal(password))
    elif step == "drop user":
        engine.drop_user(ctx, ca, _user_name(action, spec))
    elif step == "set password":
        engine.set_password(ctx, ca, _user_name(action, spec), unseal(spec["password"]))
    elif step == "grant access":
        targets = [spec["name"]] if action == "database.create" else spec.get(
            "databases") or [spec["database"]]
        for db in targets:
            engine.grant(ctx, ca, _user_name(action, spec), db)
    elif step == "revoke access":
        engine.revoke(ctx, ca, _user_name(action, spec), spec["database"])


def _admin_step(engine: Engine, ctx: NodeContext, ca: str, cluster_id: str, step: str,
                sealed: str) -> None:
    if step == "set password":
        admin = Credentials(ctx.admin.user, services().box.open(sealed))
        engine.set_admin_password(replace(ctx, admin=admin), ca)
    elif step == "record password":
        with services().store.session() as s:
            cluster = s.get(models.Cluster, cluster_id)
            if cluster is None:
                raise NotFound("the cluster no longer exists")
            cluster.admin_password = sealed


def _acl_step(engine: AclAccounts, ctx: NodeContext, ca: str, step: str,
              spec: dict[str, Any], unseal: Any) -> None:
    if step == "create user":
        try:
            engine.create_user(ctx, ca, spec["name"], unseal(spec["password"]),
                               spec.get("keys", []), spec.get("categories", []))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    elif step == "drop user":
        engine.drop_user(ctx, ca, spec["name"])
    elif step == "set password":
        engine.set_password(ctx, ca, spec["name"], unseal(spec["password"]))


@DBOS.step()
def undo(op_id: str, cluster_id: str, action: str, done: list[str], spec: dict[str, Any],
         reason: str, status: int) -> None:
    """Undo completed steps in reverse, then fail the operation with the reason."""
    engine, ctx, ca = _target(cluster_id)
    for step in reversed(done):
        reverse = UNDO.get(step)
        if reverse and isinstance(engine, SqlAccounts):
            _sql_step(engine, ctx, ca, action, reverse, spec, services().box.open)
        elif reverse and isinstance(engine, AclAccounts):
            _acl_step(engine, ctx, ca, reverse, spec, services().box.open)
    with services().store.session() as s:
        if done:
            events.record(s, cluster_id, "operation.undone",
                          f"{action}: undid {', '.join(reversed(done))}", op_id)
        operations.finish(s, op_id, error=reason, error_status=status)


@DBOS.step()
def succeed(op_id: str) -> None:
    with services().store.session() as s:
        operations.finish(s, op_id)


@DBOS.workflow()
@gated
def account_change(op_id: str, cluster_id: str, action: str, spec: dict[str, Any]) -> None:
    done: list[str] = []
    try:
        for step in steps_for(action, spec):
            run_step(op_id, cluster_id, action, step, spec)
            done.append(step)
        succeed(op_id)
    except Exception as exc:
        status = exc.status if isinstance(exc, HoardError) else 500
        undo(op_id, cluster_id, action, done, spec, short_reason(exc), status)


def make_initial(engine: Engine, ctx: NodeContext, ca: str, accounts: dict[str, Any],
                 unseal: Any) -> None:
    """Make the databases and users a create asked for (``accounts``: databases
    with charset and collation, users with a sealed password and databases).
    Safe to run again: what exists is kept, passwords and grants are set again."""
    if isinstance(engine, SqlAccounts):
        have = {d.name for d in engine.list_databases(ctx, ca)}
        for db in accounts.get("databases", []):
            if db["name"] not in have:
                try:
                    engine.create_database(ctx, ca, db["name"], db.get("charset"),
                                           db.get("collation"))
                except ValueError as exc:
                    raise InvalidInput(str(exc)) from None
        for user in accounts.get("users", []):
            engine.create_user(ctx, ca, user["name"], unseal(user["password"]))
            for db in user.get("databases", []):
                engine.grant(ctx, ca, user["name"], db)
    elif isinstance(engine, AclAccounts):
        have = {u.name for u in engine.list_users(ctx, ca)}
        for user in accounts.get("users", []):
            if user["name"] in have:
                engine.set_password(ctx, ca, user["name"], unseal(user["password"]))
            else:
                engine.create_user(ctx, ca, user["name"], unseal(user["password"]),
                                   user["keys"], user["categories"])
