"""Storage grows with the server running: the same server process (a client's
connection stays open across the growth and keeps working), a larger
filesystem, and an event that says it went online. Where the kernel refuses to
grow a mounted filesystem (ext4 without CAP_SYS_RESOURCE), the refusal is
recognised and the volume grows unmounted instead."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import psycopg
import pytest

from hoard.domain.storage import GIB
from hoard.providers import volumes
from tests.conftest import (
    ADMIN_TOKEN,
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    new_tenant,
    tenant_uri,
    wait_operation,
)


def _size(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def test_postgresql_grows_online_keeping_its_server_and_connections(
        admin: httpx.Client, hoard: HoardServer) -> None:
    with hoard.client(new_tenant(admin, f"online-{time.monotonic_ns()}")) as client:
        cluster = create_cluster(client, "growing", storage_gb=1)
        try:
            if "grown while mounted" not in cluster["members"][0]["limits"]["storage"]:
                pytest.skip("volumes cannot grow mounted here: "
                            + cluster["members"][0]["limits"]["storage"])
            root = hoard.state_dir / "nodes" / cluster["members"][0]["id"]
            before = _size(root)
            plan = client.patch(f"/v2/clusters/{cluster['id']}?dry_run=true",
                                json={"storage_gb": 2}).json()["plan"]
            assert plan["downtime"]["kind"] == "none", plan
            assert plan["changes"][0]["applies"] == "live", plan
            with psycopg.connect(tenant_uri(client, cluster["id"]), autocommit=True) as conn:
                started, backend = conn.execute(
                    "SELECT pg_postmaster_start_time(), pg_backend_pid()").fetchone()
                conn.execute("CREATE TABLE kept (x int)")
                response = client.patch(f"/v2/clusters/{cluster['id']}",
                                        json={"storage_gb": 2})
                assert response.status_code == 202, response.text
                op = wait_operation(client, response.json()["operation"]["id"])
                assert op["status"] == "succeeded", op["error"]
                conn.execute("INSERT INTO kept VALUES (1)")  # the same session, still open
                assert conn.execute("SELECT pg_postmaster_start_time(), pg_backend_pid(), "
                                    "count(*) FROM kept").fetchone() == (started, backend, 1)
            after = _size(root)
            assert after > before + GIB * 0.9, (before, after)
            events = client.get(f"/v2/clusters/{cluster['id']}/events").json()["events"]
            grown = [e["message"] for e in events if e["kind"] == "node.storage_grown"]
            assert grown == ["node 0: storage grown to 2 GB (online: the server kept "
                             "running)"], grown
            view = client.get(f"/v2/clusters/{cluster['id']}").json()
            assert view["storage_gb"] == 2 and view["status"] == "ACTIVE", view
        finally:
            delete_cluster(client, cluster["id"])


@contextmanager
def _session(engine: str, uri: str) -> Iterator[Callable[[], Any]]:
    """One client connection held open; each call answers, over it, what says
    it is the same session on the same server process."""
    parsed, query = urlparse(uri), parse_qs(urlparse(uri).query)
    if engine == "mariadb":
        import pymysql

        conn = pymysql.connect(
            host=parsed.hostname, port=parsed.port, user=unquote(parsed.username or ""),
            password=unquote(parsed.password or ""), ssl_ca=query["ssl_ca"][0],
            ssl_verify_identity=True, connect_timeout=10, autocommit=True)
        with conn, conn.cursor() as cur:
            def mariadb() -> Any:
                # A restarted server would have closed this very connection.
                cur.execute("SELECT CONNECTION_ID()")
                return cur.fetchone()
            yield mariadb
        return
    import redis

    client = redis.Redis.from_url(uri, socket_timeout=10, single_connection_client=True)
    with client:
        yield lambda: (client.client_id(), client.info("server")["run_id"])


@pytest.mark.parametrize("engine", ["mariadb", "redis"])
def test_every_engine_keeps_its_server_and_session_across_growth(
        admin: httpx.Client, hoard: HoardServer, engine: str) -> None:
    with hoard.client(new_tenant(admin, f"online-{engine}-{time.monotonic_ns()}")) as client:
        cluster = create_cluster(client, "growing", engine=engine, storage_gb=1)
        try:
            if "grown while mounted" not in cluster["members"][0]["limits"]["storage"]:
                pytest.skip("volumes cannot grow mounted here")
            with _session(engine, tenant_uri(client, cluster["id"])) as same:
                before = same()
                response = client.patch(f"/v2/clusters/{cluster['id']}",
                                        json={"storage_gb": 2})
                op = wait_operation(client, response.json()["operation"]["id"])
                assert op["status"] == "succeeded", op["error"]
                assert same() == before
            events = client.get(f"/v2/clusters/{cluster['id']}/events").json()["events"]
            assert [e["message"] for e in events if e["kind"] == "node.storage_grown"] == [
                "node 0: storage grown to 2 GB (online: the server kept running)"]
            assert _size(hoard.state_dir / "nodes" / cluster["members"][0]["id"]) > 1.8 * GIB
        finally:
            delete_cluster(client, cluster["id"])


def test_an_ext4_volume_the_kernel_will_not_grow_mounted_grows_unmounted() -> None:
    """Whatever this host allows: a mounted ext4 either grows online, or says why
    not (GrowRefused, nothing lost) and grows unmounted, its data kept."""
    if not volumes.probe().loop:
        pytest.skip(volumes.probe().note)
    tmp = Path(tempfile.mkdtemp(prefix="hoard-grow-"))
    image, mnt = tmp / "v.img", tmp / "mnt"
    try:
        volumes.ensure(image, mnt, 1, "ext4")
        (mnt / "kept").write_bytes(b"data")
        assert not volumes.spans(image, 2)
        try:
            volumes.grow_online(image, mnt, 2 * volumes.GB)
            assert "ext4" in volumes.probe().online
        except volumes.GrowRefused as exc:
            assert "ext4" not in volumes.probe().online
            assert "resize2fs" in str(exc)
            assert not volumes.spans(image, 2)  # the image is larger, the filesystem not
            volumes.grow(image, mnt, 2)
        assert volumes.spans(image, 2) or "ext4" in volumes.probe().online
        assert _size(mnt) > 1.8 * GIB and (mnt / "kept").read_bytes() == b"data"
    finally:
        volumes.remove(image, mnt)
        shutil.rmtree(tmp, ignore_errors=True)


def test_where_the_volume_cannot_grow_mounted_the_node_restarts_for_it() -> None:
    """ext4 volumes (an operator's choice): on a host whose kernel will not grow
    a mounted ext4, the preview says the server stops, the node is stopped,
    grown and started, its data kept, and the event says why."""
    if not volumes.probe().loop:
        pytest.skip(volumes.probe().note)
    with hoard_server({"HOARD_LOCAL_VOLUMES": "ext4"}) as server, \
            server.client(ADMIN_TOKEN) as admin, \
            server.client(new_tenant(admin, "ext4")) as client:
        cluster = create_cluster(client, "ext4", storage_gb=1)
        limits = cluster["members"][0]["limits"]["storage"]
        assert "ext4 filesystem on a loop device" in limits, limits
        online = "grown while mounted" in limits
        plan = client.patch(f"/v2/clusters/{cluster['id']}?dry_run=true",
                            json={"storage_gb": 2}).json()["plan"]
        assert plan["downtime"]["kind"] == ("none" if online else "restart"), plan
        uri = tenant_uri(client, cluster["id"])
        with psycopg.connect(uri, autocommit=True) as conn:
            started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
            conn.execute("CREATE TABLE kept AS SELECT 1 AS x")
        response = client.patch(f"/v2/clusters/{cluster['id']}", json={"storage_gb": 2})
        assert response.status_code == 202, response.text
        op = wait_operation(client, response.json()["operation"]["id"])
        assert op["status"] == "succeeded", op["error"]
        with psycopg.connect(uri, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)
            restarted = conn.execute("SELECT pg_postmaster_start_time()").fetchone() != started
        assert restarted != online
        events = client.get(f"/v2/clusters/{cluster['id']}/events").json()["events"]
        grown = [e["message"] for e in events if e["kind"] == "node.storage_grown"]
        assert len(grown) == 1, grown
        if not online:
            assert grown[0].startswith(
                "node 0: storage grown to 2 GB (restarted for it: the volume cannot grow "
                "mounted here: resize2fs: "), grown
        assert _size(server.state_dir / "nodes" / cluster["members"][0]["id"]) > 1.8 * GIB
        delete_cluster(client, cluster["id"])
