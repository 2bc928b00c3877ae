"""Redis clusters on Redis Sentinel (``redis-server --sentinel``), mixed into
:class:`hoard.engines.redis.Redis`. Sentinel does the HA work; Hoard lays out
the members, starts them and reads what the sentinels decided.

- **Two processes per member**: the redis-server ("server") and a sentinel
  ("sentinel", on the member's ``sentinel`` port). The sentinels agree the
  primary is down (``quorum``: a majority of the members), elect a leader (a
  majority of the sentinels they know must vote), promote the best replica
  and point the others at it. With two members a lost member leaves no
  majority: the primary keeps serving if it survives, but no failover happens.
- **Durability is "async" only.** Redis replication is asynchronous: the
  primary acknowledges a write before any replica has it, so a failover can
  lose the last moment of writes. Redis has no synchronous mode (``WAIT`` is
  per client and does not keep a failover from promoting a replica without it).
- **TLS everywhere**: clients, replication (``tls-replication``, the primary's
  certificate checked against Hoard's CA in ``tls/ca.crt``), the sentinels'
  port and their links to the servers and to each other. Replicas and
  sentinels log in as Hoard's service account (``masteruser``/``masterauth``,
  ``sentinel auth-user``/``auth-pass``, ``sentinel-user``/``sentinel-pass``):
  Redis reads those passwords only from its configuration files, kept in the
  member's ``conf/`` directory (0700, the database OS user's alone).
- **Sentinel owns the topology**: it rewrites its own file (epochs, known
  replicas and sentinels, the primary) and the servers' ``replicaof`` (CONFIG
  REWRITE). ``configure_member`` rewrites Hoard's lines and keeps those;
  ``member_processes`` asks the running sentinels (short timeouts) whom a
  (re)starting member must follow, so a member back from a failure returns as
  a replica of the primary they report now, never as a second primary. Only
  when no sentinel answers (the whole cluster starting) does a member go by
  its own sentinel's last saved view.
- **Accounts**: Redis does not replicate ACL users. A member about to start as
  a replica copies the tenant's users from the primary; changes made while it
  runs must reach every member (the ``AclAccounts`` calls, once per member).

Failover time: ``DOWN_AFTER_MS`` of unanswered pings (1.5 s) until a sentinel
calls the primary down, about a second for the quorum to agree (sentinels ask
each other every second), up to a second of random delay before the election,
then the promotion, seen within Sentinel's one-second INFO period during a
failover: 3-5 s in all. ``FAILOVER_TIMEOUT_MS`` (6 s) bounds each failover
step; an attempt that fails (a split vote) is retried after twice that. A
shorter one made promotions on a busy host abort and retry in a loop.
"""

from __future__ import annotations

import signal
import time
from abc import abstractmethod
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import redis

from hoard.domain.nodes import ExchangeRoleCheck, NodeRunner, ProcessSpec, RoleCheck
from hoard.engines.base import (
    TLS_CA,
    Credentials,
    Member,
    MemberState,
    NodeContext,
    Replication,
    Topology,
)
from hoard.engines.redis import backup as rb
from hoard.engines.redis import sentinel as rs
from hoard.engines.redis.sentinel import (
    REDIS_SERVER,
    SENTINEL_CONF,
    Addr,
    Trust,
    ask,
    info_int,
    pairs,
    sentinel,
    server,
    wait_until,
)

PRIORITY = 100  # replica-priority of an eligible replica (Redis's default); 0: never promoted
SETTLE_WAIT = (rs.DOWN_AFTER_MS + rs.FAILOVER_TIMEOUT_MS) / 1000  # a failover ends by then
SWITCHOVER_WAIT = 30.0
RESET_WAIT = 6.0  # a reset sentinel hears its peers' hellos (every 2 s) by then


class RedisReplication(Replication):
    """The ``Replication`` ability of :class:`hoard.engines.redis.Redis`."""

    ha_ports = ("sentinel",)
    sidecars = ("sentinel",)
    durabilities = ("async",)
    needs_dcs = False

    @abstractmethod
    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None: ...

    @abstractmethod
    def configure(self, ctx: NodeContext, runner: NodeRunner) -> None: ...

    @abstractmethod
    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec: ...

    @abstractmethod
    def server_settings(self, ctx: NodeContext, runner: NodeRunner) -> dict[str, str]: ...

    @abstractmethod
    def write_conf(self, runner: NodeRunner, values: dict[str, str],
                   raw: Iterable[str] = ()) -> None: ...

    @abstractmethod
    def _write_acl(self, ctx: NodeContext, runner: NodeRunner, tenant: list[str]) -> None: ...

    @abstractmethod
    def _hidden(self, ctx: NodeContext) -> frozenset[str]: ...

    # --- a member's files and processes -------------------------------------------

    def prepare_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                       *, founder: bool) -> None:
        """The founder keeps its data; any other member gets only the accounts
        (its data comes with its first full sync). A new sentinel file names
        the founder as primary until the running sentinels say otherwise."""
        if not founder:
            self.bootstrap(ctx, runner)  # the ACL file; kept if it exists
        if not runner.exists(SENTINEL_CONF):
            first = topo.member(ctx.node_id) if founder else topo.members[0]
            self._write_sentinel_conf(ctx, topo, runner, server(first))
        self.configure_member(ctx, topo, runner)

    def configure_member(self, ctx: NodeContext, topo: Topology, runner: NodeRunner) -> None:
        """Rewrite Hoard's lines of both files, keeping what Sentinel decided (the
        server's replicaof, the sentinel's state). Processes that run take the
        member settings and the sentinel timings and quorum live (their files
        alone would be overwritten by Sentinel's next rewrite), and a sentinel
        that still knows former members is reset, so it forgets them."""
        self._write_server_conf(ctx, topo, runner, rs.conf_replicaof(runner))
        self._write_sentinel_conf(ctx, topo, runner, None)
        trust = Trust(pem=rs.read_text(runner, TLS_CA))
        me = topo.member(ctx.node_id)
        live = [x for k, v in self._member_settings(ctx, topo, runner).items() for x in (k, v)]
        ask(server(me), ctx.service, trust, "CONFIG", "SET", *live)
        name = rs.master_name(topo)
        if ask(sentinel(me), ctx.service, trust, "SENTINEL", "SET", name,
               *rs.settings(topo)) is not None:
            self._forget_former(me, topo, ctx.service, trust)

    def member_processes(self, ctx: NodeContext, topo: Topology,
                         runner: NodeRunner) -> list[ProcessSpec]:
        """Before a process starts, its file is made to follow the primary the
        sentinels report now (and a replica-to-be copies the tenant's users from
        it); the files of a process that runs are Sentinel's and left alone."""
        me = topo.member(ctx.node_id)
        trust = Trust(pem=rs.read_text(runner, TLS_CA))
        server_up = ask(server(me), ctx.service, trust, "PING") is not None
        sentinel_up = ask(sentinel(me), ctx.service, trust, "PING") is not None
        if not (server_up and sentinel_up):
            primary = self._decide_primary(ctx, topo, runner, trust, server_up)
            follow = None if primary == server(me) else primary
            if not server_up:
                if follow is not None:
                    self._copy_users(ctx, runner, trust, follow)
                self._write_server_conf(ctx, topo, runner, follow)
            if not sentinel_up:
                self._write_sentinel_conf(ctx, topo, runner, primary)
        return [
            self.process(ctx, runner),
            ProcessSpec(argv=[REDIS_SERVER, runner.abspath(SENTINEL_CONF), "--sentinel"],
                        stop_signal=signal.SIGTERM, stop_timeout=10.0, name="sentinel"),
        ]

    def _member_settings(self, ctx: NodeContext, topo: Topology,
                         runner: NodeRunner) -> dict[str, str]:
        me = topo.member(ctx.node_id)
        return {
            "tls-replication": "yes",
            "tls-ca-cert-file": runner.abspath(TLS_CA),
            "masteruser": ctx.service.user,
            "masterauth": ctx.service.password,
            # What the primary tells the sentinels this replica's address is.
            "replica-announce-ip": me.host,
            "replica-announce-port": str(me.port),
            "replica-priority": str(PRIORITY),
            "min-replicas-to-write": "0",  # a switchover raises it on the old primary
        }

    def _write_server_conf(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                           follow: Addr | None) -> None:
        values = {**self.server_settings(ctx, runner),
                  **self._member_settings(ctx, topo, runner)}
        raw = [f"replicaof {follow[0]} {follow[1]}"] if follow else []
        self.write_conf(runner, values, raw)

    def _write_sentinel_conf(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                             primary: Addr | None) -> None:
        text = rs.sentinel_conf(topo, topo.member(ctx.node_id), ctx.service, runner,
                                primary, rs.read_text(runner, SENTINEL_CONF) or "", ctx.bind)
        runner.write_file(SENTINEL_CONF, text.encode())

    def _decide_primary(self, ctx: NodeContext, topo: Topology, runner: NodeRunner,
                        trust: Trust, server_up: bool) -> Addr:
        """The primary the sentinels report (the highest configuration epoch wins,
        as among sentinels). If that is this member while it is down, a failover
        may be under way: wait (at most ``SETTLE_WAIT``) for it to end rather than
        come back as a primary the others are about to replace. With no sentinel
        answering: this member's sentinel's saved view."""
        me = server(topo.member(ctx.node_id))
        members = {server(m) for m in topo.members}
        deadline = time.monotonic() + SETTLE_WAIT
        while True:
            views = rs.views(topo, ctx.service, trust)
            chosen = rs.agreed(views)
            if chosen is None or chosen.addr not in members:
                saved, _ = rs.saved_state(rs.read_text(runner, SENTINEL_CONF) or "", topo,
                                          topo.member(ctx.node_id))
                return saved or server(topo.members[0])
            unsettled = chosen.addr == me and not server_up and any(
                flag in v.flags for v in views if v for flag in rs.DOWN_FLAGS)
            if not unsettled or time.monotonic() >= deadline:
                return chosen.addr
            time.sleep(0.2)

    def _copy_users(self, ctx: NodeContext, runner: NodeRunner, trust: Trust,
                    primary: Addr) -> None:
        """Redis does not replicate ACL users: take the tenant's from the primary
        (if it answers; else keep the ones this member has)."""
        lines = ask(primary, ctx.service, trust, "ACL", "LIST")
        if isinstance(lines, list):
            self._write_acl(ctx, runner, rb.tenant_lines(lines, self._hidden(ctx)))

    def replicate_acl(self, ctx: NodeContext, ca_file: str, name: str,
                      via: redis.Redis | None = None) -> None:
        """Redis does not replicate ACL users: after a change on the primary
        (``ctx``), give each replica linked to it the user as the primary has it
        now, or delete it there. A replica that does not answer takes the
        tenant's users from the primary when it next starts. A standalone node
        has no replicas: nothing to do. ``via``: a connection to the primary
        already open (the one that made the change), asked instead of a new one."""
        trust, primary = Trust(file=ca_file), (ctx.host, ctx.port)

        def on_primary(*args: str) -> Any:
            if via is None:
                return ask(primary, ctx.service, trust, *args)
            try:
                return via.execute_command(*args)
            except rs.ERRORS:
                return None

        info = on_primary("INFO", "replication")
        replicas = [(str(v["ip"]), int(v["port"])) for k, v in (info or {}).items()
                    if k.startswith("slave") and isinstance(v, dict)]
        if not replicas:
            return
        listed = on_primary("ACL", "LIST") or []
        line = next((x.split() for x in listed if x.split()[1] == name), None)
        change = ("ACL", "SETUSER", name, "reset", *line[2:]) if line else ("ACL", "DELUSER", name)
        for addr in replicas:
            try:
                with rs.client(addr, ctx.service, trust) as conn:
                    conn.execute_command(*change)
                    conn.execute_command("ACL", "SAVE")
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                continue  # it copies the users when it starts again

    # --- asking the machinery ------------------------------------------------------

    def _primary(self, topo: Topology, creds: Credentials, trust: Trust) -> Member | None:
        """The member the sentinels call primary, else the one server that says so."""
        chosen = rs.agreed(rs.views(topo, creds, trust))
        if chosen is not None:
            return next((m for m in topo.members if server(m) == chosen.addr), None)
        infos = rs.infos(topo, creds, trust)
        masters = [m for m, i in zip(topo.members, infos, strict=True)
                   if i and i.get("role") == "master"]
        return masters[0] if len(masters) == 1 else None

    def member_states(self, ctxs: list[NodeContext], topo: Topology,
                      ca_file: str) -> list[MemberState]:
        """From each server's INFO replication and each sentinel's view, all at
        once. Lag is the primary's offset minus the replica's, in bytes. A member
        is healthy when it serves its role (a replica: linked to the primary the
        sentinels report) and its sentinel knows every running sentinel and every
        replica linked to the primary (sentinels learn replicas from the
        primary's INFO every ten seconds: until then one could not be promoted)."""
        trust, creds = Trust(file=ca_file), ctxs[0].service
        infos = rs.infos(topo, creds, trust)
        views = rs.views(topo, creds, trust)
        chosen = rs.agreed(views)
        by_addr = {server(m): m for m in topo.members}
        masters = [m for m, i in zip(topo.members, infos, strict=True)
                   if i and i.get("role") == "master"]
        primary = chosen.addr if chosen else server(masters[0]) if len(masters) == 1 else None
        offset = next((int(i["master_repl_offset"]) for m, i in zip(topo.members, infos,
                       strict=True) if i and server(m) == primary and i["role"] == "master"),
                      None)

        # What each running sentinel must know before it can take part in a failover.
        peers = sum(1 for v in views if v) - 1
        linked = next((info_int(i, "connected_slaves") for m, i in zip(topo.members, infos,
                       strict=True) if i and server(m) == primary), 0)

        def describe(addr: Addr | None) -> str:
            m = by_addr.get(addr) if addr else None
            return f"node {m.ordinal}" if m else f"{addr[0]}:{addr[1]}" if addr else "nobody"

        states = []
        for m, info, view in zip(topo.members, infos, views, strict=True):
            ready = view is not None and view.other_sentinels >= peers and view.replicas >= linked
            no_sentinel = ("" if ready else "; its sentinel does not answer" if view is None else
                           f"; its sentinel knows {view.other_sentinels} of {peers} running "
                           f"sentinels and {view.replicas} of {linked} replicas")
            if info is None:
                states.append(MemberState(m.node_id, "", False, None, "server does not answer"))
            elif info["role"] == "master":
                ok = server(m) == primary
                detail = (f"primary, {info.get('connected_slaves', 0)} replicas connected" if ok
                          else f"acts as primary, but the sentinels follow {describe(primary)}")
                states.append(MemberState(m.node_id, "primary", ok and ready, 0,
                                          detail + no_sentinel))
            else:
                follows = (str(info.get("master_host")), int(info.get("master_port", 0)))
                link = info.get("master_link_status") == "up"
                lag = (max(0, offset - int(info.get("slave_repl_offset", 0)))
                       if offset is not None and follows == primary and link else None)
                if follows != primary:
                    detail = f"follows {describe(follows)}, not the primary {describe(primary)}"
                elif link:
                    detail = f"streaming from {describe(follows)}, {lag} bytes behind"
                elif info.get("master_sync_in_progress"):
                    detail = f"receiving a full copy from {describe(follows)}"
                else:
                    detail = f"link to {describe(follows)} is down"
                states.append(MemberState(m.node_id, "replica",
                                          link and follows == primary and ready,
                                          lag, detail + no_sentinel))
        return states

    # --- planned changes -------------------------------------------------------------

    def switchover(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                   target: str) -> None:
        """Sentinel cannot be told which replica to promote, so every other replica
        is made ineligible (replica-priority 0) until one sentinel sees that,
        writes on the old primary are refused (``min-replicas-to-write`` above
        its replica count: clients get NOREPLICAS, nothing acknowledged is lost)
        until the target has every byte, then ``SENTINEL FAILOVER``. The old
        primary is pointed at the new one as soon as the sentinels report it
        (Sentinel itself would do so only after about ten seconds). Priorities
        and the write limit are restored at the end, and first (a retried step
        after a crash starts clean)."""
        trust, creds, name = Trust(file=ca_file), ctxs[0].service, rs.master_name(topo)
        new = topo.member(target)
        self._restore_knobs(topo, creds, trust)
        try:
            old = self._primary(topo, creds, trust)
            if old is None:
                raise RuntimeError("no switchover: the cluster has no primary right now")
            if old.node_id != target:
                self._fail_over_to(topo, creds, trust, name, old, new)
            deadline = time.monotonic() + SWITCHOVER_WAIT
            for m, info in zip(topo.members, rs.infos(topo, creds, trust), strict=True):
                if m.node_id != target and info and info.get("role") == "master":
                    ask(server(m), creds, trust, "REPLICAOF", new.host, str(new.port))
                    ask(server(m), creds, trust, "CONFIG", "REWRITE")
            if old.node_id != target:
                wait_until(lambda: self._follows(old, new, creds, trust),
                           max(1.0, deadline - time.monotonic()),
                           f"node {old.ordinal} did not follow node {new.ordinal}")
                wait_until(lambda: rs.settled(rs.views(topo, creds, trust), server(new)),
                           max(1.0, deadline - time.monotonic()),
                           f"the sentinels did not all settle on node {new.ordinal}")
        finally:
            self._restore_knobs(topo, creds, trust)

    def _fail_over_to(self, topo: Topology, creds: Credentials, trust: Trust, name: str,
                      old: Member, new: Member) -> None:
        others = [m for m in topo.members if m.node_id not in (old.node_id, new.node_id)]
        for m in others:
            ask(server(m), creds, trust, "CONFIG", "SET", "replica-priority", "0")
        leader = wait_until(lambda: self._sentinel_seeing(topo, creds, trust, name, new, others),
                            SWITCHOVER_WAIT,
                            f"no sentinel saw node {new.ordinal} as the only one to promote")
        if ask(server(old), creds, trust, "CONFIG", "SET", "min-replicas-to-write",
               str(len(topo.members) + 1)) is None:
            raise RuntimeError(f"node {old.ordinal} (the primary) does not answer")
        offset = info_int(ask(server(old), creds, trust, "INFO", "replication"),
                          "master_repl_offset")

        def caught_up() -> bool:
            info = ask(server(new), creds, trust, "INFO", "replication")
            return info_int(info, "slave_repl_offset") >= offset >= 0
        wait_until(caught_up, SWITCHOVER_WAIT,
                   f"node {new.ordinal} did not catch up with the primary")

        def failover() -> bool:
            try:
                with rs.client(leader, creds, trust) as client:
                    client.execute_command("SENTINEL", "FAILOVER", name)
                return True
            except redis.ResponseError as exc:  # NOGOODSLAVE: ask again; INPROG: it runs
                return "INPROG" in str(exc)
            except rs.ERRORS:
                return False
        wait_until(failover, SWITCHOVER_WAIT, "Sentinel refused the failover")
        wait_until(lambda: ask(leader, creds, trust, "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                               name) == [new.host, str(new.port)],
                   SWITCHOVER_WAIT, f"the sentinels did not promote node {new.ordinal}")

    def _sentinel_seeing(self, topo: Topology, creds: Credentials, trust: Trust, name: str,
                         new: Member, others: list[Member]) -> Addr | None:
        """A sentinel whose view of the replicas (refreshed every ten seconds) has
        ``new`` eligible, linked and up, and every other live replica ineligible."""
        ineligible = {server(m) for m in others}
        for m in [new, *(x for x in topo.members if x is not new)]:
            reply = ask(sentinel(m), creds, trust, "SENTINEL", "REPLICAS", name)
            if not isinstance(reply, list):
                continue
            replicas = {(r["ip"], int(r["port"])): r for r in map(pairs, reply)}
            seen = replicas.get(server(new))
            if not seen or seen["slave-priority"] == "0" or seen["master-link-status"] != "ok":
                continue
            if any(f in seen["flags"] for f in rs.DOWN_FLAGS):
                continue
            if all(r["slave-priority"] == "0" or any(f in r["flags"] for f in rs.DOWN_FLAGS)
                   for addr, r in replicas.items() if addr in ineligible):
                return sentinel(m)
        return None

    def _follows(self, m: Member, primary: Member, creds: Credentials, trust: Trust) -> bool:
        """Whether ``m`` is a replica of ``primary`` (its resync may still run)."""
        info = ask(server(m), creds, trust, "INFO", "replication")
        return (isinstance(info, dict) and info.get("role") == "slave"
                and (str(info.get("master_host")), info_int(info, "master_port"))
                == server(primary))

    def _restore_knobs(self, topo: Topology, creds: Credentials, trust: Trust) -> None:
        def restore(m: Member) -> None:
            if ask(server(m), creds, trust, "CONFIG", "SET", "replica-priority", str(PRIORITY),
                   "min-replicas-to-write", "0") is not None:
                ask(server(m), creds, trust, "CONFIG", "REWRITE")
        rs.each(restore, topo.members)

    def remove_member(self, ctxs: list[NodeContext], topo: Topology, ca_file: str,
                      node_id: str) -> None:
        """In this order: switch over if it is the primary (to the replica with the
        least lag); make its server ineligible (replica-priority 0) and its
        sentinel stop watching (SENTINEL REMOVE: no more votes or hellos); give
        the others' sentinels the smaller quorum and reset them one at a time
        (each re-finds its remaining peers before the next one forgets), so they
        no longer count its sentinel. Its server is still a known replica until
        it has stopped: ``configure_member`` with the smaller topology then
        resets each remaining sentinel again, and they forget it for good."""
        trust, creds, name = Trust(file=ca_file), ctxs[0].service, rs.master_name(topo)
        leaving = topo.member(node_id)
        rest = tuple(m for m in topo.members if m.node_id != node_id)
        primary = self._primary(topo, creds, trust)
        if rest and primary is not None and primary.node_id == node_id:
            states = {s.node_id: s for s in self.member_states(ctxs, topo, ca_file)}
            best = min(rest, key=lambda m: (not states[m.node_id].healthy,
                                            states[m.node_id].lag_bytes or 0, m.ordinal))
            # It returns once every sentinel keeps the new primary and has ended the
            # failover, so the resets below cannot send one back to the old primary.
            self.switchover(ctxs, topo, ca_file, best.node_id)
        if ask(server(leaving), creds, trust, "CONFIG", "SET", "replica-priority", "0"):
            ask(server(leaving), creds, trust, "CONFIG", "REWRITE")
        ask(sentinel(leaving), creds, trust, "SENTINEL", "REMOVE", name)
        smaller = Topology(topo.cluster_id, rest, topo.durability, topo.dcs)
        for m in rest:
            if ask(sentinel(m), creds, trust, "SENTINEL", "SET", name,
                   *rs.settings(smaller)) is not None:
                self._forget_former(m, smaller, creds, trust, always=True)

    def _forget_former(self, me: Member, topo: Topology, creds: Credentials, trust: Trust,
                       always: bool = False) -> None:
        """SENTINEL RESET a running sentinel that knows sentinels or replicas
        outside ``topo`` (or ``always``), then wait until it has re-found the
        other members' sentinels (their hellos come every two seconds)."""
        name = rs.master_name(topo)
        servers = {server(m) for m in topo.members}
        sentinels = {sentinel(m) for m in topo.members if m is not me}
        known = ask(sentinel(me), creds, trust, "SENTINEL", "SENTINELS", name)
        replicas = ask(sentinel(me), creds, trust, "SENTINEL", "REPLICAS", name)
        if not isinstance(known, list) or not isinstance(replicas, list):
            return
        strangers = ({(r["ip"], int(r["port"])) for r in map(pairs, known)} - sentinels
                     | {(r["ip"], int(r["port"])) for r in map(pairs, replicas)} - servers)
        if not strangers and not always:
            return
        def idle() -> bool:  # a reset drops a failover this sentinel leads: let it end first
            view = rs.view_at(sentinel(me), name, creds, trust)
            return view is None or rs.FAILING_OVER not in view.flags
        with suppress(TimeoutError):
            wait_until(idle, SETTLE_WAIT, "sentinel still fails over")
        ask(sentinel(me), creds, trust, "SENTINEL", "RESET", name)
        live = sum(1 for m in topo.members if m is not me
                   and ask(sentinel(m), creds, trust, "PING") is not None)
        def refound() -> bool:
            found = pairs(ask(sentinel(me), creds, trust, "SENTINEL", "MASTER", name))
            return info_int(found, "num-other-sentinels") >= live
        with suppress(TimeoutError):  # it keeps listening; the next one is reset regardless
            wait_until(refound, RESET_WAIT, "sentinel did not re-find its peers")

    def detach(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """The sentinel's file goes, and the server's is the single node's again
        (no replicaof, no replication settings): it starts as a writable primary
        with its own copy of the data and its accounts."""
        runner.remove_tree(SENTINEL_CONF)
        self.configure(ctx, runner)

    def role_check(self, topo: Topology, service: Credentials, ca_file: str) -> RoleCheck:
        """ROLE answers "master" on the primary. For replicas the check looks for
        "connected" (the state of a replica whose link to its primary is up),
        not just "slave": a replica still receiving its first full copy has no
        data to serve yet. QUIT makes the server close the connection after
        answering, so a check that does not match fails at once instead of
        waiting for more data until its timeout."""
        return ExchangeRoleCheck(send=(f"AUTH {service.user} {service.password}", "ROLE", "QUIT"),
                                 primary_expect="master", replica_expect="connected")
