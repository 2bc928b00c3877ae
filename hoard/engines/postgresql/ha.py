"""Replicated PostgreSQL clusters on Patroni.

Each member's "server" process is Patroni (the Debian package); PostgreSQL runs
as its child. Electing a primary, failing over, cloning and re-joining members
are Patroni's job; Hoard lays out each member's files and asks Patroni's REST
API what it sees.

Forming a cluster:

- The founder's data comes from the engine's own ``bootstrap`` (or a finished
  restore). Patroni adopts it: with no cluster in the DCS yet and a data
  directory present, it records the system id, starts PostgreSQL, takes the
  leader lock and promotes it (a new timeline).
- Every other member starts with no data; Patroni clones it from the leader
  (pg_basebackup, fast checkpoint) as Hoard's service account, which the
  engine's HBA already lets replicate over TLS with SCRAM.
- Members keep their state in the provider's DCS (``Topology.dcs``): Hoard's
  etcd (Patroni's ``etcd3`` section), under ``/hoard/<cluster id>/``, a
  member named by its node id; or the Kubernetes API (its ``kubernetes``
  section, ``kubernetes_section``), a member named by its pod.

Settings: everything the single-node engine writes (``server_settings``: TLS,
no Unix sockets, WAL archiving, size and parameters) goes into Patroni's
``postgresql.parameters``, so Patroni's postgresql.conf keeps the same values.
Patroni takes a few settings only cluster-wide, from the DCS (``CLUSTER_WIDE``:
max_connections, wal_level, ...); those go into its dynamic configuration.
``custom_conf`` names an empty file outside the data directory, so Patroni
never moves a postgresql.conf aside to postgresql.base.conf. Every member
carries the archive settings; ``archive_mode=on`` archives on the primary only.

Security: every member needs Hoard's CA certificate on its volume
(``install_tls`` with ``ca_pem``). Replication, pg_rewind and Patroni's own
connections are TLS with ``sslmode=verify-full`` against it, and
``channel_binding=require`` (SCRAM proves the server holds the service
account's verifier, bound to this TLS session). The REST API speaks TLS with
the node's certificate; members call each other's with it as a client
certificate, checking the peer against the CA; its unsafe endpoints
(switchover, config, reload) also need the service account (HTTP basic auth).

Failover time after a kill -9 of the primary's whole node is about ``TTL`` plus
a second: the leader lock lapses at most ``TTL`` (6 s) after its last renewal;
replicas watch the key and race at once; promotion takes well under a second;
the endpoint's checks see the new primary within about a second. ``LOOP_WAIT``
(1 s) is how often the leader renews the lock, ``RETRY_TIMEOUT`` (2 s) how long
it retries the DCS or PostgreSQL before demoting itself; Patroni wants
loop_wait + 2 * retry_timeout <= ttl. Measured on the local provider: 6.0 to
7.3 s from the kill to the first acknowledged write through the endpoint, in
async and sync mode alike. Failsafe mode keeps a primary that can still reach
every member running through a DCS outage (Hoard runs one etcd).

On the Kubernetes DCS the members run the PostgreSQL image's Patroni 4, which
raises a ``ttl`` below 20 s to 20 and a ``retry_timeout`` below 3 s to 3 (its
``config.py``): the configuration says so (``KUBERNETES_TTL``) rather than
ask for what will not run, and a failover there takes about 20 s (measured
against the emulator: 20.5 s from the kill to the new leader).
"""

from __future__ import annotations

import json
import signal
import time
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import httpx
import psycopg

from hoard.domain.dcs import Dcs, KubernetesDcs
from hoard.domain.nodes import HttpRoleCheck, NodeRunner, ProcessSpec, RoleCheck
from hoard.engines.base import (
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    Credentials,
    Member,
    MemberState,
    NodeContext,
    Replication,
    Topology,
)
from hoard.engines.postgresql.backup import (
    DATA,
    RECOVERY,
    RECOVERY_CONF,
    conf_value,
    ensure_archive_dir,
)
from hoard.engines.postgresql.patroni_api import (
    API,
    LEADER_ROLES,
    Api,
    ca_context,
    contains,
    dcs_of,
    leader_of,
    node_context,
    port_open,
)

PATRONI = "/usr/bin/patroni"
NAMESPACE = "/hoard/"
PATRONI_DIR = PurePosixPath("patroni")
PATRONI_CONF = PATRONI_DIR / "patroni.yml"  # JSON, which is YAML
CUSTOM_CONF = PATRONI_DIR / "custom.conf"  # included by Patroni's postgresql.conf; empty
PGPASS = PATRONI_DIR / "pgpass"  # Patroni writes it for pg_basebackup and pg_rewind
LOG_DIR = PurePosixPath("log")  # Patroni's own log, rotated (PostgreSQL's goes to server.log)

TTL, LOOP_WAIT, RETRY_TIMEOUT = 6, 1, 2  # seconds; see the module docstring
KUBERNETES_TTL, KUBERNETES_RETRY_TIMEOUT = 20, 3  # Patroni 4's least: the module docstring
MAX_LAG_ON_FAILOVER = 1 << 20  # bytes: a replica further behind is not promoted
# Settings Patroni takes only from its dynamic (cluster-wide) configuration.
CLUSTER_WIDE = frozenset({
    "max_connections", "max_wal_senders", "wal_level", "max_prepared_transactions",
    "max_locks_per_transaction", "track_commit_timestamp", "max_replication_slots",
    "max_worker_processes", "wal_keep_size",
})
# A member whose PostgreSQL is up, as Patroni's cluster view says it: 3.0 says
# "running" of every such member; 4.0 says "streaming" of a replica receiving
# WAL from its primary (and "in archive recovery" of one that is not), and
# "running" of the leader. The local provider runs Debian's 3.0, the
# PostgreSQL image 4.1.
UP = frozenset({"running", "streaming"})
MIN_CONNECTIONS = 25  # Patroni ignores a smaller max_connections (and uses 100)
PATRONI_OWNED = frozenset({"listen_addresses", "port", "hba_file"})  # from its own keys
# What Patroni leaves in a data directory that a standalone node does without.
PATRONI_LEFTOVERS = ("standby.signal", "patroni.dynamic.json", "postgresql.base.conf",
                     "postgresql.base.conf.backup", "postgresql.conf.backup",
                     "pg_hba.conf.backup", "pg_ident.conf.backup")
SYNC = "synchronous "  # how a synchronous standby's detail starts
SWITCHOVER_TIMEOUT = 60.0  # seconds for a planned switchover, end to end


def kubernetes_section(dcs: KubernetesDcs, port: int) -> dict[str, Any]:
    """Patroni's ``kubernetes`` section: its members are the pods carrying
    ``labels`` and ``scope_label`` = the cluster id; it writes each one's role in
    ``role_label``, leader and followers under the values the provider's
    endpoint Services select. Patroni 3.0 (Debian 12's 3.0.2) does not know
    ``leader_label_value`` and ``follower_label_value`` (its ``touch_member``
    writes ``master`` for the leader and the member's role, ``replica``, for a
    follower; Patroni 4.0's schema has the keys): it ignores them, so the leader's
    pod would not match a read-write Service selecting ``primary``. The image
    must carry a Patroni that takes them (docs/architecture.md). Endpoints, not
    ConfigMaps, hold the leader lock: the lock and the leader's address change
    in one update; ``ports`` makes that Endpoints object valid for the
    PostgreSQL port. The API server is reached through its Service
    (``bypass_api_service`` off: the NetworkPolicy and RBAC are written for it)."""
    return {
        "labels": dict(dcs.labels),
        "scope_label": dcs.scope_label,
        "role_label": dcs.role_label,
        "leader_label_value": dcs.leader_label_value,
        "follower_label_value": dcs.follower_label_value,
        "use_endpoints": True,
        "bypass_api_service": False,
        "ports": [{"name": "postgresql", "port": port}],
    }


class PostgreSQLReplication(Replication):
    """The ``Replication`` ability of :class:`hoard.engines.postgresql.PostgreSQL`."""

    ha_ports = (API,)
    durabilities = ("async", "sync")  # sync: Patroni's synchronous_mode
    needs_dcs = True

    @abstractmethod
    def _bin(self, version: str, tool: str) -> str: ...

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                 dbname: str = "postgres") -> psycopg.Connection: ...

    @abstractmethod
    def server_settings(self, ctx: NodeContext, runner: NodeRunner) -> dict[str, str]: ...

    @abstractmethod
    def hba(self, ctx: NodeContext) -> str: ...

    # --- files ----------------------------------------------------------------

    def patroni_config(self, ctx: NodeContext, topo: Topology,
                       runner: NodeRunner) -> dict[str, Any]:
        """The member's Patroni configuration. ``bootstrap.dcs`` is the cluster-wide
        part: Patroni takes it when the cluster forms; ``configure_member`` keeps
        the running cluster's copy in step."""
        member = topo.member(ctx.node_id)
        settings = self.server_settings(ctx, runner)
        local = {k: v for k, v in settings.items()
                 if k not in CLUSTER_WIDE and k not in PATRONI_OWNED}
        cluster_wide = {k: v for k, v in settings.items() if k in CLUSTER_WIDE}
        cluster_wide["max_connections"] = str(
            max(MIN_CONNECTIONS, int(cluster_wide.get("max_connections", "100"))))
        account = {"username": ctx.service.user, "password": ctx.service.password,
                   "sslmode": "verify-full", "sslrootcert": runner.abspath(TLS_CA),
                   "channel_binding": "require"}
        # Peers reach its address; it listens where the provider says (ctx.bind).
        api = f"{member.host}:{member.ports[API]}"
        api_listen = f"{ctx.bind}:{member.ports[API]}"
        dcs = dcs_of(topo)
        return {
            "scope": topo.cluster_id,
            # Patroni hands its top-level namespace to the DCS section: on Kubernetes
            # that is the namespace its objects are in, not a key prefix.
            "namespace": dcs.namespace if isinstance(dcs, KubernetesDcs) else NAMESPACE,
            "name": dcs.member_name(ctx.node_id),
            # Two lines a second at INFO: rotated, at most 12 MiB of the node's volume.
            "log": {"level": "INFO", "dir": runner.abspath(LOG_DIR),
                    "file_num": 2, "file_size": 4 << 20},
            "restapi": {
                "listen": api_listen, "connect_address": api,
                "certfile": runner.abspath(TLS_CERT), "keyfile": runner.abspath(TLS_KEY),
                "cafile": runner.abspath(TLS_CA),  # Patroni checks its peers' APIs with it
                "authentication": {"username": ctx.service.user,
                                   "password": ctx.service.password},
            },
            **self._dcs_section(topo, member),
            "bootstrap": {"dcs": {
                **self._timing(dcs),
                "maximum_lag_on_failover": MAX_LAG_ON_FAILOVER,
                "failsafe_mode": True,
                "synchronous_mode": topo.durability == "sync",
                "synchronous_mode_strict": False,  # with no replica left, keep taking writes
                "synchronous_node_count": 1,
                "postgresql": {"use_pg_rewind": True, "use_slots": True,
                               "parameters": cluster_wide},
            }},
            "postgresql": {
                "listen": f"{ctx.bind}:{member.port}",
                "connect_address": f"{member.host}:{member.port}",
                "data_dir": runner.abspath(DATA),
                "bin_dir": self._bin(ctx.version, ""),
                "pgpass": runner.abspath(PGPASS),
                "custom_conf": runner.abspath(CUSTOM_CONF),
                "use_unix_socket": False,
                "authentication": {"superuser": account, "replication": account},
                "parameters": local,
                "pg_hba": [line for line in self.hba(ctx).splitlines() if line.strip()],
                "create_replica_methods": ["basebackup"],
                "basebackup": [{"checkpoint": "fast"}],
                # A member that cannot rewind onto the new timeline is cloned afresh.
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "watchdog": {"mode": "off"},
        }

    @staticmethod
    def _timing(dcs: Dcs) -> dict[str, int]:
        """The leader lock's timing: Hoard's on its etcd, Patroni 4's least on
        the Kubernetes DCS (the module docstring)."""
        if isinstance(dcs, KubernetesDcs):
            return {"ttl": KUBERNETES_TTL, "loop_wait": LOOP_WAIT,
                    "retry_timeout": KUBERNETES_RETRY_TIMEOUT}
        return {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT}

    @staticmethod
    def _dcs_section(topo: Topology, member: Member) -> dict[str, Any]:
        """Patroni's DCS section: Hoard's etcd, or the Kubernetes API (Patroni
        3.0's keys: see ``kubernetes_section``)."""
        dcs = dcs_of(topo)
        if isinstance(dcs, KubernetesDcs):
            return {"kubernetes": kubernetes_section(dcs, member.port)}
        return {"etcd3": {"url": dcs.url}}

    def prepare_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                       *, founder: bool) -> None:
        ensure_archive_dir(runner)  # every member may become the primary, which archives
        if not founder:
            return  # Patroni clones the data from the leader at the first start
        if not runner.exists(DATA / "PG_VERSION"):
            raise ValueError("the founding member has no data yet: bootstrap or restore it first")
        if runner.exists(DATA / "recovery.signal"):
            # Patroni would start it as a standby of nobody and skip the staged WAL.
            raise ValueError("the founding member's recovery is not finished: start it on its "
                             "own and finish the restore before it founds a cluster")
        runner.remove_tree(RECOVERY)  # what a finished restore or a detach left: inert now
        # A cached dynamic configuration would win over this cluster's bootstrap one.
        for name in ("patroni.dynamic.json", "standby.signal"):
            runner.remove_tree(DATA / name)

    def configure_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner) -> None:
        """Write the member's files; if its Patroni runs, make it reload them and
        bring the cluster-wide settings in the DCS in step (durability, sizes)."""
        if not runner.exists(TLS_CA):
            raise ValueError("Hoard's CA certificate is not on the node: install_tls with "
                             "ca_pem first")
        ensure_archive_dir(runner)
        runner.run(["mkdir", "-p", "-m", "0700", runner.abspath(PATRONI_DIR),
                    runner.abspath(LOG_DIR)])
        runner.write_file(CUSTOM_CONF, b"# Managed by Hoard: every setting is in patroni.yml.\n")
        config = self.patroni_config(ctx, topo, runner)
        content = json.dumps(config, indent=2).encode()
        before = b"".join(runner.read_stream(PATRONI_CONF)) if runner.exists(PATRONI_CONF) else b""
        runner.write_file(PATRONI_CONF, content)
        member = topo.member(ctx.node_id)
        if not port_open(member.host, member.ports[API]):
            return  # not running: Patroni reads the files when it starts
        api = Api(node_context(runner), ctx.service)
        try:
            if before != content:
                self._ok(api.call("POST", api.url(member, "/reload")), "reload")
            wanted = config["bootstrap"]["dcs"]
            current = api.call("GET", api.url(member, "/config"))
            if current.status_code != 200 or not contains(current.json(), wanted):
                self._ok(api.call("PATCH", api.url(member, "/config"), wanted), "update config")
        except httpx.HTTPError as exc:
            raise RuntimeError(f"Patroni on {ctx.node_id} did not take the new "
                               f"configuration: {exc}") from exc

    @staticmethod
    def _ok(answer: httpx.Response, what: str) -> None:
        if answer.status_code >= 300:
            raise RuntimeError(f"Patroni refused to {what}: {answer.status_code} "
                               f"{answer.text.strip()}")

    def member_processes(self, ctx: NodeContext, topo: Topology,
                         runner: NodeRunner) -> list[ProcessSpec]:
        if not runner.exists(PATRONI_CONF):
            raise ValueError(f"member {ctx.node_id} is not configured (configure_member)")
        member = topo.member(ctx.node_id)
        if (runner.exists(DATA) and not runner.exists(DATA / "global" / "pg_control")
                and not port_open(member.host, member.ports[API])):
            # A clone cut short (pg_control comes last): Patroni would refuse the
            # directory as "not empty, no system id"; with it gone, it clones again.
            runner.remove_tree(DATA)
        dcs = dcs_of(topo)
        env = {"PATRONI_KUBERNETES_POD_IP": dcs.pod_ip} if isinstance(dcs, KubernetesDcs) else {}
        return [ProcessSpec([PATRONI, runner.abspath(PATRONI_CONF)], env=env,
                            stop_signal=signal.SIGTERM,  # Patroni stops PostgreSQL, hands over
                            stop_timeout=60.0)]

    # --- what the cluster looks like ----------------------------------------------

    def member_states(self, ctxs: list[NodeContext], topo: Topology,
                      ca_file: str) -> list[MemberState]:
        api = Api(ca_context(ca_file))
        view = api.cluster(topo)
        if view is None:
            return [self._own_view(api, m) for m in topo.members]
        known = {m["name"]: m for m in view.get("members", [])}
        leader = leader_of(view)
        status = self._leader_status(api, leader)
        return [self._state(m.node_id, known.get(m.node_id), leader, status, dcs_of(topo))
                for m in topo.members]

    @staticmethod
    def _leader_status(api: Api, leader: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The leader's own status (GET /patroni): whether its PostgreSQL has left
        recovery, and its pg_stat_replication; None if it cannot be asked."""
        if leader is None:
            return None
        try:
            return dict(api.call("GET", str(leader["api_url"])).json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _state(node_id: str, info: Mapping[str, Any] | None, leader: Mapping[str, Any] | None,
               status: Mapping[str, Any] | None, dcs: Dcs) -> MemberState:
        if info is None:
            return MemberState(node_id, "", False, None,
                               "not in the cluster: its Patroni is not running")
        state = str(info.get("state", ""))
        timeline = info.get("timeline", "?")
        lag = info.get("lag") if isinstance(info.get("lag"), int) else None
        if info.get("role") in LEADER_ROLES:
            if state == "running" and status is not None and status.get("role") == "replica":
                return MemberState(node_id, "primary", False, 0,
                                   "holds the leader lock, still promoting")
            if state == "running":
                return MemberState(node_id, "primary", True, 0,
                                   f"primary with the leader lock, timeline {timeline}")
            return MemberState(node_id, "", False, None,
                               f"holds the leader lock, PostgreSQL is {state or 'down'}")
        if state not in UP:
            return MemberState(node_id, "", False, lag, f"PostgreSQL is {state or 'down'}")
        if leader is None:
            return MemberState(node_id, "replica", False, lag, "no primary to follow")
        sync = SYNC if info.get("role") == "sync_standby" else ""
        behind = f"{lag} bytes behind" if lag is not None else "lag unknown"
        streaming = None if status is None else {
            dcs.node_id(str(r.get("application_name"))) for r in status.get("replication", [])
            if r.get("state") == "streaming"}
        if streaming is None:
            return MemberState(node_id, "replica", lag is not None, lag,
                               f"{sync}replica of {leader['name']}, {behind} "
                               "(its primary did not say whether it streams)")
        if node_id not in streaming:
            return MemberState(node_id, "replica", False, lag,
                               f"{sync}replica not streaming from {leader['name']}, {behind}")
        return MemberState(node_id, "replica", True, lag,
                           f"{sync}streaming from {leader['name']}, {behind}")

    @staticmethod
    def _own_view(api: Api, member: Member) -> MemberState:
        """No member could give the cluster's view (the DCS is unreachable): each
        member's Patroni still says what its PostgreSQL is doing."""
        try:
            status = api.call("GET", api.url(member, "/patroni")).json()
        except (httpx.HTTPError, ValueError):
            return MemberState(member.node_id, "", False, None, "unreachable")
        running = status.get("state") in UP
        role = {"master": "primary", "primary": "primary",
                "replica": "replica"}.get(str(status.get("role")), "")
        failsafe = bool(status.get("failsafe_mode_is_active"))
        why = "DCS unreachable, failsafe mode" if failsafe else "DCS unreachable"
        return MemberState(member.node_id, role if running else "", running and failsafe, None,
                           f"cluster view unavailable ({why}); "
                           f"PostgreSQL is {status.get('state')} as {status.get('role')}")

    # --- planned changes ----------------------------------------------------------

    def switchover(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                   target: str) -> None:
        """Patroni's switchover: the primary stops cleanly once the candidate has
        all its WAL, the candidate promotes. In synchronous mode Patroni only
        switches to a synchronous standby; if ``target`` is not one, every replica
        is made synchronous for the switchover (then one again; should Hoard die
        in between, the next ``configure_member`` puts the count back)."""
        deadline = time.monotonic() + SWITCHOVER_TIMEOUT
        api = Api(ca_context(ca_file), ctxs[0].service)
        try:
            self._switch(api, topo, target, deadline)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"switchover to {target}: Patroni did not answer ({exc})") from exc
        self._wait_writable(api, topo, next(c for c in ctxs if c.node_id == target),
                            ca_file, deadline)

    def _switch(self, api: Api, topo: Topology, target: str, deadline: float) -> None:
        view = self._wait_view(api, topo, deadline, lambda v: leader_of(v) is not None)
        leader = leader_of(view)
        assert leader is not None
        if leader["name"] == target:
            return
        # Any member's API takes the request; the leader's is the natural one.
        via = next((m for m in topo.members if m.node_id == leader["name"]), topo.members[0])
        widened = False
        if api.call("GET", api.url(via, "/config")).json().get("synchronous_mode") and not any(
                m["name"] == target and m.get("role") == "sync_standby"
                for m in view.get("members", [])):
            self._set_sync_count(api, via, max(1, len(topo.members) - 1))
            widened = True
            self._wait_view(api, topo, deadline, lambda v: any(
                m["name"] == target and m.get("role") == "sync_standby"
                for m in v.get("members", [])))
        try:
            answer = api.call("POST", api.url(via, "/switchover"),
                              {"leader": dcs_of(topo).member_name(leader["name"]),
                               "candidate": dcs_of(topo).member_name(target)},
                              timeout=httpx.Timeout(SWITCHOVER_TIMEOUT, connect=1.0))
            if answer.status_code != 200:
                current = leader_of(api.cluster(topo) or {})
                if not current or current["name"] != target:
                    raise RuntimeError(f"switchover to {target} failed: "
                                       f"{answer.status_code} {answer.text.strip()}")
        finally:
            if widened:
                self._set_sync_count(api, via, 1, topo)

    def _set_sync_count(self, api: Api, member: Member, count: int,
                        topo: Topology | None = None) -> None:
        """Set synchronous_node_count, through ``member`` or (after a switchover,
        when it may be down for a moment) any member that answers."""
        members = [member, *(topo.members if topo else ())]
        last: Exception | None = None
        for m in members:
            try:
                self._ok(api.call("PATCH", api.url(m, "/config"),
                                  {"synchronous_node_count": count}), "update config")
                return
            except (httpx.HTTPError, RuntimeError) as exc:
                last = exc
        raise RuntimeError(f"could not set synchronous_node_count to {count}: {last}")

    @staticmethod
    def _wait_view(api: Api, topo: Topology, deadline: float,
                   ready: Any) -> dict[str, Any]:
        view: dict[str, Any] | None = None
        while True:
            view = api.cluster(topo)
            if view is not None and ready(view):
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"Patroni's view of {topo.cluster_id} did not settle: {view}")
            time.sleep(0.2)

    def _wait_writable(self, api: Api, topo: Topology, ctx: NodeContext, ca_file: str,
                       deadline: float) -> None:
        """Until the member says it is the primary (what the endpoint asks) and
        its PostgreSQL takes writes."""
        member = topo.member(ctx.node_id)
        detail = ""
        while True:
            try:
                if api.call("GET", api.url(member, "/primary")).status_code == 200:
                    with self._connect(ctx, ca_file, timeout=2) as conn:
                        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and not row[0]:
                        return
                    detail = "still in recovery"
                else:
                    detail = "Patroni does not report it as the primary"
            except (httpx.HTTPError, psycopg.Error) as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ctx.node_id} did not become a writable primary: {detail}")
            time.sleep(0.2)

    def remove_member(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                      node_id: str) -> None:
        """Switch over first if the member is the primary. Nothing else is needed:
        when its Patroni stops it hands a synchronous standby's duty over, its key
        in the DCS lapses and the primary drops its replication slot."""
        states = self.member_states(ctxs, topo, ca_file)
        mine = next(s for s in states if s.node_id == node_id)
        if mine.role != "primary":
            return
        others = [s for s in states if s.node_id != node_id and s.role == "replica" and s.healthy]
        if not others:
            raise RuntimeError(f"{node_id} is the primary and no healthy replica can take over")
        # A synchronous standby first (the only choice in synchronous mode), then the least lag.
        best = min(others, key=lambda s: (not s.detail.startswith(SYNC),
                                          s.lag_bytes if s.lag_bytes is not None else 1 << 62))
        self.switchover(ctxs, topo, ca_file, best.node_id)

    def detach(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """Undo what Patroni left (standby.signal, its cached configuration, the
        replication slots it kept for its peers, which would hold WAL forever) and
        have the first plain start promote the node onto a new timeline: a
        recovery.signal with a restore_command that finds nothing replays the
        local WAL, then promotes. ``configure`` includes that recovery file, as
        for a restore; without hot standby the server takes no connection before
        it is promoted, so "healthy" already means writable. Once promoted the
        file is inert (it applies only while a signal file asks for recovery);
        ``finish_restore`` removes it, and so does a later ``prepare_member``."""
        if not runner.exists(DATA / "PG_VERSION"):
            raise ValueError(f"member {ctx.node_id} has no data to detach")
        for name in PATRONI_LEFTOVERS:
            runner.remove_tree(DATA / name)
        for slot in runner.list_dir(DATA / "pg_replslot"):
            runner.remove_tree(DATA / "pg_replslot" / slot)
        settings = {
            "restore_command": "/bin/false",  # no archive: the local pg_wal is the end
            "recovery_target_timeline": "latest",
            # Read-only connections are not needed for the moment it replays, and
            # without hot standby no setting has to match what the cluster had.
            "hot_standby": "off",
        }
        runner.write_file(RECOVERY_CONF, "".join(
            f"{k} = {conf_value(v)}\n" for k, v in settings.items()).encode())
        runner.write_file(DATA / "recovery.signal", b"")
        runner.remove_tree(PATRONI_DIR)  # its configuration holds the service password

    def dcs_prefix(self, cluster_id: str) -> str:
        return f"{NAMESPACE}{cluster_id}/"

    def role_check(self, topo: Topology, service: Credentials, ca_file: str) -> RoleCheck:
        return HttpRoleCheck(API, "/primary", "/replica", tls=True)
