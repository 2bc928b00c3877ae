"""The Engine seam: how to bootstrap, configure, run, check and connect to one engine.

An engine never touches a machine directly. It describes files and commands,
and a provider's :class:`NodeRunner` carries them out wherever the node lives
(a local directory and a subprocess, or a pod volume and an exec).

Optional abilities are small interfaces an engine also inherits
(:class:`SqlAccounts`, :class:`AclAccounts`), never stub methods that raise
"not supported": the API asks ``isinstance(engine, SqlAccounts)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import quote

from hoard.domain.catalog import Size
from hoard.domain.dcs import Dcs
from hoard.domain.nodes import (
    NodeRunner,
    ProcessSpec,
    Readiness,
    RoleCheck,
    ServiceFile,
    ServiceSpec,
)

ParamValue = int | bool | str
# Where every engine keeps its node's TLS certificate and key (volume-relative).
TLS_CERT = PurePosixPath("tls/server.crt")
TLS_KEY = PurePosixPath("tls/server.key")
TLS_CA = PurePosixPath("tls/ca.crt")  # Hoard's CA: members check their peers with it


@dataclass(frozen=True)
class Parameter:
    """One engine parameter a configuration may set."""

    name: str
    type: str  # "integer" | "string" | "boolean" | "enum"
    dynamic: bool  # applied live; otherwise the cluster needs a restart
    description: str
    minimum: int | None = None
    maximum: int | None = None
    allowed: tuple[str, ...] = ()
    unit: str = ""
    # The most of a node's memory, or of the cluster's storage, the value may take
    # (a fraction). The API refuses a configuration, a resize or a storage change
    # that would break it, naming the limit: a server given more than its node has
    # fails to start, or fills its disk.
    memory_share: float | None = None
    storage_share: float | None = None


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def uri(self, scheme: str, host: str, port: int, path: str) -> str:
        """``scheme://user:password@host:port/path``, user and password
        percent-encoded, an IPv6 host in brackets."""
        netloc = f"[{host}]" if ":" in host else host
        return (f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{netloc}:{port}/{path}")


class SealedCredentials(Credentials):
    """Credentials whose password is unsealed on first use. A node's context
    carries two accounts and most callers use one: the observer builds a context
    per node per pass, where unsealing both was a third of a quiet pass."""

    def __init__(self, user: str, unseal: Callable[[], str]) -> None:
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "_unseal", unseal)

    @property
    def password(self) -> str:
        plain = self.__dict__.get("_plain")
        if plain is None:
            plain = self._unseal()  # type: ignore[attr-defined]
            object.__setattr__(self, "_plain", plain)
        return str(plain)


@dataclass(frozen=True)
class NodeContext:
    """What an engine knows about one node: identity, size, secrets, parameters."""

    node_id: str
    version: str
    size: Size
    host: str
    port: int
    service: Credentials  # Hoard's own management account
    admin: Credentials  # the tenant's account
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)  # validated
    # The node's storage: settings that grow on disk (WAL, redo logs) are derived
    # within it. 0 when unknown: no such bound.
    storage_gb: int = 0
    # Where the node's server listens, when its provider says it is not ``host``
    # (a Kubernetes Service's name is an address no process of the pod holds).
    listen: str = ""

    @property
    def bind(self) -> str:
        """The address the node's server listens on."""
        return self.listen or self.host


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True)
class ClientCommand:
    """A client to run: secrets go in ``env``, not in argv (visible in ps)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Engine(ABC):
    """One database engine. Each lives in a package of its own under hoard/engines/
    (the engine, its backup and its replication modules)."""

    name: str
    display_name: str
    client_binary: str  # what ``hoard connect`` runs
    # Where clients look when no port is given: a cluster's own address answers here.
    standard_port: int

    @abstractmethod
    def installed_versions(self) -> list[str]:
        """Versions whose binaries are installed on this host, newest first: what
        the local provider offers. What a cluster may run is its provider's
        answer (``Provider.versions``)."""

    @abstractmethod
    def parameters(self) -> list[Parameter]:
        """Parameters a configuration may set, with their types and ranges."""

    @abstractmethod
    def settings(self, ctx: NodeContext) -> dict[str, str]:
        """Effective tunable settings of a node: defaults derived from its size,
        overridden by its configuration's parameters. Comparing two results tells
        what a resize or a configuration change alters."""

    @abstractmethod
    def is_dynamic(self, setting: str) -> bool:
        """Whether ``setting`` can change without a restart."""

    @abstractmethod
    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """Create the node's data files. Idempotent: a finished bootstrap is kept,
        a half-finished one is thrown away and redone."""

    def install_tls(self, runner: NodeRunner, cert_pem: bytes, key_pem: bytes,
                    ca_pem: bytes | None = None) -> None:
        """Write the node's TLS certificate and key where ``configure`` points to,
        and Hoard's CA certificate when given (replicated members verify their
        peers with it)."""
        runner.write_file(TLS_CERT, cert_pem, 0o644)
        runner.write_file(TLS_KEY, key_pem, 0o600)
        if ca_pem is not None:
            runner.write_file(TLS_CA, ca_pem, 0o644)

    @abstractmethod
    def configure(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """Write the configuration files for ``settings(ctx)``. Idempotent."""

    @abstractmethod
    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec:
        """The server process to run for this node."""

    def image(self, version: str) -> str:
        """The container image that runs ``version`` (built from images/<engine>/):
        what a container provider pulls for a node of this engine."""
        return f"hoard/{self.name}:{version}"

    def readiness(self, ctx: NodeContext) -> Readiness:
        """How a provider's own machinery tells the server may take traffic (a
        container readiness probe). By default: its client port accepts TCP."""
        return Readiness()

    @abstractmethod
    def health(self, ctx: NodeContext, ca_file: str, timeout: float = 3.0) -> Health:
        """Check the node over the engine's own protocol, as Hoard's service account."""

    @abstractmethod
    def initialize(self, ctx: NodeContext, ca_file: str) -> None:
        """Create the tenant's admin account (and default database). Idempotent."""

    @abstractmethod
    def set_admin_password(self, ctx: NodeContext, ca_file: str) -> None:
        """Give the tenant's admin account ``ctx.admin``'s password, on the node that
        takes writes (and wherever the engine does not copy accounts by itself).
        Idempotent; Hoard's own account is untouched."""

    @abstractmethod
    def apply_live(self, ctx: NodeContext, ca_file: str, names: list[str]) -> None:
        """Make the running server take the current value of each dynamic setting
        in ``names`` (after ``configure`` wrote them to its files)."""

    @abstractmethod
    def connection_uri(self, host: str, port: int, creds: Credentials,
                       ca_file: str | None = None) -> str:
        """A URI for the tenant's admin account that demands TLS with the server's
        certificate and name verified. Without ``ca_file`` (what the API returns: a
        path on Hoard's host means nothing on the tenant's) the client supplies
        Hoard's CA itself; with it, the URI names that file, in the query
        parameter of the client library the URI is meant for."""

    @abstractmethod
    def client_command(
        self, host: str, port: int, creds: Credentials, ca_file: str
    ) -> ClientCommand:
        """The engine's interactive client, connected, for ``hoard connect``;
        ``ca_file`` is a whole argv item or environment value, never part of one,
        so a client can put its own path (or a placeholder) there."""


# --- optional abilities -------------------------------------------------------


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    charset: str  # encoding (PostgreSQL) or character set (MariaDB)
    collation: str


@dataclass(frozen=True)
class UserInfo:
    name: str
    databases: list[str] = field(default_factory=list)  # SQL engines: full access to these
    keys: list[str] = field(default_factory=list)  # Redis: key patterns
    categories: list[str] = field(default_factory=list)  # Redis: command categories


class SqlAccounts(ABC):
    """Databases and users with per-database access (PostgreSQL, MariaDB).

    Names reaching these methods were validated by the API (identifier rules,
    reserved names); implementations still quote every identifier with the
    driver's own quoting, never by string formatting.
    """

    reserved_databases: frozenset[str]
    reserved_users: frozenset[str]
    # Made with the cluster and named by its credentials' URI: never deleted.
    default_database: str

    @abstractmethod
    def charsets(self) -> list[str]:
        """Character sets / encodings a database may be created with."""

    @abstractmethod
    def list_databases(self, ctx: NodeContext, ca_file: str) -> list[DatabaseInfo]: ...

    @abstractmethod
    def create_database(self, ctx: NodeContext, ca_file: str, name: str,
                        charset: str | None, collation: str | None) -> None:
        """Create unless it exists (idempotent); bad collation raises ValueError."""

    @abstractmethod
    def drop_database(self, ctx: NodeContext, ca_file: str, name: str) -> None:
        """Drop if it exists (idempotent)."""

    @abstractmethod
    def list_users(self, ctx: NodeContext, ca_file: str) -> list[UserInfo]:
        """Tenant-made users (not the admin or service accounts)."""

    @abstractmethod
    def create_user(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None:
        """Create, or reset the password if it exists (idempotent)."""

    @abstractmethod
    def drop_user(self, ctx: NodeContext, ca_file: str, name: str) -> None: ...

    @abstractmethod
    def set_password(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None: ...

    @abstractmethod
    def grant(self, ctx: NodeContext, ca_file: str, user: str, database: str) -> None:
        """Full access for ``user`` to ``database`` (idempotent)."""

    @abstractmethod
    def revoke(self, ctx: NodeContext, ca_file: str, user: str, database: str) -> None: ...


class AclAccounts(ABC):
    """ACL users limited to key patterns and command categories (Redis)."""

    reserved_users: frozenset[str]
    categories: frozenset[str]  # command categories a tenant user may be given

    @abstractmethod
    def list_users(self, ctx: NodeContext, ca_file: str) -> list[UserInfo]: ...

    @abstractmethod
    def create_user(self, ctx: NodeContext, ca_file: str, name: str, password: str,
                    keys: list[str], categories: list[str]) -> None:
        """Create or replace the user's rules (idempotent)."""

    @abstractmethod
    def drop_user(self, ctx: NodeContext, ca_file: str, name: str) -> None: ...

    @abstractmethod
    def set_password(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None: ...


class Metrics(ABC):
    """The engine's own numbers for a node, read over its protocol as Hoard's
    service account (one short connection, during the observer's pass)."""

    @abstractmethod
    def metrics(self, ctx: NodeContext, ca_file: str, timeout: float = 2.0) -> dict[str, float]:
        """The node's current values under the names of :mod:`hoard.domain.metrics`
        (connections, operations_total, cache_hits_total, cache_misses_total,
        lock_waits): counters as the server counts them since it started. Raises
        if the server cannot be asked."""


@dataclass(frozen=True)
class LogMark:
    """What a log rotation proves: every transaction committed at or before ``at``
    (the server's clock) is in the closed log file ``name`` or an earlier one. The
    restorable window ends at the newest mark whose file is in the backup store."""

    name: str
    at: datetime


class Backups(ABC):
    """Consistent full backups with the engine's own tool, continuous archiving of
    its change log (where it has one) and restore, to a point in time where the
    log allows. Hoard moves the bytes (encrypted, checksummed) between the node
    and the backup store; the engine only produces and consumes them.

    Restore happens before a new node's first start (``restore``), and is
    finished after it (``finish_restore``): PostgreSQL replays WAL and promotes,
    MariaDB replays binlogs up to the target time.
    """

    log_kind: str  # "wal", "binlog", or "" when there is no continuous log
    # Whether a closed log file's name means the same bytes on every member of a
    # replicated cluster (WAL segments do; each Galera member's binlog is its own).
    logs_shared_by_members: bool = False

    @abstractmethod
    def backup(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
               meta: dict[str, str]) -> Iterator[bytes]:
        """Stream one consistent full backup. Fill ``meta`` (e.g. the log position
        the backup starts from) by the time the stream ends; raise at the end if
        the tool failed."""

    @abstractmethod
    def rotate_log(self, ctx: NodeContext, ca_file: str) -> LogMark | None:
        """Close the current log file so it can be archived, and say up to when the
        closed files hold every commit (None without a log, or when it cannot say)."""

    @abstractmethod
    def last_commit(self, ctx: NodeContext, runner: NodeRunner,
                    path: PurePosixPath) -> datetime | None:
        """The latest commit time recorded in a closed log file (None: it records no
        transaction). A restore to T stages logs up to the first one past T."""

    @abstractmethod
    def closed_logs(self, runner: NodeRunner) -> list[PurePosixPath]:
        """Archived log files waiting to be shipped, oldest first (paths relative to
        the node volume). Hoard ships each one, then removes it."""

    @abstractmethod
    def restore(self, ctx: NodeContext, runner: NodeRunner, backup: Iterable[bytes],
                meta: Mapping[str, str], logs: list[tuple[str, Iterable[bytes]]],
                target: str | None) -> None:
        """Lay down a new node's data from ``backup``, and stage ``logs`` (name,
        bytes; oldest first) to replay up to ``target`` (an ISO-8601 UTC time;
        None: the end of the given logs, or the backup alone without logs).
        Runs before the node's first start."""

    @abstractmethod
    def finish_restore(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                       target: str | None) -> None:
        """After the first start: complete recovery and return once the node is
        writable and holds exactly the data up to ``target``."""


class IncrementalBackups(ABC):
    """Backups of only what changed since an earlier backup of the same node's data."""

    @abstractmethod
    def backup_incremental(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                           meta: dict[str, str], base: Mapping[str, str]) -> Iterator[bytes]:
        """Like Backups.backup, but only the changes since the backup whose meta is
        ``base`` (a full or an incremental one). Fill ``meta`` as backup does."""

    @abstractmethod
    def restore_chain(self, ctx: NodeContext, runner: NodeRunner,
                      chain: list[tuple[Iterable[bytes], Mapping[str, str]]],
                      logs: list[tuple[str, Iterable[bytes]]], target: str | None) -> None:
        """Like Backups.restore, from a full backup followed by incrementals, oldest
        first (chain[0] is the full one). finish_restore then completes it as usual."""


@dataclass(frozen=True)
class Verification:
    """What the engine's own checks found on a restored copy: what was checked, in
    plain words, and the rows of every table (Redis: the keys of every database)."""

    checks: list[str]
    counts: dict[str, int]


class VerifiesRestores(ABC):
    """Proving a backup restorable: after ``restore`` and ``finish_restore`` on a
    throwaway node, the engine runs its own consistency checks and counts."""

    @abstractmethod
    def verify(self, ctx: NodeContext, ca_file: str, runner: NodeRunner) -> Verification:
        """Check the restored, running node with the engine's own tools and count
        every table's rows; raise with the reason when a check fails. May change
        the node (it is thrown away after): never call it on a tenant's node."""


# --- replicated clusters ------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One node of a replicated cluster, as its peers and its HA machinery see it."""

    node_id: str
    ordinal: int
    host: str
    port: int  # the engine's client port
    ports: Mapping[str, int] = field(default_factory=dict)  # one per name in ``ha_ports``
    zone: str = ""


@dataclass(frozen=True)
class Topology:
    """A replicated cluster's shape: who is in it and what is promised."""

    cluster_id: str
    members: tuple[Member, ...]  # every node that should be in the cluster, by ordinal
    durability: str  # "async" or "sync" (a commit waits for a replica)
    dcs: Dcs | None = None  # the provider's DCS, for engines that keep their state in one

    def member(self, node_id: str) -> Member:
        return next(m for m in self.members if m.node_id == node_id)


@dataclass(frozen=True)
class MemberState:
    """A member as the engine's HA machinery reports it right now."""

    node_id: str
    role: str  # "primary", "replica", or "" when it is not serving
    healthy: bool  # serving its role and, for a replica, following the primary
    lag_bytes: int | None  # replication lag behind the primary; None if unknown
    detail: str  # plain words: "streaming from node 0, 0 bytes behind"


class Replication(ABC):
    """Replicated clusters on the engine's own HA machinery (Patroni, Galera,
    Sentinel): Hoard lays out the members and runs their processes; electing a
    primary, failing over and re-joining are the machinery's job, never Hoard's.

    Every method is idempotent: workflows retry steps after a crash.
    """

    ha_ports: tuple[str, ...]  # extra ports each member needs, by name
    sidecars: tuple[str, ...] = ()  # names of the processes a member runs beside "server"
    durabilities: tuple[str, ...]  # the ``durability`` values this engine can keep
    needs_dcs: bool  # whether members keep their state in Hoard's etcd
    # Whether members join a running cluster one at a time, each healthy before the
    # next starts (Galera: two joins at once make one view change of both, which
    # can fail on every member under load; a single donor serves them in turn anyway).
    serial_joins: bool = False

    @abstractmethod
    def prepare_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                       *, founder: bool) -> None:
        """Lay down a member's files before its first start. The ``founder`` creates
        the cluster's data (as ``bootstrap``); any other member gets its data from
        the running cluster, by the machinery's own means (a base backup, SST, a
        full resync), when it starts or in this call."""

    @abstractmethod
    def configure_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner) -> None:
        """(Re)write the member's files for ``topo`` and ``settings(ctx)``:
        after a change of membership, durability or parameters."""

    @abstractmethod
    def member_processes(self, ctx: NodeContext, topo: Topology,
                         runner: NodeRunner) -> list[ProcessSpec]:
        """The processes a member runs, the "server" one first."""

    @abstractmethod
    def member_states(self, ctxs: list[NodeContext], topo: Topology,
                      ca_file: str) -> list[MemberState]:
        """Every member's role, lag and health (one entry per member, in order),
        asked of the machinery and the servers with short timeouts."""

    @abstractmethod
    def switchover(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                   target: str) -> None:
        """Planned switchover: make member ``target`` (a node id) the primary, with
        no acknowledged write lost; return once it takes writes."""

    @abstractmethod
    def remove_member(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                      node_id: str) -> None:
        """Before a member is stopped for good (shrink, promote out): make sure it
        is not the primary (switch over first) and tell the machinery it leaves.
        ``topo`` still includes it."""

    @abstractmethod
    def detach(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """Turn a stopped member's data into a standalone single node's (promote it
        out of its cluster): it will start with ``configure`` and ``process`` as a
        writable primary that follows nobody, its data and accounts kept."""

    def dcs_prefix(self, cluster_id: str) -> str:
        """The DCS key prefix holding a cluster's HA state, removed with the cluster
        ("" when the engine keeps none in Hoard's etcd)."""
        return ""

    @abstractmethod
    def role_check(self, topo: Topology, service: Credentials, ca_file: str) -> RoleCheck:
        """How the cluster's endpoint proxy tells each member's role."""


@dataclass(frozen=True)
class PoolerTarget:
    """What a cluster's connection pooler is asked to be: where it answers
    (``listen``, its own address), where it sends clients (``server``: the
    read-write endpoint of a replicated cluster, which follows the primary, or a
    standalone cluster's own address), how it pools, and its TLS material (a
    certificate from Hoard's CA naming ``listen``'s host)."""

    listen: tuple[str, int]
    server: tuple[str, int]
    mode: str
    max_client_conn: int
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


class Pooling(ABC):
    """A connection pooler in front of a cluster (PostgreSQL: PgBouncer), run by
    the provider beside the nodes as a process of its own."""

    @abstractmethod
    def pooler_spec(self, ctx: NodeContext, target: PoolerTarget, users: ServiceFile
                    ) -> ServiceSpec:
        """The pooler's process and files; ``ctx`` is the primary's (the server's
        connection limit sizes the pools), ``users`` from ``pooler_users``."""

    @abstractmethod
    def pooler_users(self, ctx: NodeContext, ca_file: str) -> ServiceFile:
        """Who may sign in through the pooler, read from the primary ``ctx`` (kept
        in sync: rewritten after every account change, and on every observer pass)."""
