"""The local provider's parts for replicated clusters: several named processes
per node, a simulated host failure, Hoard's etcd, the HAProxy endpoint that
follows the primary, and placement spread over hosts and zones."""

from __future__ import annotations

import base64
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import pytest

from hoard.domain.dcs import EtcdDcs
from hoard.domain.nodes import Backend, CommandRoleCheck, HttpRoleCheck, ProcessSpec
from hoard.domain.placement import Host, choose_host, parse_hosts
from hoard.providers.base import Endpoint
from hoard.providers.local import LocalProvider
from hoard.providers.processes import proc_state
from tests.conftest import directory_provider

# A stand-in server: answers every TCP connection with its name, and GET /primary
# with 200 while the file "role" beside it says primary (as Patroni's REST API does).
FAKE_NODE = r"""
import http.server, pathlib, socketserver, sys, threading
name, port, http_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(name.encode())
class Role(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        role = pathlib.Path("role").read_text().strip()
        self.send_response(200 if self.path == "/" + role else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
socketserver.TCPServer.allow_reuse_address = True
threading.Thread(target=socketserver.TCPServer(("127.0.0.1", port), Echo).serve_forever,
                 daemon=True).start()
http.server.HTTPServer(("127.0.0.1", http_port), Role).serve_forever()
"""


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    with directory_provider() as made:
        yield made


def _ca(provider: LocalProvider) -> str:
    """A CA file for the proxy to copy (these checks do not use TLS)."""
    path = provider.nodes_dir.parent / "ca.pem"
    path.write_text("not used by plain checks\n")
    return str(path)


def _fake_node(provider: LocalProvider, node_id: str, role: str) -> Backend:
    placement = provider.place(node_id, set(), 1, port_names=("agent",))
    root = Path(provider.runner(node_id).abspath(Path(".")))  # type: ignore[arg-type]
    (root / "role").write_text(role)
    (root / "node.py").write_text(FAKE_NODE)
    provider.start_process(node_id, ProcessSpec(["/usr/bin/python3", "node.py", node_id,
                                         str(placement.port), str(placement.ports["agent"])]))
    return Backend(node_id, placement.host, placement.port, placement.ports)


def _read_name(host: str, port: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                data = sock.recv(100).decode()
                if data:
                    return data
        except OSError:
            pass
        assert time.monotonic() < deadline, f"nothing answered on port {port}"
        time.sleep(0.05)


def test_named_processes_are_supervised_apart_and_killed_together(
        provider: LocalProvider) -> None:
    provider.place("n1", set(), 1)
    sleep = ["/bin/sleep", "600"]
    assert provider.start_process("n1", ProcessSpec(sleep))
    assert provider.start_process("n1", ProcessSpec(sleep, name="sentinel"))
    assert not provider.start_process("n1", ProcessSpec(sleep, name="sentinel"))  # already runs
    assert provider.is_running("n1") and provider.is_running("n1", "sentinel")
    provider.kill("n1")
    assert not provider.is_running("n1") and not provider.is_running("n1", "sentinel")
    assert provider.start_process("n1", ProcessSpec(sleep, name="sentinel"))  # back after a "crash"
    assert provider.start_process("n1", ProcessSpec(sleep))
    assert provider.is_running("n1", "sentinel"), "starting the server must not kill a sidecar"
    provider.stop("n1")
    assert not provider.is_running("n1") and not provider.is_running("n1", "sentinel")
    with pytest.raises(ValueError, match="process name"):
        provider.start_process("n1", ProcessSpec(sleep, name="../x"))


def test_a_dead_servers_helpers_in_temporary_directories_are_killed(
        provider: LocalProvider) -> None:
    """A server's helper left in a temporary directory (Galera's SST listener, in
    a process group of its own, outlives an aborted server) is killed by the
    next start: temporary directories are made inside the node."""
    provider.place("n1", set(), 1)
    root = Path(provider.runner("n1").abspath(Path(".")))  # type: ignore[arg-type]
    helper = ('r=$(pwd) && d=$(mktemp -d) && cd "$d" && '
              '{ setsid sleep 600 & echo $! > "$r/helper.pid"; }')
    assert provider.start_process("n1", ProcessSpec(["/bin/sh", "-c", helper]))
    deadline = time.monotonic() + 10
    while provider.is_running("n1") or not (root / "helper.pid").exists():
        assert time.monotonic() < deadline, "the stand-in server did not exit"
        time.sleep(0.05)
    pid = int((root / "helper.pid").read_text())
    assert Path(f"/proc/{pid}/cwd").readlink().is_relative_to(root / "tmp")
    assert provider.start_process("n1", ProcessSpec(["/bin/sleep", "600"]))
    state = proc_state(pid)  # gone, or a zombie its new parent has yet to reap
    assert state is None or state[0] == "Z", "the helper outlived the next start"
    provider.stop("n1")


def test_etcd_runs_once_and_answers(provider: LocalProvider) -> None:
    url = provider.ensure_etcd()
    assert provider.ensure_etcd() == url
    assert provider.dcs() == EtcdDcs(url)  # the seam's answer: the same etcd
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    for key in ("/hoard/c1/leader", "/hoard/c1/members/n1", "/hoard/c10/leader"):
        httpx.post(f"{url}/v3/kv/put", json={"key": b64(key), "value": b64("x")},
                   timeout=5).raise_for_status()
    provider.forget_dcs("c1", "/hoard/c1/")

    def count(prefix: str) -> int:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        answer = httpx.post(f"{url}/v3/kv/range", timeout=5, json={
            "key": b64(prefix), "range_end": b64(end), "count_only": True})
        return int(answer.json().get("count", 0))

    assert count("/hoard/c1/") == 0
    assert count("/hoard/c10/") == 1  # another cluster's keys stay


def test_endpoint_follows_the_primary_and_spreads_reads(provider: LocalProvider) -> None:
    a, b = _fake_node(provider, "na", "primary"), _fake_node(provider, "nb", "replica")
    check = HttpRoleCheck("agent", "/primary", "/replica")
    # Addresses of the endpoint's own, on one port (what Hoard gives a cluster).
    endpoint = Endpoint(provider.new_address(), 5432, provider.new_address(), 5432)
    provider.ensure_endpoint("c1", [a, b], check, _ca(provider), endpoint)
    assert _read_name(endpoint.rw_host, endpoint.rw_port) == "na"
    assert _read_name(endpoint.ro_host, endpoint.ro_port) == "nb"
    provider.ensure_endpoint("c1", [a, b], check, _ca(provider), endpoint)  # unchanged: no-op

    # The primary fails over to b: the read-write address follows within seconds.
    provider.kill("na")
    root_b = Path(provider.runner("nb").abspath(Path(".")))  # type: ignore[arg-type]
    (root_b / "role").write_text("primary")
    started = time.monotonic()
    while _read_name(endpoint.rw_host, endpoint.rw_port) != "nb":
        assert time.monotonic() - started < 5, "read-write address did not follow the primary"
        time.sleep(0.1)
    # With no replica up, reads go to the primary.
    assert _read_name(endpoint.ro_host, endpoint.ro_port) == "nb"
    provider.remove_endpoint("c1")
    assert not provider.endpoint_running("c1")


def test_command_check_endpoint_sends_writes_to_one_node(provider: LocalProvider) -> None:
    a, b = _fake_node(provider, "na", "x"), _fake_node(provider, "nb", "x")
    # Every node passes (as every synced Galera node does): writes still go to one.
    check = CommandRoleCheck(("/bin/sh", "-c", 'test "$0" -gt 0 && test -n "$CHECK_ENV"',
                              "{port}"), (("CHECK_ENV", "it's set"),))
    endpoint = Endpoint(provider.new_address(), 3306, provider.new_address(), 3306)
    provider.ensure_endpoint("c2", [a, b], check, _ca(provider), endpoint)
    time.sleep(1.5)
    assert {_read_name(endpoint.rw_host, endpoint.rw_port) for _ in range(6)} == {"na"}
    assert {_read_name(endpoint.ro_host, endpoint.ro_port) for _ in range(6)} == {"na", "nb"}


def test_nodes_are_spread_over_zones_then_hosts() -> None:
    hosts = parse_hosts("127.0.0.1@a, 127.0.0.2@b, 127.0.0.3@a")
    placed: list[Host] = []
    for _ in range(3):
        placed.append(choose_host(hosts, placed))
    assert [h.zone for h in placed[:2]] == ["a", "b"]
    assert len({h.address for h in placed}) == 3
    # More nodes than hosts: zones stay even first (zone b has one host), then hosts.
    for _ in range(3):
        placed.append(choose_host(hosts, placed))
    assert Counter(h.zone for h in placed) == {"a": 3, "b": 3}
    assert Counter(h.address for h in placed if h.zone == "a") == {"127.0.0.1": 2,
                                                                    "127.0.0.3": 1}
    with pytest.raises(ValueError):
        parse_hosts("127.0.0.1, 127.0.0.1@b")


def test_streamed_file_is_the_database_users_and_appears_only_whole(
        provider: LocalProvider) -> None:
    provider.place("w1", set(), 1)
    runner = provider.runner("w1")
    root = Path(runner.abspath(PurePosixPath(".")))
    target = PurePosixPath("restoring/data.bin")
    assert runner.write_stream(target, (bytes([i]) * (1 << 20) for i in range(3))) == 3 << 20
    made = root / "restoring" / "data.bin"
    assert made.read_bytes() == b"\0" * (1 << 20) + b"\1" * (1 << 20) + b"\2" * (1 << 20)
    assert (made.stat().st_mode & 0o777, made.stat().st_uid) == (0o600, root.stat().st_uid)
    assert made.parent.stat().st_uid == root.stat().st_uid

    def cut_short() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("the backup is cut short")
    with pytest.raises(RuntimeError, match="cut short"):
        runner.write_stream(PurePosixPath("restoring/other.bin"), cut_short())
    assert sorted(p.name for p in made.parent.iterdir()) == ["data.bin"]

    # A link planted where the file is staged is removed, not followed.
    before = Path("/etc/hostname").read_bytes()
    (made.parent / "next.bin.tmp").symlink_to("/etc/hostname")
    runner.write_stream(PurePosixPath("restoring/next.bin"), [b"x"])
    assert (made.parent / "next.bin").read_bytes() == b"x"
    assert not (made.parent / "next.bin.tmp").is_symlink()
    assert Path("/etc/hostname").read_bytes() == before
    with pytest.raises(ValueError, match="leaves the node directory"):
        runner.write_stream(PurePosixPath("../escape.bin"), [b"x"])
