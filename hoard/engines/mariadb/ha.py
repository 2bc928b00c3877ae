"""MariaDB clusters on Galera 4 (Debian's galera-4): synchronous multi-primary
replication. Mixed into :class:`hoard.engines.mariadb.MariaDB`.

Galera does the HA work; Hoard only lays out the members and starts them:

- **Durability is "sync" only.** A commit returns only once its write-set has
  been delivered, in the same total order, to every member of the primary
  component and certified there; the others apply it a moment later (a reader
  that must see it on another member sets ``wsrep_sync_wait``). An
  acknowledged write therefore survives the loss of any minority of members.
- **Every Synced member takes writes** (``member_states`` calls each one
  "primary"). The endpoint still sends all writes to one passing member at a
  time, which avoids certification conflicts between members.
- **Quorum.** A component with a majority of the last one's members stays
  primary; a minority stops serving. With three members, one may fail. With
  two, a *crash* of either leaves the other without a majority (it stops
  serving until its peer returns); a *graceful* leave is announced, so the
  survivor stays primary. ``remove_member`` makes a member leave gracefully
  before it is stopped or destroyed, for that reason.
- **Members.** The founder's data comes from the engine's ``bootstrap`` (or a
  restore), and its first start bootstraps a new cluster
  (``--wsrep-new-cluster``). The others start with an empty data directory
  and receive a state snapshot (SST) from a running member with
  ``mariadb-backup`` (no lock on the donor beyond a short one at the end), as
  Hoard's service account; a member that was away only briefly gets just the
  write-sets it missed (IST) from a donor's write-set cache (``gcache``).
- **TLS everywhere.** Client traffic as in the single-node engine; Galera's
  group traffic and IST with the node certificate (``socket.ssl_*``, the
  peer's chain checked against Hoard's CA); SST through socat with the same
  certificate and key, checking both sides' chains, and on the donor side
  the joiner's name too (``ssl-mode = VERIFY_IDENTITY``: its node id, the
  certificate's common name). Node certificates serve as client certificates
  too, since members authenticate each other. ``mariadb-backup``
  on the donor reaches its own server over TCP and TLS (there is no socket).
- **Binary logs stay on** (ROW, ``log_slave_updates``), so every member's
  binlog holds every transaction and the engine's archiving works on whichever
  member Hoard treats as primary. ``wsrep_gtid_mode`` gives Galera's
  transactions the same GTID on every member. A member that receives a full
  SST starts a fresh binlog (the SST script clears the old files), so logs not
  yet shipped from it are gone; those transactions are in the others' logs.
- **Secrets.** SST needs the service account's password on the donor
  (``wsrep_sst_auth``): it is in the member's option file, mode 0600 and
  owned by the database user, and the server shows it as ``********``.

Failover time: there is no promotion, only a view change. A member that stops
answering is suspected after ``evs.suspect_timeout`` (2 s) and dropped from the
view once the others agree, or after ``evs.inactive_timeout`` (4 s) regardless;
commits on the survivors pause until the new view is installed, then go on.
``evs.keepalive_period`` and ``evs.inactive_check_period`` (0.5 s) bound how
soon silence is noticed. Galera's defaults (5 s and 15 s) are for wide-area
links; these suit one site. The endpoint notices a dead member by its role
check (HAProxy's own timing). Measured here (tests/test_mariadb_ha.py, three
nano members on one host, a writer on the endpoint): writes resumed 3.1-3.4 s
after kill -9 of the member taking them, and the killed member was back,
caught up by IST, 4-6 s after its restart (a crash recovery run included).

Starting: a member that finds no peer in a primary component and may not
bootstrap simply starts and waits (``pc.wait_prim_timeout``, 30 s) for one,
then exits; Hoard's observer starts it again. The mariadb-backup SST script
pauses 10 s before streaming, so each joiner's first start takes at least that.
Members join one at a time: a joiner first waits until every member in the
primary component answers and is Synced (a dead one dropped, another joiner
done), and workflows start the next joiner only once the last is healthy
(``serial_joins``). Two view changes at once (a join and a drop, or two joins)
could fail on every member.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import pymysql

from hoard.domain.nodes import CommandRoleCheck, NodeRunner, ProcessSpec, RoleCheck
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
from hoard.engines.mariadb.backup import DATA, MARIADB_CLIENT, TMP

GALERA = "/usr/lib/galera/libgalera_smm.so"
MARIADBD = "/usr/sbin/mariadbd"
CONF = PurePosixPath("conf/my.cnf")  # as the single-node engine's ``configure`` writes it
FOUNDER = PurePosixPath("conf/galera-founder")  # this member starts the cluster
GRASTATE = DATA / "grastate.dat"  # Galera's saved state: uuid, seqno, safe_to_bootstrap
GALERA_FILES = ("grastate.dat", "gvwstate.dat", "galera.cache", "galera.pid",
                "wsrep_sst.pid", "sst_in_progress", ".sst")
SST_LOGS = TMP / "sst-logs"
NO_UUID = "00000000-0000-0000-0000-000000000000"
SYNCED = "4"  # wsrep_local_state of a member that is fully caught up
PROBE_TIMEOUT = 1.5  # seconds, for asking a peer before a start and for states
SWITCHOVER_WAIT = 30.0  # seconds for a target to become Synced
LEAVE_WAIT = 30.0  # seconds for a leaving member's peers to settle
SETTLE_WAIT = 15.0  # seconds a joiner waits for a dead member to be dropped or a join to end
# Galera's view-change timing (see the module docstring).
EVS_TIMING = {
    "evs.keepalive_period": "PT0.5S",
    "evs.inactive_check_period": "PT0.5S",
    "evs.suspect_timeout": "PT2S",
    "evs.inactive_timeout": "PT4S",
    "evs.install_timeout": "PT3S",
}
# The role check's query: an error (so the client exits non-zero) unless this
# member is Synced, ready and in the primary component. A member that is not
# ready refuses the query itself, which fails the check as well.
ROLE_SQL = (
    "BEGIN NOT ATOMIC "
    "IF (SELECT COUNT(*) FROM information_schema.GLOBAL_STATUS WHERE "
    "(VARIABLE_NAME = 'WSREP_LOCAL_STATE' AND VARIABLE_VALUE = '4') OR "
    "(VARIABLE_NAME = 'WSREP_READY' AND VARIABLE_VALUE = 'ON') OR "
    "(VARIABLE_NAME = 'WSREP_CLUSTER_STATUS' AND VARIABLE_VALUE = 'Primary')) < 3 "
    "THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'not a synced primary member'; "
    "END IF; END"
)


def _opt(value: str) -> str:
    """A value for an option file, double-quoted."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cluster_name(cluster_id: str) -> str:
    """Galera's group name: at most 32 bytes (a longer one fails every joiner's
    handshake, silently). A UUID fits without its dashes."""
    for name in (cluster_id, cluster_id.replace("-", "")):
        if len(name.encode()) <= 32:
            return name
    return hashlib.sha256(cluster_id.encode()).hexdigest()[:32]


def _grastate(text: str) -> dict[str, str]:
    return {key.strip(): value.strip() for key, sep, value in
            (line.partition(":") for line in text.splitlines()) if sep}


def _status(host: str, port: int, creds: Credentials, tls: ssl.SSLContext | str,
            timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """The member's ``wsrep_%`` status (SHOW works even where queries are refused)."""
    ssl_args: dict[str, object] = (
        {"ssl": tls} if isinstance(tls, ssl.SSLContext)
        else {"ssl_ca": tls, "ssl_verify_identity": True})
    with pymysql.connect(host=host, port=port, user=creds.user, password=creds.password,
                         connect_timeout=timeout, read_timeout=timeout,
                         write_timeout=timeout, program_name="hoard",
                         **ssl_args) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%%'")
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def _listening(member: Member) -> bool:
    """Whether the member's server runs (its Galera or client port is open)."""
    for port in (member.ports["galera"], member.port):
        try:
            socket.create_connection((member.host, port), timeout=0.5).close()
            return True
        except OSError:
            continue
    return False


def _serving(status: dict[str, str]) -> bool:
    return (status.get("wsrep_local_state") == SYNCED and status.get("wsrep_ready") == "ON"
            and status.get("wsrep_cluster_status") == "Primary")


class MariaDBReplication(Replication):
    """Galera clusters: see the module docstring."""

    ha_ports = ("galera", "ist", "sst")
    durabilities = ("sync",)
    needs_dcs = False
    serial_joins = True

    if TYPE_CHECKING:
        def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                     io_timeout: float | None = None) -> pymysql.Connection: ...
        def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None: ...
        def configure(self, ctx: NodeContext, runner: NodeRunner) -> None: ...
        def settings(self, ctx: NodeContext) -> dict[str, str]: ...
        def _read(self, runner: NodeRunner, path: PurePosixPath) -> str: ...

    # --- laying out a member ----------------------------------------------------

    def prepare_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                       *, founder: bool) -> None:
        """The founder keeps (or makes) the engine's bootstrapped or restored data
        and is marked to start a new cluster; any other member gets an empty
        data directory, filled by SST at its first start."""
        self._check_topology(ctx, topo)
        if founder:
            if not runner.exists(DATA):  # published whole by bootstrap or a restore
                self.bootstrap(ctx, runner)
            if not runner.exists(GRASTATE):
                runner.write_file(FOUNDER, b"bootstraps a new cluster at its first start\n")
        elif not runner.exists(DATA):
            runner.run(["mkdir", "-m", "700", "--", runner.abspath(DATA)])
        self.configure_member(ctx, topo, runner)

    def configure_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner) -> None:
        """The single-node configuration, then Galera's settings for ``topo``
        appended (option files allow a group to repeat; later values win)."""
        self._check_topology(ctx, topo)
        if not runner.exists(TLS_CA):
            raise RuntimeError("the CA certificate is missing: install_tls with ca_pem first")
        self.configure(ctx, runner)
        runner.write_file(SST_LOGS / ".keep", b"")
        me = topo.member(ctx.node_id)
        ca, cert, key = (runner.abspath(p) for p in (TLS_CA, TLS_CERT, TLS_KEY))
        memory = ctx.size.memory_mb
        # Galera listens where the provider says (ctx.bind) and announces the
        # member's address (its peers'); IST binds apart only when the two differ,
        # on its own port (given an address alone, Galera binds another).
        # An SST joiner's socat listens on every interface at its receive address' port.
        bind = ({} if ctx.bind == me.host
                else {"ist.recv_bind": f"{ctx.bind}:{me.ports['ist']}"})
        provider = {
            "gmcast.listen_addr": f"tcp://{ctx.bind}:{me.ports['galera']}",
            "ist.recv_addr": f"{me.host}:{me.ports['ist']}",
            **bind,
            "socket.ssl": "YES",
            "socket.ssl_cert": cert,
            "socket.ssl_key": key,
            "socket.ssl_ca": ca,
            "pc.recovery": "TRUE",  # a whole cluster that crashed comes back by itself
            # The write-set cache a returning member catches up from (IST).
            "gcache.size": f"{max(32, min(1024, memory // 4))}M",
            "gcache.recover": "yes",  # keep the cache across a crash, for IST
            **EVS_TIMING,
        }
        cluster = ",".join(f"{m.host}:{m.ports['galera']}" for m in topo.members)
        digest = hashlib.sha256(topo.cluster_id.encode()).digest()
        galera = {
            "wsrep_on": "ON",
            "wsrep_provider": GALERA,
            "wsrep_provider_options": ";".join(f"{k}={v}" for k, v in provider.items()),
            "wsrep_cluster_name": _cluster_name(topo.cluster_id),
            "wsrep_cluster_address": f"gcomm://{cluster}",
            "wsrep_node_name": ctx.node_id,
            "wsrep_node_address": f"{me.host}:{me.ports['galera']}",
            "wsrep_node_incoming_address": f"{ctx.host}:{ctx.port}",
            "wsrep_sst_method": "mariabackup",
            "wsrep_sst_auth": f"{ctx.service.user}:{ctx.service.password}",
            "wsrep_sst_receive_address": f"{me.host}:{me.ports['sst']}",
            "wsrep_slave_threads": str(max(1, round(ctx.size.cpus * 2))),
            "wsrep_gtid_mode": "ON",
            "wsrep_gtid_domain_id": str(int.from_bytes(digest[:4], "big") % 1000000 + 1),
            "log_slave_updates": "ON",
            "binlog_format": "ROW",
            "default_storage_engine": "InnoDB",
            "innodb_autoinc_lock_mode": "2",  # interleaved: what Galera requires
        }
        sst = {
            "ssl-mode": "VERIFY_IDENTITY",
            "ssl-ca": ca, "ssl-cert": cert, "ssl-key": key,
            "sst-log-archive-dir": runner.abspath(SST_LOGS),
        }
        # mariadb-backup on a donor: its own server over TCP and TLS, as the account
        # wsrep_sst_auth names (the script passes the password in MYSQL_PWD).
        backup = {"host": ctx.host, "port": str(ctx.port), "ssl-ca": ca,
                  "ssl-verify-server-cert": "ON"}
        text = self._read(runner, CONF) + "".join(
            f"\n[{group}]\n" + "".join(f"{k} = {_opt(v)}\n" for k, v in values.items())
            for group, values in (("mariadbd", galera), ("sst", sst),
                                  ("mariadb-backup", backup)))
        runner.write_file(CONF, text.encode())

    @staticmethod
    def _check_topology(ctx: NodeContext, topo: Topology) -> None:
        if topo.durability != "sync":
            raise ValueError(f"Galera replicates synchronously: durability "
                             f"{topo.durability!r} is not available")
        missing = [n for n in MariaDBReplication.ha_ports
                   if n not in topo.member(ctx.node_id).ports]
        if missing:
            raise ValueError("no port for " + ", ".join(missing))

    # --- starting -----------------------------------------------------------------

    def member_processes(self, ctx: NodeContext, topo: Topology,
                         runner: NodeRunner) -> list[ProcessSpec]:
        """One ``mariadbd``; with ``--wsrep-new-cluster`` only when no peer is in a
        primary component and this member may start one: the founder's first
        start, or Galera's own record that this member left the cluster last
        (``safe_to_bootstrap: 1`` after a graceful stop of every member).
        Otherwise it joins: a running primary component (IST or SST), or, after
        every member crashed, the others coming back (``pc.recovery`` restores
        the last primary component once all its members are back)."""
        argv = [MARIADBD, f"--defaults-file={runner.abspath(CONF)}"]
        if not _listening(topo.member(ctx.node_id)):  # else it runs, its files in use
            argv += self._start_options(ctx, topo, runner, argv)
        # A donor may be mid-SST; TZ: the error log's times (see logs.py).
        return [ProcessSpec(argv=argv, env={"TZ": "UTC"}, stop_timeout=120.0)]

    def _start_options(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                       argv: list[str]) -> list[str]:
        state = _grastate(self._read(runner, GRASTATE)) if runner.exists(GRASTATE) else {}
        if state:
            runner.remove_tree(FOUNDER)  # it has been in a cluster: never the first start
        options = []
        # seqno -1 after a crash (a clean stop records it): recover the position from
        # InnoDB, as mysqld_safe does, so the member catches up by IST, not SST.
        crashed = (state.get("seqno") == "-1" and state.get("uuid", NO_UUID) != NO_UUID
                   and not runner.exists(DATA / "sst_in_progress"))  # else: SST again
        if crashed and (position := self._recover_position(runner, argv)):
            options.append(f"--wsrep-start-position={position}")
        may_bootstrap = (state.get("safe_to_bootstrap") == "1"
                         or (not state and runner.exists(FOUNDER)))
        if may_bootstrap and not self._peer_primary(ctx, topo, runner):
            # Alone, with nobody to dial: the others connect to it. (A new cluster's
            # own connections to peers are aborted, and a peer that saw one fail
            # over TLS may not dial again until it restarts.)
            options += ["--wsrep-new-cluster", "--wsrep-cluster-address=gcomm://"]
        else:
            self._await_settled_view(ctx, topo, runner)
        return options

    @staticmethod
    def _recover_position(runner: NodeRunner, argv: list[str]) -> str:
        """``mariadbd --wsrep-recover``: InnoDB's last committed ``uuid:seqno``, or
        "" when it cannot tell (the member then gets a full SST)."""
        try:
            out = runner.run(["sh", "-c", 'exec "$@" 2>&1', "wsrep-recover", *argv,
                              "--wsrep-recover", "--disable-log-error"], timeout=600)
        except (RuntimeError, OSError, subprocess.SubprocessError):
            return ""
        found = re.findall(r"WSREP: Recovered position: *(\S+:-?\d+)", out)
        return found[-1] if found else ""

    def _peer_views(self, ctx: NodeContext, topo: Topology,
                    runner: NodeRunner) -> list[dict[str, str]]:
        """The wsrep status of every other member that answers."""
        tls = ssl.create_default_context(cadata=self._read(runner, TLS_CA))
        peers = [m for m in topo.members if m.node_id != ctx.node_id]

        def status(m: Member) -> dict[str, str] | None:
            try:
                return _status(m.host, m.port, ctx.service, tls)
            except Exception:  # down or unreachable
                return None

        if not peers:
            return []
        with ThreadPoolExecutor(len(peers)) as pool:
            return [s for s in pool.map(status, peers) if s is not None]

    def _peer_primary(self, ctx: NodeContext, topo: Topology, runner: NodeRunner) -> bool:
        """Whether any other member answers as part of a primary component."""
        return any(s.get("wsrep_cluster_status") == "Primary"
                   for s in self._peer_views(ctx, topo, runner))

    def _await_settled_view(self, ctx: NodeContext, topo: Topology,
                            runner: NodeRunner) -> None:
        """Before joining, wait (at most ``SETTLE_WAIT``) until every member in the
        primary component answers and is Synced: no dead member still in the view
        (it is dropped seconds after it died), no other joiner or its donor at
        work. A join arriving meanwhile makes one view change of the two, and
        under these EVS timeouts that change can fail on every member, each left
        alone in a non-primary component (seen when a node that lost its storage
        was replaced at once, and when two members joined at once)."""
        deadline = time.monotonic() + SETTLE_WAIT
        while time.monotonic() < deadline:
            primary = [s for s in self._peer_views(ctx, topo, runner)
                       if s.get("wsrep_cluster_status") == "Primary"]
            synced = sum(s.get("wsrep_local_state") == SYNCED for s in primary)
            if all(int(s.get("wsrep_cluster_size") or 0) <= synced for s in primary):
                return  # none primary (a whole cluster starting), or a settled view
            time.sleep(0.2)

    # --- observing ----------------------------------------------------------------

    def member_states(self, ctxs: list[NodeContext], topo: Topology,
                      ca_file: str) -> list[MemberState]:
        """Every Synced member of the primary component is a "primary". Galera has
        no byte lag: the receive queue (write-sets delivered, not yet applied)
        and flow control go in the detail."""
        def one(ctx: NodeContext) -> MemberState:
            try:
                s = _status(ctx.host, ctx.port, ctx.service, ca_file)
            except Exception as exc:
                lines = str(exc.args[-1] if exc.args else exc).strip().splitlines()
                return MemberState(ctx.node_id, "", False, None,
                                   "unreachable: " + (lines[0] if lines else "no answer"))
            if not s.get("wsrep_cluster_status"):
                return MemberState(ctx.node_id, "", False, None, "Galera is not loaded")
            detail = (f"{s.get('wsrep_local_state_comment', '?')}, "
                      f"{s.get('wsrep_cluster_status')} component of "
                      f"{s.get('wsrep_cluster_size', '?')}, receive queue "
                      f"{s.get('wsrep_local_recv_queue', '?')}, flow control paused "
                      f"{float(s.get('wsrep_flow_control_paused', 0)):.1%}, last committed "
                      f"{s.get('wsrep_last_committed', '?')}")
            if _serving(s):
                return MemberState(ctx.node_id, "primary", True, None, detail)
            return MemberState(ctx.node_id, "", False, None, "not serving: " + detail)

        with ThreadPoolExecutor(max(1, len(ctxs))) as pool:
            return list(pool.map(one, ctxs))

    def role_check(self, topo: Topology, service: Credentials, ca_file: str) -> RoleCheck:
        """``mariadb`` over TLS as the service account: exits 0 only on a Synced
        member of the primary component (the query raises otherwise)."""
        return CommandRoleCheck(
            argv=(MARIADB_CLIENT, "--no-defaults", "--host", "{host}", "--port", "{port}",
                  f"--user={service.user}", f"--ssl-ca={ca_file}", "--ssl-verify-server-cert",
                  "--connect-timeout=2", "--batch", "--silent", "--delimiter=;;",
                  f"--execute={ROLE_SQL}"),
            env=(("MYSQL_PWD", service.password),),
        )

    # --- changing -----------------------------------------------------------------

    def switchover(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                   target: str) -> None:
        """Every Synced member already takes writes, and commits are synchronous:
        there is nothing to hand over. This only waits (briefly) until ``target``
        is Synced in the primary component, so the endpoint may send writes there."""
        ctx = next(c for c in ctxs if c.node_id == target)
        deadline = time.monotonic() + SWITCHOVER_WAIT
        while True:
            state = self.member_states([ctx], topo, ca_file)[0]
            if state.role == "primary":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"member {target} cannot take writes: {state.detail}")
            time.sleep(0.2)

    def remove_member(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                      node_id: str) -> None:
        """Nothing to hand over: every other Synced member takes writes already.
        The member leaves the cluster now, gracefully (its cluster address is
        cleared), so the others go on as a smaller primary component whatever
        happens to its process next: a stop, or a kill when it is destroyed
        (a kill counts as a failure, and one of two is no majority). It leaves
        only once the others keep a majority without it; a member that died
        but is still in the view is waited out first. Returns when the others
        serve without it."""
        leaving = next(c for c in ctxs if c.node_id == node_id)
        address = f"{leaving.host}:{leaving.port}"  # its wsrep_node_incoming_address
        deadline = time.monotonic() + LEAVE_WAIT
        while True:
            found = self._statuses(ctxs, ca_file)
            serving = [found[c.node_id] for c in ctxs
                       if c.node_id != node_id and _serving(found[c.node_id] or {})]
            view = serving[0] if serving else {}
            if view and address not in view.get("wsrep_incoming_addresses", "").split(","):
                return  # out of the view, and the others serve
            if view and found[node_id] is not None:
                size = int(view.get("wsrep_cluster_size", 0))
                alive = sum(1 for s in found.values()
                            if s and s.get("wsrep_cluster_status") == "Primary")
                if 2 * (alive - 1) > size - 1:  # the rest keep a majority: leave
                    with self._connect(leaving, ca_file, PROBE_TIMEOUT) as conn, \
                            conn.cursor() as cur:
                        cur.execute("SET GLOBAL wsrep_cluster_address = ''")
            if time.monotonic() > deadline:
                states = "; ".join(s.detail for s in self.member_states(ctxs, topo, ca_file))
                raise RuntimeError(f"member {node_id} cannot leave the cluster now (the "
                                   f"others would lose their majority, or none serves): "
                                   f"{states}")
            time.sleep(0.2)

    @staticmethod
    def _statuses(ctxs: list[NodeContext], ca_file: str) -> dict[str, dict[str, str] | None]:
        """Each member's wsrep status, None where it does not answer."""
        def one(ctx: NodeContext) -> dict[str, str] | None:
            try:
                return _status(ctx.host, ctx.port, ctx.service, ca_file)
            except Exception:  # down: it has no status
                return None

        with ThreadPoolExecutor(max(1, len(ctxs))) as pool:
            return dict(zip((c.node_id for c in ctxs), pool.map(one, ctxs), strict=True))

    def detach(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """A stopped member becomes a standalone server: Galera's state and cache
        go, and the plain configuration (wsrep off) replaces the cluster's, so
        nothing can rejoin it. The data, accounts and binary logs stay."""
        for name in GALERA_FILES:
            runner.remove_tree(DATA / name)
        runner.remove_tree(FOUNDER)
        self.configure(ctx, runner)
