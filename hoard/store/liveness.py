"""Checking a pooled PostgreSQL connection before use only after it has rested.

SQLAlchemy's ``pool_pre_ping`` sends a round trip on every checkout. A workflow
step opens a few short transactions, so in a burst of creates those pings were
a fifth of a worker's round trips to the store (and DBOS's), each one a thread
giving up the GIL and waiting to get it back. A connection handed back a moment
ago is as alive as a ping would show; one that rested longer than ``REST``
seconds is pinged, and a dead one (the store restarted or failed over while it
rested) is replaced before anyone uses it: the pool retries the checkout with a
new connection. A connection that dies within ``REST`` of its last use fails
its next statement, as one dying mid-transaction always could.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool

REST = 1.0  # seconds a connection may rest in the pool and be used without a ping
_SINCE = "hoard_rested_since"


def _returned(_dbapi_conn: Any, record: Any) -> None:
    record.info[_SINCE] = time.monotonic()


def _ping_if_rested(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    since = record.info.get(_SINCE)
    if since is None or time.monotonic() - since < REST:
        return  # new (just connected), or in use a moment ago
    if isinstance(dbapi_conn, psycopg.Connection):
        try:
            ping(dbapi_conn)
        except psycopg.Error as exc:
            raise DisconnectionError(f"a pooled store connection was dead: {exc}") from exc


def ping(conn: psycopg.Connection[Any]) -> None:
    """One empty statement outside any transaction (the pool holds it idle)."""
    before = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(";")
    finally:
        if not conn.closed:
            conn.autocommit = before


def install() -> None:
    """For every pool in this process: Hoard's store and DBOS's system database
    (both made with ``pool_pre_ping`` off). Idempotent."""
    if not event.contains(Pool, "checkout", _ping_if_rested):
        event.listen(Pool, "checkin", _returned)
        event.listen(Pool, "checkout", _ping_if_rested)
