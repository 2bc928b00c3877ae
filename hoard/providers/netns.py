"""The netns provider: each node is a host of its own, on this one machine.

A node runs in a network namespace of its own (``ip netns``) with one address
on a private network, joined to the other nodes and to Hoard by a bridge in the
host's namespace, as machines on one switch. Nothing of a node listens on the
host's addresses: its server, and its sidecars (Sentinel, Patroni), reach and
are reached only through its own address. Everything else (accounts, volumes,
cgroups, supervision) is the local provider's, which this one extends.

Why it exists: it proves the provider seam with nodes that are not on Hoard's
host network, so what a remote provider must do (addresses are its business;
peers meet on its network; Hoard reaches nodes over the network only) is tested
with real servers. Operators can use it for demonstrations on one machine.

- The network (``HOARD_NETNS_NETWORK``, a private IPv4 network of at least 512
  addresses) is split in two: nodes' own addresses come from the lower half,
  handed out in order and recorded; clusters' addresses (a standalone node's,
  a replicated cluster's endpoints) from the upper half, chosen at random and
  made unique by the store (``hoard.workflows.addresses``).
- The bridge holds the network's first address (the gateway: etcd for Patroni
  listens there) and the endpoints' addresses (their proxies run on the host).
- A node's processes are started through ``nsenter --net``, as root, before
  they switch to the node's account: the account cannot leave the namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from hoard.domain.nodes import Backend, RoleCheck, ServiceSpec
from hoard.domain.placement import Host
from hoard.providers.base import Endpoint, Placement
from hoard.providers.local import LocalProvider
from hoard.providers.osusers import DEFAULT_UID_RANGE

PRIVATE = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
NETNS_DIR = Path("/run/netns")


def private_network(text: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(text.strip())
    except ValueError as exc:
        raise ValueError(f"HOARD_NETNS_NETWORK: {exc}") from None
    if not any(network.subnet_of(p) for p in PRIVATE) or network.prefixlen > 23:
        raise ValueError(f"HOARD_NETNS_NETWORK={text!r}: give a private network (10/8, "
                         "172.16/12 or 192.168/16) of at least 512 addresses")
    return network


def _ip(*args: str, ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                          timeout=30)
    if done.returncode not in ok:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()[-300:]}")


class NetnsProvider(LocalProvider):
    name = "netns"

    def __init__(self, nodes_dir: Path, os_user: str, volumes: str = "auto",
                 uid_range: tuple[int, int] = DEFAULT_UID_RANGE,
                 network: str = "10.77.0.0/16") -> None:
        self.network = private_network(network)
        self.nodes_half, self.clusters_half = self.network.subnets(prefixlen_diff=1)
        self.gateway = str(self.network.network_address + 1)
        digest = hashlib.sha256(str(self.network).encode()).hexdigest()
        self.bridge = "hb" + digest[:10]
        super().__init__(nodes_dir, os_user, volumes, hosts=[Host(self.gateway, "netns")],
                         uid_range=uid_range, addresses=network, etcd_host=self.gateway)
        self.registry = self.private_dir / f"netns-{digest[:10]}.json"

    # --- addresses ----------------------------------------------------------------

    @staticmethod
    def _network(text: str) -> ipaddress.IPv4Network:
        return private_network(text)

    def new_address(self) -> str:
        first, size = int(self.clusters_half.network_address), self.clusters_half.num_addresses
        return str(ipaddress.IPv4Address(first + secrets.randbelow(size - 2) + 1))

    @contextlib.contextmanager
    def _nodes(self) -> Iterator[dict[str, str]]:
        """The nodes' own addresses (node id -> address), read and written under a
        lock (placements run at once)."""
        self.registry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.registry.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                held: dict[str, str] = json.loads(self.registry.read_text())
            except (FileNotFoundError, ValueError):
                held = {}
            before = dict(held)
            yield held
            if held != before:
                tmp = self.registry.with_suffix(".tmp")
                tmp.write_text(json.dumps(held))
                tmp.replace(self.registry)
        finally:
            os.close(fd)

    def _node_address(self, node_id: str) -> str:
        with self._nodes() as held:
            if node_id not in held:
                taken = set(held.values())
                held[node_id] = next(str(a) for a in self.nodes_half.hosts()
                                     if str(a) != self.gateway and str(a) not in taken)
            return held[node_id]

    # --- the network --------------------------------------------------------------

    def _ensure_bridge(self) -> None:
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            _ip("link", "add", self.bridge, "type", "bridge", ok=(0, 2))
        _ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge,
            ok=(0, 2))  # 2: it has it already
        _ip("link", "set", self.bridge, "up")

    def _ns(self, node_id: str) -> str:
        self._dir(node_id)  # checks the id
        return f"hoard-{node_id}"

    def _ensure_ns(self, node_id: str, address: str) -> None:
        """The node's namespace: loopback, and one interface on the bridge with its
        address. Idempotent (a step that runs again finds it made)."""
        ns = self._ns(node_id)
        if not (NETNS_DIR / ns).exists():
            _ip("netns", "add", ns, ok=(0, 1))
        outside = "hn" + hashlib.sha256(node_id.encode()).hexdigest()[:12]
        if not Path(f"/sys/class/net/{outside}").exists():
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0",
            ok=(0, 2))
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def _enter(self, node_id: str) -> list[str]:
        return ["nsenter", f"--net={NETNS_DIR / self._ns(node_id)}"]

    # --- the provider -------------------------------------------------------------

    def place(self, node_id: str, taken_ports: set[int], storage_gb: int,
              port_names: Iterable[str] = (), siblings: Iterable[Host] = (),
              address: tuple[str, int] | None = None) -> Placement:
        self._ensure_bridge()
        base = super().place(node_id, taken_ports, storage_gb, port_names, siblings, address)
        host = address[0] if address is not None else self._node_address(node_id)
        self._ensure_ns(node_id, host)
        return Placement(host=host, port=base.port, zone=f"host-{host}", ports=base.ports)

    def address_taken(self, host: str, port: int) -> bool:
        if ipaddress.IPv4Address(host) in self.network:
            return False  # a node's address is in its own namespace: nothing else has it
        return super().address_taken(host, port)

    def ensure_etcd(self) -> str:
        self._ensure_bridge()
        return super().ensure_etcd()

    def ensure_endpoint(self, cluster_id: str, backends: list[Backend], check: RoleCheck,
                        ca_file: str, endpoint: Endpoint) -> None:
        self._ensure_bridge()
        for host in {endpoint.rw_host, endpoint.ro_host}:
            _ip("addr", "add", f"{host}/32", "dev", self.bridge, ok=(0, 2))
        super().ensure_endpoint(cluster_id, backends, check, ca_file, endpoint)

    def ensure_pooler(self, cluster_id: str, address: str, spec: ServiceSpec) -> bool:
        self._ensure_bridge()  # the pooler runs on the host, as the endpoint proxies do
        _ip("addr", "add", f"{address}/32", "dev", self.bridge, ok=(0, 2))
        return super().ensure_pooler(cluster_id, address, spec)

    def destroy(self, node_id: str) -> None:
        super().destroy(node_id)
        _ip("netns", "del", self._ns(node_id), ok=(0, 1))  # its interface goes with it
        with self._nodes() as held:
            held.pop(node_id, None)
