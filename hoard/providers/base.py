"""The Provider seam: place a node, give it storage and limits, run its process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hoard.domain.abilities import Ability
from hoard.domain.catalog import Size
from hoard.domain.dcs import Dcs
from hoard.domain.nodes import (
    Backend,
    LogChunk,
    LogSource,
    NodeRunner,
    NodeSecrets,
    NodeSpec,
    Owner,
    RoleCheck,
    ServiceSpec,
)
from hoard.domain.placement import Host
from hoard.domain.storage import StorageUsage


@dataclass(frozen=True)
class Placement:
    """Where a node landed: the address clients use, and the failure domain."""

    host: str
    port: int
    zone: str
    ports: dict[str, int] = field(default_factory=dict)  # extra ports, by name


@dataclass(frozen=True)
class Endpoint:
    """A replicated cluster's stable addresses: writes reach the primary, reads
    are spread over the replicas (the primary when none is up). Each is an
    address of its own on the engine's standard port (clusters made before that
    share one host, on ports of their own)."""

    rw_host: str
    rw_port: int
    ro_host: str
    ro_port: int


@dataclass(frozen=True)
class Growth:
    """What a storage growth did: ``done`` False means the node must be stopped
    first (and nothing was lost: the growth is asked again then); ``online``
    that it grew with the server running; ``note`` why it could not grow
    online, or how it grew, in words for the node's event."""

    done: bool
    online: bool = False
    note: str = ""


@dataclass(frozen=True)
class Deadlines:
    """How long a provider's waits may last before a step gives up (and the
    workflow compensates): a local start takes a second, a container provider
    may pull an image for minutes. Workflows take these, never constants."""

    start: float = 120.0  # a node's processes run and its server answers
    join: float = 600.0  # a member copies its data from the cluster and joins
    form: float = 120.0  # the HA machinery elects a primary among running members


class Versioned(Protocol):
    """What a provider needs of an engine to say which versions it offers."""

    @property
    def name(self) -> str: ...

    def installed_versions(self) -> list[str]: ...


class Provider(ABC):
    name: str
    deadlines: Deadlines = Deadlines()
    # What this provider cannot give yet, declared rather than found out by a
    # step that raises halfway: the catalog shows it, and the API refuses a
    # create or change that asks for it before any work starts. A provider runs
    # no connection pooler unless it says so (it has to implement ensure_pooler).
    lacks: frozenset[Ability] = frozenset({Ability.CONNECTION_POOLER})

    @abstractmethod
    def versions(self, engine: Versioned) -> list[str]:
        """The versions of ``engine`` this provider can run, newest first: binaries
        on its hosts, or images in its registry. Creates and the catalog ask here,
        never the API host's disk."""

    @abstractmethod
    def new_address(self) -> str:
        """A candidate for an address of a cluster's own (a standalone node's, an
        endpoint's): the caller makes it the cluster's by recording it in the store,
        where two clusters cannot hold one, and asks again if it was taken."""

    def listen_host(self, host: str) -> str:
        """Where a node placed at ``host`` listens: the same address where the
        node holds it (a local node's own address), another where clients reach
        the node through something in front of it."""
        return host

    @abstractmethod
    def place(self, node_id: str, taken_ports: set[int], storage_gb: int,
              port_names: Iterable[str] = (), siblings: Iterable[Host] = (),
              address: tuple[str, int] | None = None) -> Placement:
        """Reserve an address (and a port per extra name) and storage for a node,
        away from its ``siblings`` where the provider can; with ``address``, the
        node answers there (a standalone cluster's own address and standard port).
        Storage is idempotent per node id; the address is chosen anew, so callers
        keep the first one."""

    @abstractmethod
    def grow_storage(self, node_id: str, storage_gb: int) -> Growth:
        """Grow the node's storage to ``storage_gb`` (never shrinks; idempotent),
        while its server runs where the provider can; else not ``done``, and the
        caller stops the node and asks again."""

    def grows_storage_live(self, node_id: str) -> bool:
        """Whether ``grow_storage`` can grow this node's storage while its server
        runs (a change's preview says so). No, unless the provider knows better."""
        return False

    @abstractmethod
    def runner(self, node_id: str) -> NodeRunner:
        """Files and commands beside the node's data."""

    # Whether ``runner`` needs something of the node's running before its first
    # start (a pod to exec into), which ``hold`` brings up; a create asks only then.
    holds: bool = False

    def hold(self, node_id: str, spec: NodeSpec) -> None:
        """After ``place``, before anything is written through ``runner``: bring up
        what the runner needs, on the node's storage, running none of ``spec``'s
        processes yet (``start`` does). Idempotent. Nothing to do where the runner
        reaches the node's storage directly (local processes)."""
        return None

    @abstractmethod
    def apply_limits(self, node_id: str, size: Size, storage_gb: int) -> dict[str, str]:
        """Set CPU, memory and storage limits; say for each whether it is enforced."""

    @abstractmethod
    def start(self, node_id: str, spec: NodeSpec) -> list[str]:
        """Bring the node to ``spec``: run each of its processes that does not run
        (the storage and address are the node's already, from ``place``). The
        names of the processes started; [] when all were running."""

    @abstractmethod
    def is_running(self, node_id: str, name: str = "server") -> bool: ...

    def waiting_for(self, node_id: str) -> str | None:
        """Why the node is not ready for what comes next, in the provider's own
        words (a held node: until its runner can reach it; a started one: until
        it runs its server), for an operation to show while it waits; None when
        nothing of the provider's holds it up (the engine's health says the rest).
        None unless the provider can tell more than the server itself (local
        processes: their output says why)."""
        return None

    @abstractmethod
    def address_taken(self, host: str, port: int) -> bool:
        """Whether something holds a node's address while the node does not run: a
        start that failed for that is worth retrying, not a reason to give up."""

    @abstractmethod
    def kill(self, node_id: str) -> None:
        """Kill every process of the node at once, as a host failure would."""

    @abstractmethod
    def pid(self, node_id: str) -> int | None:
        """The server's process id where that means something (for operators)."""

    @abstractmethod
    def stop(self, node_id: str) -> None:
        """Stop the node's processes (graceful, then forced). Idempotent."""

    @abstractmethod
    def destroy(self, node_id: str) -> None:
        """Stop the node and remove everything it had. Idempotent."""

    @abstractmethod
    def has_storage(self, node_id: str) -> bool:
        """Whether the node's storage (its data) still exists."""

    @abstractmethod
    def storage_usage(self, node_id: str, storage_gb: int) -> StorageUsage | None:
        """How much of the node's storage (``storage_gb`` as asked) is used; None if
        the node has no storage."""

    def resource_usage(self, node_id: str) -> dict[str, float]:
        """CPU and memory the node uses against its limits, under the names of
        :mod:`hoard.domain.metrics` (cpu_seconds_total, cpu_limit_cores,
        memory_used_bytes, memory_limit_bytes); what the provider cannot tell is
        left out."""
        return {}

    @abstractmethod
    def output_tail(self, node_id: str, name: str = "server", max_bytes: int = 4096) -> str:
        """The end of what the node's process ``name`` wrote (stdout and stderr):
        why a server that exited did so, in its own words. "" if none."""

    @abstractmethod
    def read_log(self, node_id: str, source: LogSource, offset: int | None,
                 max_bytes: int) -> LogChunk:
        """At most ``max_bytes`` of one of the node's logs, from ``offset`` (None:
        its last ``max_bytes``), wherever the node runs. Only what ``source``
        names is read (a process's output, a file on the node's volume, no link
        followed); a log that does not exist yet is empty."""

    @abstractmethod
    def node_ids(self) -> set[str]:
        """Every node this provider holds anything for (to find debris)."""

    # --- what replicated clusters need besides their nodes ---

    @abstractmethod
    def dcs(self) -> Dcs:
        """Where engines that keep their HA state in a DCS keep it, made ready
        (the local provider runs Hoard's etcd unless it runs; the Kubernetes
        provider answers with its namespace and labels)."""

    @abstractmethod
    def forget_dcs(self, cluster_id: str, prefix: str) -> None:
        """Delete a deleted cluster's HA state: every key under ``prefix`` in
        Hoard's etcd, or the objects its machinery made for ``cluster_id``."""

    def publish_secrets(self, node_id: str, owner: Owner, secrets: NodeSecrets) -> None:
        """Keep the node's certificate and its cluster's service account where the
        node's runtime mounts them (Kubernetes: Secrets). Nothing to do where
        engines write them onto the node's volume through its runner (local)."""
        return None

    def set_roles(self, cluster_id: str, roles: Mapping[str, str]) -> None:
        """Record the members' roles (node id -> "primary" | "replica") where the
        provider routes by them, for machinery that does not record them itself
        (Sentinel, Galera). Nothing to do where the endpoint asks the nodes (the
        local provider's proxy checks each node's role)."""
        return None

    @abstractmethod
    def ensure_endpoint(self, cluster_id: str, backends: list[Backend], check: RoleCheck,
                        ca_file: str, endpoint: Endpoint) -> None:
        """Run (or update in place) the cluster's endpoint proxy in front of
        ``backends``, answering at ``endpoint`` (the cluster's for its whole life)."""

    @abstractmethod
    def endpoint_running(self, cluster_id: str) -> bool: ...

    @abstractmethod
    def remove_endpoint(self, cluster_id: str) -> None:
        """Stop the cluster's endpoint proxy and forget its ports. Idempotent."""

    # --- a cluster's connection pooler (engines with ``Pooling``) ---

    @property
    def offers_pooler(self) -> bool:
        """Whether ensure_pooler runs one."""
        return Ability.CONNECTION_POOLER not in self.lacks

    def ensure_pooler(self, cluster_id: str, address: str, spec: ServiceSpec) -> bool:
        """Run the cluster's pooler as ``spec`` declares it, answering at ``address``
        (the cluster's, for the pooler's life): start it unless it runs; rewrite its
        files and reload it when they changed. Idempotent; True if it was started."""
        raise NotImplementedError(f"the {self.name} provider runs no connection pooler yet")

    def remove_pooler(self, cluster_id: str) -> None:
        """Stop the cluster's pooler and remove what it had. Idempotent (a provider
        that runs none has nothing to remove)."""
        return None
