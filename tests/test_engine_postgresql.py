"""The PostgreSQL engine on its own: settings, accounts, live parameters."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from hoard.engines.postgresql import PostgreSQL
from tests.engine_harness import RunningNode, running_node

ENGINE = PostgreSQL()


@pytest.fixture(scope="module")
def node() -> Iterator[RunningNode]:
    with running_node(ENGINE) as running:
        yield running


def test_size_derives_memory_settings() -> None:
    from hoard.domain.catalog import SIZES

    small = ENGINE.settings(_ctx(SIZES["small"]))
    large = ENGINE.settings(_ctx(SIZES["large"]))
    assert small["shared_buffers"] == "256MB" and large["shared_buffers"] == "4096MB"
    assert not ENGINE.is_dynamic("shared_buffers") and ENGINE.is_dynamic("work_mem")


def _ctx(size):  # type: ignore[no-untyped-def]
    from hoard.engines.base import Credentials, NodeContext

    return NodeContext("n", "15", size, "127.0.0.1", 1, Credentials("a", "b"),
                       Credentials("c", "d"))


def test_database_and_user_lifecycle(node: RunningNode) -> None:
    e, ctx, ca = node.engine, node.ctx, node.ca_file
    assert isinstance(e, PostgreSQL)
    e.create_database(ctx, ca, "shop", "UTF8", None)
    e.create_database(ctx, ca, "shop", "UTF8", None)  # idempotent
    e.create_user(ctx, ca, "clerk", "pw-one-1234567890")
    e.grant(ctx, ca, "clerk", "shop")
    assert [u.databases for u in e.list_users(ctx, ca) if u.name == "clerk"] == [["shop"]]
    dsn = (f"host={ctx.host} port={ctx.port} dbname=shop user=clerk sslmode=verify-full "
           f"sslrootcert={ca}")
    with psycopg.connect(dsn, password="pw-one-1234567890") as conn:
        conn.execute("CREATE TABLE t (x int)")
    e.set_password(ctx, ca, "clerk", "pw-two-1234567890")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, password="pw-one-1234567890").close()
    e.revoke(ctx, ca, "clerk", "shop")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, password="pw-two-1234567890").close()
    e.drop_user(ctx, ca, "clerk")
    e.drop_database(ctx, ca, "shop")
    assert "shop" not in [d.name for d in e.list_databases(ctx, ca)]
    assert e.list_users(ctx, ca) == []


def test_dynamic_parameter_applies_live(node: RunningNode) -> None:
    from dataclasses import replace

    ctx = replace(node.ctx, parameters={"work_mem": 8192})
    node.engine.configure(ctx, node.provider.runner(ctx.node_id))
    node.engine.apply_live(ctx, node.ca_file, ["work_mem"])
    with psycopg.connect(host=ctx.host, port=ctx.port, user=ctx.service.user,
                         password=ctx.service.password, dbname="postgres",
                         sslmode="verify-full", sslrootcert=node.ca_file) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)


def test_passwords_never_reach_the_server_log() -> None:
    """With every statement logged, creating the admin and a user and rotating the
    user's password logs SCRAM verifiers only, and the passwords still log in."""
    with running_node(ENGINE, parameters={"log_statement": "all"}) as logged:
        e, ctx, ca = logged.engine, logged.ctx, logged.ca_file
        assert isinstance(e, PostgreSQL)
        first, second = "first-Secret-0451", "second-Secret-0452"
        e.create_user(ctx, ca, "clerk", first)
        e.set_password(ctx, ca, "clerk", second)
        dsn = (f"host={ctx.host} port={ctx.port} dbname=postgres user=clerk "
               f"sslmode=verify-full sslrootcert={ca}")
        with psycopg.connect(dsn, password=second) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("clerk",)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, password=first).close()
        admin = (f"host={ctx.host} port={ctx.port} dbname=app user={ctx.admin.user} "
                 f"sslmode=verify-full sslrootcert={ca}")
        with psycopg.connect(admin, password=ctx.admin.password) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (ctx.admin.user,)
        log = (logged.provider.nodes_dir / ctx.node_id / "log" / "server.log").read_text()
        for secret in (first, second, ctx.admin.password, ctx.service.password):
            assert secret not in log
        assert 'ALTER ROLE "clerk" PASSWORD' in log and "SCRAM-SHA-256$4096:" in log
