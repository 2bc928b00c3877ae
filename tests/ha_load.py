"""A writer that keeps writing through a cluster's read-write endpoint, for
failover tests and the failover benchmark: it records every acknowledged write
and when writes stopped and started succeeding again."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import psycopg

CONNECT_TIMEOUT = 2
RETRY_DELAY = 0.05


@dataclass
class Writer:
    """Writes rows 1, 2, 3, ... (keys for Redis), one per round trip, until stopped."""

    engine: str
    uri: str
    acked: list[int] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)  # monotonic time of each ack
    errors: list[tuple[float, str]] = field(default_factory=list)
    server_port: int | None = None  # the port of the server the writer is connected to
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Writer:
        with _Session(self.engine, self.uri) as session:
            session.setup()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                with _Session(self.engine, self.uri) as session:
                    self.server_port = None  # not the last session's, if this one cannot say
                    with contextlib.suppress(Exception):  # only informative
                        self.server_port = session.server_port()
                    while not self._stop.is_set():
                        n += 1
                        session.write(n)
                        self.acked.append(n)
                        self.successes.append(time.monotonic())
            except Exception as exc:  # the endpoint or the primary went away: reconnect
                self.errors.append((time.monotonic(), str(exc).splitlines()[0][:200]
                                    if str(exc) else type(exc).__name__))
                time.sleep(RETRY_DELAY)

    def wait_writes(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` more writes have been acknowledged."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            assert time.monotonic() < deadline, f"writes stalled; errors: {self.errors[-3:]}"
            time.sleep(0.02)

    def recovered_after(self, moment: float, timeout: float = 60) -> float:
        """Seconds from ``moment`` until the first write acknowledged after the first
        failure following it (0 if no write failed)."""
        deadline = time.monotonic() + timeout
        while True:
            failures = [t for t, _ in self.errors if t >= moment]
            if failures:
                later = [t for t in self.successes if t > failures[0]]
                if later:
                    return later[0] - moment
            elif self.successes and self.successes[-1] > moment + 3:
                return 0.0  # kept writing through it
            assert time.monotonic() < deadline, (
                f"writes did not come back within {timeout:.0f}s; errors: {self.errors[-3:]}")
            time.sleep(0.02)


def present(engine: str, uri: str, timeout: float = 30) -> set[int]:
    """Every row (key) the writer's writes left on the cluster (retried while the
    endpoint settles after a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _Session(engine, uri) as session:
                return session.read_all()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class _Session:
    """One connection of the engine's own client library."""

    def __init__(self, engine: str, uri: str) -> None:
        self.engine = engine
        self.uri = uri
        self.conn: Any = None

    def __enter__(self) -> _Session:
        if self.engine == "postgresql":
            self.conn = psycopg.connect(self.uri, connect_timeout=CONNECT_TIMEOUT,
                                        autocommit=True)
        elif self.engine == "mariadb":
            import pymysql

            parsed, query = urlparse(self.uri), parse_qs(urlparse(self.uri).query)
            self.conn = pymysql.connect(
                host=parsed.hostname, port=parsed.port, user=unquote(parsed.username or ""),
                password=unquote(parsed.password or ""), database=parsed.path.lstrip("/"),
                ssl_ca=query["ssl_ca"][0], ssl_verify_identity=True,
                connect_timeout=CONNECT_TIMEOUT, read_timeout=5, write_timeout=5,
                autocommit=True)
        else:
            import redis

            self.conn = redis.Redis.from_url(self.uri, socket_timeout=2,
                                             socket_connect_timeout=CONNECT_TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # the server may be gone
            self.conn.close()

    def setup(self) -> None:
        if self.engine == "postgresql":
            self.conn.execute("CREATE TABLE IF NOT EXISTS ha_probe (id bigint PRIMARY KEY)")
        elif self.engine == "mariadb":
            with self.conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS ha_probe (id BIGINT PRIMARY KEY)")
        else:
            self.conn.ping()

    def write(self, n: int) -> None:
        if self.engine == "postgresql":
            self.conn.execute("INSERT INTO ha_probe VALUES (%s) ON CONFLICT DO NOTHING", (n,))
        elif self.engine == "mariadb":
            with self.conn.cursor() as cur:
                cur.execute("INSERT IGNORE INTO ha_probe VALUES (%s)", (n,))
        else:
            self.conn.set(f"ha:{n}", "1")

    def server_port(self) -> int:
        """Which server the endpoint connected this session to, by its port."""
        if self.engine == "postgresql":
            return int(self.conn.execute("SELECT inet_server_port()").fetchone()[0])
        if self.engine == "mariadb":
            with self.conn.cursor() as cur:
                cur.execute("SELECT @@port")
                return int(cur.fetchone()[0])
        laddr = self.conn.client_info()["laddr"]  # the server's end of this connection
        return int(str(laddr).rsplit(":", 1)[1])

    def read_all(self) -> set[int]:
        if self.engine == "postgresql":
            return {row[0] for row in self.conn.execute("SELECT id FROM ha_probe")}
        if self.engine == "mariadb":
            with self.conn.cursor() as cur:
                cur.execute("SELECT id FROM ha_probe")
                return {row[0] for row in cur.fetchall()}
        return {int(k.decode().split(":")[1]) for k in self.conn.scan_iter("ha:*", count=1000)}
