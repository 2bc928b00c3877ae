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

import os
import shlex
import signal
import subprocess
import sys
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
from hoard.providers.clusterdirs import ClusterDirectories
from hoard.providers.osusers import OSUser
from hoard.providers.processes import SAFE_ENV, Supervisor
from hoard.providers.usertree import UserTree

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
        f"    bind {endpoint.rw_host}:{endpoint.rw_port}",
        "    default_backend rw",
        "",
        "frontend ro",
        f"    bind {endpoint.ro_host}:{endpoint.ro_port}",
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


# Run as the proxy's account: the admin socket is a path in its directory, which
# root would follow wherever the account pointed it.
SAVE_STATES = """
import os, socket
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(2)
    sock.connect("admin.sock")
    sock.sendall(b"show servers state\\n")
    data = b"".join(iter(lambda: sock.recv(65536), b""))
with open("servers.state.tmp", "wb") as fh:
    fh.write(data)
os.replace("servers.state.tmp", "servers.state")
"""


class LocalEndpoints(ClusterDirectories):
    """Each cluster's HAProxy, under ``<root>/<cluster id>/`` as an OS account of
    its own; Hoard's records of it (account, ports, process) under
    ``<records>/<cluster id>/``, where that account cannot write."""

    def ensure(self, cluster_id: str, backends: list[Backend], check: RoleCheck, ca_file: str,
               endpoint: Endpoint) -> None:
        tree = self._tree(cluster_id, "endpoint")
        user, directory = tree.user, self._dir(cluster_id)
        # The proxy runs unprivileged: it gets its own copy of the CA certificate.
        self._write(tree, "ca.pem", Path(ca_file).read_bytes(), 0o644)
        ca_file = str(tree.path("ca.pem"))
        if isinstance(check, CommandRoleCheck):
            self._write(tree, "check.sh", check_script(check).encode(), 0o700)
        config = render(endpoint, backends, check, ca_file, directory)
        changed = self._write(tree, "haproxy.cfg", config.encode(), 0o600)
        supervisor = Supervisor(directory, self._record(cluster_id), user)
        spec = ProcessSpec([HAPROXY, "-W", "-db", "-f", str(directory / "haproxy.cfg")],
                           stop_signal=signal.SIGUSR1, stop_timeout=5.0)
        if supervisor.start(spec):
            # Servers start out UP until their checks fail: let the first checks
            # run before anyone is given the address.
            time.sleep(FIRST_CHECKS)
        elif changed:
            # A reloaded worker starts from the saved server states, not all-UP.
            self._save_states(user, directory)
            supervisor.signal("server", signal.SIGUSR2)  # master-worker reload

    @staticmethod
    def _save_states(user: OSUser, directory: Path) -> None:
        """Ask the running proxy for its server states and save them for the next
        worker (best effort: without them it starts from scratch)."""
        python = os.path.realpath(sys.executable)  # the base interpreter, not a venv's
        subprocess.run(user.wrap([python, "-I", "-S", "-c", SAVE_STATES], pdeathsig=True),
                       cwd=directory, env=SAFE_ENV, capture_output=True, check=False,
                       timeout=10)

    @staticmethod
    def _write(tree: UserTree, name: str, content: bytes, mode: int) -> bool:
        if tree.read_bytes(name) == content:
            return False
        tree.write_stream(name, [content], mode)
        return True

    def running(self, cluster_id: str) -> bool:
        return Supervisor(self._dir(cluster_id), self._record(cluster_id), None).live() is not None

    def remove(self, cluster_id: str) -> None:
        self._remove(cluster_id, graceful=True)
