"""A control plane of many processes on one PostgreSQL store: a worker killed
(kill -9) in the middle of a create, a delete, a backup or a scale has its
operation finished by another within the lease and some seconds, with nothing
made twice and nothing left behind; a worker paused past its lease never
writes again; workers stopped and started one at a time under a stream of
creates and deletes lose and duplicate nothing; SQLite admits one process."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from hoard.providers.local import LocalProvider
from hoard.settings import libpq_url
from tests.conftest import (
    at_once,
    hoard_server,
    new_tenant,
    remove_state_dir,
    wait_operation,
)
from tests.control_plane import ControlPlane, Process, control_plane

LEASE = 4.0  # HOARD_LEASE_SECONDS in these tests
TAKEOVER_LIMIT = LEASE + 20


def _wait_paused(client: httpx.Client, op_id: str, step: str, timeout: float = 60) -> str:
    """Until the operation pauses in ``step``; the worker running it."""
    deadline = time.monotonic() + timeout
    while True:
        op = client.get(f"/v2/operations/{op_id}").json()
        for s in op["steps"]:
            if s["name"] == step and "paused" in (s.get("detail") or ""):
                return str(s["detail"].rsplit(" ", 1)[-1])
        assert op["status"] == "running", op
        assert time.monotonic() < deadline, op
        time.sleep(0.05)


def _finish(client: httpx.Client, op_id: str, killed_at: float) -> dict[str, Any]:
    op = wait_operation(client, op_id, timeout=TAKEOVER_LIMIT + 30)
    took = time.monotonic() - killed_at
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    assert took <= TAKEOVER_LIMIT, f"finished {took:.1f} s after the kill"
    return op


def _no_debris(plane: ControlPlane, client: httpx.Client) -> None:
    """Every node the store knows runs once; nothing else is on the machine."""
    provider = LocalProvider(plane.state_dir / "nodes", "hoard-db")
    known = {m["id"] for c in client.get("/v2/clusters", params={"limit": 1000}).json()[
        "clusters"] for m in c["members"]}
    assert set(provider.node_ids()) == known


def _kill(plane: ControlPlane, name: str) -> float:
    plane.workers[name].signal(signal.SIGKILL)
    plane.workers[name].wait(10)
    return time.monotonic()


def _create(client: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    answer = client.post("/v2/clusters", json={"name": name, "engine": "redis",
                                               "size": "nano", **fields})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


PAUSED = "start,snapshot and upload,change membership,destroy nodes"


def test_a_killed_workers_operations_are_finished_by_another() -> None:
    with control_plane(3, {"HOARD_PAUSE_STEP": PAUSED, "HOARD_PAUSE_SECONDS": "1.5"}
                       ) as plane, plane.client() as client:
        made = _create(client, "taken", nodes=2)
        cluster_id = made["cluster"]["id"]
        steps = (
            ("start", lambda: made),
            ("snapshot and upload", lambda: client.post(
                f"/v2/clusters/{cluster_id}/backups").json()),
            ("change membership", lambda: client.patch(
                f"/v2/clusters/{cluster_id}", json={"nodes": 3}).json()),
            ("destroy nodes", lambda: client.delete(f"/v2/clusters/{cluster_id}").json()),
        )
        for step, start in steps:
            op_id = start()["operation"]["id"]
            runner = _wait_paused(client, op_id, step)
            killed_at = _kill(plane, runner)  # with the two others alive
            _finish(client, op_id, killed_at)
            _no_debris(plane, client)
            if step == "start":
                cluster = client.get(f"/v2/clusters/{cluster_id}").json()
                assert cluster["status"] == "ACTIVE" and len(cluster["members"]) == 2
            plane.start_worker(runner)  # the same id again, a new incarnation
        listed = client.get("/v2/backups").json()["backups"]
        assert [b["status"] for b in listed] == ["available"]
        # Shards move in a few lease beats after a worker rejoins: every shard
        # owned by exactly one live worker, once they settle.
        deadline = time.monotonic() + 6 * LEASE
        while True:
            workers = client.get("/v2/workers").json()["workers"]
            alive = [w for w in workers if w["state"] == "alive"]
            owned = sorted(n for w in alive for n in w["shards"])
            if owned == list(range(64)):
                break
            assert time.monotonic() < deadline, workers
            time.sleep(0.5)
        assert {w["id"] for w in alive} == {"w1", "w2", "w3"}


def test_a_paused_worker_never_writes_after_losing_its_lease() -> None:
    with control_plane(2, {"HOARD_PAUSE_STEP": "bootstrap",
                           "HOARD_PAUSE_SECONDS": "2"}) as plane, plane.client() as client:
        made = _create(client, "frozen")
        runner = _wait_paused(client, made["operation"]["id"], "bootstrap")
        paused = plane.workers[runner]
        paused.signal(signal.SIGSTOP)
        _finish(client, made["operation"]["id"], time.monotonic())
        before = client.get(f"/v2/operations/{made['operation']['id']}").json()
        paused.signal(signal.SIGCONT)
        # It finds its lease gone before doing anything and stops.
        assert paused.wait(30) == 75
        assert "lost its lease" in paused.text()
        time.sleep(1)
        after = client.get(f"/v2/operations/{made['operation']['id']}").json()
        assert after == before
        _no_debris(plane, client)


def test_an_operation_whose_announcement_is_lost_is_started_by_the_outbox() -> None:
    """No worker listens when the API announces the create (their listening
    connections were just ended, as a store failover would): the owner of the
    cluster's shard starts it all the same, from its outbox pass."""
    with control_plane(1) as plane, plane.client() as client:
        url = libpq_url(plane.env["HOARD_DATABASE_URL"])
        with psycopg.connect(url, autocommit=True) as conn:
            ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = 'hoard-dispatch'").fetchall()
        assert ended == [(True,)]
        made = _create(client, "unheard")  # within the listener's 2 s before it listens again
        op = wait_operation(client, made["operation"]["id"], timeout=60)
        assert op["status"] == "succeeded", op
        log = plane.workers["w1"].text()
        assert "listening for operations failed" in log
        assert f"starting workflow for recorded operation {op['id']}" in log


def test_a_rolling_restart_under_load_loses_nothing() -> None:
    with control_plane(3) as plane, plane.client() as client:
        results: list[tuple[str, str]] = []
        stop, between = threading.Event(), threading.Lock()  # held while a pair runs

        def load() -> None:
            n = 0
            while not stop.is_set():
                with between:
                    n += 1
                    made = _create(client, f"load{n}")
                    op = wait_operation(client, made["operation"]["id"], timeout=120)
                    results.append(("create", op["status"]))
                    gone = client.delete(f"/v2/clusters/{made['cluster']['id']}")
                    op = wait_operation(client, gone.json()["operation"]["id"], timeout=120)
                    results.append(("delete", op["status"]))
                time.sleep(0.05)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            for name in list(plane.workers):
                time.sleep(2)
                worker = plane.workers[name]
                worker.signal(signal.SIGTERM)  # drain, then hand over
                assert worker.wait(60) == 0, worker.text()[-3000:]
                plane.start_worker(name)
            # The API between two requests of the client (one API process here;
            # behind a load balancer its peers would take them meanwhile).
            with between:
                plane.api.stop()
                plane.start_api()
            time.sleep(3)
        finally:
            stop.set()
            loader.join(timeout=300)
        assert len(results) >= 4 and all(s == "succeeded" for _, s in results), results
        assert client.get("/v2/clusters").json()["clusters"] == []
        _no_debris(plane, client)


def test_concurrent_creates_keep_quotas_and_names_on_postgresql() -> None:
    """Ten creates at once into a project with room for three: exactly three are
    accepted, the rest refused with the quota's reason, none half-made; two
    creates of one name at once: one is accepted, the other is a conflict."""
    with control_plane(1) as plane, plane.client() as admin:
        token = new_tenant(admin, "edge", {"clusters": 3, "nodes": 3, "storage_gb": 100})
        with plane.client(token) as tenant:
            answers = at_once([lambda i=i: tenant.post(  # type: ignore[misc]
                "/v2/clusters", json={"name": f"edge-{i}", "engine": "redis", "size": "nano"})
                for i in range(10)])
            codes = sorted(a.status_code for a in answers)
            assert codes == [202] * 3 + [403] * 7, [a.text for a in answers]
            assert all("cluster quota reached: 3 of 3 used" in a.text
                       for a in answers if a.status_code == 403), [a.text for a in answers]
            listed = tenant.get("/v2/clusters").json()["clusters"]
            accepted = {a.json()["cluster"]["name"] for a in answers if a.status_code == 202}
            assert {c["name"] for c in listed} == accepted
            for a in answers:
                if a.status_code == 202:
                    op = wait_operation(tenant, a.json()["operation"]["id"], timeout=120)
                    assert op["status"] == "succeeded", op
        token = new_tenant(admin, "twins")
        with plane.client(token) as tenant:
            twins = at_once([lambda: tenant.post(
                "/v2/clusters", json={"name": "twin", "engine": "redis", "size": "nano"})] * 2)
            assert sorted(a.status_code for a in twins) == [202, 409], [a.text for a in twins]
            made = next(a for a in twins if a.status_code == 202)
            assert wait_operation(tenant, made.json()["operation"]["id"],
                                  timeout=120)["status"] == "succeeded"
            assert [c["name"] for c in tenant.get("/v2/clusters").json()["clusters"]] == ["twin"]


def test_sqlite_admits_one_process() -> None:
    with hoard_server() as server:
        second = Process("serve", "second", server.env, server.state_dir)
        second.start("--port", "0")
        assert second.wait(30) != 0
        assert "in use by pid" in second.text()
        assert "use PostgreSQL" in second.text()


def test_an_api_process_on_sqlite_is_refused_with_the_reason() -> None:
    from tests.conftest import make_state_dir

    state_dir = make_state_dir()
    try:
        run = subprocess.run([sys.executable, "-m", "hoard", "api", "--state-dir",
                              str(state_dir), "--port", "0"], env=plane_env(),
                             capture_output=True, text=True, timeout=60)
    finally:
        remove_state_dir(state_dir)
    assert run.returncode != 0
    assert "`hoard api` needs a PostgreSQL store" in run.stdout + run.stderr


@pytest.mark.parametrize("role", ["api", "worker"])
def test_split_processes_refuse_a_store_that_is_not_migrated(role: str) -> None:
    from tests.pgserver import postgres_store

    with postgres_store() as url:
        from tests.conftest import make_state_dir

        state_dir = make_state_dir()
        run = subprocess.run([sys.executable, "-m", "hoard", role, "--state-dir",
                              str(state_dir)], env={**plane_env(), "HOARD_DATABASE_URL": url},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode != 0
        assert "run `hoard migrate` first" in run.stdout + run.stderr


def plane_env() -> dict[str, str]:
    import os

    return dict(os.environ)
