"""The Redis engine on its own: settings, TLS-only access, ACL users, live parameters."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hoard.domain.catalog import SIZES
from hoard.domain.errors import NotFound
from hoard.engines.base import Credentials, NodeContext
from hoard.engines.redis import Redis
from tests.engine_harness import RunningNode, running_node

ENGINE = Redis()
NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries refused logins, with backoff


@pytest.fixture(scope="module")
def node() -> Iterator[RunningNode]:
    with running_node(ENGINE) as running:
        yield running


def _ctx(size: str, **parameters: int | bool | str) -> NodeContext:
    return NodeContext("n", "7.0", SIZES[size], "127.0.0.1", 1, Credentials("a", "b"),
                       Credentials("c", "d"), parameters)


def _client(node: RunningNode, user: str | None, password: str | None) -> redis.Redis:
    return redis.Redis(host=node.ctx.host, port=node.ctx.port, username=user,
                       password=password, ssl=True, ssl_ca_certs=node.ca_file,
                       socket_timeout=5, decode_responses=True, retry=NO_RETRY)


def _service(node: RunningNode) -> redis.Redis:
    return _client(node, node.ctx.service.user, node.ctx.service.password)


def _path(node: RunningNode, rel: str) -> Path:
    return Path(node.provider.runner(node.ctx.node_id).abspath(PurePosixPath(rel)))


def test_settings_follow_size_and_parameters() -> None:
    assert [len(v.split(".")) for v in ENGINE.installed_versions()] == [2]
    assert ENGINE.settings(_ctx("nano"))["maxmemory"] == "192mb"
    assert ENGINE.settings(_ctx("medium"))["maxmemory"] == "3072mb"
    tuned = ENGINE.settings(_ctx("small", maxmemory=100, appendonly=False, databases=4))
    assert (tuned["maxmemory"], tuned["appendonly"], tuned["databases"]) == ("100mb", "no", "4")
    assert ENGINE.settings(_ctx("nano", maxmemory=100000))["maxmemory"] == "256mb"  # capped
    names = {p.name for p in ENGINE.parameters()}
    assert names <= set(ENGINE.settings(_ctx("nano")))  # removing a parameter reverts it
    assert ENGINE.is_dynamic("maxmemory") and ENGINE.is_dynamic("maxmemory-policy")
    assert not ENGINE.is_dynamic("databases") and not ENGINE.is_dynamic("io-threads")


def test_no_default_user_and_no_plaintext(node: RunningNode) -> None:
    with _client(node, None, None) as anon, pytest.raises(redis.AuthenticationError):
        anon.ping()
    with _client(node, None, None) as anon, pytest.raises(redis.AuthenticationError):
        anon.execute_command("AUTH", "default", "")
    plain = redis.Redis(host=node.ctx.host, port=node.ctx.port, socket_timeout=5,
                        retry=NO_RETRY)
    with plain, pytest.raises(redis.ConnectionError):
        plain.ping()


def test_secrets_on_disk(node: RunningNode) -> None:
    acl = _path(node, "data/users.acl").read_text()
    for creds in (node.ctx.admin, node.ctx.service):
        assert creds.password not in acl
        assert "#" + hashlib.sha256(creds.password.encode()).hexdigest() in acl
    assert "user default off" in acl
    assert node.ctx.admin.password not in _path(node, "conf/redis.conf").read_text()
    assert stat.S_IMODE(_path(node, "data").stat().st_mode) == 0o700
    assert stat.S_IMODE(_path(node, "tls/server.key").stat().st_mode) == 0o600


def test_admin_connects_and_is_fenced_in(node: RunningNode) -> None:
    uri = ENGINE.connection_uri(node.ctx.host, node.ctx.port, node.ctx.admin, node.ca_file)
    with redis.Redis.from_url(uri, decode_responses=True) as admin:
        assert admin.ping()
        admin.set("greeting", "hello")
        assert admin.get("greeting") == "hello"
        assert admin.execute_command("ACL", "WHOAMI") == node.ctx.admin.user
        assert admin.keys("greet*") == ["greeting"] and "redis_version" in admin.info()
        for denied in (("CONFIG", "GET", "*"), ("CONFIG", "SET", "dir", "/"),
                       ("MODULE", "LOAD", "/nonexistent/x.so"), ("SHUTDOWN", "NOSAVE"),
                       ("REPLICAOF", "127.0.0.1", "1"), ("ACL", "SETUSER", "x", "on"),
                       ("ACL", "LIST"), ("SAVE",), ("BGSAVE",), ("MONITOR",),
                       ("MIGRATE", "127.0.0.1", "1", "k", "0", "10"), ("DEBUG", "SLEEP", "0"),
                       ("FAILOVER",), ("CLIENT", "KILL", "127.0.0.1:1")):
            # DEBUG and MODULE are off in the server for everyone, before the ACL check.
            with pytest.raises(redis.ResponseError, match=r"no permissions|command not allowed"):
                admin.execute_command(*denied)
    cmd = ENGINE.client_command(node.ctx.host, node.ctx.port, node.ctx.admin, node.ca_file)
    out = subprocess.run([*cmd.argv, "GET", "greeting"], env={**os.environ, **cmd.env},
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "hello"


def test_acl_user_lifecycle(node: RunningNode) -> None:
    e, ctx, ca = ENGINE, node.ctx, node.ca_file
    e.create_user(ctx, ca, "app1", "pw-one-1234567890", ["app:*"], ["read", "write"])
    e.create_user(ctx, ca, "app1", "pw-one-1234567890", ["app:*"], ["read", "write"])  # again
    with _client(node, "app1", "pw-one-1234567890") as user:
        user.set("app:1", "x")
        assert user.get("app:1") == "x"
        for denied in (("SET", "other:1", "x"), ("GET", "other:1"), ("FLUSHALL",),
                       ("KEYS", "*"), ("CONFIG", "GET", "maxmemory"), ("FUNCTION", "FLUSH"),
                       ("EVAL", "return 1", "0")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                user.execute_command(*denied)
    [info] = e.list_users(ctx, ca)
    assert (info.name, info.keys) == ("app1", ["app:*"])
    assert {"read", "write"} <= set(info.categories)
    assert not {"pubsub", "scripting", "connection"} & set(info.categories)

    e.set_password(ctx, ca, "app1", "pw-two-1234567890")
    with _client(node, "app1", "pw-one-1234567890") as user, \
            pytest.raises(redis.AuthenticationError):
        user.ping()
    with _client(node, "app1", "pw-two-1234567890") as user:
        assert user.get("app:1") == "x"

    e.drop_user(ctx, ca, "app1")
    e.drop_user(ctx, ca, "app1")  # idempotent
    assert e.list_users(ctx, ca) == []
    with _client(node, "app1", "pw-two-1234567890") as user, \
            pytest.raises(redis.AuthenticationError):
        user.ping()
    with pytest.raises(NotFound):
        e.set_password(ctx, ca, "app1", "pw-three-1234567890")


@pytest.mark.parametrize(("name", "keys", "categories"), [
    ("evil", ["app:* +@all"], ["read"]),
    ("evil", [">pw"], ["read"]),
    ("evil", ["~*"], ["read"]),
    ("evil", ["app:\"x"], ["read"]),
    ("evil", ["app:*"], ["all"]),
    ("evil", ["app:*"], ["admin"]),
    ("evil", ["app:*"], ["dangerous"]),
    ("evil", ["app:*"], ["read +@all"]),
    ("admin", ["app:*"], ["read"]),
    ("default", ["app:*"], ["read"]),
    ("hoard", ["app:*"], ["read"]),
    ("bad name", ["app:*"], ["read"]),
])
def test_rule_injection_is_refused(
    node: RunningNode, name: str, keys: list[str], categories: list[str]
) -> None:
    with pytest.raises(ValueError):
        ENGINE.create_user(node.ctx, node.ca_file, name, "pw-1234567890", keys, categories)
    with _service(node) as svc:
        assert "evil" not in svc.execute_command("ACL", "USERS")


def test_reserved_users_cannot_be_dropped_or_changed(node: RunningNode) -> None:
    for name in ("admin", "hoard", "default"):
        with pytest.raises(ValueError):
            ENGINE.drop_user(node.ctx, node.ca_file, name)
        with pytest.raises(ValueError):
            ENGINE.set_password(node.ctx, node.ca_file, name, "pw-1234567890")


def test_dynamic_parameter_applies_live(node: RunningNode) -> None:
    ctx = replace(node.ctx, parameters={"maxmemory-policy": "allkeys-lru", "maxmemory": 64})
    ENGINE.configure(ctx, node.provider.runner(ctx.node_id))
    ENGINE.apply_live(ctx, node.ca_file, ["maxmemory-policy", "maxmemory"])
    with _service(node) as svc:
        assert svc.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert svc.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}


def test_restart_keeps_data_and_users(node: RunningNode) -> None:
    ENGINE.create_user(node.ctx, node.ca_file, "keeper", "pw-keep-1234567890",
                       ["k:*"], ["read", "write"])
    with _client(node, "keeper", "pw-keep-1234567890") as user:
        user.set("k:1", "kept")
    node.restart(parameters={"databases": 32})  # restart-only setting
    with _client(node, "keeper", "pw-keep-1234567890") as user:
        assert user.get("k:1") == "kept"
    with _service(node) as svc:
        assert svc.config_get("databases") == {"databases": "32"}
        assert svc.config_get("appendonly") == {"appendonly": "yes"}
    assert ENGINE.health(node.ctx, node.ca_file).detail == "accepting connections as primary"
    ENGINE.drop_user(node.ctx, node.ca_file, "keeper")


def test_hoard_trusts_only_its_own_ca(node: RunningNode, tmp_path: Path) -> None:
    """Hoard's connections verify the node against the CA file given, and nothing
    else: with the system's public CAs instead, the node's certificate is refused."""
    public = tmp_path / "public.pem"
    public.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    refused = ENGINE.health(node.ctx, str(public))
    assert not refused.ok and "certificate verify failed" in refused.detail
    assert ENGINE.health(node.ctx, node.ca_file).ok


def test_passwords_never_reach_a_file_or_the_slow_log() -> None:
    """Users are set with SHA-256 hashes (``#<hex>``): with every command in the
    slow log, creating and rotating a user leaves its password in no file of the
    node (ACL file, AOF, server log) and in no slow log entry."""
    with running_node(ENGINE, parameters={"slowlog-log-slower-than": 0}) as logged:
        e, ctx, ca = logged.engine, logged.ctx, logged.ca_file
        assert isinstance(e, Redis)
        first, second = "first-Secret-0451", "second-Secret-0452"
        e.create_user(ctx, ca, "clerk", first, ["app:*"], ["read", "write"])
        e.set_password(ctx, ca, "clerk", second)
        with _client(logged, "clerk", second) as client:
            assert client.set("app:x", "1")
        with pytest.raises(redis.AuthenticationError), _client(logged, "clerk", first) as client:
            client.ping()
        with _service(logged) as client:
            entries = client.slowlog_get(128)
        logged_args = " ".join(str(a) for entry in entries for a in entry["command"].split())
        assert "SETUSER" in logged_args.upper()
        root = logged.provider.runner(ctx.node_id).root
        files = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
        for secret in (first, second, ctx.admin.password, ctx.service.password):
            assert secret not in logged_args and secret.encode() not in files
