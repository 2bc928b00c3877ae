"""Connecting to the state store and bringing its schema up to date."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from hoard.store import liveness

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    # JSON columns (node limits, pending settings) are read on every list page:
    # orjson parses them several times faster than the json module.
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10},
                               json_deserializer=orjson.loads)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Every connection the pool may hold is kept: a burst of workflows (each step
    # a few short transactions) otherwise opened and closed "overflow"
    # connections all along, a new PostgreSQL session each time (about a tenth
    # of a worker's time in 50 concurrent creates). The same 30 at most as before.
    # A connection is pinged only after it rested (liveness.py), not each checkout.
    liveness.install()
    return create_engine(url, pool_size=30, max_overflow=0, json_deserializer=orjson.loads)


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Apply every Alembic migration up to ``revision`` (idempotent)."""
    command.upgrade(_config(url), revision)


def check_schema(url: str) -> None:
    """Refuse to run on a store older than this release needs. A newer one is
    fine: migrations only expand (new tables, new nullable or defaulted
    columns) in the release that needs them, and drop what the previous
    release used one release later, so old and new processes share a store
    while an upgrade rolls through."""
    head = ScriptDirectory.from_config(_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    if current is None or head is None or int(current) < int(head):
        raise RuntimeError(f"the state store is at schema {current or 'none'}, this release "
                         f"needs {head}: run `hoard migrate` first")


def lock_single_process(database: Path) -> IO[bytes]:
    """Hold an exclusive lock beside a SQLite store for this process's life: SQLite
    has no leases across processes, so a second Hoard process on it is refused
    instead of risking two workers on one workflow."""
    handle = open(database.with_name(database.name + ".lock"), "a+b")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        raise RuntimeError(f"the SQLite store {database} is in use by {holder}: one Hoard "
                         "process per SQLite store; for several, use PostgreSQL "
                         "(HOARD_DATABASE_URL)") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}".encode())
    handle.flush()
    return handle


class Store:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads only (Core, no ORM session): nothing is flushed
        or committed; its transaction is rolled back when it ends, which costs
        nothing after a SELECT."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session
