"""A throwaway PostgreSQL server to hold Hoard's own state store in tests.

Started by hand (initdb + pg_ctl) as the database OS user, trust auth on
127.0.0.1 only, stopped and removed by the fixture that made it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hoard.store.db import Store, migrate
from tests.conftest import free_port, make_state_dir

BIN = Path("/usr/lib/postgresql/15/bin")
AS_DB_USER = ["setpriv", "--reuid=hoard-db", "--regid=hoard-db", "--clear-groups", "--"]


def _ensure_user() -> None:
    # The local provider creates this user on first use; tests may run first.
    from hoard.providers.osusers import service_user

    service_user("hoard-db")


@contextmanager
def postgres_store() -> Iterator[str]:
    """Yield a SQLAlchemy URL of an empty database on a fresh server."""
    _ensure_user()
    root = make_state_dir()
    data = root / "data"
    shutil.chown(root, "hoard-db", "hoard-db")
    port = free_port()
    subprocess.run([*AS_DB_USER, str(BIN / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*AS_DB_USER, str(BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(root / "log"), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start"], check=True, capture_output=True)
    try:
        subprocess.run([*AS_DB_USER, str(BIN / "createdb"), "-h", "127.0.0.1", "-p",
                        str(port), "-U", "postgres", "hoard"], check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/hoard"
    finally:
        subprocess.run([*AS_DB_USER, str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def migrated_store(kind: str) -> Iterator[Store]:
    """An empty, migrated state store of ``kind``: "sqlite" or "postgresql"."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'state.sqlite'}"
            migrate(url)
            yield Store(url)
        return
    with postgres_store() as url:
        migrate(url)
        store = Store(url)
        try:
            yield store
        finally:
            store.engine.dispose()
