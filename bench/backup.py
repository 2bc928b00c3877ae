"""Backup and restore throughput: Hoard's whole path against the engine's tool alone.

Hoard backup: POST /v2/clusters/{id}/backups until the operation succeeds (tool
stream, AES-256-GCM, checksum, fsynced file in the local backup store, workflow).
Hoard restore: POST /v2/clusters {"restore": {"backup_id"}} until it succeeds
(place, download + verify + decrypt into the tool's restore, start, finish, admin).
Raw backup: the same tool with Hoard's arguments and service account, run by hand as
the database OS user against the same server, stdout straight into a file in the
same state directory, then fsynced (as Hoard's store does). Raw restore: what a
person restoring that plain file by hand does, on a new filesystem of the node's
size (loop-mounted like a restored node's volume, made untimed): the tool work Hoard's
restore runs (tar -x + pg_verifybackup; mbstream -x + mariadb-backup --prepare; the
RDB written + redis-check-rdb), then the server started on the result as the
database OS user on a free port, with the source node's configuration and in cgroups
with the restored node's limits (a sibling under hoard/), until it serves
(PostgreSQL: connected and out of recovery; MariaDB: connected; Redis: PING
answered, i.e. the RDB loaded); the server is killed afterwards, untimed. The tool
steps alone are reported too. Throughput = plaintext stream size (the raw tool's
bytes, which Hoard encrypts) / seconds, MB = 10^6 bytes; ratio = Hoard / raw, target
>= 0.9. Sides alternate; each starts checkpointed, archiver drained, synced, settled
(SETTLE).

    .venv/bin/python bench/backup.py [--engine postgresql|mariadb|redis|all] [--gb 1] [--trials 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
from _common import (
    Hoard,
    as_db_user,
    db_user,
    free_port,
    load_note,
    make_state_dir,
    median,
    owned_dir,
    teardown,
    tenant_uri,
)
from _engines import Server

from hoard.domain.catalog import SIZES
from hoard.engines.postgresql.backup import TAR_EXTRACT
from hoard.providers import cgroups, volumes
from hoard.security.secrets import SecretBox
from hoard.store import models
from hoard.store.db import Store
from hoard.workflows.services import SERVICE_USER

ENGINES = ("postgresql", "mariadb", "redis")
MB, ROW, BATCH = 1e6, 1024, 65536
TOOL_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
SIZE_SQL = {"postgresql": "SELECT sum(pg_database_size(datname)) FROM pg_database "
                          "WHERE datallowconn",
            "mariadb": "SELECT SUM(file_size) FROM information_schema.innodb_sys_tablespaces"}


class Target:
    """A cluster's one node, as the raw tools reach it (Hoard's service account)."""

    def __init__(self, hoard: Hoard, client: httpx.Client, cluster_id: str, ca: str) -> None:
        box = SecretBox((hoard.state_dir / "secret.key").read_bytes().strip())
        store = Store(f"sqlite:///{hoard.state_dir / 'state.sqlite'}")
        with store.session() as s:
            cluster = s.get(models.Cluster, cluster_id)
            assert cluster is not None
            node = cluster.nodes[0]
            self.node_id, self.host, self.port = node.id, str(node.host), int(node.port or 0)
            self.password, self.version = box.open(cluster.service_password), cluster.version
        store.engine.dispose()
        self.cluster_id, self.ca = cluster_id, ca
        self.dir = hoard.state_dir / "nodes" / self.node_id
        # Raw tools reading the node's files run as the node's own OS account.
        self.user = pwd.getpwuid(self.dir.stat().st_uid).pw_name
        self.uri = tenant_uri(client, cluster_id)


def _at(stamp: str) -> float:
    """A time Hoard recorded (ISO-8601, UTC) as seconds since the epoch."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def timed(client: httpx.Client, method: str, url: str, body: dict[str, Any] | None = None,
          timeout: float = 1800) -> tuple[float, dict[str, Any], dict[str, float]]:
    """Seconds from sending the request until its operation finished, the response,
    and each step's seconds, all from the times Hoard recorded (its finished_at and
    the steps' started_at / finished_at, on this machine's clock). The operation is
    polled every 0.25 s: polling 50 times a second, as this script once did, kept
    Hoard's API busy in the very process doing the work and slowed a 3 s backup by
    0.3 to 1.3 s."""
    start = time.time()
    response = client.request(method, url, json=body)
    response.raise_for_status()
    op_id = response.json()["operation"]["id"]
    while time.time() - start < timeout:
        op = client.get(f"/v2/operations/{op_id}").json()
        if op["status"] != "running":
            if op["status"] != "succeeded":
                raise RuntimeError(f"{method} {url}: {op['status']}: {op['error']}")
            steps = {step["name"]: _at(step["finished_at"]) - _at(step["started_at"])
                     for step in op["steps"] if "finished_at" in step}
            return _at(op["finished_at"]) - start, response.json(), steps
        time.sleep(0.25)
    raise TimeoutError(f"{method} {url} still running after {timeout:.0f} s")


def tool(argv: list[str], t: Target, stdin: Any = None, stdout: Any = None,
         env: dict[str, str] | None = None) -> None:
    """``argv`` as the node's account, in the node's directory."""
    proc = subprocess.run(as_db_user(argv, t.user), cwd=t.dir, stdin=stdin,
                          env={**TOOL_ENV, **(env or {})}, stdout=stdout or subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.decode(errors='replace')[-2000:]}")


# --- per engine: connect, load, quiesce, raw backup, raw restore ---------------------------


# On a VM with free page reporting (virtio-balloon; this one reports free 2 MiB
# blocks to the host after about 2 s), memory freed by the previous measurement
# is fast to use again at first and slow once the host has taken it back (a
# fault in the host for every page the guest zeroes: `perf` showed a loading
# Redis spend ~5 s in clear_page_erms against ~1 s). Without a pause, a side that
# allocates sooner after the other side's server exited gets the fast pages.
SETTLE = 5.0


def pg_bin(t: Target, name: str) -> str:
    return f"/usr/lib/postgresql/{t.version}/bin/{name}"


def connect(engine: str, t: Target, tenant: bool = False) -> Any:
    """A client as Hoard's service account, or (``tenant``) as the URI's account."""
    parsed = urlparse(t.uri)
    user, password = ((unquote(parsed.username or ""), unquote(parsed.password or ""))
                      if tenant else (SERVICE_USER, t.password))
    if engine == "postgresql":
        import psycopg

        return psycopg.connect(host=t.host, port=t.port, user=user, password=password,
                               dbname="postgres", sslmode="verify-full", sslrootcert=t.ca,
                               autocommit=True, connect_timeout=10)
    if engine == "mariadb":
        import pymysql

        return pymysql.connect(host=t.host, port=t.port, user=user, password=password,
                               database=parsed.path.lstrip("/") if tenant else None,
                               ssl_ca=t.ca, ssl_verify_identity=True, autocommit=True,
                               connect_timeout=10, read_timeout=1800)
    import redis

    return redis.Redis(host=t.host, port=t.port, username=user, password=password, ssl=True,
                       ssl_ca_certs=t.ca, socket_timeout=60)


def load(engine: str, t: Target, gb: float) -> int:
    """~``gb`` GiB of data as the tenant; returns what the engine then reports holding."""
    rows = int(gb * 2**30 / ROW)
    if engine == "postgresql":  # pgbench's tables, generated server-side; ~68 per GB
        subprocess.run([pg_bin(t, "pgbench"), "-i", "-q", "-I", "dtGvp",
                        "-s", str(max(1, round(68 * gb))), t.uri],
                       check=True, capture_output=True, timeout=3600)
    elif engine == "mariadb":  # 64k random 1 KiB rows per transaction
        with connect(engine, t, tenant=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE bench (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                        "v VARBINARY(1024)) ENGINE=InnoDB")
            for _ in range(max(1, rows // BATCH)):
                cur.execute(f"INSERT INTO bench (v) SELECT RANDOM_BYTES({ROW}) "
                            f"FROM seq_1_to_{BATCH}")
    else:  # 1 KiB incompressible strings, pipelined
        block = os.urandom(1 << 20)
        with connect(engine, t, tenant=True) as client:
            for first in range(0, rows, 2000):
                pipe = client.pipeline(transaction=False)
                for i in range(first, min(rows, first + 2000)):
                    offset = (i * 4099) % (len(block) - ROW)
                    pipe.set(f"k:{i}", block[offset:offset + ROW])
                pipe.execute()
        with connect(engine, t) as client:
            return int(client.info("memory")["used_memory_dataset"])
    with connect(engine, t) as conn, conn.cursor() as cur:
        cur.execute(SIZE_SQL[engine])
        return int(cur.fetchone()[0])


def quiesce(engine: str, t: Target, timeout: float = 900) -> None:
    """Checkpoint; wait until Hoard's archiver has shipped every closed log and no
    background save runs; sync; then wait SETTLE seconds: neither side pays for
    the other's leftovers, including memory the other side's server just freed
    (see SETTLE)."""
    if engine == "postgresql":
        with connect(engine, t) as conn:
            conn.execute("CHECKPOINT")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine == "postgresql":
            busy = (any((t.dir / "data/pg_wal/archive_status").glob("*.ready"))
                    or any((t.dir / "archive").iterdir()))
        elif engine == "mariadb":
            busy = sum(p.name[7:].isdigit() for p in (t.dir / "binlog").glob("binlog.*")) > 1
        else:
            with connect(engine, t) as client:
                info = client.info("persistence")
            busy = any(int(info.get(k, 0)) for k in (
                "rdb_bgsave_in_progress", "aof_rewrite_in_progress", "aof_rewrite_scheduled"))
        if not busy:
            os.sync()
            time.sleep(SETTLE)
            return
        time.sleep(0.5)
    raise TimeoutError(f"{engine}: the log archiver did not catch up in {timeout:.0f} s")


def raw_backup(engine: str, t: Target, raw: Path, out: Path) -> float:
    env: dict[str, str] = {}
    if engine == "postgresql":
        conninfo = (f"host={t.host} port={t.port} user={SERVICE_USER} sslmode=verify-full "
                    f"sslrootcert={t.ca} application_name=raw-backup")
        argv = [pg_bin(t, "pg_basebackup"), "-d", conninfo, "-D", "-", "-F", "tar", "-X",
                "fetch", "--checkpoint=fast", "--no-password", "--label=raw"]
        env = {"PGPASSWORD": t.password}
    elif engine == "mariadb":
        (raw / "client.cnf").write_text(
            f'[mariadb-backup]\nuser = "{SERVICE_USER}"\npassword = "{t.password}"\n')
        shutil.chown(raw / "client.cnf", t.user, t.user)
        shutil.rmtree(raw / "work", ignore_errors=True)
        argv = ["/usr/bin/mariadb-backup", f"--defaults-file={raw / 'client.cnf'}", "--backup",
                "--stream=xbstream", f"--datadir={t.dir / 'data'}",
                f"--target-dir={owned_dir(raw / 'work', t.user)}",
                f"--extra-lsndir={raw / 'work/info'}",
                f"--tmpdir={t.dir / 'tmp'}", f"--host={t.host}", f"--port={t.port}",
                f"--ssl-ca={t.ca}", "--ssl-verify-server-cert"]
    else:
        argv = ["/usr/bin/redis-cli", "--tls", "--cacert", t.ca, "-h", t.host, "-p",
                str(t.port), "--user", SERVICE_USER, "--rdb", "-"]
        env = {"REDISCLI_AUTH": t.password}
    start = time.monotonic()
    with open(out, "wb") as fh:
        tool(argv, t, stdout=fh, env=env)
        os.fsync(fh.fileno())
    return time.monotonic() - start


def raw_server(engine: str, t: Target, scratch: Path, port: int,
               procs_files: list[str]) -> tuple[Server, Callable]:
    """The engine's server on restored data, by hand: the source node's own
    configuration (so the same memory and log settings as the restored node),
    with the port, data paths and logs moved to the scratch copy (PostgreSQL's
    archiving off: it would ship into the source's archive), in cgroups with the
    restored node's limits (``procs_files``). A probe that succeeds once the
    server serves: PostgreSQL out of recovery, Redis loaded."""
    conf = t.dir / "conf"
    if engine == "postgresql":
        import psycopg

        server = Server([pg_bin(t, "postgres"), "-D", str(scratch), "-c", f"port={port}",
                         "-c", "archive_mode=off"], scratch, procs_files, t.user)

        def probe() -> None:
            with psycopg.connect(host=t.host, port=port, user=SERVICE_USER,
                                 password=t.password, dbname="postgres", sslmode="verify-full",
                                 sslrootcert=t.ca, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is None or row[0]:
                raise RuntimeError("still in recovery")
    elif engine == "mariadb":
        import pymysql

        server = Server(["/usr/sbin/mariadbd", f"--defaults-file={conf / 'my.cnf'}",
                         f"--datadir={scratch}", f"--port={port}", f"--tmpdir={scratch}",
                         f"--pid-file={scratch / 'mariadbd.pid'}",
                         f"--log-bin={scratch / 'binlog'}",
                         f"--log-bin-index={scratch / 'binlog.index'}",
                         f"--slow-query-log-file={scratch / 'slow.log'}"], scratch,
                        procs_files, t.user)

        def probe() -> None:
            pymysql.connect(host=t.host, port=port, user=SERVICE_USER, password=t.password,
                            ssl_ca=t.ca, ssl_verify_identity=True, connect_timeout=2).close()
    else:
        # appendonly no: a lone dump.rdb is what Redis loads then (Hoard's restore
        # puts the same RDB where the append-only file's base goes instead).
        server = Server(["/usr/bin/redis-server", str(conf / "redis.conf"), "--dir",
                         str(scratch), "--tls-port", str(port), "--appendonly", "no",
                         "--dbfilename", "dump.rdb"], scratch, procs_files, t.user)
        # One TLS context, not redis-py's per connection (which loads the system's
        # trust store each time: 40 ms of CPU taken from the loading server).
        context = ssl.create_default_context(cafile=t.ca)
        hello = b"".join(b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in args) for args in (
            (b"AUTH", SERVICE_USER.encode(), t.password.encode()), (b"PING",)))

        def probe() -> None:  # -LOADING until the RDB is loaded
            with socket.create_connection((t.host, port), timeout=2) as plain, \
                    context.wrap_socket(plain, server_hostname=t.host) as sock:
                sock.sendall(hello)
                replies = b""
                while replies.count(b"\r\n") < 2:
                    got = sock.recv(4096)
                    if not got:
                        raise ConnectionError("closed")
                    replies += got
            if replies.split(b"\r\n")[1] != b"+PONG":
                raise RuntimeError(replies.decode(errors="replace"))
    return server, probe


def raw_restore(engine: str, t: Target, backup: Path, raw: Path, storage_gb: int,
                procs_files: list[str]) -> tuple[float, float]:
    """(seconds for the tool steps, seconds until the server on the result serves).

    The target is a new filesystem of the restored node's size (made untimed), as a
    new server's disk would be and as Hoard's restored node gets: a used one writes
    into blocks its image file already holds, a new one allocates them."""
    image, mount = raw / "restore.img", raw / "restore"
    fresh = volumes_work()
    if fresh:
        volumes.ensure(image, mount, storage_gb, volumes.probe().filesystem)
        user = db_user(t.user)
        os.chown(mount, user.pw_uid, user.pw_gid)
    else:
        owned_dir(mount, t.user)
    scratch = mount / "data"
    server, probe = raw_server(engine, t, scratch, free_port(), procs_files)
    start = time.monotonic()
    owned_dir(scratch, t.user)
    with open(backup, "rb") as fh:
        if engine == "postgresql":
            tool([*TAR_EXTRACT, "-C", str(scratch)], t, stdin=fh)  # Hoard's arguments
            tool([pg_bin(t, "pg_verifybackup"), "--quiet", str(scratch)], t)
        elif engine == "mariadb":
            tool(["/usr/bin/mbstream", "-x", "-C", str(scratch)], t, stdin=fh)
            tool(["/usr/bin/mariadb-backup", "--prepare", f"--target-dir={scratch}",
                  f"--tmpdir={scratch}"], t)
        else:
            rdb = str(scratch / "dump.rdb")
            tool(["sh", "-c", 'exec cat > "$0"', rdb], t, stdin=fh)
            tool(["/usr/bin/redis-check-rdb", rdb], t)
    tool_steps = time.monotonic() - start
    try:
        server.start()
        server.wait_until(probe, timeout=600, poll=0.01)
        serving = time.monotonic() - start
    finally:
        server.kill()
        if fresh:
            volumes.remove(image, mount)
        shutil.rmtree(mount, ignore_errors=True)
    return tool_steps, serving


@functools.cache
def volumes_work() -> bool:
    """Whether loop-mounted filesystems work here (probed once: it makes one)."""
    return volumes.supported()[0]


# --- the run -------------------------------------------------------------------------------


def rss_kb(pid: int, field: str, reset: bool = False) -> int:
    """VmRSS or VmHWM of a process, in kB; ``reset`` first resets its peak (clear_refs 5)."""
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))


def delete(client: httpx.Client, cluster_id: str, r: dict[str, Any]) -> None:
    """Delete a cluster; retry once a delete whose unmount found the volume busy
    (counted and reported: a Hoard race, see the report)."""
    try:
        timed(client, "DELETE", f"/v2/clusters/{cluster_id}")
    except RuntimeError as exc:
        if "target is busy" not in str(exc):
            raise
        r["busy"] += 1
        time.sleep(1)
        timed(client, "DELETE", f"/v2/clusters/{cluster_id}")


def bench_engine(engine: str, hoard: Hoard, client: httpx.Client, gb: float, trials: int,
                 ca: str, raw: Path) -> dict[str, Any]:
    spec = {"engine": engine, "size": "medium", "storage_gb": max(8, int(gb * 6) + 2)}
    # The hand-started server gets the restored node's limits, beside it under hoard/.
    group = "bench-raw-" + secrets.token_hex(4)
    limits = cgroups.apply(group, SIZES["medium"].cpus, SIZES["medium"].memory_mb)
    try:
        return _bench_engine(engine, hoard, client, gb, trials, ca, raw, spec,
                             limits.procs_files)
    finally:
        cgroups.remove(group)


def _bench_engine(engine: str, hoard: Hoard, client: httpx.Client, gb: float, trials: int,
                  ca: str, raw: Path, spec: dict[str, Any],
                  procs_files: list[str]) -> dict[str, Any]:
    pid = hoard.proc.pid if hoard.proc else 0
    _, made, _ = timed(client, "POST", "/v2/clusters", {"name": f"bench-{engine}", **spec})
    t = Target(hoard, client, made["cluster"]["id"], ca)
    started = time.monotonic()
    r: dict[str, Any] = {"engine_bytes": load(engine, t, gb), "steps": {}, "busy": 0}
    quiesce(engine, t)
    r["load_s"] = time.monotonic() - started
    for key in ("hb", "rb", "hr", "rr", "rt", "stored", "plain", "rss_b", "rss_r", "data_step"):
        r[key] = []
    state: dict[str, Any] = {}

    def alternate(trial: int, raw_side: Callable[[], None], hoard_side: Callable[[], None],
                  rss: str) -> None:
        for side in (raw_side, hoard_side)[::1 if trial % 2 == 0 else -1]:
            quiesce(engine, t)
            base = rss_kb(pid, "VmRSS", reset=True)
            side()
            if side is hoard_side:
                r[rss].append(rss_kb(pid, "VmHWM") - base)

    def hoard_backup() -> None:
        seconds, body, _ = timed(client, "POST", f"/v2/clusters/{t.cluster_id}/backups")
        r["hb"].append(seconds)
        state["backup"] = body["backup"]["id"]
        r["stored"].append(client.get(f"/v2/backups/{state['backup']}").json()["size_bytes"])

    def hoard_restore() -> None:
        seconds, body, steps = timed(client, "POST", "/v2/clusters", {
            "name": f"restored-{engine}-{len(r['hr'])}", **spec,
            "restore": {"backup_id": state["backup"]}})
        r["hr"].append(seconds)
        r["data_step"].append(steps["restore data"])
        for name, took in steps.items():
            r["steps"].setdefault(name, []).append(took)
        delete(client, body["cluster"]["id"], r)

    def tool_backup() -> None:
        r["rb"].append(raw_backup(engine, t, raw, state["out"]))
        r["plain"].append(state["out"].stat().st_size)

    def tool_restore() -> None:
        tool_steps, serving = raw_restore(engine, t, state["out"], raw, spec["storage_gb"],
                                          procs_files)
        r["rt"].append(tool_steps)
        r["rr"].append(serving)

    for trial in range(trials):
        state["out"] = raw / f"{engine}.{trial}.raw"
        alternate(trial, tool_backup, hoard_backup, "rss_b")
        alternate(trial, tool_restore, hoard_restore, "rss_r")
        client.delete(f"/v2/backups/{state['backup']}").raise_for_status()
        state["out"].unlink()
    delete(client, t.cluster_id, r)
    return r


def report(engine: str, r: dict[str, Any]) -> str:
    mb = median(r["plain"]) / MB
    b = {k: median(r[k]) for k in ("hb", "rb", "hr", "rr", "rt", "data_step")}
    ratios = {"backup": b["rb"] / b["hb"], "restore": b["rr"] / b["hr"],
              "tool steps": b["rt"] / b["hr"], "data step": b["rt"] / b["data_step"]}
    print(f"{engine}: {mb:,.0f} MB plaintext stream (engine reports {r['engine_bytes'] / MB:,.0f}"
          f" MB; Hoard's object {median(r['stored']) / MB:,.0f} MB); loaded and drained in "
          f"{r['load_s']:.0f} s")
    for what, h, w in (("backup", "hb", "rb"), ("restore", "hr", "rr")):
        print(f"  {what:<8} hoard {b[h]:6.2f} s {mb / b[h]:6.1f} MB/s | raw {b[w]:6.2f} s "
              f"{mb / b[w]:6.1f} MB/s | ratio {ratios[what]:.2f} (target >= 0.9 "
              f"{'met' if ratios[what] >= 0.9 else 'NOT met'})")
    steps = ", ".join(f"{k} {median(v):.2f}" for k, v in r["steps"].items())
    print(f"  raw restore: tool steps {b['rt']:.2f} s (ratio {ratios['tool steps']:.2f} against "
          f"Hoard's whole restore), then the server serving after {b['rr'] - b['rt']:.2f} s")
    print(f"  Hoard's restore-data step {b['data_step']:.2f} s (raw tool steps / it: "
          f"{ratios['data step']:.2f}); restore steps (median s): {steps}")
    print(f"  Hoard peak RSS growth (VmHWM after clear_refs, max of trials): backup "
          f"{max(r['rss_b']) / 1024:.0f} MiB, restore {max(r['rss_r']) / 1024:.0f} MiB")
    if r["busy"]:
        print(f"  WARNING: {r['busy']} delete(s) failed 'umount: target is busy', retried")
    print("  trials (s): " + "; ".join(f"{name} " + " ".join(f"{v:.2f}" for v in r[k]) for k, name
                                      in (("hb", "hoard backup"), ("rb", "raw backup"),
                                          ("hr", "hoard restore"), ("rr", "raw restore"),
                                          ("rt", "raw tool steps"))),
          flush=True)
    return (f"| {engine} | {mb:,.0f} | {mb / b['hb']:.0f} | {mb / b['rb']:.0f} | "
            f"**{ratios['backup']:.2f}** | {mb / b['hr']:.0f} | {mb / b['rr']:.0f} | "
            f"**{ratios['restore']:.2f}** | {ratios['tool steps']:.2f} | "
            f"{ratios['data step']:.2f} | {max(r['rss_b']) / 1024:.0f} / "
            f"{max(r['rss_r']) / 1024:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=[*ENGINES, "all"], default="all")
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    print(load_note())
    state = make_state_dir("hoard-bench-backup-")
    hoard: Hoard | None = None
    rows: list[str] = []
    try:
        hoard = Hoard(state, {"HOARD_ARCHIVE_INTERVAL": "1"})
        hoard.start()
        raw = state / "raw"  # each engine's tools make what they write in it as its node
        raw.mkdir(mode=0o755)
        shutil.copyfile(state / "ca" / "ca.pem", raw / "ca.crt")
        (raw / "ca.crt").chmod(0o644)
        with hoard.client() as client:
            for engine in ENGINES if args.engine == "all" else (args.engine,):
                rows.append(report(engine, bench_engine(engine, hoard, client, args.gb,
                                                        args.trials, str(raw / "ca.crt"), raw)))
    except BaseException:
        if hoard is not None and hoard.log.exists():
            print("hoard serve log, last lines:\n" + hoard.log.read_text()[-4000:])
        raise
    finally:
        teardown(hoard, state)
    print(f"\n--gb {args.gb:g} --trials {args.trials}: MB/s = 10^6 bytes of plaintext stream "
          "per second, medians; ratio = Hoard throughput / raw\n\n| engine | MB | backup Hoard "
          "MB/s | raw MB/s | ratio | restore Hoard MB/s | raw MB/s (serving) | ratio | ratio, "
          "raw tool steps only | raw tool steps / Hoard's restore-data step | Hoard RSS growth "
          "MiB (backup / restore) |\n|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows) + "\n" + load_note())


if __name__ == "__main__":
    main()
