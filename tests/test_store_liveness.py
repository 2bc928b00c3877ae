"""Pooled store connections are pinged only after they rested, and one found dead
then is replaced before anyone uses it (hoard/store/liveness.py), on a real
PostgreSQL store whose server ends every session, as a restart or failover does."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from hoard.settings import libpq_url
from hoard.store import liveness
from hoard.store.db import Store
from tests.pgserver import migrated_store

HELD = 4


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with migrated_store("postgresql") as store:
        yield store


def backends_in_use(store: Store, count: int) -> set[int]:
    """The server process ids of ``count`` pooled connections, held at once so the
    pool keeps them all."""
    pids: set[int] = set()
    barrier = threading.Barrier(count)

    def hold() -> None:
        with store.session() as s:
            pids.add(int(s.execute(text("SELECT pg_backend_pid()")).scalar_one()))
            barrier.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return pids


def end_sessions(store: Store, pids: set[int]) -> None:
    url = libpq_url(store.url)
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_rested_connections_found_dead_are_replaced_unseen(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    before = backends_in_use(store, HELD)
    assert len(before) == HELD
    end_sessions(store, before)
    monkeypatch.setattr(liveness, "REST", 0.0)  # every connection has rested
    after = backends_in_use(store, HELD)  # no error: each dead one was replaced
    assert len(after) == HELD and not after & before


def test_connections_in_use_a_moment_ago_are_not_pinged(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[object] = []
    monkeypatch.setattr(liveness, "ping", pings.append)
    monkeypatch.setattr(liveness, "REST", 3600.0)
    for _ in range(5):
        with store.session() as s:
            s.execute(text("SELECT 1"))
    assert pings == []
    monkeypatch.setattr(liveness, "REST", 0.0)
    with store.session() as s:
        s.execute(text("SELECT 1"))
    assert len(pings) == 1
