"""Hoard's etcd on the local provider: one member, the DCS of Patroni clusters.

Each PostgreSQL cluster keeps its leader lock and membership under its own key
prefix (``/hoard/<cluster id>/``). One member is what a single machine can
honestly offer; a provider spanning hosts runs three or five (Patroni keeps
the primary running through a short DCS outage only with failsafe mode).

It listens on loopback only. Its data directory lives in Hoard's state
directory (owned by the platform services' account) and survives restarts; the
ports chosen at first start are kept in Hoard's own records, beside its
process record, where that account cannot change them.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import httpx

from hoard.domain.nodes import ProcessSpec
from hoard.providers.osusers import OSUser
from hoard.providers.processes import Supervisor, free_port
from hoard.providers.usertree import UserTree

ETCD = "/usr/bin/etcd"
READY_TIMEOUT = 30.0


class LocalEtcd:
    """etcd in ``root`` as ``user``; its records in ``records`` (root only)."""

    def __init__(self, root: Path, records: Path, user: OSUser,
                 host: str = "127.0.0.1") -> None:
        self.root = root
        self.records = records
        self.user = user
        self.host = host

    def _ports(self) -> dict[str, int]:
        record = self.records / "ports.json"
        if record.exists():
            return {k: int(v) for k, v in json.loads(record.read_text()).items()}
        self.records.mkdir(mode=0o700, parents=True, exist_ok=True)
        ports = {"client": free_port(self.host), "peer": free_port(self.host)}
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports))
        tmp.replace(record)
        return ports

    def url(self) -> str:
        return f"http://{self.host}:{self._ports()['client']}"

    def ensure(self) -> str:
        """Start etcd unless it runs; wait until it answers; its client URL."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        UserTree(self.root, self.user).own_root(0o700)
        ports = self._ports()
        client = f"http://{self.host}:{ports['client']}"
        peer = f"http://{self.host}:{ports['peer']}"
        spec = ProcessSpec([
            ETCD, "--name", "hoard", "--data-dir", str(self.root / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"hoard={peer}", "--initial-cluster-state", "new",
            "--auto-compaction-retention", "1", "--log-level", "warn",
        ], stop_signal=signal.SIGTERM, stop_timeout=10.0)
        Supervisor(self.root, self.records, self.user).start(spec)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                if httpx.get(f"{client}/health", timeout=1).json().get("health") == "true":
                    return client
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd did not answer on {client} within {READY_TIMEOUT:.0f}s")
            time.sleep(0.05)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix`` (etcd's v3 JSON gateway)."""
        if not prefix:
            raise ValueError("refusing to delete every key")
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])  # the first key after the prefix
        answer = httpx.post(f"{self.url()}/v3/kv/deleterange", timeout=5, json={
            "key": base64.b64encode(key).decode(), "range_end": base64.b64encode(end).decode()})
        answer.raise_for_status()

    def running(self) -> bool:
        return Supervisor(self.root, self.records, None).live() is not None

    def stop(self) -> None:
        if self.root.exists() or self.records.exists():
            Supervisor(self.root, self.records, self.user).stop()

