"""Each engine's own client library, behind three small functions, so one
conformance suite can drive every engine: connect with the URI Hoard returns,
write and read, and read a setting's current value."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import psycopg


@dataclass(frozen=True)
class Probe:
    dynamic: tuple[str, Any, str]  # parameter, value to set, value the server then shows
    restart: tuple[str, Any, str]
    memory_setting: str  # a setting derived from the size


def _parts(uri: str) -> tuple[Any, dict[str, list[str]]]:
    parsed = urlparse(uri)
    return parsed, parse_qs(parsed.query)


def write_read(engine: str, uri: str, user: str | None = None, password: str | None = None,
               database: str | None = None, key: str = "hoard:probe") -> str:
    """Write a value and read it back, as the URI's account or ``user``/``password``."""
    if engine == "postgresql":
        params: dict[str, Any] = {}
        if user:
            params.update(user=user, password=password)
        if database:
            params["dbname"] = database
        with psycopg.connect(uri, connect_timeout=10, **params) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS probe (k text PRIMARY KEY, v text)")
            conn.execute("INSERT INTO probe VALUES (%s, 'ok') ON CONFLICT (k) DO UPDATE "
                         "SET v = 'ok'", (key,))
            row = conn.execute("SELECT v FROM probe WHERE k = %s", (key,)).fetchone()
            return str(row[0]) if row else ""
    if engine == "mariadb":
        import pymysql

        parsed, query = _parts(uri)
        conn = pymysql.connect(
            host=parsed.hostname, port=parsed.port, user=user or unquote(parsed.username),
            password=password or unquote(parsed.password),
            database=database or parsed.path.lstrip("/"),
            ssl_ca=query["ssl_ca"][0], ssl_verify_identity=True,
            connect_timeout=10, autocommit=True,
        )
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS probe (k VARCHAR(64) PRIMARY KEY, v TEXT)")
            cur.execute("REPLACE INTO probe VALUES (%s, 'ok')", (key,))
            cur.execute("SELECT v FROM probe WHERE k = %s", (key,))
            row = cur.fetchone()
            return str(row[0]) if row else ""
    if engine == "redis":
        import redis

        client = redis.Redis.from_url(uri, socket_timeout=10)
        if user:
            parsed, query = _parts(uri)
            client = redis.Redis(host=parsed.hostname, port=parsed.port, username=user,
                                 password=password, ssl=True,
                                 ssl_ca_certs=query["ssl_ca_certs"][0], socket_timeout=10)
        with client:
            client.set(key, "ok")
            value = client.get(key)
            return value.decode() if value else ""
    raise AssertionError(f"no client for {engine}")


def show(engine: str, uri: str, setting: str) -> str:
    """The running server's current value of ``setting``, as the tenant admin sees it."""
    if engine == "postgresql":
        with psycopg.connect(uri, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting(%s)", (setting,)).fetchone()
            return str(row[0]) if row else ""
    if engine == "mariadb":
        import pymysql

        parsed, query = _parts(uri)
        conn = pymysql.connect(
            host=parsed.hostname, port=parsed.port, user=unquote(parsed.username),
            password=unquote(parsed.password), ssl_ca=query["ssl_ca"][0],
            ssl_verify_identity=True, connect_timeout=10)
        with conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES LIKE %s", (setting,))
            row = cur.fetchone()
            return str(row[1]) if row else ""
    if engine == "redis":
        import redis

        with redis.Redis.from_url(uri, socket_timeout=10) as client:
            if setting == "databases":  # not in INFO: count the selectable ones
                count = 0
                while count < 64:
                    try:
                        client.execute_command("SELECT", count)
                    except redis.ResponseError:
                        break
                    count += 1
                return str(count)
            # CONFIG is an admin command the tenant cannot run; INFO shows the rest.
            info = client.info("all")
            return str(info.get(setting.replace("-", "_"), ""))
    raise AssertionError(f"no client for {engine}")


PROBES: dict[str, Probe] = {
    "postgresql": Probe(dynamic=("work_mem", 8192, "8MB"),
                        restart=("max_connections", 77, "77"),
                        memory_setting="shared_buffers"),
    "mariadb": Probe(dynamic=("max_connections", 77, "77"),
                     restart=("thread_handling", "pool-of-threads", "pool-of-threads"),
                     memory_setting="innodb_buffer_pool_size"),
    "redis": Probe(dynamic=("maxmemory-policy", "allkeys-lru", "allkeys-lru"),
                   restart=("databases", 32, "32"),
                   memory_setting="maxmemory"),
}


def keys(engine: str, uri: str) -> set[str]:
    """Every key written by ``write_read`` (rows of the probe table, or Redis keys)."""
    if engine == "postgresql":
        with psycopg.connect(uri, connect_timeout=10) as conn:
            return {str(r[0]) for r in conn.execute("SELECT k FROM probe").fetchall()}
    if engine == "mariadb":
        import pymysql

        parsed, query = _parts(uri)
        conn = pymysql.connect(
            host=parsed.hostname, port=parsed.port, user=unquote(parsed.username),
            password=unquote(parsed.password), database=parsed.path.lstrip("/"),
            ssl_ca=query["ssl_ca"][0], ssl_verify_identity=True, connect_timeout=10)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT k FROM probe")
            return {str(r[0]) for r in cur.fetchall()}
    if engine == "redis":
        import redis

        with redis.Redis.from_url(uri, socket_timeout=10) as client:
            return {k.decode() for k in client.keys("*")}
    raise AssertionError(f"no client for {engine}")


def wait_innodb_checkpoint(run: Callable[[str], Sequence[Sequence[Any]]],
                           timeout: float = 20) -> None:
    """Until InnoDB checkpoints past everything written so far (``run``: a
    statement's rows, as an account allowed to set globals). A backup's
    ``to_lsn`` is the checkpoint it started from, and an incremental holds every
    page changed since its base's: without this, on a quiet server, both stay
    where the server's start left them."""
    run("SET GLOBAL innodb_max_dirty_pages_pct = 0")  # flush it all, now

    def lsn(name: str) -> int:
        found = re.search(name + r"\s+(\d+)", str(run("SHOW ENGINE INNODB STATUS")[0][2]))
        assert found
        return int(found[1])

    written, deadline = lsn("Log sequence number"), time.monotonic() + timeout
    while lsn("Last checkpoint at") < written:
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.1)
