"""Redis backups and restores on nodes reached only by exec (the Kubernetes
provider's runner; tests/kube_backup_support.py says what stands in for the
pod): redis-cli's snapshot and redis-check-rdb run in the "pod", every byte
through Hoard's pipeline and backup store; the restore holds exactly the
backup's keys and values. Redis has no change log: no point-in-time restore."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from hoard.engines.redis import Redis
from tests.kube_backup_support import ExecNode, ExecWorld, exec_world, restore_of, secret_free

pytestmark = pytest.mark.integration
ENGINE = Redis()


def _client(node: ExecNode, db: int = 0) -> redis.Redis:
    creds = node.ctx.service
    return redis.Redis(host=node.ctx.host, port=node.ctx.port, username=creds.user,
                       password=creds.password, db=db, ssl=True, ssl_ca_certs=node.ca_file,
                       socket_timeout=10)


def _contents(node: ExecNode) -> dict[tuple[int, bytes], object]:
    found: dict[tuple[int, bytes], object] = {}
    for db in (0, 3):
        with _client(node, db) as client:
            for key in client.scan_iter(count=1000):
                kind = client.type(key).decode()
                found[(db, key)] = (kind, client.get(key) if kind == "string"
                                    else client.hgetall(key))
    return found


@pytest.fixture(scope="module")
def world() -> Iterator[ExecWorld]:
    with exec_world("hoard-kredis-") as served:
        yield served


def test_backup_and_restore_by_exec(world: ExecWorld) -> None:
    with world.node(ENGINE) as source:
        with _client(source) as client:
            for n in range(500):
                client.set(f"k{n}", f"v{n}")
            client.hset("h", mapping={"a": "1", "b": "2"})
        with _client(source, 3) as client:
            client.set("other", "db3")
        expected = _contents(source)
        backup = world.backup(source)
        with _client(source) as client:
            client.set("after", "the backup")  # not in the restore
        assert backup.meta["keys"] == "502"
        with world.node(ENGINE, restore=restore_of(source, backup, [], None)) as node:
            assert _contents(node) == expected
        secret_free(world, source.ctx.service, source.ctx.admin)
    assert any("redis-cli" in item for item in world.argv_items())
    assert any("redis-check-rdb" in item for item in world.argv_items())


def test_point_in_time_is_refused(world: ExecWorld) -> None:
    with world.node(ENGINE) as source:
        backup = world.backup(source)
        with pytest.raises(ValueError, match="no point-in-time log"):
            ENGINE.restore(source.ctx, source.runner, world.read(backup), backup.meta, [],
                           "2026-01-01T00:00:00+00:00")
