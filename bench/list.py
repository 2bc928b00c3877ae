"""GET /v2/clusters?limit=20 latency on a project with 100,000 clusters, page 2
versus a far page, next to the same keyset query run straight on SQLite.

Why: the list is keyset-paged, so the issue's target is that a far page costs
what page 2 costs (page5000/page2 <= 1.2). No database server is started: the
rows are bulk-inserted into the state store while Hoard is stopped.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from _common import ADMIN_TOKEN, Hoard, load_note, make_state_dir, median, p95, teardown
from _rows import fill_clusters
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

from hoard.store.models import Cluster

PAGE = 20


def fill(db: Path, count: int) -> tuple[str, list[str]]:
    """Insert ``count`` FAILED clusters with one node each; return project id, ids."""
    return fill_clusters(f"sqlite:///{db}", count)


def marker_at(db: Path, row: int) -> str:
    """The id of row number ``row`` (1-based) in id order, read from the store."""
    with sqlite3.connect(db) as conn:
        (value,) = conn.execute("SELECT id FROM clusters ORDER BY id LIMIT 1 OFFSET ?",
                                (row - 1,)).fetchone()
    return str(value)


def orm_statements(db: Path, project_id: str, marker: str) -> list[tuple[str, tuple]]:
    """The SQL the list route's query sends (a copy of it in hoard/api/routes/clusters.py),
    captured from SQLAlchemy so the raw side replays exactly the same statements."""
    engine = create_engine(f"sqlite:///{db}")
    captured: list[tuple[str, tuple]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, stmt, params, _ctx, _many: captured.append((stmt, params)))
    query = (select(Cluster).where(Cluster.project_id == project_id, Cluster.id > marker)
             .order_by(Cluster.id).limit(PAGE + 1))
    with Session(engine) as s:
        assert len(list(s.scalars(query))) >= PAGE
    engine.dispose()
    return captured


def raw_page(conn: sqlite3.Connection, statements: list[tuple[str, tuple]]) -> float:
    t0 = time.perf_counter()
    for stmt, params in statements:
        conn.execute(stmt, params).fetchall()
    return time.perf_counter() - t0


def api_page(client: httpx.Client, marker: str) -> float:
    t0 = time.perf_counter()
    response = client.get("/v2/clusters", params={"limit": PAGE, "marker": marker})
    elapsed = time.perf_counter() - t0
    if response.status_code != 200 or len(response.json()["clusters"]) != PAGE:
        raise RuntimeError(f"bad page: {response.status_code} {response.text[:300]}")
    return elapsed


def throughput(url: str, markers: list[str], total: int, threads: int) -> float:
    """Requests per second for ``total`` requests spread over ``threads`` clients."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            for i in range(n):
                try:
                    api_page(client, markers[i % len(markers)])
                except Exception as exc:  # reported after the run
                    errors.append(exc)
                    return

    workers = [threading.Thread(target=work, args=(total // threads,)) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"throughput run failed: {errors[0]}")
    return (total // threads) * threads / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--far-page", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=200, help="requests per page")
    parser.add_argument("--requests", type=int, default=1000, help="for requests/second")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients")
    args = parser.parse_args()
    far = min(args.far_page, args.clusters // PAGE)
    if far < 3:
        parser.error("--clusters must allow at least 3 pages of 20")

    print("start: " + load_note(), flush=True)
    state_dir = make_state_dir("hoard-bench-list-")
    db = state_dir / "state.sqlite"
    hoard: Hoard | None = None
    try:
        first = Hoard(state_dir)
        first.start()  # migrates the store and bootstraps the admin project
        first.stop()
        t0 = time.perf_counter()
        project_id, _ = fill(db, args.clusters)
        print(f"inserted {args.clusters} clusters + nodes in {time.perf_counter() - t0:.1f} s")
        markers = {2: marker_at(db, PAGE), far: marker_at(db, PAGE * (far - 1))}
        sql = {page: orm_statements(db, project_id, m) for page, m in markers.items()}

        # A long observer interval: Hoard's own pass never runs during the measurement.
        hoard = Hoard(state_dir, {"HOARD_OBSERVE_INTERVAL": "3600"})
        hoard.start()
        api: dict[int, list[float]] = {2: [], far: []}
        raw: dict[int, list[float]] = {2: [], far: []}
        with hoard.client() as client, sqlite3.connect(db) as conn:
            for _ in range(20):  # warm-up: caches, connection pools
                for page, marker in markers.items():
                    api_page(client, marker)
                    raw_page(conn, sql[page])
            for _ in range(args.repeats):
                for page, marker in markers.items():
                    api[page].append(api_page(client, marker))
                    raw[page].append(raw_page(conn, sql[page]))
        seq = throughput(hoard.url, list(markers.values()), args.requests, 1)
        conc = throughput(hoard.url, list(markers.values()), args.requests, args.threads)
    finally:
        # No server was started; deleting 100,000 rows through the API would only
        # exercise the delete workflow, so the state directory is simply removed.
        teardown(hoard, state_dir, api_delete=False)

    print("end:   " + load_note())
    print(f"\nGET /v2/clusters?limit={PAGE}, {args.clusters} clusters, "
          f"{args.repeats} requests per page:")
    print(f"  {'':22}{'median ms':>10}{'p95 ms':>9}")
    for page in (2, far):
        print(f"  hoard page {page:<11}{median(api[page]) * 1000:10.2f}"
              f"{p95(api[page]) * 1000:9.2f}")
    for page in (2, far):
        print(f"  raw SQLite page {page:<6}{median(raw[page]) * 1000:10.3f}"
              f"{p95(raw[page]) * 1000:9.3f}")
    ratio = median(api[far]) / median(api[2])
    verdict = "met" if ratio <= 1.2 else "MISSED"
    print(f"  ratio hoard page{far}/page2 = {ratio:.2f}  (target <= 1.2: {verdict})")
    print(f"  ratio raw   page{far}/page2 = {median(raw[far]) / median(raw[2]):.2f}")
    print(f"  ratio hoard/raw (page 2)  = {median(api[2]) / median(raw[2]):.2f}")
    print(f"  throughput: {seq:.0f} req/s sequential, {conc:.0f} req/s with "
          f"{args.threads} clients ({args.requests} requests each run)")


if __name__ == "__main__":
    main()
