"""Reads on the event loop for an API process on a PostgreSQL store.

Why: on this path (the cluster list) handing a read to a thread and back cost
more than the read itself (about 0.7 ms on a busy 2-core machine, against a
0.3 ms query), and a blocking read on the event loop would stall every other
request while it waits on the network. psycopg's async connections wait
without blocking the loop; psycopg_pool keeps a few open per process,
reconnecting any that break. Everything else keeps the synchronous store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Dialect
from sqlalchemy.engine import make_url

POOL_SIZE = 4  # concurrent reads per API process; more would only queue on 2 cores


def conninfo(url: str) -> str:
    """A libpq connection string from the store's SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncReader:
    """A small pool of read-only autocommit connections, open from the API's start
    (in the background: a store that is not up yet fails reads, not the start)."""

    def __init__(self, url: str, dialect: Dialect) -> None:
        self.dialect = dialect  # the store's: the SQL is compiled for the same driver
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
