"""The control plane of many processes, measured on this machine, each part next
to its raw baseline in the same run:

- list: ``GET /v2/clusters?limit=20`` at N clusters (rows inserted straight into
  the store, no database server started) on SQLite (``hoard serve``) and on
  PostgreSQL (``hoard api --processes P``): p50 with one client, p50 and
  requests/s with 4 concurrent clients, against the same SQL run on a bare
  DB-API connection. Targets: p50 <= 1.5 ms and >= 1,000 req/s.
- takeover: kill -9 of the worker running a create; time until another
  worker finishes it. Target: <= lease + 5 s.
- create: 50 concurrent ``nano`` Redis creates with 1 and with 3 workers, time
  until all are ACTIVE, against 50 hand-started redis-server processes.
  Target: ratio <= 2, of the medians of rounds that alternate baseline and Hoard.
- lone: creates one after another with one worker (each ``nano`` Redis, POST to
  ACTIVE), and the worker's CPU: idle for a second, and per create beyond that.

The clients are threads of this one process using http.client (keep-alive), so
the load generator takes at most one of the two cores.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import (
    ADMIN_TOKEN,
    Hoard,
    busy_cpu,
    load_note,
    make_state_dir,
    median,
    p95,
    teardown,
)
from _engines import redis_server
from _rows import fill_clusters
from sqlalchemy import create_engine, func, select

from hoard.api import listing
from hoard.settings import libpq_url
from hoard.store.models import Cluster

PAGE = 20
CLIENTS = 4
# Seconds a control plane just started is left alone before it is measured: a
# worker's first passes (observer, scheduler, outbox, ...) run at once, and a
# running control plane has long done them.
SETTLE = 2.0


# --- list ----------------------------------------------------------------------

def fill(url: str, count: int) -> str:
    """Insert ``count`` FAILED clusters with one node each into the admin project."""
    return fill_clusters(url, count, 5_000)[0]


def markers(url: str, pages: int) -> list[str]:
    """Markers of ``pages`` pages spread over the whole list (page N costs page 2's)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        total = conn.scalar(select(func.count(Cluster.id)))
        assert total is not None
        step = max(1, (total - PAGE) // pages)
        found = [conn.scalar(select(Cluster.id).order_by(Cluster.id).offset(i * step).limit(1))
                 for i in range(pages)]
    engine.dispose()
    return [str(m) for m in found]


def list_statements(url: str, project_id: str, marker: str) -> list[tuple[str, Any]]:
    """The SQL the list route sends for one page (hoard/api/listing.py), for the raw side."""
    engine = create_engine(url)
    sql, params = listing.statement(engine.dialect, project_id, PAGE + 1, marker, None, None)
    engine.dispose()
    return [(sql, params)]


def raw_connect(url: str) -> Any:
    if url.startswith("sqlite"):
        return sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
    import psycopg

    return psycopg.connect(libpq_url(url))


def raw_page(conn: Any, statements: list[tuple[str, Any]]) -> None:
    cur = conn.cursor()
    for stmt, params in statements:
        cur.execute(stmt, params)
        cur.fetchall()
    if not isinstance(conn, sqlite3.Connection):
        conn.rollback()


def api_page(conn: http.client.HTTPConnection, marker: str) -> None:
    conn.request("GET", f"/v2/clusters?limit={PAGE}&marker={marker}",
                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != 200 or body.count(b'"ordinal"') != PAGE:
        raise RuntimeError(f"bad page: {answer.status} {body[:300]!r}")


def floor_request(conn: http.client.HTTPConnection) -> None:
    """The framework alone: a public route that reads nothing."""
    conn.request("GET", "/v2")
    answer = conn.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"GET /v2 answered {answer.status}")


def timed(clients: int, seconds: float, make: Callable[[], Any],
          one: Callable[[Any, int], None]) -> tuple[list[float], float]:
    """Latencies of every request and requests/s, ``clients`` threads for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def work(k: int) -> None:
        conn = make()
        try:
            for i in range(50):  # warm-up
                one(conn, i)
            start.wait()
            i = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                one(conn, i)
                latencies[k].append(time.perf_counter() - t0)
                i += 1
        except BaseException as exc:  # reported after the run
            errors.append(exc)
            stop.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"run failed: {errors[0]!r}")
    every = [x for lat in latencies for x in lat]
    return every, len(every) / (time.perf_counter() - t0)


def measure_list(label: str, url: str, port: int, project_id: str, seconds: float) -> None:
    found = markers(url, 50)
    statements = [list_statements(url, project_id, m) for m in found]
    print(f"\n{label}: GET /v2/clusters?limit={PAGE}, {len(found)} pages spread over the list")
    print(f"  {'':34}{'p50 ms':>8}{'p95 ms':>8}{'req/s':>8}")
    results: dict[str, tuple[float, float]] = {}
    for clients in (1, CLIENTS):
        for side in ("raw SQL", "hoard"):
            if side == "hoard":
                lat, rate = timed(
                    clients, seconds, lambda: http.client.HTTPConnection("127.0.0.1", port),
                    lambda c, i: api_page(c, found[i % len(found)]))
            else:
                lat, rate = timed(clients, seconds, lambda: raw_connect(url),
                                  lambda c, i: raw_page(c, statements[i % len(statements)]))
            results[f"{side} {clients}"] = (median(lat), rate)
            print(f"  {side + f', {clients} client(s)':34}{median(lat) * 1000:8.2f}"
                  f"{p95(lat) * 1000:8.2f}{rate:8.0f}", flush=True)
    lat, rate = timed(1, seconds, lambda: http.client.HTTPConnection("127.0.0.1", port),
                      lambda c, i: floor_request(c))
    print(f"  {'floor: GET /v2 (no token, no store)':34}{median(lat) * 1000:8.2f}"
          f"{p95(lat) * 1000:8.2f}{rate:8.0f}", flush=True)
    p50, rate = results["hoard 1"][0], results[f"hoard {CLIENTS}"][1]
    print(f"  target p50 <= 1.5 ms (1 client): {p50 * 1000:.2f} ms "
          f"{'met' if p50 <= 0.0015 else 'MISSED'}; target >= 1000 req/s ({CLIENTS} "
          f"clients): {rate:.0f} {'met' if rate >= 1000 else 'MISSED'}")
    print(f"  ratio hoard/raw p50 (1 client) = {p50 / results['raw SQL 1'][0]:.1f}; "
          f"req/s raw/hoard ({CLIENTS} clients) = "
          f"{results[f'raw SQL {CLIENTS}'][1] / rate:.1f}")


def list_sqlite(count: int, seconds: float) -> None:
    state_dir = make_state_dir("hoard-bench-cp-")
    url = f"sqlite:///{state_dir / 'state.sqlite'}"
    hoard: Hoard | None = None
    try:
        first = Hoard(state_dir)
        first.start()  # migrates and bootstraps the admin project
        first.stop()
        t0 = time.perf_counter()
        project_id = fill(url, count)
        print(f"SQLite: inserted {count} clusters + nodes in {time.perf_counter() - t0:.0f} s")
        hoard = Hoard(state_dir, {"HOARD_OBSERVE_INTERVAL": "3600"})
        hoard.start()
        measure_list(f"SQLite, hoard serve, {count} clusters", url, hoard.port, project_id,
                     seconds)
    finally:
        teardown(hoard, state_dir, api_delete=False)


@contextmanager
def hoard_process(role: str, state_dir: Path, env: dict[str, str], *args: str
                  ) -> Iterator[subprocess.Popen[bytes]]:
    with open(state_dir / f"{role}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hoard", role, "--state-dir",
                                 str(state_dir), *args], env=env, stdout=log, stderr=log)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the API process exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def analyze(url: str) -> None:
    """Statistics for the planner, as autovacuum would gather soon after a bulk
    insert: without them PostgreSQL scans the whole table (40 ms a page)."""
    import psycopg

    with psycopg.connect(libpq_url(url),
                         autocommit=True) as conn:
        conn.execute("ANALYZE")


def list_postgresql(count: int, seconds: float, processes: list[int]) -> None:
    from tests.conftest import free_port
    from tests.pgserver import postgres_store

    with postgres_store() as url:
        state_dir = make_state_dir("hoard-bench-cp-")
        env = {**os.environ, "HOARD_ADMIN_TOKEN": ADMIN_TOKEN, "HOARD_DATABASE_URL": url}
        try:
            subprocess.run([sys.executable, "-m", "hoard", "migrate", "--state-dir",
                            str(state_dir)], env=env, check=True, capture_output=True)
            t0 = time.perf_counter()
            project_id = fill(url, count)
            analyze(url)
            print(f"PostgreSQL: inserted {count} clusters + nodes in "
                  f"{time.perf_counter() - t0:.0f} s")
            for n in processes:
                port = free_port()
                with hoard_process("api", state_dir, env, "--port", str(port),
                                   "--processes", str(n)) as proc:
                    wait_http(port, proc)
                    measure_list(f"PostgreSQL, hoard api --processes {n}, {count} clusters",
                                 url, port, project_id, seconds)
        finally:
            teardown(None, state_dir, api_delete=False)


# --- raw redis -----------------------------------------------------------------

def raw_redis_many(count: int) -> float:
    """Seconds until ``count`` hand-started redis-server processes all answer PING."""
    import redis
    from _common import free_port, owned_dir

    base = make_state_dir("hoard-bench-redis-")
    servers = []
    try:
        t0 = time.perf_counter()
        for i in range(count):
            data = owned_dir(owned_dir(base / f"r{i}") / "data")
            port = free_port()
            server = redis_server(data, ["--port", str(port), "--save", ""])
            server.start()
            servers.append((server, port))
        for server, port in servers:
            def ping(port: int = port) -> None:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
                    client.ping()
            server.wait_until(ping)
        return time.perf_counter() - t0
    finally:
        for server, _ in servers:
            server.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


# --- takeover and create throughput (tests/control_plane.py's processes) -------

QUOTAS = {"HOARD_DEFAULT_QUOTA_CLUSTERS": "200", "HOARD_DEFAULT_QUOTA_NODES": "200",
          "HOARD_DEFAULT_QUOTA_STORAGE_GB": "100000"}


def executor_of(url: str, op_id: str) -> str | None:
    """The worker DBOS runs a workflow on (the executor id is the worker id)."""
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT executor_id FROM dbos.workflow_status "
                           "WHERE workflow_uuid = %s", (op_id,)).fetchone()
    return None if row is None else str(row[0])


PAUSE = 1.0  # the test hook's pause in step "start": it names the worker running it


def takeover(lease: float) -> None:
    from tests.conftest import wait_operation
    from tests.control_plane import control_plane

    env = {**QUOTAS, "HOARD_LEASE_SECONDS": str(lease), "HOARD_PAUSE_STEP": "start",
           "HOARD_PAUSE_SECONDS": str(PAUSE)}
    with control_plane(3, env) as plane, plane.client() as client:
        url = plane.env["HOARD_DATABASE_URL"]
        made = client.post("/v2/clusters", json={"name": "taken", "engine": "redis",
                                                 "size": "nano"}).json()
        op_id, runner = made["operation"]["id"], ""
        while not runner:  # busy: in the middle of the create, in step "start"
            op = client.get(f"/v2/operations/{op_id}").json()
            for step in op["steps"]:
                if step["name"] == "start" and "paused" in (step.get("detail") or ""):
                    runner = str(step["detail"]).rsplit(" ", 1)[-1]
            if op["status"] != "running":
                raise RuntimeError(f"the create ended before the kill: {op['status']}")
            time.sleep(0.01)
        plane.workers[runner].signal(9)
        plane.workers[runner].wait(10)
        killed_at = time.monotonic()
        op = wait_operation(client, op_id, timeout=120)
        took = time.monotonic() - killed_at
        finisher = executor_of(url, op_id)
    print(f"\ntakeover: killed {runner} (-9) in step start; the create {op['status']} on "
          f"{finisher} {took:.1f} s after the kill, including the {PAUSE:.0f} s pause the "
          f"bench hook adds to step start on the new worker too (lease {lease:.0f} s; "
          f"target <= {lease + 5:.0f} s: "
          f"{'met' if took <= lease + 5 and op['status'] == 'succeeded' else 'MISSED'})")


def creates(workers: int, count: int) -> tuple[float, float, dict[str, list[float]]]:
    """Seconds from the first POST until ``count`` nano Redis clusters are ACTIVE,
    the machine's CPU seconds meanwhile, and where each create's time went:
    waiting to be picked up, then each step."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.control_plane import control_plane

    with control_plane(workers, {**QUOTAS, "HOARD_OBSERVE_INTERVAL": "2"}) as plane, \
            plane.client() as client:
        def post(i: int) -> tuple[str, str]:
            answer = client.post("/v2/clusters", json={"name": f"r{i:03d}", "engine": "redis",
                                                       "size": "nano"})
            if answer.status_code != 202:
                raise RuntimeError(answer.text)
            return str(answer.json()["cluster"]["id"]), str(answer.json()["operation"]["id"])

        time.sleep(SETTLE)
        t0, cpu0 = time.perf_counter(), busy_cpu()
        with ThreadPoolExecutor(8) as pool:
            made = dict(pool.map(post, range(count)))
        while True:
            page = client.get("/v2/clusters", params={"limit": 1000}).json()["clusters"]
            states = {c["id"]: c["status"] for c in page if c["id"] in made}
            if any(v == "FAILED" for v in states.values()):
                raise RuntimeError(f"a create failed: {page}")
            if list(states.values()).count("ACTIVE") == count:
                took, cpu = time.perf_counter() - t0, busy_cpu() - cpu0
                break
            if time.perf_counter() - t0 > 900:
                raise TimeoutError(f"not all ACTIVE after 900 s: {states}")
            time.sleep(0.1)
        spent: dict[str, list[float]] = {}
        for op_id in made.values():
            op = client.get(f"/v2/operations/{op_id}").json()
            created = _instant(op["created_at"])
            first = min(_instant(st["started_at"]) for st in op["steps"] if "started_at" in st)
            spent.setdefault("queued (POST to first step)", []).append(first - created)
            for st in op["steps"]:
                if "started_at" in st and "finished_at" in st:
                    spent.setdefault(st["name"], []).append(
                        _instant(st["finished_at"]) - _instant(st["started_at"]))
            spent.setdefault("whole create", []).append(_instant(op["finished_at"]) - created)
    return took, cpu, spent


def create_rounds(count: int, rounds: int) -> None:
    """Rounds of: the hand-made baselines, then Hoard with 1 and with 3 workers,
    in that order each round (so load from elsewhere falls on all alike); the
    ratio is of the medians."""
    from _isolated import isolated_redis_many

    took: dict[str, list[float]] = {"bare": [], "isolated": [], "1": [], "3": []}
    cpu: dict[str, list[float]] = {"isolated": [], "1": [], "3": []}
    spent: dict[int, dict[str, list[float]]] = {}
    print(f"\ncreate: {count} at once, {rounds} round(s)", flush=True)
    for n in range(rounds):
        took["bare"].append(raw_redis_many(count))
        seconds, machine = isolated_redis_many(count)
        took["isolated"].append(seconds)
        cpu["isolated"].append(machine)
        for workers in (1, 3):
            seconds, machine, spent[workers] = creates(workers, count)
            took[str(workers)].append(seconds)
            cpu[str(workers)].append(machine)
        print(f"  round {n}: bare {took['bare'][-1]:.1f} s, isolated {took['isolated'][-1]:.1f} s,"
              f" Hoard 1 worker {took['1'][-1]:.1f} s, 3 workers {took['3'][-1]:.1f} s",
              flush=True)
    bare, iso = median(took["bare"]), median(took["isolated"])
    print(f"  medians: {count} hand-started redis-server processes answer PING after "
          f"{bare:.1f} s; {count} hand-made isolated ones (own account, filesystem, cgroups, "
          f"certificate, TLS: bench/_isolated.py) after {iso:.1f} s")
    print("  the machine's CPU (every process and the kernel) per server made, median: "
          + ", ".join(f"{name} {median(v) / count * 1000:.0f} ms" for name, v in (
              ("isolated", cpu["isolated"]), ("Hoard 1 worker", cpu["1"]),
              ("Hoard 3 workers", cpu["3"]))))
    for workers in (1, 3):
        mid = median(took[str(workers)])
        print(f"  {count} nano Redis creates, {workers} worker(s): all ACTIVE after {mid:.1f} s"
              f" (median); ratio to bare = {mid / bare:.1f}, to isolated = {mid / iso:.2f} "
              f"(target <= 2: {'met' if mid / iso <= 2 else 'MISSED'}); the last round's "
              "creates:")
        for name, values in spent[workers].items():
            print(f"    {name:34} median {median(values):6.2f} s, max {max(values):6.2f} s")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lone_creates(count: int) -> None:
    """Creates one at a time on one worker: what a lone tenant waits, and what
    the worker spends beyond its idle cost."""
    from tests.control_plane import control_plane

    with control_plane(1, {**QUOTAS, "HOARD_OBSERVE_INTERVAL": "2"}) as plane, \
            plane.client() as client:
        pid = plane.workers["w1"].pid
        time.sleep(SETTLE)
        before = _cpu_seconds(pid)
        time.sleep(5)
        idle = (_cpu_seconds(pid) - before) / 5
        took, begun, before = [], time.perf_counter(), _cpu_seconds(pid)
        for i in range(count):
            t0 = time.perf_counter()
            made = client.post("/v2/clusters", json={"name": f"lone{i:03d}",
                                                     "engine": "redis", "size": "nano"})
            cluster_id = made.json()["cluster"]["id"]
            while client.get(f"/v2/clusters/{cluster_id}").json()["status"] != "ACTIVE":
                time.sleep(0.01)
            took.append(time.perf_counter() - t0)
        spent = _cpu_seconds(pid) - before
        beyond = spent - idle * (time.perf_counter() - begun)
    print(f"\nlone: {count} creates one after another, 1 worker: POST to ACTIVE median "
          f"{median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms; the worker's CPU "
          f"idle {idle * 1000:.0f} ms/s, per create {spent / count * 1000:.0f} ms "
          f"({beyond / count * 1000:.0f} ms beyond idle)")


def _instant(value: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts",
                        default="list-sqlite,list-postgresql,takeover,create,lone")
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10, help="per list measurement")
    parser.add_argument("--api-processes", default="1,2", help="hoard api --processes")
    parser.add_argument("--lease", type=float, default=10)
    parser.add_argument("--creates", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="of the create part")
    parser.add_argument("--lone", type=int, default=20, help="creates in the lone part")
    args = parser.parse_args()
    parts = args.parts.split(",")
    print("start: " + load_note(), flush=True)
    if "list-sqlite" in parts:
        list_sqlite(args.clusters, args.seconds)
    if "list-postgresql" in parts:
        list_postgresql(args.clusters, args.seconds,
                        [int(n) for n in args.api_processes.split(",")])
    if "takeover" in parts:
        takeover(args.lease)
    if "create" in parts:
        create_rounds(args.creates, args.rounds)
    if "lone" in parts:
        lone_creates(args.lone)
    print("end:   " + load_note())


if __name__ == "__main__":
    main()
