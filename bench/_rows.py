"""Many clusters written straight into a store, for the list and observer
benchmarks: the rows Hoard would hold, without making any node."""

from __future__ import annotations

from sqlalchemy import create_engine, select

from hoard.ids import new_id
from hoard.store.models import Cluster, Node, Project, utcnow

LIMITS = {"cpu": "1 CPU, enforced (cgroup v1)", "memory": "1024 MiB, enforced (cgroup v1)",
          "storage": "10 GB, observed and reported; the local provider does not enforce "
                     "a filesystem size"}


def fill_clusters(url: str, count: int, chunk: int = 10_000) -> tuple[str, list[str]]:
    """Insert ``count`` FAILED clusters with one node each into the admin project,
    ``chunk`` rows a statement; the project's id and the clusters' ids (row i is
    the i-th in id order)."""
    engine = create_engine(url)
    ids = sorted(new_id() for _ in range(count))  # time-ordered, sorted anyway
    with engine.begin() as conn:
        project_id = conn.scalar(select(Project.id).where(Project.name == "admin"))
        assert project_id is not None, "Hoard did not bootstrap the admin project"
        now = utcnow()
        for start in range(0, count, chunk):
            clusters, nodes = [], []
            for i in range(start, min(count, start + chunk)):
                cid, nid = ids[i], new_id()
                clusters.append({
                    "id": cid, "project_id": project_id, "name": f"bench-{i:06d}",
                    "engine": "postgresql", "version": "15", "size": "small", "node_count": 1,
                    "storage_gb": 10, "status": "FAILED",
                    "status_reason": "start: node 0 exited while starting (bench row)",
                    "admin_user": "admin", "admin_password": "sealed-" + cid,
                    "service_password": "sealed-" + nid, "created_at": now, "updated_at": now,
                })
                nodes.append({
                    "id": nid, "cluster_id": cid, "ordinal": 0, "role": "primary",
                    "provider": "local", "host": None, "port": None, "status": "STOPPED",
                    "status_reason": "", "limits": LIMITS, "observed_at": None,
                })
            conn.execute(Cluster.__table__.insert(), clusters)
            conn.execute(Node.__table__.insert(), nodes)
    engine.dispose()
    return str(project_id), ids
