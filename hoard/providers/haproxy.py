"""A replicated cluster's stable endpoints on the local provider: one HAProxy.

Two TCP listeners per cluster: read-write goes to the first node whose role
check says "primary" (``balance first``: with Galera, where every synced node
passes, all writes still go to one node at a time); read-only is spread over
the nodes that pass the replica check, with primaries as backup servers so
reads keep working when no replica is up. TLS passes through untouched: the
servers terminate it with certificates whose names include the endpoint host.

Checks run every 500 ms and a server is down after two failures, so a
failover is seen within about a second; sessions to a server marked down are
cut, so clients reconnect to the new primary instead of hanging on the old.

The proxy runs in master-worker mode: a changed configuration (a node added or
removed) is loaded with SIGUSR2, without dropping established connections.
"""

from __future__ import annotations

import json
import shlex
import signal
import socket
import time
from pathlib import Path

from hoard.domain.nodes import (
    Backend,
    CommandRoleCheck,
    ExchangeRoleCheck,
    HttpRoleCheck,
    ProcessSpec,
    RoleCheck,
)
from hoard.providers.base import Endpoint
from hoard.providers.processes import OSUser, Supervisor, free_port

HAPROXY = "/usr/sbin/haproxy"
FIRST_CHECKS = 1.2  # two check intervals and a margin
CHECK_TIMING = "inter 500ms fastinter 250ms downinter 1s fall 2 rise 1"


def render(endpoint: Endpoint, backends: list[Backend], check: RoleCheck, ca_file: str,
           directory: Path) -> str:
    """The HAProxy configuration for one cluster's endpoints."""
    lines = [
        "# Managed by Hoard: rewritten on every change.",
        "global",
        "    maxconn 4096",
        f"    stats socket {directory / 'admin.sock'} mode 600 level admin",
        f"    server-state-file {directory / 'servers.state'}",
    ]
    if isinstance(check, CommandRoleCheck):
        lines += ["    external-check", "    insecure-fork-wanted"]
    lines += [
        "defaults",
        "    mode tcp",
        "    load-server-state-from-file global",
        "    timeout connect 2s",
        "    timeout client 24h",
        "    timeout server 24h",
        "    timeout check 2s",
        f"    default-server {CHECK_TIMING} on-marked-down shutdown-sessions",
        "",
        "frontend rw",
        f"    bind {endpoint.host}:{endpoint.rw_port}",
        "    default_backend rw",
        "",
        "frontend ro",
        f"    bind {endpoint.host}:{endpoint.ro_port}",
        "    default_backend ro",
        "",
        "backend rw",
        "    balance first",
        # Every connection goes to the server the first one went to, until it is
        # down: no fail-back when an old primary returns (Galera would otherwise
        # take writes on two nodes, and certification conflicts would follow).
        "    stick-table type integer size 1 nopurge",
        "    stick on dst_port",
        *_check_lines(check, primary=True, script=directory / "check.sh"),
        *(_server(b, check, ca_file, "") for b in backends),
        "",
        "backend ro",
        "    balance roundrobin",
        *_check_lines(check, primary=False, script=directory / "check.sh"),
        *(_server(b, check, ca_file, "") for b in backends),
    ]
    if not isinstance(check, CommandRoleCheck):
        # Primaries as backups: reads still work while no replica is up. Their
        # check is the primary one, which a backend can only hold once, so these
        # servers track the rw backend's view of the same node.
        # (A backend-wide ``tcp-check connect ssl`` wants a CA on these too.)
        ssl = f" ca-file {ca_file}" if isinstance(check, ExchangeRoleCheck) else ""
        lines += [f"    server {_name(b)}-primary {b.host}:{b.port} backup track rw/{_name(b)}"
                  f"{ssl}" for b in backends]
    return "\n".join(lines) + "\n"


def _name(backend: Backend) -> str:
    return "n-" + backend.node_id


def _check_lines(check: RoleCheck, primary: bool, script: Path) -> list[str]:
    if isinstance(check, HttpRoleCheck):
        path = check.primary_path if primary else check.replica_path
        return [f"    option httpchk GET {path}", "    http-check expect status 200"]
    if isinstance(check, ExchangeRoleCheck):
        out = ["    option tcp-check", "    tcp-check connect ssl"]
        for line in check.send:
            out.append(f"    tcp-check send-binary {(line + chr(13) + chr(10)).encode().hex()}")
        expect = check.primary_expect if primary else check.replica_expect
        out.append(f"    tcp-check expect string {expect}")
        return out
    return ["    option external-check", f"    external-check command {script}",
            "    external-check path /usr/local/bin:/usr/bin:/bin"]


def _server(backend: Backend, check: RoleCheck, ca_file: str, suffix: str) -> str:
    line = f"    server {_name(backend)}{suffix} {backend.host}:{backend.port} check"
    if isinstance(check, HttpRoleCheck):
        line += f" port {backend.ports[check.port_name]}"
    if isinstance(check, ExchangeRoleCheck) or (isinstance(check, HttpRoleCheck) and check.tls):
        # HAProxy's verifyhost matches DNS names and the common name, never an IP
        # address; Hoard's CA names each node's certificate after its node id.
        line += f" check-ssl verify required ca-file {ca_file} verifyhost {backend.node_id}"
    return line


def check_script(check: CommandRoleCheck) -> str:
    """The external check HAProxy runs: it passes the server's address and port
    as the 3rd and 4th arguments."""
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in check.env)
    fill = {"{host}": '"$3"', "{port}": '"$4"'}
    argv = " ".join(fill.get(a, shlex.quote(a)) for a in check.argv)
    return f"#!/bin/sh\n# Managed by Hoard.\n{exports}exec {argv}\n"


class LocalEndpoints:
    """Each cluster's HAProxy, under ``<root>/<cluster id>/``."""

    def __init__(self, root: Path, user: OSUser, host: str) -> None:
        self.root = root
        self.user = user
        self.host = host

    def _dir(self, cluster_id: str) -> Path:
        if not cluster_id.replace("-", "").isalnum():
            raise ValueError(f"bad cluster id {cluster_id!r}")
        return self.root / cluster_id

    def ensure(self, cluster_id: str, backends: list[Backend], check: RoleCheck, ca_file: str,
               taken_ports: set[int]) -> Endpoint:
        self.root.mkdir(exist_ok=True)
        self.root.chmod(0o755)  # traversable by the proxy's OS user, whatever the umask
        directory = self._dir(cluster_id)
        directory.mkdir(exist_ok=True, mode=0o700)
        self.user.chown(directory)
        # The proxy runs unprivileged: it gets its own copy of the CA certificate.
        self._write(directory / "ca.pem", Path(ca_file).read_text(), 0o644)
        ca_file = str(directory / "ca.pem")
        endpoint = self._endpoint(directory, taken_ports)
        script = directory / "check.sh"
        if isinstance(check, CommandRoleCheck):
            self._write(script, check_script(check), 0o700)
        config = render(endpoint, backends, check, ca_file, directory)
        changed = self._write(directory / "haproxy.cfg", config, 0o600)
        supervisor = Supervisor(directory, self.user)
        spec = ProcessSpec([HAPROXY, "-W", "-db", "-f", str(directory / "haproxy.cfg")],
                           stop_signal=signal.SIGUSR1, stop_timeout=5.0)
        if supervisor.start(spec):
            # Servers start out UP until their checks fail: let the first checks
            # run before anyone is given the address.
            time.sleep(FIRST_CHECKS)
        elif changed:
            # A reloaded worker starts from the saved server states, not all-UP.
            self._save_states(directory)
            supervisor.signal("server", signal.SIGUSR2)  # master-worker reload
        return endpoint

    def _save_states(self, directory: Path) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(directory / "admin.sock"))
                sock.sendall(b"show servers state\n")
                chunks = []
                while data := sock.recv(65536):
                    chunks.append(data)
        except OSError:
            return  # no states to carry over: the new worker starts from scratch
        self._write(directory / "servers.state", b"".join(chunks).decode(), 0o600)

    def _endpoint(self, directory: Path, taken_ports: set[int]) -> Endpoint:
        record = directory / "endpoint.json"
        if record.exists():
            return Endpoint(**json.loads(record.read_text()))
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port(self.host)
            if port not in taken_ports and port not in ports:
                ports.append(port)
        endpoint = Endpoint(self.host, ports[0], ports[1])
        record.write_text(json.dumps(endpoint.__dict__))
        return endpoint

    def _write(self, path: Path, content: str, mode: int) -> bool:
        if path.exists() and path.read_text() == content:
            return False
        tmp = path.with_suffix(".tmp")
        tmp.write_text(content)
        tmp.chmod(mode)
        self.user.chown(tmp)
        tmp.replace(path)
        return True

    def running(self, cluster_id: str) -> bool:
        directory = self._dir(cluster_id)
        return directory.exists() and Supervisor(directory, self.user).live() is not None

    def remove(self, cluster_id: str) -> None:
        import shutil

        directory = self._dir(cluster_id)
        if directory.exists():
            Supervisor(directory, self.user).stop()
            shutil.rmtree(directory, ignore_errors=True)

    def cluster_ids(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.exists() else set()

