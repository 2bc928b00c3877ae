"""Backups that prove themselves, for every engine, against real servers: a backup
of known rows restored into a throwaway node passes the engine's own checks
with exact counts; a corrupted one (bytes flipped in the stored object, or a
table's bytes changed inside a backup that still decrypts) fails with the
reason; nothing of the throwaway node survives either way; bad input changes
nothing. One cluster per engine is shared by the module's tests."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import sqlite3
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import psycopg
import pytest

from hoard.backups.local import LocalStore
from hoard.backups.pipeline import download, upload
from hoard.security.secrets import SecretBox, load_or_create_key
from hoard.workflows import verification
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
from tests.test_backups import backup
from tests.test_cli import as_json, hoard_cli

ENGINES = ["postgresql", "mariadb", "redis"]
ROWS = 123
EXPECTED = {"postgresql": {"app.public.items": ROWS}, "mariadb": {"app.items": ROWS},
            "redis": {"db0": ROWS}}
# Whose check finds a table damaged inside a backup that decrypts and checks out.
CAUGHT_BY = {"postgresql": "pg_verifybackup", "mariadb": "mbstream", "redis": "redis-check-rdb"}


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    with hoard_server({"HOARD_SCHEDULE_INTERVAL": "0.5"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: HoardServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _pymysql(uri: str) -> Any:
    import pymysql

    parsed = urlparse(uri)
    query = dict(p.split("=", 1) for p in parsed.query.split("&"))
    return pymysql.connect(host=parsed.hostname, port=parsed.port,
                           user=unquote(parsed.username or ""),
                           password=unquote(parsed.password or ""),
                           database=parsed.path.lstrip("/"), ssl_ca=unquote(query["ssl_ca"]),
                           ssl_verify_identity=True, autocommit=True, connect_timeout=10)


def write_rows(engine: str, uri: str) -> None:
    """ROWS rows in one table (with an index), or ROWS keys in database 0."""
    if engine == "postgresql":
        with psycopg.connect(uri, connect_timeout=10) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
            conn.execute("CREATE INDEX items_v ON items (v)")
            conn.execute("INSERT INTO items SELECT i, md5(i::text) FROM "
                         "generate_series(1, %s) i", (ROWS,))
    elif engine == "mariadb":
        with _pymysql(uri) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE items (id INT PRIMARY KEY, v TEXT, KEY (v(16))) "
                        "ENGINE=InnoDB")
            cur.executemany("INSERT INTO items VALUES (%s, MD5(%s))",
                            [(i, i) for i in range(1, ROWS + 1)])
    else:
        import redis

        with redis.Redis.from_url(uri, socket_timeout=10) as r:
            r.mset({f"item:{i}": str(i) for i in range(1, ROWS + 1)})


@pytest.fixture(scope="module")
def sources(client: httpx.Client) -> Iterator[dict[str, dict[str, Any]]]:
    """One cluster per engine with ROWS rows written, and a backup of it."""
    made: dict[str, dict[str, Any]] = {}
    try:
        for engine in ENGINES:
            cluster = create_cluster(client, f"verify-{engine}", engine=engine)
            made[engine] = {"cluster": cluster}
            write_rows(engine, tenant_uri(client, cluster["id"]))
            made[engine]["backup"] = backup(client, cluster["id"])
        yield made
    finally:
        for engine in made:
            delete_cluster(client, made[engine]["cluster"]["id"])


def verify(client: httpx.Client, backup_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask for a verification and wait for it: (operation, backup)."""
    answer = client.post(f"/v2/backups/{backup_id}/actions/verify")
    assert answer.status_code == 202, answer.text
    assert answer.json()["backup"]["verifying"] is True
    op = wait_operation(client, answer.json()["operation"]["id"], timeout=180)
    shown = client.get(f"/v2/backups/{backup_id}").json()
    assert shown["verifying"] is False
    return op, shown


def leftovers(server: HoardServer, client: httpx.Client) -> list[str]:
    """Anything on the host for a node that is no cluster's: a directory, a
    record, a volume, a mount, a cgroup or a process."""
    listed = client.get("/v2/clusters", params={"limit": 1000}).json()["clusters"]
    own = {m["id"] for c in listed for m in c["members"]}
    state = server.state_dir
    found = [f"directory {p}" for p in (state / "nodes").iterdir() if p.name not in own]
    found += [f"record {p}" for p in (state / "private" / "nodes").iterdir()
              if p.name not in own]
    volumes = state / "volumes"
    found += [f"volume {p}" for p in (volumes.glob("*.img") if volumes.exists() else [])
              if p.stem not in own]
    found += [f"mount {line}" for line in Path("/proc/mounts").read_text().splitlines()
              if str(state / "nodes") in line and not any(n in line for n in own)]
    cgroups = Path("/sys/fs/cgroup/memory/hoard")
    nodes = {p.name for p in (state / "nodes").iterdir()} | own
    found += [f"cgroup {p}" for p in (cgroups.iterdir() if cgroups.exists() else [])
              if p.is_dir() and p.name not in nodes and _ours(server, p.name)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(state / "nodes") in cmdline and not any(n in cmdline for n in own):
            found.append(f"process {proc.name}: {cmdline[:120]}")
    return found


def _ours(server: HoardServer, node_id: str) -> bool:
    """Whether a node id appears in this server's operations (another server's
    nodes share the host's cgroups)."""
    with sqlite3.connect(server.state_dir / "state.sqlite", timeout=10) as db:
        return db.execute("SELECT count(*) FROM operations WHERE params LIKE ?",
                          (f"%{node_id}%",)).fetchone()[0] > 0


def events(client: httpx.Client, cluster_id: str, kind: str) -> list[dict[str, Any]]:
    page = client.get(f"/v2/clusters/{cluster_id}/events", params={"limit": 1000}).json()
    return [e for e in page["events"] if e["kind"] == kind]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_backup_of_known_rows_is_verified(client: httpx.Client, server: HoardServer,
                                            sources: dict[str, dict[str, Any]],
                                            engine: str) -> None:
    cluster, made = sources[engine]["cluster"], sources[engine]["backup"]
    assert made["verification"] is None and made["verified_at"] is None
    before = time.time()
    op, shown = verify(client, made["id"])
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    assert [s["status"] for s in op["steps"]] == ["done"] * 4
    result = shown["verification"]
    assert result["status"] == "passed" and result["reason"] == ""
    assert result["counts"] == EXPECTED[engine]
    assert result["checks"] and 0 < result["seconds"] <= time.time() - before + 1
    assert shown["verified_at"] is not None
    now = client.get(f"/v2/clusters/{cluster['id']}").json()
    assert now["last_verified_restorable_at"] == shown["verified_at"]
    assert now["last_verified_restorable_seconds"] == result["seconds"]
    assert len(events(client, cluster["id"], "backup.verified")) == 1
    assert leftovers(server, client) == []
    # Not a tenant's cluster: never listed, never counted.
    listed = client.get("/v2/clusters", params={"limit": 1000}).json()["clusters"]
    assert {c["id"] for c in listed} == {s["cluster"]["id"] for s in sources.values()}
    assert next(c for c in listed if c["id"] == cluster["id"])[
        "last_verified_restorable_at"] == shown["verified_at"]  # the list says so too


def flip_stored_bytes(server: HoardServer, made: dict[str, Any]) -> None:
    stored = next((server.state_dir / "backups").rglob(f"{made['id']}.enc"))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))


def rewrite_plaintext(server: HoardServer, made: dict[str, Any],
                      change: Callable[[bytearray], None]) -> None:
    """Change the backup's plaintext and store it again, encrypted with the
    project's key under its own key and with its checksum recorded: a backup that
    decrypts and checks out, whose content is damaged."""
    box = SecretBox(load_or_create_key(server.state_dir / "secret.key", None))
    store = LocalStore(server.state_dir / "backups")
    with sqlite3.connect(server.state_dir / "state.sqlite", timeout=10) as db:
        key, sha, sealed = db.execute(
            "SELECT b.object_key, b.sha256, p.backup_key FROM backups b JOIN projects p "
            "ON p.id = b.project_id WHERE b.id = ?", (made["id"],)).fetchone()
    data_key = base64.b64decode(box.open(sealed))
    plain = bytearray(b"".join(download(store, key, data_key, sha)))
    change(plain)
    result = upload(store, key, [bytes(plain)], data_key)
    with sqlite3.connect(server.state_dir / "state.sqlite", timeout=10) as db:
        db.execute("UPDATE backups SET sha256 = ? WHERE id = ?", (result["sha256"], made["id"]))


def damage_table(engine: str, uri: str) -> Callable[[bytearray], None]:
    """How to damage the items table inside a backup's plaintext: PostgreSQL, a
    byte in its heap file's first page (inside the tar); MariaDB and Redis, a
    byte in the middle of the stream (an xbstream chunk's, or the RDB's data)."""
    if engine != "postgresql":
        def middle(plain: bytearray) -> None:
            plain[len(plain) // 2] ^= 0xFF
        return middle
    with psycopg.connect(uri, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_relation_filepath('items')").fetchone()
    assert row is not None
    path = str(row[0])

    def page(plain: bytearray) -> None:
        with tarfile.open(fileobj=io.BytesIO(bytes(plain)), mode="r:") as tar:
            member = tar.getmember(path)
        plain[member.offset_data + 8000] ^= 0xFF  # a tuple near the page's end
    return page


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as PostgreSQL's backup manifests use it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def damage_behind_the_manifest(uri: str) -> Callable[[bytearray], None]:
    """A byte of the items table's first page changed, and the backup's manifest
    rewritten to match (the file's CRC-32C, then the manifest's own SHA-256):
    pg_verifybackup passes, and only reading the page can tell."""
    with psycopg.connect(uri, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_relation_filepath('items')").fetchone()
    assert row is not None
    path = str(row[0])

    def change(plain: bytearray) -> None:
        with tarfile.open(fileobj=io.BytesIO(bytes(plain)), mode="r:") as tar:
            table, manifest = tar.getmember(path), tar.getmember("backup_manifest")
        start, end = table.offset_data, table.offset_data + table.size
        before = crc32c(bytes(plain[start:end])).to_bytes(4, "little").hex()
        plain[start + 8034] ^= 0x01  # a character of a row's text: still valid text
        after = crc32c(bytes(plain[start:end])).to_bytes(4, "little").hex()
        text = bytes(plain[manifest.offset_data:manifest.offset_data + manifest.size])
        entry = f'"Path": "{path}", '.encode()
        at = text.index(entry)
        old = f'"Checksum": "{before}"'.encode()
        assert text.index(old, at) < text.index(b"\n", at), "the manifest's CRC-32C"
        text = text[:at] + text[at:].replace(old, f'"Checksum": "{after}"'.encode(), 1)
        body = text[:text.rstrip(b"\n").rfind(b"\n") + 1]  # what the SHA-256 covers
        last = b'"Manifest-Checksum": "' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'
        text = body + last
        assert len(text) == manifest.size
        plain[manifest.offset_data:manifest.offset_data + manifest.size] = text
    return change


@pytest.mark.parametrize("engine", ENGINES)
def test_a_corrupted_backup_fails_its_verification(client: httpx.Client,
                                                   server: HoardServer,
                                                   sources: dict[str, dict[str, Any]],
                                                   engine: str) -> None:
    cluster = sources[engine]["cluster"]
    uri = tenant_uri(client, cluster["id"])
    cases = [("flipped in the store", flip_stored_bytes, "corrupted or was tampered with"),
             ("damaged inside", lambda srv, b: rewrite_plaintext(srv, b, damage_table(
                 engine, uri)), CAUGHT_BY[engine])]
    if engine == "postgresql":  # past pg_verifybackup: amcheck reads the page
        cases.append(("damaged behind the manifest", lambda srv, b: rewrite_plaintext(
            srv, b, damage_behind_the_manifest(uri)), "amcheck: table app.public.items"))
    for what, corrupt, said in cases:
        made = backup(client, cluster["id"])
        corrupt(server, made)
        op, shown = verify(client, made["id"])
        assert op["status"] == "failed", (what, op["steps"])
        result = shown["verification"]
        assert result["status"] == "failed" and result["reason"] == op["error"], what
        assert said in result["reason"], (what, result["reason"])
        if what != "flipped in the store":  # it decrypted: the engine's own check caught it
            assert "tampered" not in result["reason"], result["reason"]
        assert result["counts"] == {} and shown["verified_at"] is None
        failed = events(client, cluster["id"], "backup.verification_failed")
        assert failed and made["id"] in failed[-1]["message"]
        assert result["reason"] in failed[-1]["message"]
        assert op["steps"][-1] == {**op["steps"][-1], "status": "done"}  # node removed
        assert leftovers(server, client) == [], what


def test_bad_input_is_refused_and_changes_nothing(client: httpx.Client,
                                                  sources: dict[str, dict[str, Any]]) -> None:
    cluster, made = sources["redis"]["cluster"], sources["redis"]["backup"]
    before = client.get(f"/v2/backups/{made['id']}").json()
    missing = client.post("/v2/backups/00000000-0000-4000-8000-000000000000/actions/verify")
    assert missing.status_code == 404
    assert client.post("/v2/backups/not-an-id/actions/verify").status_code == 422
    odd = client.post(f"/v2/backups/{made['id']}/actions/verify", json={"fast": True})
    assert odd.status_code == 422 and "fast" in odd.text
    other = httpx.Client(base_url=str(client.base_url), headers={
        "Authorization": f"Bearer {new_tenant(client, 'verify-other')}"})
    with other:
        assert other.post(f"/v2/backups/{made['id']}/actions/verify").status_code == 404
    # One verification of a backup at a time.
    first = client.post(f"/v2/backups/{made['id']}/actions/verify")
    assert first.status_code == 202
    again = client.post(f"/v2/backups/{made['id']}/actions/verify")
    assert again.status_code == 409 and first.json()["operation"]["id"] in again.text
    deleting = client.delete(f"/v2/backups/{made['id']}")
    assert deleting.status_code == 409
    assert wait_operation(client, first.json()["operation"]["id"])["status"] == "succeeded"
    path = f"/v2/clusters/{cluster['id']}/backup-schedule"
    assert client.put(path, json={"cron": "0 3 * * *", "verify": "daily"}).status_code == 200
    for bad in ("hourly", "61 * * * *", "0 0 31 2 *", "", 7, 3.5):
        refused = client.put(path, json={"cron": "0 4 * * *", "verify": bad})
        assert refused.status_code == 422, (bad, refused.text)
    assert client.get(path).json()["verify"] == "daily"
    assert client.get(path).json()["cron"] == "0 3 * * *"
    after = client.get(f"/v2/backups/{made['id']}").json()
    assert after["status"] == before["status"] == "available"


def test_a_verify_schedule_verifies_the_newest_backup(client: httpx.Client,
                                                      server: HoardServer,
                                                      sources: dict[str, dict[str, Any]]
                                                      ) -> None:
    cluster = sources["redis"]["cluster"]
    path = f"/v2/clusters/{cluster['id']}/backup-schedule"
    # Backups once a year (not now); verification every minute.
    assert client.put(path, json={"cron": "0 0 1 1 *", "verify": "* * * * *"}
                      ).status_code == 200
    newest = backup(client, cluster["id"])
    due = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=2)
    with sqlite3.connect(server.state_dir / "state.sqlite", timeout=10) as db:
        db.execute("UPDATE clusters SET updated_at = ? WHERE id = ?",
                   (due.isoformat(sep=" "), cluster["id"]))
        db.execute("UPDATE operations SET created_at = ? WHERE cluster_id = ? AND "
                   "kind = 'verify'", (due.isoformat(sep=" "), cluster["id"]))
    deadline = time.monotonic() + 60
    while True:
        shown = client.get(f"/v2/backups/{newest['id']}").json()
        if shown["verification"] is not None:
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.3)
    assert client.delete(path).status_code == 204
    assert shown["verification"]["status"] == "passed", shown["verification"]
    assert shown["verification"]["counts"] == EXPECTED["redis"]
    assert leftovers(server, client) == []


def test_the_cli_verifies_a_backup(server: HoardServer, client: httpx.Client,
                                   sources: dict[str, dict[str, Any]]) -> None:
    made = sources["redis"]["backup"]
    shown = as_json(hoard_cli(server, ADMIN_TOKEN, "backup", "verify", made["id"], "--wait",
                              "-o", "json"))
    assert shown["verification"]["status"] == "passed"
    assert shown["verification"]["counts"] == EXPECTED["redis"]
    refused = hoard_cli(server, ADMIN_TOKEN, "backup", "verify", "not-an-id")
    assert refused.returncode != 0 and "not a backup id" in refused.stderr


def wait_paused(client: httpx.Client, op_id: str, step: str) -> None:
    """Until ``step`` has done its work and pauses before it is recorded
    (HOARD_PAUSE_STEP)."""
    deadline = time.monotonic() + 120
    while True:
        op = client.get(f"/v2/operations/{op_id}").json()
        if any(s["name"] == step and "paused" in s.get("detail", "") for s in op["steps"]):
            return
        assert op["status"] == "running" and time.monotonic() < deadline, op
        time.sleep(0.05)


def restart(server: HoardServer, **env: str) -> None:
    """Stop Hoard (its databases keep running) and start it with ``env`` set, and
    the other step hooks unset."""
    server.stop()
    for name in ("HOARD_FAIL_STEP", "HOARD_PAUSE_STEP", "HOARD_PAUSE_SECONDS"):
        server.env.pop(name, None)
    server.env.update(env)
    server.start()


def test_the_throwaway_node_goes_when_the_worker_dies(
        server: HoardServer, sources: dict[str, dict[str, Any]]) -> None:
    """Hoard killed (-9) after the throwaway node started, before that was
    recorded: the restarted worker resumes the workflow, checks and removes the
    node. (A check that fails on the running node is the PostgreSQL page damaged
    behind its manifest, above.)"""
    restart(server, HOARD_PAUSE_STEP=verification.START, HOARD_PAUSE_SECONDS="60")
    with server.client() as client:
        made = sources["postgresql"]["backup"]
        answer = client.post(f"/v2/backups/{made['id']}/actions/verify")
        assert answer.status_code == 202, answer.text
        op_id = answer.json()["operation"]["id"]
        wait_paused(client, op_id, verification.START)
        # The throwaway node runs (and is seen), and counts against no quota.
        assert any(found.startswith("process ") for found in leftovers(server, client))
        used = [p["usage"] for p in client.get("/v2/projects").json()]
        assert sum(u["clusters"] for u in used) == sum(u["nodes"] for u in used) == 3
        server.kill9()
    restart(server)
    with server.client() as client:
        op = wait_operation(client, op_id, timeout=180)
        assert op["status"] == "succeeded", (op["error"], op["steps"])
        shown = client.get(f"/v2/backups/{made['id']}").json()
        assert shown["verification"]["counts"] == EXPECTED["postgresql"]
        assert leftovers(server, client) == []
