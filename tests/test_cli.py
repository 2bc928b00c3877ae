"""The ``hoard`` CLI against a real server: create, list, show, credentials,
connect (psql), delete, and a readable error for bad input."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import HoardServer, new_tenant

# Where `hoard connect` caches Hoard's CA during these tests (not the real ~/.cache).
CACHE_HOME = Path(tempfile.mkdtemp(prefix="hoard-cli-cache-"))
atexit.register(shutil.rmtree, CACHE_HOME, True)


def hoard_cli(server: HoardServer, token: str, *args: str, stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOARD_URL": server.url, "HOARD_TOKEN": token, "COLUMNS": "200",
           "XDG_CACHE_HOME": str(CACHE_HOME)}
    return subprocess.run([sys.executable, "-m", "hoard", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=180, check=False)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_lifecycle(hoard: HoardServer, admin: httpx.Client) -> None:
    token = new_tenant(admin, f"cli-{os.getpid()}")
    created = as_json(hoard_cli(hoard, token, "cluster", "create", "cli-db", "--size", "nano",
                                "--wait", "-o", "json"))
    try:
        assert created["status"] == "ACTIVE"
        listed = as_json(hoard_cli(hoard, token, "cluster", "list", "-o", "json"))
        assert [c["name"] for c in listed] == ["cli-db"]
        shown = as_json(hoard_cli(hoard, token, "cluster", "show", "cli-db", "-o", "json"))
        assert shown["id"] == created["id"]
        table = hoard_cli(hoard, token, "cluster", "list")
        assert table.returncode == 0 and "cli-db" in table.stdout and "ACTIVE" in table.stdout
        creds = as_json(hoard_cli(hoard, token, "cluster", "credentials", "cli-db", "-o", "json"))
        assert creds["username"] == "admin" and creds["uri"].startswith("postgresql://")
        assert str(hoard.state_dir) not in json.dumps(creds)
        # `hoard connect` fetches Hoard's CA, caches it, and execs psql with the
        # credentials, verifying the server; psql reads SQL from stdin.
        ca = httpx.get(hoard.url + "/v2/ca.pem").content
        cached = CACHE_HOME / "hoard" / f"127.0.0.1-{hoard.port}" / "ca.pem"
        sql = "SELECT 'tls=' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n"
        for _ in range(2):
            session = hoard_cli(hoard, token, "connect", "cli-db", stdin=sql)
            assert session.returncode == 0, session.stderr
            assert "tls=true" in session.stdout
            assert cached.read_bytes() == ca
            # A cached CA that no longer matches the server's is fetched anew.
            cached.write_text("a CA from before\n")
        stopped = as_json(hoard_cli(hoard, token, "cluster", "stop", "cli-db", "-o", "json"))
        assert stopped["status"] == "STOPPED"
        resized = as_json(hoard_cli(hoard, token, "cluster", "resize", "cli-db",
                                    "--storage-gb", "12", "-o", "json"))
        assert resized["storage_gb"] == 12
        started = as_json(hoard_cli(hoard, token, "cluster", "start", "cli-db", "-o", "json"))
        assert started["status"] == "ACTIVE"
        history = hoard_cli(hoard, token, "cluster", "events", "cli-db")
        assert "stop succeeded" in history.stdout and "start succeeded" in history.stdout
    finally:
        deleted = as_json(hoard_cli(hoard, token, "cluster", "delete", "cli-db", "--wait",
                                    "-o", "json"))
    assert deleted["status"] == "succeeded"
    assert as_json(hoard_cli(hoard, token, "cluster", "list", "-o", "json")) == []


def test_cli_reports_errors_readably(hoard: HoardServer, admin: httpx.Client) -> None:
    token = new_tenant(admin, f"cli-err-{os.getpid()}")
    bad = hoard_cli(hoard, token, "cluster", "create", "Bad_Name", "--size", "nano")
    assert bad.returncode == 1
    assert "Invalid input" in bad.stderr and "Bad_Name" in bad.stderr
    missing = hoard_cli(hoard, token, "cluster", "show", "nope")
    assert missing.returncode == 1 and "no cluster named 'nope'" in missing.stderr
    denied = hoard_cli(hoard, "wrong-token", "cluster", "list")
    assert denied.returncode == 1 and "Unauthorized" in denied.stderr



def test_cli_replicated_cluster(hoard: HoardServer, admin: httpx.Client) -> None:
    token = new_tenant(admin, f"cli-ha-{os.getpid()}")
    created = as_json(hoard_cli(hoard, token, "cluster", "create", "cli-ha", "--engine",
                                "redis", "--size", "nano", "--nodes", "2", "--wait",
                                "-o", "json"))
    try:
        assert created["status"] == "ACTIVE" and created["nodes"] == 2
        table = hoard_cli(hoard, token, "cluster", "show", "cli-ha")
        assert "endpoint (read-only)" in table.stdout and "zone" in table.stdout
        replica = next(m for m in created["members"] if m["role"] != "primary")
        switched = as_json(hoard_cli(hoard, token, "cluster", "switchover", "cli-ha",
                                     "--node", replica["id"], "-o", "json"))
        assert next(m for m in switched["members"] if m["role"] == "primary")["id"] == (
            replica["id"])
        sync = hoard_cli(hoard, token, "cluster", "create", "x", "--engine", "redis",
                         "--nodes", "3", "--durability", "sync")
        assert sync.returncode == 1 and "async" in sync.stderr
        leaving = next(m for m in switched["members"] if m["role"] != "primary")
        as_json(hoard_cli(hoard, token, "cluster", "promote", "cli-ha", "--node",
                          leaving["id"], "--name", "cli-copy", "-o", "json"))
        copy = as_json(hoard_cli(hoard, token, "cluster", "show", "cli-copy", "-o", "json"))
        assert copy["status"] == "ACTIVE" and copy["members"][0]["id"] == leaving["id"]
    finally:
        for name in ("cli-ha", "cli-copy"):
            hoard_cli(hoard, token, "cluster", "delete", name, "--wait")
