"""One observer pass at N clusters, split over W workers: each worker's pass time.

What is measured is the control plane's own cost of a pass: loading its share
of clusters from the PostgreSQL store in batches, building each node's context
(unsealing its two passwords), asking the provider and the engine, and
recording what changed. Nothing about the data plane is measured, because no
database server runs: 100,000 servers do not fit on this machine. The bench
therefore stands in for the two things that would touch a server, and names
them as stand-ins:

- ``NoProcesses``, a provider (registered as ``bench-none``) whose nodes are
  all running and report no storage use;
- ``Healthy``, each engine with its health check answering "ok" at once
  (after reading the service account's password, as the real check does).

Everything else is Hoard's: real worker processes with leases, shards balanced
by rendezvous hashing, ``observe_once`` over ``background_pass()``. The same
clusters are passed over by 1 worker and by 3, to show that a pass costs the
worker's share, not the whole store.

    .venv/bin/python bench/observer_pass.py --clusters 100000 --workers 1,3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import load_note, make_state_dir, median
from sqlalchemy import create_engine, func, select

from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.engines.base import Health
from hoard.ids import new_id
from hoard.security.secrets import SecretBox
from hoard.store.models import SHARDS, Cluster, Node, Project, ShardOwner, Worker, utcnow

PROVIDER = "bench-none"
KEY = "q0b6VkQ8n6mX1z2l0uW3V7h3YpA8s1cQJ5o0Gx9Jd3E="  # a Fernet key, for this bench only
LIMITS = {"cpu": "1 CPU", "memory": "256 MiB"}


# --- the parent: fill the store, start the workers, report ----------------------

def fill(url: str, count: int) -> None:
    """``count`` ACTIVE clusters, one HEALTHY node each, in one project."""
    box = SecretBox(KEY.encode())
    sealed = box.seal("bench-password")
    engine = create_engine(url)
    ids = sorted(new_id() for _ in range(count))
    with engine.begin() as conn:
        project_id = new_id()
        conn.execute(Project.__table__.insert(), [{
            "id": project_id, "name": "bench", "is_admin": False, "quota_clusters": count,
            "quota_nodes": count, "quota_storage_gb": count * 10}])
        now = utcnow()
        for start in range(0, count, 5_000):
            clusters, nodes = [], []
            for i in range(start, min(count, start + 5_000)):
                cid = ids[i]
                clusters.append({
                    "id": cid, "project_id": project_id, "name": f"bench-{i:06d}",
                    "engine": "redis", "version": "7", "size": "nano", "node_count": 1,
                    "storage_gb": 1, "status": ClusterStatus.ACTIVE, "status_reason": "",
                    "admin_user": "admin", "admin_password": sealed,
                    "service_password": sealed, "provider": PROVIDER,
                    "created_at": now, "updated_at": now})
                nodes.append({
                    "id": new_id(), "cluster_id": cid, "ordinal": 0, "role": "primary",
                    "provider": PROVIDER, "status": NodeStatus.HEALTHY, "status_reason": "",
                    "host": f"127.{100 + i // 65536}.{i // 256 % 256}.{i % 256}",
                    "port": 6379, "limits": LIMITS, "observed_at": now})
            conn.execute(Cluster.__table__.insert(), clusters)
            conn.execute(Node.__table__.insert(), nodes)
    engine.dispose()


def run_workers(url: str, state_dir: Path, workers: int, passes: int) -> list[dict[str, Any]]:
    """Start ``workers`` worker processes; each reports its passes as a JSON line."""
    engine = create_engine(url)
    with engine.begin() as conn:  # a clean slate: no leases, no owners
        conn.execute(ShardOwner.__table__.update().values(worker_id=None))
        conn.execute(Worker.__table__.delete())
    engine.dispose()
    procs = []
    for n in range(workers):
        env = {**os.environ, "HOARD_DATABASE_URL": url, "HOARD_STATE_DIR": str(state_dir),
               "HOARD_WORKER_ID": f"bench-w{n}", "HOARD_LEASE_SECONDS": "3",
               "HOARD_SECRET_KEY": KEY, "HOARD_LOG_LEVEL": "WARNING"}
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--worker", "--expect", str(workers),
             "--passes", str(passes)], env=env, stdout=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed (exit {proc.returncode}): {out}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--workers", default="1,3")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.expect, args.passes)
        return
    from tests.pgserver import postgres_store

    print(load_note())
    with postgres_store() as url:
        state_dir = make_state_dir("hoard-bench-observer-")
        env = {**os.environ, "HOARD_DATABASE_URL": url, "HOARD_SECRET_KEY": KEY}
        subprocess.run([sys.executable, "-m", "hoard", "migrate", "--state-dir",
                        str(state_dir)], env=env, check=True, capture_output=True)
        t0 = time.perf_counter()
        fill(url, args.clusters)
        with create_engine(url).connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            total = conn.scalar(select(func.count()).select_from(Cluster))
        print(f"{total} clusters inserted in {time.perf_counter() - t0:.0f} s; "
              f"{SHARDS} shards; {args.passes} passes per worker, all workers at once")
        for workers in (int(w) for w in args.workers.split(",")):
            results = run_workers(url, state_dir, workers, args.passes)
            for r in sorted(results, key=lambda r: str(r["worker"])):
                print(f"  {workers} worker(s): {r['worker']}: {r['shards']} shards, "
                      f"{r['checked']} clusters, pass median {median(r['seconds']):.2f} s "
                      f"(each: {', '.join(f'{s:.2f}' for s in r['seconds'])}), "
                      f"{r['checked'] / median(r['seconds']):,.0f} clusters/s")


# --- a worker: join, wait for the shards to settle, pass -----------------------

class NoProcesses:
    """Stand-in provider: every node runs; no storage use is known."""

    def is_running(self, node_id: str, name: str = "server") -> bool:
        return True

    def storage_usage(self, node_id: str, storage_gb: int) -> None:
        return None


class Healthy:
    """Stand-in engine: the real engine, whose health check answers ok at once."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def health(self, ctx: Any, ca_file: str, timeout: float = 3.0) -> Health:
        assert ctx.service.password  # the real check logs in as Hoard's service account
        return Health(True, "")


def settled(url: str, expect: int) -> bool:
    """Every shard owned, by exactly ``expect`` live workers."""
    engine = create_engine(url)
    with engine.connect() as conn:
        free = conn.scalar(select(func.count()).select_from(ShardOwner)
                           .where(ShardOwner.worker_id.is_(None)))
        owners = conn.scalar(select(func.count(ShardOwner.worker_id.distinct())))
    engine.dispose()
    return free == 0 and owners == expect


def worker(expect: int, passes: int) -> None:
    from hoard.settings import Settings
    from hoard.workflows import membership, observer
    from hoard.workflows.services import build

    settings = Settings()
    svc = build(settings, migrate_schema=False)
    svc.providers[PROVIDER] = NoProcesses()  # type: ignore[assignment]
    for name in list(svc.engines):
        svc.engines[name] = Healthy(svc.engines[name])
    member = membership.Membership(svc.store, settings.worker_id, settings.lease_seconds,
                                   recover=lambda ids: None)
    member.join()
    membership.install_fence(svc.store, member)
    member.start()
    deadline = time.monotonic() + 120
    while not (settled(settings.store_url, expect) and member.owned()):
        if time.monotonic() > deadline:
            raise SystemExit("the shards did not settle in 120 s")
        time.sleep(0.5)
    time.sleep(2 * settings.lease_seconds / 3)  # one more beat: every worker saw it settle
    shards = len(member.owned())
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="observe")
    seconds, checked = [], 0
    for _ in range(passes):
        with membership.background_pass():
            t0 = time.perf_counter()
            checked = observer.observe_once(pool, settings.observe_batch)
            seconds.append(time.perf_counter() - t0)
    member.leave()
    print(json.dumps({"worker": settings.worker_id, "shards": shards, "checked": checked,
                      "seconds": seconds}))


if __name__ == "__main__":
    main()
