"""Operations announced by an API process are started by the worker that owns
their cluster's shard, and by no other (hoard/workflows/dispatch.py), on a real
PostgreSQL store: each owner starts exactly its own, a malformed or ended one
is ignored, and a listening connection the server ends is made again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.ids import new_id
from hoard.settings import libpq_url
from hoard.store import models, operations
from hoard.store.db import Store
from hoard.store.models import shard_of
from hoard.workflows import dispatch
from hoard.workflows.dispatch import Dispatcher, announce
from tests.pgserver import migrated_store

PROJECT = new_id()


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with migrated_store("postgresql") as store:
        with store.session() as s:
            s.add(models.Project(id=PROJECT, name="dispatch", quota_clusters=99,
                                 quota_nodes=99, quota_storage_gb=99))
        yield store


class Started:
    """What a dispatcher started, as its worker would run it."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, op: models.Operation) -> None:
        assert op.status == OperationStatus.RUNNING and op.kind == "create"
        with self.changed:
            self.ids.append(op.id)
            self.changed.notify_all()

    def until(self, count: int, timeout: float = 10) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.ids) >= count, timeout)
            return list(self.ids)


def recorded(store: Store, count: int) -> list[models.Operation]:
    """``count`` clusters with a running create each, as the API records them."""
    ops = []
    with store.session() as s:
        for _ in range(count):
            cluster_id = new_id()
            s.add(models.Cluster(
                id=cluster_id, project_id=PROJECT, name=f"c{cluster_id[-12:]}", engine="redis",
                version="7.0", size="nano", node_count=1, storage_gb=1,
                status=ClusterStatus.BUILDING, provider="local", admin_user="admin",
                admin_password="x", service_password="x"))
            s.flush()
            ops.append(operations.new_operation(s, PROJECT, cluster_id, "create", ["place"]))
        s.flush()
        s.expunge_all()
    return ops


def listening(store: Store, owned: set[int]) -> tuple[Dispatcher, Started]:
    started = Started()
    worker = Dispatcher(store, lambda: frozenset(owned), started)
    worker.start()
    return worker, started


def test_each_operation_is_started_by_its_shards_owner_alone(store: Store) -> None:
    ops = recorded(store, 24)
    shards = sorted({shard_of(op.cluster_id or "") for op in ops})
    halves = set(shards[::2]), set(shards[1::2])
    first, started_first = listening(store, halves[0])
    second, started_second = listening(store, halves[1])
    nobody, started_nobody = listening(store, set())
    try:
        for op in ops:
            announce(store, op)
        expected = [{op.id for op in ops if shard_of(op.cluster_id or "") in half}
                    for half in halves]
        assert set(started_first.until(len(expected[0]))) == expected[0]
        assert set(started_second.until(len(expected[1]))) == expected[1]
        time.sleep(0.5)  # nothing more arrives: each was started once, by one worker
        assert sorted(started_first.ids + started_second.ids) == sorted(op.id for op in ops)
        assert started_nobody.ids == []
    finally:
        for worker in (first, second, nobody):
            worker.stop()


def test_malformed_and_ended_operations_are_ignored(store: Store) -> None:
    done, running = recorded(store, 2)
    with store.session() as s:
        operations.finish(s, done.id)
    every = set(range(models.SHARDS))
    worker, started = listening(store, every)
    try:
        with store.engine.connect() as conn:
            for junk in ("", "one-word", f"{running.id} not-a-shard", "a b c"):
                conn.execute(text("SELECT pg_notify(:c, :p)"),
                             {"c": dispatch.CHANNEL, "p": junk})
            conn.commit()
        announce(store, done)
        announce(store, running)
        assert started.until(1) == [running.id]
        time.sleep(0.5)
        assert started.ids == [running.id]
    finally:
        worker.stop()


def test_a_listening_connection_ended_by_the_server_is_made_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "RECONNECT", 0.1)
    worker, started = listening(store, set(range(models.SHARDS)))
    try:
        url = libpq_url(store.url)
        with psycopg.connect(url, autocommit=True) as conn:
            ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = 'hoard-dispatch'").fetchall()
        assert ended == [(True,)]
        deadline = time.monotonic() + 10
        op = recorded(store, 1)[0]
        while not started.ids and time.monotonic() < deadline:
            announce(store, op)  # until the new listen is in place
            time.sleep(0.2)
        assert started.ids[:1] == [op.id]
    finally:
        worker.stop()
