"""The local provider: each node is a supervised process on this host.

- Each node gets a directory ``<state>/nodes/<node id>`` (mode 0700) owned by
  an OS account of its own (``hoard/providers/osusers.py``); every engine
  process and tool of the node runs as that account, so one tenant's server
  cannot read another's data, keys or configuration.
- Hoard's own bookkeeping about a node (its account, its processes) lives in
  ``<state>/private/nodes/<node id>``, which only root can read or write; its
  cgroups are derived from its id. Nothing in the node's directory is trusted:
  Hoard reaches it only through :class:`hoard.providers.usertree.UserTree`.
- A node's processes (its server, and sidecars such as Redis Sentinel) are
  supervised by :class:`hoard.providers.processes.Supervisor`: they outlive
  Hoard and are re-adopted, never restarted, by the next one.

Nodes made by the first layout (one shared ``hoard-db`` account, records inside
the node's directory) are not adopted: there are no deployments of it. Such a
node is still destroyed cleanly (its processes are found by directory and
cgroup); ``runner``/``start`` on one say it must be made again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from hoard.domain.abilities import Ability
from hoard.domain.catalog import Size
from hoard.domain.dcs import Dcs, EtcdDcs
from hoard.domain.nodes import (
    Backend,
    LogChunk,
    LogSource,
    NodeSpec,
    ProcessSpec,
    RoleCheck,
    ServiceSpec,
)
from hoard.domain.placement import Host, choose_host
from hoard.domain.storage import StorageUsage
from hoard.providers import cgroups
from hoard.providers import volumes as volume_fs
from hoard.providers.base import Endpoint, Growth, Placement, Provider, Versioned
from hoard.providers.etcd import LocalEtcd
from hoard.providers.haproxy import LocalEndpoints
from hoard.providers.osusers import DEFAULT_UID_RANGE, OSUser, UserPool, service_user
from hoard.providers.poolers import LocalPoolers
from hoard.providers.processes import (
    PROCESS_NAME,
    SERVER,
    Supervisor,
    address_taken,
    free_port,
)
from hoard.providers.runner import LocalRunner, ToolFailed
from hoard.providers.usertree import UserTree

__all__ = ["LocalProvider", "LocalRunner", "ToolFailed"]

DEFAULT_ADDRESSES = "127.64.0.0/10"


def loopback_network(text: str) -> ipaddress.IPv4Network:
    """Clusters' address network: within 127.0.0.0/8, where every address is this
    machine's without any configuration, and large enough to choose from."""
    try:
        network = ipaddress.IPv4Network(text.strip())
    except ValueError as exc:
        raise ValueError(f"HOARD_LOCAL_ADDRESSES: {exc}") from None
    if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) or network.prefixlen > 24:
        raise ValueError(f"HOARD_LOCAL_ADDRESSES={text!r}: give a network of at least 256 "
                         "addresses within 127.0.0.0/8")
    return network


class LocalProvider(Provider):
    name = "local"
    lacks: frozenset[Ability] = frozenset()  # every ability of every engine

    def __init__(self, nodes_dir: Path, os_user: str, volumes: str = "auto",
                 hosts: list[Host] | None = None,
                 uid_range: tuple[int, int] = DEFAULT_UID_RANGE,
                 addresses: str = DEFAULT_ADDRESSES, etcd_host: str | None = None) -> None:
        """``os_user``: the shared account of platform services (etcd); each node
        and each endpoint proxy gets an account of its own from ``uid_range``.
        ``volumes``: "loop" (a filesystem per node, sized to its storage; "ext4"
        or "xfs" for that filesystem, else the one that grows mounted here),
        "directory" (plain directories, size observed only) or "auto".
        ``hosts``: the loopback addresses (with zones) nodes are spread over.
        ``addresses``: the network clusters' own addresses come from; the kernel
        routes all of 127.0.0.0/8 to ``lo``, so any of them can be bound at once."""
        state = nodes_dir.parent
        self.nodes_dir = nodes_dir
        self.volumes_dir = state / "volumes"
        self.private_dir = state / "private"
        self.users = UserPool(uid_range)
        self.service_user = service_user(os_user)
        self.hosts = hosts or [Host("127.0.0.1", "local")]
        self.addresses = self._network(addresses)
        etcd = "etcd" if self.name == "local" else f"etcd-{self.name}"
        self.etcd = LocalEtcd(state / etcd, self.private_dir / etcd, self.service_user,
                              etcd_host or self.hosts[0].address)
        self.endpoints = LocalEndpoints(state / "endpoints", self.private_dir / "endpoints",
                                        self.users)
        self.poolers = LocalPoolers(state / "poolers", self.private_dir / "poolers", self.users)
        for private in (self.private_dir, self.private_dir / "nodes"):
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
            private.chmod(0o700)
        nodes_dir.mkdir(parents=True, exist_ok=True)
        nodes_dir.chmod(0o711)  # each account reaches its own directory, lists none
        self._check_traversable(nodes_dir)
        self.volume_support = volume_fs.Support(False, "HOARD_LOCAL_VOLUMES=directory")
        if volumes != "directory":
            self.volume_support = volume_fs.probe()
        if volumes in volume_fs.FILESYSTEMS and self.volume_support.loop:
            self.volume_support = self.volume_support.using(volumes)
        self.use_volumes, self.volume_note = self.volume_support.loop, self.volume_support.note
        if volumes in ("loop", *volume_fs.FILESYSTEMS) and not self.use_volumes:
            raise RuntimeError(f"HOARD_LOCAL_VOLUMES={volumes}, but {self.volume_note}")

    @staticmethod
    def _network(text: str) -> ipaddress.IPv4Network:
        return loopback_network(text)

    def _check_traversable(self, path: Path) -> None:
        for parent in [path, *path.parents]:
            if self.service_user.is_root and not parent.stat().st_mode & 0o001:
                raise RuntimeError(
                    f"{parent} is not traversable by other OS users (each node runs as "
                    "one); choose a state directory outside it (HOARD_STATE_DIR)"
                )

    def _dir(self, node_id: str) -> Path:
        if not node_id.replace("-", "").isalnum():
            raise ValueError(f"bad node id {node_id!r}")
        return self.nodes_dir / node_id

    def _record(self, node_id: str) -> Path:
        """Hoard's own records of the node (root only)."""
        self._dir(node_id)  # checks the id
        return self.private_dir / "nodes" / node_id

    def _image(self, node_id: str) -> Path:
        return self.volumes_dir / f"{node_id}.img"

    def node_user(self, node_id: str) -> OSUser:
        """The node's OS account, from Hoard's own record."""
        user = self.users.recorded(self._record(node_id))
        if user is None:
            raise RuntimeError(
                f"node {node_id} has no OS account on record: it was not placed, or was "
                "made by an earlier layout of the local provider (one shared account); "
                "destroy it and make it again")
        return user

    def new_address(self) -> str:
        # Random, not sequential: concurrent creates rarely try the same one.
        first, size = int(self.addresses.network_address), self.addresses.num_addresses
        offset = secrets.randbelow(size - 2) + 1  # neither the network nor broadcast
        return str(ipaddress.IPv4Address(first + offset))

    def versions(self, engine: Versioned) -> list[str]:
        return engine.installed_versions()  # nodes run this host's binaries

    def place(self, node_id: str, taken_ports: set[int], storage_gb: int,
              port_names: Iterable[str] = (), siblings: Iterable[Host] = (),
              address: tuple[str, int] | None = None) -> Placement:
        root = self._dir(node_id)
        user = self.users.ensure(self._record(node_id), f"node {node_id}")
        if not root.exists():
            root.mkdir(mode=0o700)
        if self.use_volumes:
            self.volumes_dir.mkdir(mode=0o700, exist_ok=True)
            volume_fs.ensure(self._image(node_id), root, storage_gb,
                             self.volume_support.filesystem)
        UserTree(root, user).own_root(0o700)
        host = choose_host(self.hosts, siblings)
        if address is not None:
            return Placement(host=address[0], port=address[1], zone=host.zone)
        ports: list[int] = []
        names = list(port_names)
        while len(ports) < 1 + len(names):
            port = free_port(host.address)
            if port not in taken_ports and port not in ports:
                ports.append(port)
        return Placement(host=host.address, port=ports[0], zone=host.zone,
                         ports=dict(zip(names, ports[1:], strict=True)))

    def runner(self, node_id: str) -> LocalRunner:
        return LocalRunner(self._dir(node_id), self.node_user(node_id))

    def apply_limits(self, node_id: str, size: Size, storage_gb: int) -> dict[str, str]:
        result = cgroups.apply(node_id, size.cpus, size.memory_mb)
        storage = (f"enforced ({self.volume_note})" if self.use_volumes else
                   f"observed and reported, not enforced: {self.volume_note}")
        return {
            "cpu": f"{size.cpus:g} CPU, {result.report['cpu']}",
            "memory": f"{size.memory_mb} MiB, {result.report['memory']}",
            "storage": f"{storage_gb} GB, {storage}",
        }

    def grows_storage_live(self, node_id: str) -> bool:
        """A directory has nothing to grow; a volume grows live if its filesystem
        grows mounted here (an ext4 volume made before XFS was chosen may not)."""
        if not self.use_volumes:
            return True
        image = self._image(node_id)
        fs = volume_fs.filesystem(image) if image.exists() else self.volume_support.filesystem
        return fs in self.volume_support.online

    def grow_storage(self, node_id: str, storage_gb: int) -> Growth:
        """Grow the node's volume mounted, its server running; where the kernel
        refuses that while the server runs, say why and let the caller stop it."""
        running = self.is_running(node_id)
        if not self.use_volumes:
            return Growth(True, online=running,
                          note="a plain directory: its size is observed, nothing to grow")
        image, root = self._image(node_id), self._dir(node_id)
        if volume_fs.spans(image, storage_gb):
            return Growth(True, online=running)
        if volume_fs.is_mounted(root):
            try:
                volume_fs.grow_online(image, root, storage_gb * volume_fs.GB)
                return Growth(True, online=running)
            except volume_fs.GrowRefused as exc:
                if running:
                    return Growth(False, note=f"the volume cannot grow mounted here: {exc}")
        volume_fs.grow(image, root, storage_gb)
        return Growth(True)

    def _supervisor(self, node_id: str, user: OSUser | None = None) -> Supervisor:
        return Supervisor(self._dir(node_id), self._record(node_id), user,
                          cgroups.procs_files(node_id), self._enter(node_id))

    def _enter(self, node_id: str) -> list[str]:
        """How a node's processes get to where the node is: here, nowhere."""
        return []

    def start(self, node_id: str, spec: NodeSpec) -> list[str]:
        """Run the declared processes on this host from its installed binaries (the
        image is for container providers); compute limits were set by
        ``apply_limits``, the volume by ``place``."""
        return [p.name for p in spec.processes if self.start_process(node_id, p)]

    def start_process(self, node_id: str, spec: ProcessSpec) -> bool:
        """Run one process of the node unless it runs; True if it was started."""
        return self._supervisor(node_id, self.node_user(node_id)).start(spec)

    def is_running(self, node_id: str, name: str = SERVER) -> bool:
        return self._supervisor(node_id).live(name) is not None

    def address_taken(self, host: str, port: int) -> bool:
        return address_taken(host, port)

    def pid(self, node_id: str) -> int | None:
        live = self._supervisor(node_id).live()
        return live[0] if live else None

    def stop(self, node_id: str, graceful: bool = True) -> None:
        """Stop every process of the node, sidecars first: each its own stop signal
        (unless ``graceful`` is off, when its data is about to be thrown away),
        then SIGKILL for what is left, wherever it hid."""
        if self._dir(node_id).exists() or self._record(node_id).exists():
            user = self.users.recorded(self._record(node_id))
            self._supervisor(node_id, user).stop(graceful)

    def kill(self, node_id: str) -> None:
        """SIGKILL every process of the node at once: a simulated host failure."""
        self._supervisor(node_id, self.users.recorded(self._record(node_id))).kill()

    def ensure_etcd(self) -> str:
        """Run Hoard's etcd unless it runs; its client URL."""
        return self.etcd.ensure()

    def dcs(self) -> Dcs:
        return EtcdDcs(self.ensure_etcd())

    def forget_dcs(self, cluster_id: str, prefix: str) -> None:
        if self.etcd.running():
            self.etcd.delete_prefix(prefix)

    def ensure_endpoint(self, cluster_id: str, backends: list[Backend], check: RoleCheck,
                        ca_file: str, endpoint: Endpoint) -> None:
        self.endpoints.ensure(cluster_id, backends, check, ca_file, endpoint)

    def endpoint_running(self, cluster_id: str) -> bool:
        return self.endpoints.running(cluster_id)

    def remove_endpoint(self, cluster_id: str) -> None:
        self.endpoints.remove(cluster_id)

    def ensure_pooler(self, cluster_id: str, address: str, spec: ServiceSpec) -> bool:
        return self.poolers.ensure(cluster_id, spec)  # the address is this host's (127.0.0.0/8)

    def remove_pooler(self, cluster_id: str) -> None:
        self.poolers.remove(cluster_id)

    def destroy(self, node_id: str) -> None:
        root, record = self._dir(node_id), self._record(node_id)
        # No shutdown checkpoint or snapshot for data that is deleted next.
        self.stop(node_id, graceful=False)
        if root.exists() or self._image(node_id).exists():
            volume_fs.remove(self._image(node_id), root)
            shutil.rmtree(root, ignore_errors=True)
        cgroups.remove(node_id)
        self.users.remove(record)  # its processes are gone: the account can go
        shutil.rmtree(record, ignore_errors=True)

    def has_storage(self, node_id: str) -> bool:
        return self._dir(node_id).is_dir()

    def resource_usage(self, node_id: str) -> dict[str, float]:
        return cgroups.usage(node_id)

    def storage_usage(self, node_id: str, storage_gb: int) -> StorageUsage | None:
        """A node's own filesystem: statvfs (constant time). A plain directory: the
        bytes its files take, against the storage asked for (the walk stops once
        past it, so a runaway directory costs no more than a full one)."""
        root = self._dir(node_id)
        if not root.is_dir():
            return None
        if self.use_volumes and volume_fs.is_mounted(root):
            st = os.statvfs(root)
            return StorageUsage((st.f_blocks - st.f_bfree) * st.f_frsize,
                                st.f_blocks * st.f_frsize)
        total = storage_gb * volume_fs.GB
        used = 0
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            if used > total:
                break
        return StorageUsage(used, total)

    def output_tail(self, node_id: str, name: str = SERVER, max_bytes: int = 4096) -> str:
        """The end of a process's output, read as its account's file (no links)."""
        try:
            tail = self.runner(node_id).tree.read_tail(PurePosixPath("log", f"{name}.log"),
                                                       max_bytes)
        except (OSError, ValueError):
            return ""
        return tail.decode(errors="replace")

    def read_log(self, node_id: str, source: LogSource, offset: int | None,
                 max_bytes: int) -> LogChunk:
        """A process's output is ``log/<name>.log`` in the node's directory (the
        supervisor appends to it); a file is read where the engine said, both as
        the account's own regular file (no link, FIFO or hard link of another's)."""
        if source.path is None and not PROCESS_NAME.fullmatch(source.process):
            raise ValueError(f"bad process name {source.process!r}")
        path = source.path or PurePosixPath("log", f"{source.process}.log")
        try:
            data, start, end = self.runner(node_id).tree.read_range(path, offset, max_bytes)
        except FileNotFoundError:
            return LogChunk(b"", 0, 0)
        except OSError as exc:  # a link, a FIFO, another's file: never read
            raise PermissionError(f"{path} of node {node_id} is not a log file of the "
                                  f"node's own ({exc.strerror}); it was not read") from None
        return LogChunk(data, start, end)

    def node_ids(self) -> set[str]:
        found = {p.name for p in self.nodes_dir.iterdir() if p.is_dir()}
        found |= {p.name for p in (self.private_dir / "nodes").iterdir() if p.is_dir()}
        if self.volumes_dir.exists():
            found |= {p.stem for p in self.volumes_dir.glob("*.img")}
        return found
