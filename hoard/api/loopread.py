"""Reads answered on the API's event loop, for the cluster list.

Why: on this path handing a read to a thread and back cost more than the read
(about 0.7 ms on a busy 2-core machine, against a 0.3 ms query). But the loop
must never wait on something slow or shared, or every request waits with it:

- **PostgreSQL** waits on the network: psycopg's async connections wait
  without blocking the loop, and psycopg_pool keeps a few open per process,
  reconnecting any that break.
- **SQLite** is a local file: a small page is read synchronously, on a
  connection of the loop's own. Not from the store's shared pool, whose
  connections the worker threads of ``hoard serve`` hold: waiting for one of
  those would stall the loop. In WAL mode a reader does not wait for writers
  (a rare busy moment, such as a checkpoint restarting the log, waits at most 1 s).

Everything else keeps the synchronous store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Dialect
from sqlalchemy.engine import make_url

POOL_SIZE = 4  # concurrent PostgreSQL reads per API process; more would only queue on 2 cores
SQLITE_MAX_ROWS = 100  # larger SQLite pages go to a thread: the loop is not held long


class LoopReader(Protocol):
    dialect: Dialect  # the store's: the SQL is compiled for the same driver
    max_rows: int  # larger reads are not for the loop

    async def open(self) -> None: ...
    async def fetch(self, sql: str, params: Any) -> Sequence[Sequence[Any]]: ...
    async def close(self) -> None: ...


def conninfo(url: str) -> str:
    """A libpq connection string from the store's SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresReader:
    """A small pool of autocommit connections, open from the API's start (in the
    background: a store that is not up yet fails reads, not the start)."""

    max_rows = 1_000_000

    def __init__(self, url: str, dialect: Dialect) -> None:
        self.dialect = dialect
        self._pool = AsyncConnectionPool(conninfo(url), min_size=1, max_size=POOL_SIZE,
                                         kwargs={"autocommit": True}, open=False)

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def fetch(self, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        async with self._pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    async def close(self) -> None:
        await self._pool.close()


class SqliteReader:
    """One read-only connection, used only by the event loop's thread."""

    max_rows = SQLITE_MAX_ROWS

    def __init__(self, url: str, dialect: Dialect) -> None:
        self.dialect = dialect
        self._path = make_url(url).database or ""
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True,
                                     check_same_thread=False, isolation_level=None, timeout=1.0)
        self._conn.execute("PRAGMA query_only=ON")

    async def fetch(self, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        assert self._conn is not None, "opened at the API's start"
        return self._conn.execute(sql, params).fetchall()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def reader_for(url: str, dialect: Dialect) -> LoopReader:
    return SqliteReader(url, dialect) if url.startswith("sqlite") else PostgresReader(url, dialect)
