"""The contract between an engine and a provider: the node an engine declares
(``NodeSpec``: what runs, on which ports, with what storage, compute and
readiness check), and the way it reaches a node's files and tools wherever the
node lives (``NodeRunner``)."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol


@dataclass(frozen=True)
class ProcessSpec:
    """One long-running process of a node. Every node runs a "server"; a
    replicated node may run more beside it, each under its own ``name`` (e.g.
    Redis's "sentinel"). A provider supervises each name separately."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    name: str = "server"


@dataclass(frozen=True)
class Volume:
    """The node's persistent storage: a filesystem of ``size_gb`` mounted at
    ``path`` as the node's processes see it (a container provider mounts its
    volume there; the local provider's node directory is the volume)."""

    size_gb: int
    path: str = "/var/lib/hoard"


@dataclass(frozen=True)
class Resources:
    """Compute each node gets (from the cluster's size): container requests and
    limits, or the local provider's cgroup."""

    cpus: float
    memory_mb: int


@dataclass(frozen=True)
class Readiness:
    """How a provider tells on its own that a node may take traffic (a container
    readiness probe): ``argv`` run inside the node exits 0, or, when empty, the
    named port accepts a TCP connection. Hoard's workflows still ask the engine
    over its protocol; this is for the provider's machinery."""

    port_name: str = "client"
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class Owner:
    """Whose node it is: a provider that labels what it makes (Kubernetes) marks
    each object with its project and cluster, so that a cluster's objects are
    found, and deleted, by label. A node may change cluster (promote-out): the
    owner is given with every start, never remembered from the first."""

    project_id: str
    cluster_id: str
    standalone: bool = True  # a cluster of one node (no read-write and read-only endpoints)


@dataclass(frozen=True)
class NodeSpec:
    """A node as declared by its engine: a provider brings the node to this state
    (``Provider.start``) however it runs nodes (processes on a host, a pod).

    ``image`` names the container image of ``engine`` at ``version`` (container
    providers); ``processes`` are what runs, "server" first, then sidecars (Redis
    Sentinel); ``ports`` the named ports the node answers on, "client" always.
    The configuration files are not part of the declaration: engines write them
    onto the node's volume through its ``NodeRunner``, because a live change
    rewrites them in place and reloads the server, where a declared file would
    need a new node. ``owner`` says which project's cluster the node serves."""

    engine: str
    version: str
    image: str
    processes: tuple[ProcessSpec, ...]
    ports: Mapping[str, int]
    volume: Volume
    resources: Resources
    readiness: Readiness = Readiness()
    owner: Owner | None = None
    # Whether the node's HA machinery keeps its state in the provider's DCS
    # (``Provider.dcs``): a provider whose DCS is its own API (Kubernetes) gives
    # such a node, and no other, the credentials to reach it.
    uses_dcs: bool = False

    def process(self, name: str) -> ProcessSpec:
        return next(p for p in self.processes if p.name == name)


@dataclass(frozen=True)
class NodeSecrets:
    """What a node's machinery needs besides its declaration: its certificate
    from Hoard's CA, the CA's, and the cluster's service account. A provider that
    mounts secrets (Kubernetes) keeps them in its own objects; the local provider
    needs none (engines write the files onto the volume through the runner)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    user: str
    password: str


class NodeRunner(Protocol):
    """Carries out an engine's file writes and commands beside the node's data.

    Paths are relative to the node's volume root.
    """

    def write_file(self, path: PurePosixPath, content: bytes, mode: int = 0o600) -> None: ...

    def write_stream(self, path: PurePosixPath, chunks: Iterable[bytes],
                     mode: int = 0o600) -> int:
        """``write_file`` for content too big to hold in memory; return the bytes
        written. The file appears under ``path`` only once the last chunk is in:
        a stream that raises leaves nothing behind."""
        ...

    def exists(self, path: PurePosixPath) -> bool: ...

    def remove_tree(self, path: PurePosixPath) -> None:
        """Remove a file or a whole directory; missing is fine."""
        ...

    def rename(self, src: PurePosixPath, dst: PurePosixPath) -> None: ...

    def run(self, argv: list[str], timeout: float = 300.0,
            env: dict[str, str] | None = None) -> str:
        """Run a tool as the database OS user; return its output, raise on failure.
        Secrets go in ``env``, never in argv."""
        ...

    def stream(self, argv: list[str], env: dict[str, str] | None = None) -> Iterator[bytes]:
        """Run a tool and yield its stdout in chunks (bounded memory); raise after
        the last chunk if it failed, so a consumer never mistakes a cut-short
        stream for a whole one."""
        ...

    def feed(self, argv: list[str], chunks: Iterable[bytes],
             env: dict[str, str] | None = None, timeout: float = 3600.0) -> str:
        """Run a tool with ``chunks`` streamed to its stdin; return its output."""
        ...

    def list_dir(self, path: PurePosixPath) -> list[str]:
        """Names in a directory, sorted; empty if it does not exist."""
        ...

    def read_stream(self, path: PurePosixPath) -> Iterator[bytes]:
        """A file's bytes in chunks."""
        ...

    def abspath(self, path: PurePosixPath) -> str:
        """Where ``path`` is as the node's process sees it."""
        ...


# --- a node's logs ------------------------------------------------------------


@dataclass(frozen=True)
class LogSource:
    """Where one of a node's logs is, as its engine declares it: the output of the
    node's process ``process`` (stdout and stderr, which the provider keeps: a
    file on a host, a container's log), or the file ``path`` on the node's volume
    (a log the server writes itself, such as MariaDB's slow log). Exactly one of
    the two; never a path a caller chose."""

    process: str = ""
    path: PurePosixPath | None = None

    def __post_init__(self) -> None:
        if bool(self.process) == (self.path is not None):
            raise ValueError("a log source is a process's output or a file, not both")


@dataclass(frozen=True)
class LogChunk:
    """Bytes of a log from ``start`` (an offset in it), and where it ``end``s now:
    the offset to read from next. A log that was cut or replaced (``end`` below a
    caller's offset) is read again from its start."""

    data: bytes
    start: int
    end: int


# --- how a cluster's stable endpoints tell which node does what -----------------


@dataclass(frozen=True)
class HttpRoleCheck:
    """The node's HA agent answers ``GET path`` on its named port with 200 when the
    node has the role (Patroni's REST API: /primary, /replica). With ``tls`` it
    speaks HTTPS with the node's certificate, checked against Hoard's CA."""

    port_name: str
    primary_path: str
    replica_path: str
    tls: bool = False


@dataclass(frozen=True)
class ExchangeRoleCheck:
    """Over TLS to the server's own port: send ``send`` lines, then the role shows
    as a string in the answer (Redis: AUTH, then ROLE answers "master"/"slave")."""

    send: tuple[str, ...]
    primary_expect: str
    replica_expect: str


@dataclass(frozen=True)
class CommandRoleCheck:
    """A command (argv; an argument that is exactly ``{host}`` or ``{port}`` is
    replaced by the node's) exits 0 when the
    node may take traffic (Galera: the node is Synced). Every passing node can
    take writes; the endpoint still sends all writes to one of them at a time."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


RoleCheck = HttpRoleCheck | ExchangeRoleCheck | CommandRoleCheck


@dataclass(frozen=True)
class Backend:
    """One node behind a cluster's endpoint."""

    node_id: str
    host: str
    port: int
    ports: dict[str, int] = field(default_factory=dict)  # the node's named extra ports


# --- a cluster's own service beside its nodes (the connection pooler) ----------


@dataclass(frozen=True)
class ServiceFile:
    """A file a service reads from its working directory (names are relative).
    ``keep``: written only when missing (a key the service keeps for its life,
    rather than a new one, and a reload, on every look)."""

    name: str
    content: bytes
    mode: int = 0o600
    keep: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    """A process serving a whole cluster at an address of its own (a PostgreSQL
    cluster's PgBouncer), as its engine declares it: its files, read relative to
    its working directory, and the process. A provider runs it under an account
    of its own and, when a file changes under a running one, sends it
    ``reload_signal`` rather than restarting it."""

    process: ProcessSpec
    files: tuple[ServiceFile, ...]
    reload_signal: int = signal.SIGHUP
