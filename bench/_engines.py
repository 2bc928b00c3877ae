"""MariaDB and Redis for the benchmarks: the client connection each engine's
library makes with Hoard's credentials URI (as tests/engine_clients.py does),
servers started by hand as the database OS user (optionally inside cgroups,
joined by the same /bin/sh launcher as Hoard's), and self-signed certificates.
Every server listens on 127.0.0.1 on a port the kernel picked."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from _common import DB_USER, LAUNCHER, as_db_user, free_port, owned_dir, run_as_db_user

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
REDIS_SERVER = "/usr/bin/redis-server"
ENGINES = ("postgresql", "mariadb", "redis")


def uri_parts(uri: str) -> dict[str, Any]:
    """host, port, user, password, database and CA file of a credentials URI."""
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    ca = (query.get("ssl_ca") or query.get("ssl_ca_certs") or query.get("sslrootcert") or [""])
    return {"host": parsed.hostname, "port": parsed.port, "user": unquote(parsed.username or ""),
            "password": unquote(parsed.password or ""), "database": parsed.path.lstrip("/"),
            "ca": ca[0]}


def connect_once(engine: str, uri: str) -> None:
    """One connection with the engine's own client library, over TLS, verified."""
    if engine == "postgresql":
        import psycopg

        psycopg.connect(uri, connect_timeout=10).close()
    elif engine == "mariadb":
        import pymysql

        p = uri_parts(uri)
        pymysql.connect(host=p["host"], port=p["port"], user=p["user"], password=p["password"],
                        database=p["database"], ssl_ca=p["ca"], ssl_verify_identity=True,
                        connect_timeout=10).close()
    elif engine == "redis":
        import redis

        with redis.Redis.from_url(uri, socket_timeout=10) as client:
            client.ping()
    else:
        raise ValueError(engine)


class Server:
    """A server in the foreground, in its own session, as the OS account ``user``,
    inside the cgroups of ``procs_files`` (if any). Stopped with SIGTERM."""

    def __init__(self, argv: list[str], cwd: Path, procs_files: list[str] | None = None,
                 user: str = DB_USER) -> None:
        self.argv, self.cwd, self.procs_files, self.user = argv, cwd, procs_files or [], user
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOARD_CGROUP_PROCS": " ".join(self.procs_files)}
        with open(self.cwd / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", LAUNCHER, "bench-launch", *as_db_user(self.argv, self.user)],
                cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the server's whole session (for data thrown away next: no
        shutdown checkpoint or snapshot), and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def wait_until(self, probe: Callable[[], None], timeout: float = 120,
                   poll: float = 0.02) -> None:
        """Call ``probe`` until it does not raise; fail early if the server exited."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe()
                return
            except Exception:
                assert self.proc is not None
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (self.cwd / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.argv[0]} not reachable:\n{log}") from None
                time.sleep(poll)


def self_signed(root: Path) -> tuple[Path, Path]:
    """An RSA-2048 certificate for 127.0.0.1 and its key, readable by the server."""
    cert, key = root / "server.crt", root / "server.key"
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes",
                    "-newkey", "rsa:2048", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    for path, mode in ((cert, 0o644), (key, 0o600)):
        shutil.chown(path, "hoard-db", "hoard-db")
        path.chmod(mode)
    return cert, key


# --- MariaDB -----------------------------------------------------------------

def mariadb_install(data: Path, cwd: Path) -> None:
    run_as_db_user([INSTALL_DB, "--no-defaults", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], cwd=cwd)


def mariadb_server(data: Path, port: int, extra: list[str] | None = None,
                   procs_files: list[str] | None = None) -> Server:
    return Server([MARIADBD, "--no-defaults", f"--datadir={data}", f"--port={port}",
                   "--bind-address=127.0.0.1", f"--socket={data}/s.sock", *(extra or [])],
                  data.parent, procs_files)


def mariadb_root(data: Path, **kw: Any) -> Any:
    import pymysql

    return pymysql.connect(unix_socket=f"{data}/s.sock", user="root", connect_timeout=5, **kw)


def raw_mariadb(base: Path, index: int) -> tuple[float, dict[str, float]]:
    """mariadb-install-db, start mariadbd, connect once as root over the socket."""
    trial = owned_dir(base / f"mariadb-{index}")
    data = trial / "data"
    server = mariadb_server(data, free_port())
    try:
        t0 = time.perf_counter()
        mariadb_install(data, trial)
        t1 = time.perf_counter()
        server.start()
        server.wait_until(lambda: mariadb_root(data).close())
        t2 = time.perf_counter()
        return t2 - t0, {"mariadb-install-db": t1 - t0, "mariadbd start + connect": t2 - t1}
    finally:
        server.stop()
        shutil.rmtree(trial, ignore_errors=True)


# Debian's 50-server.cnf (bind-address, character set, collation; expire_logs_days
# has no effect without a binary log) plus TLS with a self-signed certificate.
def stock_mariadb(root: Path, procs_files: list[str], binlog: bool = False
                  ) -> tuple[Server, dict[str, Any]]:
    """A stock server in the cgroups, and a TLS-only account ``bench`` for the load.
    ``binlog``: also a binary log as Hoard keeps one (ROW, sync_binlog = 1, compressed)."""
    data = root / "data"
    mariadb_install(data, root)
    cert, key = self_signed(root)
    port = free_port()
    server = mariadb_server(data, port, [
        "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
        f"--ssl-cert={cert}", f"--ssl-key={key}",
        *([f"--log-bin={data}/binlog", "--binlog-format=ROW", "--server-id=1",
           "--sync-binlog=1", "--log-bin-compress=ON"] if binlog else [])], procs_files)
    server.start()
    password = secrets.token_urlsafe(18)
    try:
        server.wait_until(lambda: mariadb_root(data).close())
        with mariadb_root(data, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE USER bench@'%%' IDENTIFIED BY %s REQUIRE SSL", (password,))
            cur.execute("GRANT ALL ON *.* TO bench@'%'")
    except BaseException:
        server.stop()
        raise
    return server, {"host": "127.0.0.1", "port": port, "user": "bench", "password": password,
                    "database": "app", "ca": str(cert)}


# --- Redis -------------------------------------------------------------------

def redis_server(data: Path, args: list[str], procs_files: list[str] | None = None) -> Server:
    return Server([REDIS_SERVER, "--bind", "127.0.0.1", "--dir", str(data), *args],
                  data.parent, procs_files)


def raw_redis(base: Path, index: int) -> tuple[float, dict[str, float]]:
    """Start redis-server with no persistence, PING until it answers."""
    import redis

    trial = owned_dir(base / f"redis-{index}")
    data = owned_dir(trial / "data")
    port = free_port()
    server = redis_server(data, ["--port", str(port), "--save", ""])

    def ping() -> None:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
            client.ping()

    try:
        t0 = time.perf_counter()
        server.start()
        server.wait_until(ping)
        return time.perf_counter() - t0, {"redis-server start + PING": time.perf_counter() - t0}
    finally:
        server.stop()
        shutil.rmtree(trial, ignore_errors=True)


def stock_redis(root: Path, procs_files: list[str], appendonly: bool
                ) -> tuple[Server, dict[str, Any]]:
    """redis-server with Debian's defaults (no maxmemory, save 3600 1 300 100 60
    10000, appendonly no unless ``appendonly``), TLS only, a password."""
    import redis

    data = owned_dir(root / "data")
    cert, key = self_signed(root)
    port, password = free_port(), secrets.token_urlsafe(18)
    server = redis_server(data, [
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-auth-clients", "no", "--requirepass", password,
        "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec"],
        procs_files)
    server.start()

    def ping() -> None:
        with redis.Redis(host="127.0.0.1", port=port, password=password, ssl=True,
                         ssl_ca_certs=str(cert), socket_timeout=2) as client:
            client.ping()

    try:
        server.wait_until(ping)
    except BaseException:
        server.stop()
        raise
    return server, {"host": "127.0.0.1", "port": port, "user": "default", "password": password,
                    "ca": str(cert)}


RAW_TRIALS: dict[str, Callable[[Path, int], tuple[float, dict[str, float]]]] = {
    "mariadb": raw_mariadb, "redis": raw_redis}
