"""Shared fixtures: a real Hoard server (subprocess), clients, and clean-up that
stops every database server a test started."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests import serverlogs

ADMIN_TOKEN = "hoard_test_admin_token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])




def make_state_dir() -> Path:
    """A state directory the database OS accounts can traverse (pytest's tmp is
    0700); its server logs are reported with a failing test while it exists."""
    path = Path(tempfile.mkdtemp(prefix="hoard-test-", dir="/tmp"))
    path.chmod(0o755)
    serverlogs.register(path)
    return path


def remove_state_dir(path: Path) -> None:
    serverlogs.unregister(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """A failing test's report carries the server logs of the state directories
    still alive (a session's Hoard, a fixture's nodes)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        text = serverlogs.logs_text()
        if text:
            report.sections.append(("server logs", text))


class HoardServer:
    """``hoard serve`` in a subprocess, so tests can kill -9 and restart it."""

    def __init__(self, state_dir: Path, extra_env: dict[str, str] | None = None,
                 wrap: list[str] | None = None) -> None:
        self.state_dir = state_dir
        self.wrap = wrap or []  # an argv prefix the server runs under
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HOARD_ADMIN_TOKEN": ADMIN_TOKEN,
                    "HOARD_OBSERVE_INTERVAL": "0.5",
                    "HOARD_MAINTENANCE_INTERVAL": "0.5", "HOARD_AUTOSCALE_INTERVAL": "0.5",
                    **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "serve.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrap, sys.executable, "-m", "hoard", "serve", "--port", str(self.port),
                 "--state-dir", str(self.state_dir)],
                env=self.env, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hoard serve exited:\n" + self.log.read_text()[-3000:])
            try:
                httpx.get(self.url + "/v2", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("hoard serve did not come up:\n" + self.log.read_text()[-3000:])

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            limits=httpx.Limits(keepalive_expiry=2.0),
                            headers={"Authorization": f"Bearer {token}"})

    def destroy_all_nodes(self) -> None:
        """Stop every database server under this state directory, whatever Hoard thinks."""
        from hoard.providers.local import LocalProvider

        nodes = self.state_dir / "nodes"
        if nodes.exists():
            # Each node's OS account is found in Hoard's records and removed with it.
            clear_provider(LocalProvider(nodes, "hoard-db"))


def clear_provider(provider: Any) -> None:
    """Destroy everything a LocalProvider made: nodes (and their accounts),
    endpoints, poolers, its etcd."""
    for node_id in provider.node_ids():
        provider.destroy(node_id)
    for cluster_id in provider.endpoints.cluster_ids():
        provider.remove_endpoint(cluster_id)
    for cluster_id in provider.poolers.cluster_ids():
        provider.remove_pooler(cluster_id)
    provider.etcd.stop()


@contextmanager
def directory_provider() -> Iterator[Any]:
    """A LocalProvider whose nodes are plain directories, on a fresh state
    directory; everything it made is destroyed after."""
    from hoard.providers.local import LocalProvider

    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    try:
        yield provider
    finally:
        clear_provider(provider)
        remove_state_dir(root)


@contextmanager
def hoard_server(extra_env: dict[str, str] | None = None,
                 wrap: list[str] | None = None) -> Iterator[HoardServer]:
    """A running Hoard on a fresh state directory (run under ``wrap``, an argv
    prefix, when given); everything it made is removed after."""
    state_dir = make_state_dir()
    server = HoardServer(state_dir, extra_env, wrap)
    try:
        server.start()
        yield server
    except BaseException:
        serverlogs.print_logs(state_dir)
        raise
    finally:
        server.stop()
        server.destroy_all_nodes()
        remove_state_dir(state_dir)


@pytest.fixture(scope="session")
def hoard() -> Iterator[HoardServer]:
    """One Hoard for the session (SQLite state store)."""
    with hoard_server() as server:
        yield server


@pytest.fixture(scope="session")
def admin(hoard: HoardServer) -> Iterator[httpx.Client]:
    with hoard.client() as client:
        yield client


def new_tenant(admin: httpx.Client, name: str, quotas: dict[str, int] | None = None) -> str:
    """Create a project and return a token for it."""
    body: dict[str, Any] = {"name": name}
    if quotas:
        body["quotas"] = quotas
    project = admin.post("/v2/projects", json=body)
    assert project.status_code == 201, project.text
    token = admin.post(f"/v2/projects/{project.json()['id']}/tokens", json={})
    assert token.status_code == 201, token.text
    return str(token.json()["token"])


CA_PARAMS = {"postgresql": "sslrootcert", "mysql": "ssl_ca", "rediss": "ssl_ca_certs"}


def ca_file_for(client: httpx.Client) -> Path:
    """Hoard's CA as a tenant gets it (GET /v2/ca.pem), in a file named by its digest
    (fetched each time: a port may be reused by a later server with another CA)."""
    pem = client.get("/v2/ca.pem").content
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----"), pem[:100]
    path = Path(tempfile.gettempdir()) / f"hoard-ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pem)
        tmp.replace(path)
    return path


def with_ca(uri: str, ca_file: Path) -> str:
    """A credentials URI as a tenant uses it: plus the CA file, under the query
    parameter of the client library the URI's scheme is for."""
    param = CA_PARAMS[uri.partition("://")[0]]
    return f"{uri}{'&' if '?' in uri else '?'}{param}={quote(str(ca_file))}"


def tenant_uri(client: httpx.Client, cluster_id: str) -> str:
    """The cluster's credentials URI, with Hoard's CA fetched from the API."""
    answer = client.get(f"/v2/clusters/{cluster_id}/credentials")
    assert answer.status_code == 200, answer.text
    return with_ca(str(answer.json()["uri"]), ca_file_for(client))


def wait_operation(client: httpx.Client, op_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v2/operations/{op_id}").json()
        if op["status"] != "running":
            return dict(op)
        time.sleep(0.1)
    raise TimeoutError(f"operation {op_id} still running after {timeout}s")


def create_cluster(client: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    """Create a cluster and wait for it to be ACTIVE."""
    body = {"name": name, "engine": "postgresql", "size": "nano", **fields}
    response = client.post("/v2/clusters", json=body)
    assert response.status_code == 202, response.text
    op = wait_operation(client, response.json()["operation"]["id"])
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    return dict(client.get(f"/v2/clusters/{response.json()['cluster']['id']}").json())


def delete_cluster(client: httpx.Client, cluster_id: str) -> None:
    response = client.delete(f"/v2/clusters/{cluster_id}")
    assert response.status_code == 202, response.text
    op = wait_operation(client, response.json()["operation"]["id"])
    assert op["status"] == "succeeded", (op["error"], op["steps"])


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Send every request at the same moment, each on its own thread."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))
