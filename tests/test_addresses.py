"""Every cluster an address of its own, where the engine's standard port answers:
the stock clients connect with no port given, TLS verified against Hoard's CA."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    HoardServer,
    ca_file_for,
    create_cluster,
    delete_cluster,
    hoard_server,
    wait_operation,
)

ENGINES = ("postgresql", "mariadb", "redis")
STANDARD_PORT = {"postgresql": 5432, "mariadb": 3306, "redis": 6379}
NETWORK = ipaddress.ip_network("127.64.0.0/10")  # HOARD_LOCAL_ADDRESSES's default


def stock_client(engine: str, host: str, user: str, password: str, ca: str) -> str:
    """Ask the server its port (Redis: a PING) with the engine's own command-line
    client, given a host and no port; TLS with the certificate checked against ``ca``."""
    if engine == "postgresql":
        argv = ["psql", f"host={host} user={user} dbname=app sslmode=verify-full "
                f"sslrootcert={ca}", "-Atc", "SELECT inet_server_port()"]
        env = {"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    elif engine == "mariadb":
        argv = ["mariadb", "-h", host, "-u", user, f"--ssl-ca={ca}",
                "--ssl-verify-server-cert", "--connect-timeout=10", "-N", "-B",
                "-e", "SELECT @@port"]
        env = {"MYSQL_PWD": password}
    else:
        argv = ["redis-cli", "-h", host, "--tls", "--cacert", ca, "--user", user,
                "--no-auth-warning", "--pass", password, "PING"]  # redis-cli's port: 6379
        env = {}
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, (argv[0], done.stdout, done.stderr)
    return done.stdout.strip().splitlines()[-1]


def credentials(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    answer = client.get(f"/v2/clusters/{cluster_id}/credentials")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def answers_at_its_address(client: httpx.Client, cluster: dict[str, Any]) -> None:
    engine = cluster["engine"]
    creds = credentials(client, cluster["id"])
    assert creds["port"] == STANDARD_PORT[engine]
    assert f"@{creds['host']}:{STANDARD_PORT[engine]}" in creds["uri"]
    ca = str(ca_file_for(client))
    for endpoint in cluster["endpoints"]:
        assert endpoint["port"] == STANDARD_PORT[engine]
        assert ipaddress.ip_address(endpoint["host"]) in NETWORK
        said = stock_client(engine, endpoint["host"], creds["username"], creds["password"], ca)
        if engine == "redis":
            assert said == "PONG"
        elif len(cluster["endpoints"]) == 1:  # the server itself answers there
            assert said == str(STANDARD_PORT[engine])
        else:  # a proxy passes the session through to a member, on its peer port
            assert said.isdigit(), said


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    with hoard_server() as running:
        yield running


def test_standalone_clusters_answer_at_their_own_address(server: HoardServer) -> None:
    with server.client() as client:
        clusters = [create_cluster(client, f"own-{e}", engine=e) for e in ENGINES]
        clusters.append(create_cluster(client, "own-postgresql-2", engine="postgresql"))
        hosts = [c["endpoints"][0]["host"] for c in clusters]
        assert len(set(hosts)) == len(hosts), hosts  # never shared, not even across engines
        for cluster in clusters:
            answers_at_its_address(client, cluster)
        # Hoard's restart changes no address (they are the store's, not the process's).
        server.kill9()
        server.start()
        for cluster in clusters:
            again = client.get(f"/v2/clusters/{cluster['id']}").json()
            assert again["endpoints"] == cluster["endpoints"]
            answers_at_its_address(client, again)
        # A deleted cluster's address is free again, and the new one is elsewhere.
        delete_cluster(client, clusters[-1]["id"])
        newer = create_cluster(client, "own-postgresql-3", engine="postgresql")
        assert newer["endpoints"][0]["host"] not in hosts[:-1]
        for cluster in [*clusters[:-1], newer]:
            delete_cluster(client, cluster["id"])


def squat(network: ipaddress.IPv4Network, port: int) -> list[socket.socket]:
    """Hold ``port`` on every address of ``network``, as another program would."""
    squatters = []
    for address in network.hosts():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(address), port))
        sock.listen()
        squatters.append(sock)
    return squatters


def test_a_taken_address_is_waited_out_not_compensated() -> None:
    """Every address the cluster could get is held by another program when it
    starts: the start step waits, saying why, and the create ends ACTIVE once
    the address is free, nothing undone."""
    network = ipaddress.ip_network("127.99.0.0/24")
    squatters = squat(network, STANDARD_PORT["redis"])
    try:
        with hoard_server({"HOARD_LOCAL_ADDRESSES": str(network)}) as server, \
                server.client() as client:
            answer = client.post("/v2/clusters", json={"name": "squatted", "engine": "redis",
                                                       "size": "nano"})
            assert answer.status_code == 202, answer.text
            op_path = f"/v2/operations/{answer.json()['operation']['id']}"
            deadline = time.monotonic() + 60
            while True:
                op = client.get(op_path).json()
                details = [s.get("detail", "") for s in op["steps"]]
                if any("held by another process" in d for d in details):
                    break
                assert op["status"] == "running" and time.monotonic() < deadline, op
                time.sleep(0.1)
            time.sleep(2)  # a few more tries, each refused
            assert client.get(op_path).json()["status"] == "running"
            for sock in squatters:
                sock.close()
            squatters.clear()
            op = wait_operation(client, answer.json()["operation"]["id"])
            assert op["status"] == "succeeded", (op["error"], op["steps"])
            assert [s["status"] for s in op["steps"]] == ["done"] * len(op["steps"])
            cluster = client.get(f"/v2/clusters/{answer.json()['cluster']['id']}").json()
            assert cluster["status"] == "ACTIVE"
            answers_at_its_address(client, cluster)
            delete_cluster(client, cluster["id"])
    finally:
        for sock in squatters:
            sock.close()


def test_a_temporary_wait_ends_at_the_providers_deadline() -> None:
    """An address that stays held is waited out only until the provider's start
    deadline: then the create fails, saying what it waited for, and leaves
    nothing behind."""
    network = ipaddress.ip_network("127.98.0.0/24")
    squatters = squat(network, STANDARD_PORT["redis"])
    try:
        with hoard_server({"HOARD_LOCAL_ADDRESSES": str(network),
                           "HOARD_LOCAL_START_DEADLINE": "4"}) as server, \
                server.client() as client:
            answer = client.post("/v2/clusters", json={"name": "held-for-good",
                                                       "engine": "redis", "size": "nano"})
            assert answer.status_code == 202, answer.text
            op = wait_operation(client, answer.json()["operation"]["id"])
            assert op["status"] == "failed", op
            assert "the first node was not ready within 4s" in op["error"], op["error"]
            assert "held by another process" in op["error"], op["error"]
            start = next(s for s in op["steps"] if s["name"] == "start")
            assert start["status"] == "failed", op["steps"]
            cluster = client.get(f"/v2/clusters/{answer.json()['cluster']['id']}").json()
            assert cluster["status"] == "FAILED" and cluster["endpoints"] == [], cluster
            nodes_dir = server.state_dir / "nodes"
            assert not nodes_dir.exists() or list(nodes_dir.iterdir()) == [], \
                list(nodes_dir.iterdir())
            delete_cluster(client, cluster["id"])
    finally:
        for sock in squatters:
            sock.close()


@pytest.mark.parametrize("engine", ["postgresql", "mariadb", "redis"])
@pytest.mark.parametrize("host", ["10.1.2.3", "fd00::7", "hoard-a1b2.hoard.svc"])
def test_connection_uris_name_the_host_and_port_exactly(engine: str, host: str) -> None:
    """Every engine's URI parses back to the host and port it was made for (an
    IPv6 host in brackets), and to the account, whatever its password holds."""
    from urllib.parse import unquote, urlsplit

    from hoard.engines.base import Credentials
    from hoard.engines.registry import ENGINES

    creds = Credentials("app_user", "p@ss:w/rd?#%")
    parts = urlsplit(ENGINES[engine].connection_uri(host, 5433, creds, "/etc/ca.pem"))
    assert (parts.hostname, parts.port) == (host, 5433)
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == \
        ("app_user", "p@ss:w/rd?#%")
