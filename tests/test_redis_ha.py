"""Redis clusters on Sentinel, against real servers and sentinels: forming,
replication, switchover, kill -9 failover with a writer running, rejoin,
removing a member and detaching it as a standalone node."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hoard.engines.base import Credentials, Topology
from hoard.engines.redis import Redis
from hoard.engines.redis.sentinel import SENTINEL_CONF, master_name
from tests.ha_harness import HaCluster, running_cluster

ENGINE = Redis()
NO_RETRY = Retry(NoBackoff(), 0)


def client(host: str, port: int, creds: Credentials, ca_file: str,
           timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(host=host, port=port, username=creds.user, password=creds.password,
                       ssl=True, ssl_ca_certs=ca_file, socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=NO_RETRY, decode_responses=True)


def node(c: HaCluster, node_id: str, admin: bool = False) -> redis.Redis:
    ctx = c.ctx(node_id)
    return client(ctx.host, ctx.port, ctx.admin if admin else ctx.service, c.ca_file)


def sentinel(c: HaCluster, node_id: str) -> redis.Redis:
    m = c.topo.member(node_id)
    return client(m.host, m.ports["sentinel"], c.ctx(node_id).service, c.ca_file)


def primary(c: HaCluster) -> str:
    found = c.wait_for(c.primary, 30, "one healthy primary")
    assert isinstance(found, str)
    return found


def formed(c: HaCluster, timeout: float = 60) -> None:
    c.wait_for(lambda: all(s.healthy for s in c.states())
               and [s.role for s in c.states()].count("primary") == 1, timeout, "formed")


@dataclass
class Writer:
    """Writes w:0, w:1... through the endpoint's read-write port; records which
    writes were acknowledged and when."""

    host: str
    port: int
    creds: Credentials
    ca_file: str
    acked: list[tuple[int, float]] = field(default_factory=list)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i, conn = 0, None
        while not self.stop.is_set():
            try:
                conn = conn or client(self.host, self.port, self.creds, self.ca_file, 0.5)
                conn.set(f"w:{i}", i)
                self.acked.append((i, time.monotonic()))
            except (redis.RedisError, OSError):
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> Writer:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def writer(c: HaCluster) -> Writer:
    host, rw, _ = c.endpoint()
    return Writer(host, rw, c.ctxs[0].admin, c.ca_file)


def lost(c: HaCluster, w: Writer, on: str) -> list[int]:
    """Acknowledged writes missing on node ``on``."""
    with node(c, on) as conn:
        pipe = conn.pipeline(transaction=False)
        for i, _ in w.acked:
            pipe.exists(f"w:{i}")
        return [i for (i, _), there in zip(w.acked, pipe.execute(), strict=True) if not there]


@pytest.fixture(scope="module")
def cluster() -> Iterator[HaCluster]:
    with running_cluster(ENGINE, nodes=3) as c:
        formed(c)
        yield c


def test_forms_one_primary_replicas_streaming(cluster: HaCluster) -> None:
    c = cluster
    states = c.states()
    assert [s.role for s in states] == ["primary", "replica", "replica"]
    assert all(s.healthy and s.lag_bytes is not None for s in states), states
    assert "streaming from node 0" in states[1].detail
    with node(c, c.ctxs[0].node_id, admin=True) as conn:
        conn.set("hello", "world")
        offset = conn.info("replication")["master_repl_offset"]
    for ctx in c.ctxs[1:]:
        with node(c, ctx.node_id) as conn:
            c.wait_for(lambda conn=conn: conn.get("hello") == "world", 10, "replicated")
            assert conn.execute_command("ROLE")[0] == "slave"
            with pytest.raises(redis.ReadOnlyError):
                conn.set("x", 1)
    c.wait_for(lambda: all(s.lag_bytes == 0 for s in c.states()[1:]), 10, "no lag")
    assert offset > 0
    # Everything on TLS: the sentinels too, with the service account only.
    m = c.topo.members[1]
    with sentinel(c, m.node_id) as s:
        assert s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name(c.topo)) \
            == [c.topo.members[0].host, str(c.topo.members[0].port)]
    with client(m.host, m.ports["sentinel"], c.ctxs[0].admin, c.ca_file) as s, \
            pytest.raises(redis.AuthenticationError):
        s.ping()
    plain = redis.Redis(host=m.host, port=m.ports["sentinel"], socket_timeout=2, retry=NO_RETRY)
    with plain, pytest.raises(redis.ConnectionError):
        plain.ping()
    # The endpoint: writes to the primary, reads from a replica.
    host, rw, ro = c.endpoint()
    with client(host, rw, c.ctxs[0].admin, c.ca_file) as conn:
        conn.set("via", "endpoint")
        assert conn.info("replication")["role"] == "master"
    with client(host, ro, c.ctxs[0].admin, c.ca_file) as conn:
        c.wait_for(lambda: conn.get("via") == "endpoint", 10, "read from a replica")
        assert conn.info("replication")["role"] == "slave"


def test_tenant_users_reach_every_member(cluster: HaCluster) -> None:
    """Redis does not replicate ACL users: the engine gives them to the replicas."""
    c = cluster
    ctx = c.ctx(primary(c))
    ENGINE.create_user(ctx, c.ca_file, "app", "first-pass", ["app:*"], ["read", "write"])
    ENGINE.set_password(ctx, c.ca_file, "app", "second-pass")
    ENGINE.create_user(ctx, c.ca_file, "gone", "pass", ["g:*"], ["read"])
    ENGINE.drop_user(ctx, c.ca_file, "gone")
    for other in c.ctxs:
        with client(other.host, other.port, Credentials("app", "second-pass"),
                    c.ca_file) as conn:
            assert conn.get("app:x") is None  # logged in, with read rights
            with pytest.raises(redis.exceptions.NoPermissionError):
                conn.get("other")
        with node(c, other.node_id) as conn:
            assert conn.execute_command("ACL", "GETUSER", "gone") is None


def test_admin_password_reaches_every_member(cluster: HaCluster) -> None:
    """A new admin password set on the primary works on every member (a failover
    must not bring the old one back), then the harness's own is put back."""
    c = cluster
    ctx = c.ctx(primary(c))
    rotated = Credentials(ctx.admin.user, "rotated-admin-pass")
    ENGINE.set_admin_password(replace(ctx, admin=rotated), c.ca_file)
    try:
        for other in c.ctxs:
            with client(other.host, other.port, rotated, c.ca_file) as conn:
                assert conn.ping()
            with client(other.host, other.port, ctx.admin, c.ca_file) as conn, \
                    pytest.raises(redis.AuthenticationError):
                conn.ping()
    finally:
        ENGINE.set_admin_password(ctx, c.ca_file)
    with client(ctx.host, ctx.port, ctx.admin, c.ca_file) as conn:
        assert conn.ping()


def test_switchover_to_a_chosen_member_loses_nothing(cluster: HaCluster) -> None:
    c = cluster
    old = primary(c)
    target = next(ctx.node_id for ctx in reversed(c.ctxs) if ctx.node_id != old)
    with writer(c) as w:
        c.wait_for(lambda: len(w.acked) > 20, 10, "writes before")
        started = time.monotonic()
        ENGINE.switchover(c.ctxs, c.topo, c.ca_file, target)
        took = time.monotonic() - started
        before = len(w.acked)
        c.wait_for(lambda: len(w.acked) > before + 20, 15, "writes after")
    print(f"\nswitchover took {took:.1f} s; {w.failures} writes refused meanwhile")
    states = {s.node_id: s for s in c.states()}
    assert states[target].role == "primary" and states[target].healthy
    assert states[old].role == "replica", states[old]
    assert primary(c) == target
    assert lost(c, w, target) == []  # a planned switchover loses no acknowledged write
    with node(c, old) as conn:
        assert conn.config_get("replica-priority")["replica-priority"] == "100"
        assert conn.config_get("min-replicas-to-write")["min-replicas-to-write"] == "0"
    ENGINE.switchover(c.ctxs, c.topo, c.ca_file, target)  # idempotent
    assert primary(c) == target
    formed(c)
    host, rw, _ = c.endpoint()
    with client(host, rw, Credentials("app", "second-pass"), c.ca_file) as conn:
        conn.set("app:after-switchover", 1)  # the tenant's user writes on the new primary


def test_kill_primary_fails_over_and_it_rejoins_as_replica(cluster: HaCluster) -> None:
    c = cluster
    formed(c)
    old = primary(c)
    with writer(c) as w:
        c.wait_for(lambda: len(w.acked) > 50, 10, "writes before")
        killed = time.monotonic()
        c.kill(old)
        c.wait_for(lambda: w.acked[-1][1] > killed, 20, "writes again")
        resumed = w.acked[-1][1] - killed
        new = primary(c)
        failover = time.monotonic() - killed
        before = len(w.acked)
        c.wait_for(lambda: len(w.acked) > before + 50, 10, "writes after")
    missing = lost(c, w, new)
    print(f"\nkill -9 of the primary: writes succeeded again after {resumed:.1f} s "
          f"(new primary seen after {failover:.1f} s); {len(missing)} of {len(w.acked)} "
          f"acknowledged writes lost")
    assert new != old
    assert resumed < 10
    assert len(missing) < 200  # asynchronous: only the last moments before the kill

    # The killed member starts again as a replica of the new primary, never as a
    # second primary: its first answer already says "slave".
    c.restart(old)
    with node(c, old) as conn:
        role = c.wait_for(lambda: conn.execute_command("ROLE"), 30, "restarted server answers")
        assert isinstance(role, list) and role[0] == "slave", role
    formed(c)
    assert primary(c) == new
    with node(c, new) as conn:
        conn.set("after", "rejoin")
        offset = conn.info("replication")["master_repl_offset"]
    with node(c, old) as conn:
        c.wait_for(lambda: conn.info("replication").get("slave_repl_offset", 0) >= offset,
                   20, "caught up")
        assert conn.get("after") == "rejoin"
        assert conn.exists(f"w:{w.acked[-1][0]}")

    # configure_member keeps what Sentinel decided: roles and its state stay.
    for ctx in c.ctxs:
        ENGINE.configure_member(ctx, c.topo, c.provider.runner(ctx.node_id))
        text = b"".join(c.provider.runner(ctx.node_id).read_stream(SENTINEL_CONF)).decode()
        assert "sentinel myid " in text and "sentinel current-epoch " in text
        assert f"127.0.0.1 {c.topo.member(new).port} 2" in text
    formed(c)
    assert primary(c) == new


def test_remove_primary_then_detach_it() -> None:
    with running_cluster(ENGINE, nodes=3) as c:
        formed(c)
        leaving = primary(c)
        gone = c.ctx(leaving)
        with node(c, leaving, admin=True) as conn:
            conn.set("kept", "yes")
        ENGINE.remove_member(c.ctxs, c.topo, c.ca_file, leaving)
        assert primary(c) != leaving
        c.provider.stop(leaving)
        rest = tuple(m for m in c.topo.members if m.node_id != leaving)
        c.topo = replace(c.topo, members=rest)
        c.ctxs = [ctx for ctx in c.ctxs if ctx.node_id != leaving]
        for ctx in c.ctxs:
            ENGINE.configure_member(ctx, c.topo, c.provider.runner(ctx.node_id))
        formed(c, 30)
        name = master_name(c.topo)
        for m in rest:
            with sentinel(c, m.node_id) as s:
                info = s.execute_command("SENTINEL", "MASTER", name)
                fields = dict(zip(info[::2], info[1::2], strict=True))
                assert (fields["num-other-sentinels"], fields["num-slaves"]) == ("1", "1")
                assert fields["quorum"] == "2"
        new = primary(c)
        with node(c, new) as conn:
            assert conn.get("kept") == "yes"
            conn.set("after", "removal")

        # The removed member, stopped, becomes a standalone node with its data.
        runner = c.provider.runner(leaving)
        ENGINE.detach(gone, runner)
        assert not runner.exists(SENTINEL_CONF)
        ENGINE.configure(gone, runner)
        c.provider.start_process(leaving, ENGINE.process(gone, runner))
        c.wait_for(lambda: ENGINE.health(gone, c.ca_file, 2).ok, 30, "standalone healthy")
        with client(gone.host, gone.port, gone.admin, c.ca_file) as conn:
            assert conn.get("kept") == "yes"
            assert conn.info("replication")["role"] == "master"
            conn.set("standalone", "writable")
            assert conn.get("standalone") == "writable"
        assert not c.provider.is_running(leaving, "sentinel")
        # The cluster did not notice it come back.
        assert primary(c) == new
        with node(c, new) as conn:
            assert conn.get("standalone") is None


def test_topology_helpers() -> None:
    topo = Topology("c-1 x", (), "async")
    assert master_name(topo) == "hoard-c-1-x"
    assert ENGINE.durabilities == ("async",) and ENGINE.ha_ports == ("sentinel",)
    assert ENGINE.sidecars == ("sentinel",) and not ENGINE.needs_dcs
