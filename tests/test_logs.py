"""GET /v2/clusters/{id}/logs against a real Hoard and real servers of every
engine: refused logins and slow statements show, passwords never do (set through
the API and in clear through SQL or Redis commands), following delivers what is
written after the request started, and bad input is refused."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import log_clients
from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    new_tenant,
    tenant_uri,
    wait_operation,
)
from tests.test_api_validation import assert_problem
from tests.test_cli import hoard_cli

ENGINES = ["postgresql", "mariadb", "redis"]
NDJSON = "application/x-ndjson"
# Where each engine's server log is in its node's directory (the local provider's).
SERVER_LOG = Path("log/server.log")


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, hoard: HoardServer) -> Iterator[httpx.Client]:
    with hoard.client(new_tenant(admin, f"logs-{time.monotonic_ns()}")) as client:
        yield client


@pytest.fixture(scope="module", params=ENGINES)
def logged(request: pytest.FixtureRequest, tenant: httpx.Client) -> Iterator[dict[str, Any]]:
    """One cluster per engine, its slow-query threshold set low by a configuration
    given at create."""
    engine = request.param
    config = tenant.post("/v2/configurations", json={
        "name": f"{engine}-slow", "engine": engine, "values": log_clients.SLOW_CONFIG[engine]})
    assert config.status_code == 201, config.text
    cluster = create_cluster(tenant, f"{engine}-logs", engine=engine,
                             configuration_id=config.json()["id"])
    try:
        yield cluster
    finally:
        delete_cluster(tenant, cluster["id"])
        tenant.delete(f"/v2/configurations/{config.json()['id']}")


def read(tenant: httpx.Client, cluster: dict[str, Any], **params: Any) -> dict[str, Any]:
    answer = tenant.get(f"/v2/clusters/{cluster['id']}/logs", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return dict(answer.json())


def wait_line(tenant: httpx.Client, cluster: dict[str, Any], marker: str,
              **params: Any) -> dict[str, Any]:
    """The first entry holding ``marker`` (a server writes its log as it goes)."""
    deadline = time.monotonic() + 15
    while True:
        lines = read(tenant, cluster, limit=1000, **params)["lines"]
        found = [x for x in lines if marker in x["line"]]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, f"{marker!r} not in the log: {lines[-20:]}"
        time.sleep(0.1)


def test_the_log_shows_a_refused_login_and_a_slow_statement(
        tenant: httpx.Client, logged: dict[str, Any]) -> None:
    engine, uri = logged["engine"], tenant_uri(tenant, logged["id"])
    node = logged["members"][0]["id"]
    before = datetime.now(UTC) - timedelta(seconds=2)  # servers' clocks are this host's
    said = log_clients.failed_login(engine, uri, "mallory")
    refused = wait_line(tenant, logged, "mallory")
    assert refused["node"] == node
    assert datetime.fromisoformat(refused["time"]) >= before, (refused, said)
    expected = {"postgresql": 'password authentication failed for user "mallory"',
                "mariadb": "Access denied for user 'mallory'",
                "redis": "authentication failed for user 'mallory'"}[engine]
    assert expected in refused["line"]

    log_clients.slow_statement(engine, uri, "slow-marker-1")
    slow = wait_line(tenant, logged, "slow-marker-1", kind="slow")
    assert slow["node"] == node and datetime.fromisoformat(slow["time"]) >= before
    took = {"postgresql": "duration: ", "mariadb": "Query_time: ", "redis": " us: EVAL"}[engine]
    assert took in slow["line"], slow
    if engine == "postgresql":  # below the threshold: not a slow statement
        log_clients.fast_statement(engine, uri, "fast-marker-1")
        assert "fast-marker-1" not in json.dumps(read(tenant, logged, kind="slow", limit=1000))
    # `since` keeps the later entries only, `limit` the newest.
    later = read(tenant, logged, kind="slow", since=slow["time"], limit=1000)["lines"]
    assert later and all(x["time"] >= slow["time"] for x in later)
    one = read(tenant, logged, limit=1)
    assert len(one["lines"]) == 1 and one["truncated"] is True and one["limit"] == 1


def test_no_password_ever_shows(tenant: httpx.Client, logged: dict[str, Any]) -> None:
    engine, cid = logged["engine"], logged["id"]
    body: dict[str, Any] = {"name": "lena", "databases": ["app"]}
    if engine == "redis":
        body = {"name": "lena", "keys": ["*"], "categories": ["read", "write", "connection"]}
    made = tenant.post(f"/v2/clusters/{cid}/users", json=body)
    assert made.status_code == 201, made.text
    first = made.json()["user"]["password"]
    rotated = tenant.post(f"/v2/clusters/{cid}/users/lena/actions/rotate-password")
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["user"]["password"]
    admin = tenant.post(f"/v2/clusters/{cid}/credentials/actions/rotate")
    assert admin.status_code == 200, admin.text
    assert wait_operation(tenant, admin.json()["operation"]["id"])["status"] == "succeeded"
    third = admin.json()["user"]["password"]
    uri = tenant_uri(tenant, cid)
    literals = [f"Lit{engine}{n}secret" for n in range(3)]
    log_clients.passwords_in_clear(engine, uri, "lena", second, literals)
    stage1 = hashlib.sha1(second.encode()).digest()  # noqa: S324 - MariaDB's own hash
    secrets = [first, second, third, *literals,
               # what Hoard sends instead of a password is secret too
               "*" + hashlib.sha1(stage1).hexdigest().upper(),  # noqa: S324
               hashlib.sha256(second.encode()).hexdigest()]
    # The statements were logged (scrubbed), so their absence below means something.
    scrubbed = {"postgresql": ("server", "ALTER ROLE lena PASSWORD '***'"),
                "mariadb": ("slow", "SET PASSWORD = PASSWORD('***')"),
                "redis": ("slow", "AUTH")}[engine]
    wait_line(tenant, logged, scrubbed[1], kind=scrubbed[0])
    wait_line(tenant, logged, "someone:***@db.example", kind="slow")
    for kind in ("server", "slow"):
        text = json.dumps(read(tenant, logged, kind=kind, limit=1000))
        for secret in secrets:
            assert secret not in text, (kind, secret)
        assert "SCRAM-SHA-256$" not in text


def answered_follows(admin: httpx.Client) -> float:
    """How many log requests have ended with 200 (the gate counts a request when
    its answer is over)."""
    wanted = 'hoard_http_requests_total{method="GET",route="/v2/clusters/{cluster_id}/logs",'
    for line in admin.get("/metrics").text.splitlines():
        if line.startswith(wanted) and 'status="200"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_follow_delivers_what_is_written_after_the_request(
        tenant: httpx.Client, admin: httpx.Client, logged: dict[str, Any]) -> None:
    engine, uri = logged["engine"], tenant_uri(tenant, logged["id"])
    url = f"/v2/clusters/{logged['id']}/logs"
    ended = answered_follows(admin)
    with tenant.stream("GET", url, params={"follow": "true", "limit": 1},
                       timeout=httpx.Timeout(10, read=15)) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(NDJSON)
        log_clients.failed_login(engine, uri, "followed_user")  # after the answer began
        seen = []
        for raw in answer.iter_lines():
            entry = json.loads(raw)
            assert set(entry) == {"time", "node", "line"}, entry
            seen.append(entry)
            if "followed_user" in entry["line"]:
                break
        assert len(seen) >= 2  # the one asked for, then the new one
    # The client left: the server notices and ends the answer.
    deadline = time.monotonic() + 10
    while answered_follows(admin) < ended + 1:
        assert time.monotonic() < deadline, "the follow went on after the client left"
        time.sleep(0.1)


def test_bad_input_is_refused(tenant: httpx.Client, hoard: HoardServer, admin: httpx.Client,
                              logged: dict[str, Any]) -> None:
    url = f"/v2/clusters/{logged['id']}/logs"
    assert_problem(tenant.get(url, params={"node": "0b7d3a41-3d53-4b5c-9f59-4c6e3b2a1f00"}),
                   404, "no node")
    for node in ("../../etc", "primary", "1"):
        assert_problem(tenant.get(url, params={"node": node}), 422, "node")
    for since in ("yesterday", "2026-01-01T12:00:00", "2026-13-01T00:00:00Z", "1767268800"):
        assert_problem(tenant.get(url, params={"since": since}), 422, "since")
    for kind in ("../../../etc/passwd", "general", "SLOW"):
        assert_problem(tenant.get(url, params={"kind": kind}), 422, "kind")
    for limit in ("0", "1001", "x"):
        assert_problem(tenant.get(url, params={"limit": limit}), 422, "limit")
    assert_problem(tenant.get(url, params={"follow": "maybe"}), 422, "follow")
    with hoard.client(new_tenant(admin, f"other-{time.monotonic_ns()}")) as other:
        assert_problem(other.get(url), 404, "no cluster")


def test_a_link_planted_in_the_node_is_not_followed(
        tenant: httpx.Client, hoard: HoardServer, logged: dict[str, Any]) -> None:
    """A server that replaces its log with a link to a file of the host's gets a
    refusal, not the file."""
    node_dir = hoard.state_dir / "nodes" / logged["members"][0]["id"]
    log, kept = node_dir / SERVER_LOG, node_dir / "log" / "server.log.kept"
    os.rename(log, kept)
    try:
        os.symlink("/etc/passwd", log)
        answer = tenant.get(f"/v2/clusters/{logged['id']}/logs")
        assert_problem(answer, 409, "not a log file of the node's own")
        assert "root:" not in answer.text
    finally:
        os.unlink(log)
        os.rename(kept, log)
    assert read(tenant, logged)["lines"]


def test_cli_logs(tenant: httpx.Client, hoard: HoardServer, logged: dict[str, Any]) -> None:
    """``hoard cluster logs``: the newest entries, the slow log, a node by ordinal,
    and -f printing what is written while it runs (Ctrl-C ends it). The CLI does
    the same for every engine: one is enough."""
    if logged["engine"] != "redis":
        pytest.skip("the CLI is checked against one engine")
    token = tenant.headers["Authorization"].removeprefix("Bearer ")
    name, engine = logged["name"], logged["engine"]
    shown = hoard_cli(hoard, token, "cluster", "logs", name, "--json", "--limit", "3",
                      "--node", "0")
    assert shown.returncode == 0, shown.stderr
    entries = [json.loads(x) for x in shown.stdout.splitlines()]
    assert len(entries) == 3 and {e["node"] for e in entries} == {logged["members"][0]["id"]}
    # Its own slow statement: a Redis slow log keeps only its newest entries.
    log_clients.slow_statement(engine, tenant_uri(tenant, logged["id"]), "slow-marker-cli")
    wait_line(tenant, logged, "slow-marker-cli", kind="slow")
    slow = hoard_cli(hoard, token, "cluster", "logs", name, "--slow", "--since", "1h")
    assert slow.returncode == 0 and "slow-marker-cli" in slow.stdout, slow.stderr
    missing = hoard_cli(hoard, token, "cluster", "logs", name, "--node", "7")
    assert missing.returncode == 1 and "has no node 7" in missing.stderr
    bad = hoard_cli(hoard, token, "cluster", "logs", name, "--since", "last week")
    assert bad.returncode == 1 and "RFC 3339" in bad.stderr
    env = {**os.environ, "HOARD_URL": hoard.url, "HOARD_TOKEN": token}
    # Ctrl-C as at a terminal: a test runner's worker may ignore SIGINT, and a child
    # inherits that (Python then installs no KeyboardInterrupt handler).
    with subprocess.Popen([sys.executable, "-m", "hoard", "cluster", "logs", name, "-f",
                           "--since", "1m", "--limit", "1000"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                          ) as proc:
        try:
            log_clients.failed_login(engine, tenant_uri(tenant, logged["id"]), "cli_follower")
            assert proc.stdout is not None
            for line in proc.stdout:
                if "cli_follower" in line:
                    break
            else:
                raise AssertionError(proc.stderr.read() if proc.stderr else "")
            proc.send_signal(signal.SIGINT)
            # Read what is left: a follower writing into a pipe nobody reads would
            # block there, and never see its Ctrl-C through.
            _, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()


def test_each_node_of_a_replicated_cluster_has_its_log(tenant: httpx.Client) -> None:
    """By default the primary's log; ``node`` picks another member's."""
    cluster = create_cluster(tenant, "replicated-logs", engine="redis", nodes=2)
    try:
        members = {m["role"]: m["id"] for m in cluster["members"]}
        assert set(members) == {"primary", "replica"}, cluster["members"]
        default = read(tenant, cluster)["lines"]
        assert default and {x["node"] for x in default} == {members["primary"]}
        replica = read(tenant, cluster, node=members["replica"], limit=1000)["lines"]
        assert {x["node"] for x in replica} == {members["replica"]}
        # A replica's own words: it synchronised with the primary.
        assert any("MASTER <-> REPLICA sync" in x["line"] for x in replica), replica[-10:]
    finally:
        delete_cluster(tenant, cluster["id"])
