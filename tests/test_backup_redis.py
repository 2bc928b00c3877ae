"""Redis backups on real servers: an RDB snapshot (with the tenant's ACL users)
restores to exactly the backup's keys; damaged backups, point-in-time targets
and slow snapshots fail clearly."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import NodeContext
from hoard.engines.redis import Redis
from hoard.engines.redis.backup import FORMAT, MAGIC, rdb_only
from tests.engine_harness import Restore, RunningNode, running_node, take_backup

ENGINE = Redis()
NO_RETRY = Retry(NoBackoff(), 0)
TENANT = ("app1", "pw-app1-1234567890")
Contents = dict[tuple[int, bytes], tuple[str, Any, bool]]


def _client(node: RunningNode, user: str, password: str, db: int = 0) -> redis.Redis:
    return redis.Redis(host=node.ctx.host, port=node.ctx.port, username=user, password=password,
                       db=db, ssl=True, ssl_ca_certs=node.ca_file, socket_timeout=10,
                       retry=NO_RETRY)


def _service(node: RunningNode, db: int = 0) -> redis.Redis:
    return _client(node, node.ctx.service.user, node.ctx.service.password, db)


def _contents(node: RunningNode) -> Contents:
    """Every key of every database: (type, value, has a TTL)."""
    found: Contents = {}
    for db in range(16):
        with _service(node, db) as client:
            for key in client.scan_iter(count=1000):
                kind = client.type(key).decode()
                value: Any = {
                    "string": lambda k: client.get(k),
                    "hash": lambda k: client.hgetall(k),
                    "list": lambda k: client.lrange(k, 0, -1),
                    "set": lambda k: client.smembers(k),
                    "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                }[kind](key)
                found[(db, key)] = (kind, value, client.ttl(key) > 0)
    return found


@dataclass
class Source:
    node: RunningNode
    chunks: list[bytes]
    meta: dict[str, str]
    expected: Contents  # the node's data when the backup was taken

    def restore(self, chunks: list[bytes] | None = None) -> Restore:
        return Restore(backup=self.chunks if chunks is None else chunks, meta=self.meta,
                       logs=[], target=None, service=self.node.ctx.service,
                       admin=self.node.ctx.admin)


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with running_node(ENGINE) as node:
        ENGINE.create_user(node.ctx, node.ca_file, *TENANT, ["app:*"], ["read", "write"])
        with _service(node) as db0, _service(node, 1) as db1:
            db0.mset({f"k{i}": f"v{i}" for i in range(1, 101)})
            for i in range(3):  # incompressible, so the RDB takes several chunks
                db0.set(f"big:{i}", os.urandom(600_000))
            db0.hset("h", mapping={"a": "1", "b": "2"})
            db0.rpush("l", "x", "y", "z")
            db0.sadd("s", "m1", "m2")
            db0.zadd("z", {"one": 1, "two": 2})
            db0.set("ttl:1", "soon", ex=3600)
            db0.set("app:1", "tenant data")
            db1.set("other", "db one")
        expected = _contents(node)
        chunks, meta = take_backup(node)
        with _service(node) as db0:  # after the backup: none of this may come back
            db0.set("extra", "late")
            db0.delete(*[f"k{i}" for i in range(1, 11)])
            db0.set("k11", "changed")
        ENGINE.create_user(node.ctx, node.ca_file, "app2", "pw-app2-1234567890",
                           ["late:*"], ["read"])
        yield Source(node, chunks, meta, expected)


def test_backup_stream_and_meta(source: Source) -> None:
    assert source.chunks[0].startswith(MAGIC) and len(source.chunks) >= 3
    assert b"user app1 " in source.chunks[0]
    for private in (b"user default", b"user hoard", b"user admin"):
        assert private not in source.chunks[0]  # the restored node's own credentials
    meta = source.meta
    assert meta["format"] == FORMAT and meta["redis_version"].startswith("7.")
    assert (meta["keys"], meta["expires"]) == (str(len(source.expected)), "1")
    assert meta["end_time"].endswith("+00:00")
    rdb = b"".join(source.chunks)
    assert rdb[rdb.index(b"rdb\n") + 4:].startswith(b"REDIS")
    assert rdb[-9] == 0xFF  # ends with the checksum, not with the transfer's end mark


def test_restore_brings_exactly_the_backup(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore()) as node:
        runner = node.provider.runner(node.ctx.node_id)
        assert _contents(node) == source.expected
        assert not runner.exists(PurePosixPath("restore"))
        assert runner.exists(PurePosixPath("data/appendonlydir/appendonly.aof.1.base.rdb"))
        # The tenant's user came along; the one made after the backup did not.
        assert [(u.name, u.keys) for u in ENGINE.list_users(node.ctx, node.ca_file)] == [
            ("app1", ["app:*"])]
        with _client(node, *TENANT) as user:
            assert user.get("app:1") == b"tenant data"
            user.set("app:2", "written")
            with pytest.raises(redis.exceptions.NoPermissionError):
                user.get("k50")
        uri = ENGINE.connection_uri(node.ctx.host, node.ctx.port, node.ctx.admin, node.ca_file)
        with redis.Redis.from_url(uri) as admin:
            admin.set("after", "restore")
        node.restart()  # the AOF now holds the data
        after = _contents(node)
        assert after.pop((0, b"app:2"))[1] == b"written"
        assert after.pop((0, b"after"))[1] == b"restore"
        assert after == source.expected
        with _service(node) as svc:
            assert svc.config_get("appendonly") == {"appendonly": "yes"}


class NoAof(Redis):
    def settings(self, ctx: NodeContext) -> dict[str, str]:
        return {**super().settings(ctx), "appendonly": "no"}


def test_restore_without_aof(source: Source) -> None:
    engine = NoAof()
    with running_node(engine, restore=source.restore()) as node:
        runner = node.provider.runner(node.ctx.node_id)
        assert runner.exists(PurePosixPath("data/dump.rdb"))
        assert not runner.exists(PurePosixPath("data/appendonlydir"))
        assert _contents(node) == source.expected


class Misplaced(Redis):
    """Lays the RDB down as dump.rdb but starts with appendonly on: Redis 7 then
    ignores the RDB and starts empty, which finish_restore must notice."""

    restoring = False

    def restore(self, *args: Any, **kwargs: Any) -> None:
        self.restoring = True
        try:
            super().restore(*args, **kwargs)
        finally:
            self.restoring = False

    def settings(self, ctx: NodeContext) -> dict[str, str]:
        values = super().settings(ctx)
        return {**values, "appendonly": "no"} if self.restoring else values


def test_a_node_that_started_empty_is_noticed(source: Source) -> None:
    with pytest.raises(RuntimeError, match=rf"loaded 0 keys .* holds {len(source.expected)}"), \
            running_node(Misplaced(), restore=source.restore()):
        pass


def test_point_in_time_is_refused(source: Source) -> None:
    runner = mock.Mock(spec=NodeRunner)
    for target in ("2030-01-01T00:00:00+00:00", "2020-01-01T00:00:00+00:00"):
        with pytest.raises(ValueError, match="only whole backups"):
            ENGINE.restore(source.node.ctx, runner, iter(source.chunks), source.meta, [], target)
        with pytest.raises(ValueError, match="only whole backups"):
            ENGINE.finish_restore(source.node.ctx, source.node.ca_file, runner, target)
    with pytest.raises(ValueError, match="no log"):
        ENGINE.restore(source.node.ctx, runner, iter(source.chunks), source.meta,
                       [("log.1", iter([b"x"]))], None)
    with pytest.raises(ValueError, match="not a Redis backup"):
        ENGINE.restore(source.node.ctx, runner, iter(source.chunks), {"format": "wal"}, [], None)
    assert runner.method_calls == []


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda c: c[:-1], "cut short"),  # the last chunk lost
    (lambda c: [*c[:-1], c[-1][:-5]], "cut short"),  # inside the checksum
    (lambda c: [*c[:-1], c[-1][:-20000]], "cut short"),  # inside a value
    (lambda c: [*c[:-1], _flip(c[-1], len(c[-1]) // 2)], "damaged"),  # checksum mismatch
    (lambda c: [c[0], c[1][:5000], c[-1]], "damaged or cut short"),  # a middle lost
    (lambda c: c[:1], "cut short"),  # the header alone
    (lambda c: [b"".join(c)[:10]], "cut short: it ends inside its header"),
    (lambda c: [b"REDIS0010" + b"".join(c)], "not a Hoard Redis backup"),
])
def test_damaged_backup_is_refused(source: Source, damage: Any, message: str) -> None:
    chunks = damage(list(source.chunks))
    with pytest.raises(RuntimeError, match=message), \
            running_node(ENGINE, restore=source.restore(chunks)):
        pass


@pytest.mark.parametrize("end_mark", [b"", b"0123456789abcdef0123456789abcdef01234567"])
def test_rdb_only_any_chunking(end_mark: bytes) -> None:
    """Whatever the chunks (a whole one, one byte at a time at the end, the end
    spread over several), the RDB comes out whole and the end mark does not."""
    rdb = b"REDIS0010" + os.urandom(5000) + b"\xff" + os.urandom(8)
    stream = rdb + end_mark
    for cuts in ([], [3, 2000], [4000, *range(len(stream) - 60, len(stream))],
                 [len(stream) - 45, len(stream) - 3], list(range(1, len(stream), 997))):
        parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert b"".join(rdb_only(iter(parts))) == rdb
    with pytest.raises(RuntimeError, match="cut short"):
        b"".join(rdb_only(iter([stream[:-len(end_mark) - 1]])))


def test_empty_node_round_trip() -> None:
    with running_node(ENGINE) as empty:
        chunks, meta = take_backup(empty)
        assert meta["keys"] == "0"
        restore = Restore(backup=chunks, meta=meta, logs=[], target=None,
                          service=empty.ctx.service, admin=empty.ctx.admin)
    with running_node(ENGINE, restore=restore) as node:
        assert _contents(node) == {} and ENGINE.list_users(node.ctx, node.ca_file) == []


def test_snapshot_is_bounded_in_time(source: Source) -> None:
    """A snapshot waits a bounded time for a running background save, and is
    abandoned when it takes too long (the server's child is slowed down here)."""
    node, engine = source.node, Redis()
    engine.snapshot_wait, engine.snapshot_timeout = 0.3, 0.5
    runner = node.provider.runner(node.ctx.node_id)
    with _service(node) as svc:
        svc.config_set("rdb-key-save-delay", 20000)  # us per key: ~2 s per snapshot
        try:
            svc.bgsave()
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="background save or AOF rewrite"):
                list(engine.backup(node.ctx, node.ca_file, runner, {}))
            assert time.monotonic() - started < 2
            while svc.info("persistence")["rdb_bgsave_in_progress"]:
                time.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=r"did not finish within 0\.5 s"):
                list(engine.backup(node.ctx, node.ca_file, runner, {}))
            assert time.monotonic() - started < 2
        finally:
            svc.config_set("rdb-key-save-delay", 0)
    chunks, meta = take_backup(node)  # waits for the abandoned child to go
    assert b"".join(chunks)[-9] == 0xFF and "end_time" in meta
    assert not Path(runner.abspath(PurePosixPath("restore"))).exists()
