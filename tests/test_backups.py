"""Backups, restores and point-in-time recovery through the API, for every engine,
against real servers and a real S3 server (moto) as well as the local store."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hoard.engines.base import Backups, IncrementalBackups
from hoard.engines.registry import ENGINES
from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    tenant_uri,
    wait_operation,
)
from tests.engine_clients import keys, write_read
from tests.test_backup_store import BUCKET, S3_ENV, moto_s3  # noqa: F401 - fixture
from tests.test_lifecycle import assert_no_debris

BACKUP_ENGINES = [name for name, e in ENGINES.items() if isinstance(e, Backups)]
PITR_ENGINES = [name for name in BACKUP_ENGINES
                if getattr(ENGINES[name], "log_kind", "")]
FAST = {"HOARD_ARCHIVE_INTERVAL": "0.5", "HOARD_ARCHIVE_ROTATE_SECONDS": "1",
        "HOARD_SCHEDULE_INTERVAL": "0.5"}


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    with hoard_server(FAST) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: HoardServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def uri(client: httpx.Client, cluster_id: str) -> str:
    return tenant_uri(client, cluster_id)


def backup(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    response = client.post(f"/v2/clusters/{cluster_id}/backups")
    assert response.status_code == 202, response.text
    op = wait_operation(client, response.json()["operation"]["id"])
    assert op["status"] == "succeeded", op["error"]
    made = client.get(f"/v2/backups/{response.json()['backup']['id']}").json()
    assert made["status"] == "available" and made["size_bytes"] > 0
    return dict(made)


def restore(client: httpx.Client, name: str, engine: str, spec: dict[str, Any]
            ) -> dict[str, Any]:
    response = client.post("/v2/clusters", json={"name": name, "engine": engine,
                                                 "size": "nano", "restore": spec})
    assert response.status_code == 202, response.text
    op = wait_operation(client, response.json()["operation"]["id"], timeout=300)
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    return dict(client.get(f"/v2/clusters/{response.json()['cluster']['id']}").json())


def put(engine: str, target: str, *names: str) -> None:
    for name in names:
        assert write_read(engine, target, key=name) == "ok"


def wait_archived(client: httpx.Client, cluster_id: str, after: dt.datetime) -> dict[str, Any]:
    """Until the cluster's archived logs cover ``after``; the restorable window."""
    deadline = time.monotonic() + 60
    while True:
        window = client.get("/v2/backups", params={"cluster_id": cluster_id}).json()[
            "restorable"]
        if window and dt.datetime.fromisoformat(window["latest"]) > after:
            return dict(window)
        assert time.monotonic() < deadline, window
        time.sleep(0.5)


@pytest.mark.parametrize("engine", BACKUP_ENGINES)
def test_restore_from_a_backup_has_exactly_its_data(client: httpx.Client, engine: str) -> None:
    source = create_cluster(client, f"src-{engine}", engine=engine)
    put(engine, uri(client, source["id"]), "a1", "a2")
    made = backup(client, source["id"])
    put(engine, uri(client, source["id"]), "b1")
    if engine in PITR_ENGINES:  # b1 is in the archived logs: still not in the restore
        time.sleep(1.2)
        wait_archived(client, source["id"], dt.datetime.now(dt.UTC))
    listed = client.get("/v2/backups", params={"cluster_id": source["id"]}).json()
    assert [b["id"] for b in listed["backups"]] == [made["id"]]
    copy = restore(client, f"copy-{engine}", engine, {"backup_id": made["id"]})
    try:
        assert keys(engine, uri(client, copy["id"])) == {"a1", "a2"}
        put(engine, uri(client, copy["id"]), "c1")  # writable
    finally:
        delete_cluster(client, copy["id"])
        delete_cluster(client, source["id"])
    # The backup outlives its cluster.
    assert client.get(f"/v2/backups/{made['id']}").json()["status"] == "available"


@pytest.mark.parametrize("engine", PITR_ENGINES)
def test_point_in_time_restore(client: httpx.Client, engine: str) -> None:
    source = create_cluster(client, f"pitr-{engine}", engine=engine)
    target = uri(client, source["id"])
    put(engine, target, "before1")
    backup(client, source["id"])
    put(engine, target, "before2")
    time.sleep(1.2)
    when = dt.datetime.now(dt.UTC)
    time.sleep(1.2)
    put(engine, target, "after1")
    window = wait_archived(client, source["id"], when)
    late = (dt.datetime.fromisoformat(window["latest"]) + dt.timedelta(hours=1)).isoformat()
    refused = client.post("/v2/clusters", json={
        "name": "too-late", "engine": engine, "size": "nano",
        "restore": {"cluster_id": source["id"], "time": late}})
    assert refused.status_code == 422 and "restorable window" in refused.json()["detail"]
    assert client.get("/v2/clusters", params={"limit": 1000}).json()["clusters"][-1][
        "name"] != "too-late"
    copy = restore(client, f"pitr-copy-{engine}", engine,
                   {"cluster_id": source["id"], "time": when.isoformat()})
    try:
        assert keys(engine, uri(client, copy["id"])) == {"before1", "before2"}
    finally:
        delete_cluster(client, copy["id"])
        delete_cluster(client, source["id"])


def test_tampered_backup_is_refused_and_leaves_nothing(client: httpx.Client,
                                                       server: HoardServer) -> None:
    engine = BACKUP_ENGINES[0]
    source = create_cluster(client, "tamper-src", engine=engine)
    made = backup(client, source["id"])
    delete_cluster(client, source["id"])
    stored = next((server.state_dir / "backups").rglob(f"{made['id']}.enc"))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    response = client.post("/v2/clusters", json={
        "name": "from-tampered", "engine": engine, "size": "nano",
        "restore": {"backup_id": made["id"]}})
    op = wait_operation(client, response.json()["operation"]["id"])
    assert op["status"] == "failed"
    assert "corrupted or was tampered with" in op["error"]
    cluster = client.get(f"/v2/clusters/{response.json()['cluster']['id']}").json()
    assert cluster["status"] == "FAILED"
    assert_no_debris(server, [cluster["members"][0]["id"]], [])
    delete_cluster(client, cluster["id"])


def test_restore_requests_are_checked_before_any_work(client: httpx.Client) -> None:
    engine = BACKUP_ENGINES[0]
    base = {"name": "nope", "engine": engine, "size": "nano"}
    other = "01a20000-0000-7000-8000-000000000000"
    for spec, status in (({}, 422), ({"backup_id": other, "cluster_id": other}, 422),
                         ({"backup_id": other}, 404), ({"cluster_id": other}, 422),
                         ({"cluster_id": other, "time": "2026-01-01T00:00:00Z"}, 422),
                         ({"backup_id": other, "time": "2026-01-01T00:00:00Z"}, 422)):
        response = client.post("/v2/clusters", json={**base, "restore": spec})
        assert response.status_code == status, (spec, response.text)
    names = [c["name"] for c in client.get("/v2/clusters").json()["clusters"]]
    assert "nope" not in names


def test_final_backup_on_delete_then_restore(client: httpx.Client) -> None:
    engine = BACKUP_ENGINES[0]
    source = create_cluster(client, "finale", engine=engine)
    put(engine, uri(client, source["id"]), "last-words")
    response = client.delete(f"/v2/clusters/{source['id']}", params={"final_backup": "true"})
    assert response.status_code == 202, response.text
    op = wait_operation(client, response.json()["operation"]["id"])
    assert op["status"] == "succeeded", op["error"]
    finals = [b for b in client.get("/v2/backups", params={"cluster_id": source["id"]}
                                    ).json()["backups"] if b["reason"] == "final"]
    assert len(finals) == 1 and finals[0]["status"] == "available"
    copy = restore(client, "finale-copy", engine, {"backup_id": finals[0]["id"]})
    try:
        assert keys(engine, uri(client, copy["id"])) == {"last-words"}
    finally:
        delete_cluster(client, copy["id"])


def test_schedule_retention_keeps_the_newest(client: httpx.Client) -> None:
    engine = BACKUP_ENGINES[0]
    source = create_cluster(client, "kept", engine=engine)
    base = f"/v2/clusters/{source['id']}/backup-schedule"
    assert client.get(base).status_code == 200 and client.get(base).json() is None
    for bad in ({"cron": "every day"}, {"cron": "* * * * * *"}, {"cron": "0 3 * * *",
                                                                   "keep_last": 0}):
        assert client.put(base, json=bad).status_code == 422, bad
    assert client.get(base).json() is None  # a refused schedule changed nothing
    assert client.put(base, json={"cron": "0 3 * * *", "keep_last": 2}).status_code == 200
    assert client.get(base).json() == {"cron": "0 3 * * *", "keep_last": 2, "keep_days": None,
                                     "verify": None}
    made = [backup(client, source["id"])["id"] for _ in range(3)]
    deadline = time.monotonic() + 30
    while True:
        left = [b["id"] for b in client.get("/v2/backups", params={"cluster_id": source["id"]}
                                            ).json()["backups"]]
        if left == made[1:]:
            break
        assert time.monotonic() < deadline, left
        time.sleep(0.3)
    assert client.delete(base).status_code == 204
    assert client.get(base).json() is None
    delete_cluster(client, source["id"])


def test_backups_in_s3(moto_s3: str) -> None:  # noqa: F811 - the fixture
    engine = BACKUP_ENGINES[0]
    env = {**FAST, **S3_ENV, "HOARD_BACKUP_URL": f"s3://{BUCKET}/hoard?endpoint={moto_s3}"}
    with hoard_server(env) as s3_server, s3_server.client() as c:
        source = create_cluster(c, "in-s3", engine=engine)
        put(engine, uri(c, source["id"]), "s3-row")
        made = backup(c, source["id"])
        assert not (s3_server.state_dir / "backups").exists()  # nothing went to local disk
        copy = restore(c, "from-s3", engine, {"backup_id": made["id"]})
        assert keys(engine, uri(c, copy["id"])) == {"s3-row"}
        delete_cluster(c, copy["id"])
        delete_cluster(c, source["id"])


def test_backup_store_files_are_private(server: HoardServer) -> None:
    root = server.state_dir / "backups"
    for path in root.rglob("*") if root.exists() else []:
        mode = os.stat(path).st_mode & 0o777
        assert mode & 0o077 == 0, (path, oct(mode))
    assert Path(root).exists()


def test_a_backup_that_takes_too_long_is_abandoned_and_says_so() -> None:
    engine = BACKUP_ENGINES[0]
    with hoard_server({"HOARD_BACKUP_TIMEOUT": "0.000001"}) as slow, slow.client() as c:
        source = create_cluster(c, "slowpoke", engine=engine)
        response = c.post(f"/v2/clusters/{source['id']}/backups")
        op = wait_operation(c, response.json()["operation"]["id"])
        assert op["status"] == "failed" and "HOARD_BACKUP_TIMEOUT" in op["error"]
        failed = c.get(f"/v2/backups/{response.json()['backup']['id']}").json()
        assert failed["status"] == "failed" and "abandoned" in failed["error"]
        # Nothing of the backup stays in the store, whole or half-written (the
        # cluster's shipped WAL, under logs/, is another matter and may be there).
        store = slow.state_dir / "backups"
        stored = [p for p in store.rglob("*") if p.is_file() and p.parent.name != "logs"] \
            if store.exists() else []
        assert stored == []
        assert c.get(f"/v2/clusters/{source['id']}").json()["status"] == "ACTIVE"
        delete_cluster(c, source["id"])


def test_cli_backup_and_restore(server: HoardServer, client: httpx.Client) -> None:
    from tests.conftest import ADMIN_TOKEN
    from tests.test_cli import as_json, hoard_cli

    engine = BACKUP_ENGINES[0]
    source = create_cluster(client, "cli-src", engine=engine)
    put(engine, uri(client, source["id"]), "cli-row")
    made = as_json(hoard_cli(server, ADMIN_TOKEN, "backup", "create", "cli-src", "--wait",
                             "-o", "json"))
    assert made["status"] == "available"
    listed = as_json(hoard_cli(server, ADMIN_TOKEN, "backup", "list", "--cluster-id",
                               source["id"], "-o", "json"))
    assert [b["id"] for b in listed] == [made["id"]]
    copy = as_json(hoard_cli(server, ADMIN_TOKEN, "cluster", "restore", "cli-copy", "--backup",
                             made["id"], "--engine", engine, "--size", "nano", "-o", "json"))
    assert copy["status"] == "ACTIVE"
    assert keys(engine, uri(client, copy["id"])) == {"cli-row"}
    delete_cluster(client, copy["id"])
    delete_cluster(client, source["id"])
    gone = hoard_cli(server, ADMIN_TOKEN, "backup", "delete", made["id"])
    assert gone.returncode == 0, gone.stderr
    assert client.get(f"/v2/backups/{made['id']}").status_code == 404


INCREMENTAL_ENGINES = [name for name, e in ENGINES.items()
                       if isinstance(e, IncrementalBackups)]


@pytest.mark.parametrize("engine", INCREMENTAL_ENGINES)
def test_incremental_backups_restore_as_a_chain(client: httpx.Client, engine: str) -> None:
    source = create_cluster(client, f"inc-{engine}", engine=engine)
    base = f"/v2/clusters/{source['id']}/backups"
    refused = client.post(base, json={"kind": "incremental"})
    assert refused.status_code == 422 and "full backup first" in refused.json()["detail"]
    put(engine, uri(client, source["id"]), "full1")
    full = backup(client, source["id"])
    put(engine, uri(client, source["id"]), "inc1")
    response = client.post(base, json={"kind": "incremental"})
    assert response.status_code == 202, response.text
    op = wait_operation(client, response.json()["operation"]["id"])
    assert op["status"] == "succeeded", op["error"]
    inc = client.get(f"/v2/backups/{response.json()['backup']['id']}").json()
    assert (inc["kind"], inc["parent_id"]) == ("incremental", full["id"])
    put(engine, uri(client, source["id"]), "late")
    assert client.delete(f"/v2/backups/{full['id']}").status_code == 409  # inc needs it
    copy = restore(client, f"inc-copy-{engine}", engine, {"backup_id": inc["id"]})
    try:
        assert keys(engine, uri(client, copy["id"])) == {"full1", "inc1"}
    finally:
        delete_cluster(client, copy["id"])
        delete_cluster(client, source["id"])
    assert client.delete(f"/v2/backups/{inc['id']}").status_code == 204
    assert client.delete(f"/v2/backups/{full['id']}").status_code == 204


def test_engines_without_incremental_backups_say_so(client: httpx.Client) -> None:
    engine = next(n for n in BACKUP_ENGINES if n not in INCREMENTAL_ENGINES)
    source = create_cluster(client, "no-inc", engine=engine)
    backup(client, source["id"])
    refused = client.post(f"/v2/clusters/{source['id']}/backups", json={"kind": "incremental"})
    assert refused.status_code == 422 and "no incremental backups" in refused.json()["detail"]
    assert client.post(f"/v2/clusters/{source['id']}/backups", json={"kind": "weekly"}
                       ).status_code == 422
    delete_cluster(client, source["id"])


def test_one_bad_schedule_stops_no_one_elses_backups(server: HoardServer,
                                                     client: httpx.Client) -> None:
    engine = BACKUP_ENGINES[0]
    broken = create_cluster(client, "sched-broken", engine=engine)  # walked first: older id
    healthy = create_cluster(client, "sched-healthy", engine=engine)
    every_minute = {"cron": "* * * * *", "keep_last": 5}
    for cluster in (broken, healthy):
        path = f"/v2/clusters/{cluster['id']}/backup-schedule"
        assert client.put(path, json=every_minute).status_code == 200
    assert client.delete(f"/v2/clusters/{broken['id']}/backup-schedule").status_code == 204
    with sqlite3.connect(server.state_dir / "state.sqlite", timeout=10) as db:
        # No schedule is SQL NULL, not JSON null.
        assert db.execute("SELECT backup_schedule IS NULL FROM clusters WHERE id = ?",
                          (broken["id"],)).fetchone() == (1,)
        # A record the scheduler cannot use (no cron), and the healthy schedule due now.
        db.execute("UPDATE clusters SET backup_schedule = '{\"keep_last\": 1}' WHERE id = ?",
                   (broken["id"],))
        due = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=2))
        db.execute("UPDATE clusters SET updated_at = ? WHERE id = ?",
                   (due.isoformat(sep=" "), healthy["id"]))
    deadline = time.monotonic() + 30
    while True:
        made = client.get("/v2/backups", params={"cluster_id": healthy["id"]}).json()["backups"]
        if [b["status"] for b in made if b["reason"] == "scheduled"] == ["available"]:
            break
        assert time.monotonic() < deadline, made
        time.sleep(0.3)
    assert "cron" in (server.state_dir / "serve.log").read_text()  # the bad one was logged
    for cluster in (broken, healthy):
        client.delete(f"/v2/clusters/{cluster['id']}/backup-schedule")
        delete_cluster(client, cluster["id"])
