"""PostgreSQL clusters on Patroni, against real servers: forming, replication,
switchover, failover under a writer (async and sync), rejoin, removal, detach."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath

import psycopg
import pytest
import yaml

from hoard.domain.catalog import SIZES
from hoard.domain.dcs import EtcdDcs, KubernetesDcs
from hoard.domain.nodes import HttpRoleCheck
from hoard.engines.base import Credentials, Member, NodeContext, Topology
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.postgresql.ha import LOOP_WAIT, RETRY_TIMEOUT, TTL
from hoard.providers.local import LocalProvider
from hoard.providers.processes import free_port
from tests.conftest import make_state_dir, remove_state_dir
from tests.ha_harness import HaCluster, running_cluster

ENGINE = PostgreSQL()
FAILOVER_LIMIT = 10.0  # seconds from the kill until writes succeed again


def _connect(cluster: HaCluster, ctx: NodeContext, host: str | None = None,
             port: int | None = None) -> psycopg.Connection:
    """The tenant's admin account on database "app", TLS verified."""
    return psycopg.connect(
        host=host or ctx.host, port=port or ctx.port, user=ctx.admin.user,
        password=ctx.admin.password, dbname="app", sslmode="verify-full",
        sslrootcert=cluster.ca_file, connect_timeout=2, autocommit=True)


def _ids(cluster: HaCluster, ctx: NodeContext, table: str) -> set[int]:
    with _connect(cluster, ctx) as conn:
        return {r[0] for r in conn.execute(f"SELECT id FROM {table}").fetchall()}


def _in_recovery(cluster: HaCluster, ctx: NodeContext) -> bool | None:
    """What the member's PostgreSQL itself says (None if it does not answer)."""
    try:
        with _connect(cluster, ctx) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return None
    return bool(row and row[0])


def _one_primary(cluster: HaCluster) -> str | None:
    """The primary if the machinery and every server agree there is exactly one."""
    primary = cluster.primary()
    writable = [c.node_id for c in cluster.ctxs if _in_recovery(cluster, c) is False]
    return primary if writable == [primary] else None


class Writer(threading.Thread):
    """Inserts increasing ids through the endpoint, one autocommit statement each,
    reconnecting after every failure; remembers which ones were acknowledged."""

    def __init__(self, cluster: HaCluster, table: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.table = cluster, table
        self.host, self.rw_port, _ = cluster.endpoint()
        self.acked: list[tuple[int, float]] = []  # (id, when acknowledged)
        self.halt = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        n = 0
        while not self.halt.is_set():
            n += 1
            try:
                if conn is None:
                    conn = _connect(self.cluster, self.cluster.ctxs[0], self.host, self.rw_port)
                conn.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (n,))
                self.acked.append((n, time.monotonic()))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)

    def first_ack_after(self, moment: float) -> float | None:
        return next((t for _, t in self.acked if t > moment), None)


def _kill_primary_under_writer(cluster: HaCluster, table: str) -> tuple[str, Writer, float]:
    """Kill -9 the primary's node while a writer writes through the endpoint; return
    the killed node, the writer (stopped) and seconds until writes succeeded again."""
    old = cluster.wait_for(lambda: _one_primary(cluster), 30, "one primary")
    assert isinstance(old, str)
    with _connect(cluster, cluster.ctx(old)) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY)")
    writer = Writer(cluster, table)
    writer.start()
    cluster.wait_for(lambda: len(writer.acked) > 50, 30, "writer under way")
    killed_at = time.monotonic()
    cluster.kill(old)
    cluster.wait_for(lambda: writer.first_ack_after(killed_at + 0.5), 30, "writes again")
    back = writer.first_ack_after(killed_at + 0.5)
    assert back is not None
    time.sleep(1)  # a few more writes on the new primary
    writer.stop()
    return old, writer, back - killed_at


# --- configuration, no servers ----------------------------------------------------


def test_patroni_config_keeps_the_engine_settings() -> None:
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    try:
        provider.place("n0", set(), 1)
        runner = provider.runner("n0")
        ctx = NodeContext("n0", "15", SIZES["nano"], "127.0.0.1", 5432,
                          Credentials("hoard", "pw-service"), Credentials("admin", "pw-admin"),
                          {"max_connections": 10, "work_mem": 8192})
        api = free_port("127.0.0.1")  # nothing listens: Patroni "is not running"
        topo = Topology("c1", (Member("n0", 0, "127.0.0.1", 5432, {"patroni": api}),),
                        "sync", EtcdDcs("http://127.0.0.1:2379"))
        with pytest.raises(ValueError, match="CA certificate"):
            ENGINE.configure_member(ctx, topo, runner)
        ENGINE.install_tls(runner, b"cert", b"key", b"ca")
        ENGINE.configure_member(ctx, topo, runner)
        config = json.loads(Path(runner.abspath(PurePosixPath("patroni/patroni.yml"))).read_text())
        local = config["postgresql"]["parameters"]
        dcs = config["bootstrap"]["dcs"]
        # The engine's own settings reach PostgreSQL through Patroni.
        assert local["ssl"] == "on" and local["work_mem"] == "8192kB"
        assert "archive" in local["archive_command"] and local["unix_socket_directories"] == ""
        assert "listen_addresses" not in local and "max_connections" not in local
        assert dcs["postgresql"]["parameters"]["max_connections"] == "25"  # Patroni's minimum
        assert dcs["postgresql"]["parameters"]["wal_level"] == "replica"
        assert dcs["synchronous_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True
        assert LOOP_WAIT + 2 * RETRY_TIMEOUT <= TTL == dcs["ttl"]
        assert config["scope"] == "c1" and config["namespace"] == "/hoard/"
        assert config["name"] == "n0" and config["etcd3"]["url"] == "http://127.0.0.1:2379"
        assert config["restapi"]["listen"] == f"127.0.0.1:{api}"
        assert config["restapi"]["authentication"]["username"] == "hoard"
        auth = config["postgresql"]["authentication"]["replication"]
        assert (auth["sslmode"], auth["channel_binding"]) == ("verify-full", "require")
        assert auth["sslrootcert"].endswith("tls/ca.crt")
        ENGINE.configure_member(ctx, replace(topo, durability="async"), runner)
        # A founder must have its data, and any restore finished.
        with pytest.raises(ValueError, match="no data"):
            ENGINE.prepare_member(ctx, topo, runner, founder=True)
        runner.write_file(PurePosixPath("data/PG_VERSION"), b"15\n")
        runner.write_file(PurePosixPath("data/recovery.signal"), b"")
        with pytest.raises(ValueError, match="recovery is not finished"):
            ENGINE.prepare_member(ctx, topo, runner, founder=True)
        config = json.loads(Path(runner.abspath(PurePosixPath("patroni/patroni.yml"))).read_text())
        assert config["bootstrap"]["dcs"]["synchronous_mode"] is False
        assert ENGINE.role_check(topo, ctx.service, "") == HttpRoleCheck(
            "patroni", "/primary", "/replica", tls=True)
        # A clone cut short (no pg_control yet) is thrown away while Patroni is down.
        runner.remove_tree(PurePosixPath("data/recovery.signal"))
        [spec] = ENGINE.member_processes(ctx, topo, runner)
        assert spec.name == "server" and spec.argv[0] == "/usr/bin/patroni"
        assert not runner.exists(PurePosixPath("data"))
    finally:
        provider.destroy("n0")
        remove_state_dir(root)

# --- a three-member asynchronous cluster ------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[HaCluster]:
    with running_cluster(ENGINE, nodes=3) as running:
        yield running


def test_cluster_forms_with_streaming_replicas(cluster: HaCluster) -> None:
    primary = cluster.wait_for(lambda: _one_primary(cluster), 30, "one primary")
    assert primary == cluster.ctxs[0].node_id  # the founder keeps its data and leads
    states = cluster.states()
    replicas = [s for s in states if s.role == "replica"]
    assert len(replicas) == 2 and all(s.healthy for s in states)
    assert all(s.lag_bytes is not None and "streaming from" in s.detail for s in replicas)


def test_write_on_primary_shows_on_replicas(cluster: HaCluster) -> None:
    primary = cluster.ctx(cluster.primary() or "")
    with _connect(cluster, primary) as conn:
        conn.execute("CREATE TABLE seen (id int PRIMARY KEY)")
        conn.execute("INSERT INTO seen SELECT generate_series(1, 100)")
    replicas = [c for c in cluster.ctxs if c is not primary]
    cluster.wait_for(lambda: all(len(_ids(cluster, c, "seen")) == 100 for c in replicas), 10,
                     "rows on the replicas")
    cluster.wait_for(lambda: all(s.lag_bytes == 0 for s in cluster.states()), 10, "no lag")


def test_switchover_to_a_chosen_member(cluster: HaCluster) -> None:
    old = cluster.primary()
    target = next(c.node_id for c in cluster.ctxs if c.node_id != old)
    cluster.ha.switchover(cluster.ctxs, cluster.topo, cluster.ca_file, target)
    assert _in_recovery(cluster, cluster.ctx(target)) is False
    with _connect(cluster, cluster.ctx(target)) as conn:
        conn.execute("INSERT INTO seen VALUES (101)")
    # The old primary follows the new one.
    cluster.wait_for(lambda: _one_primary(cluster) == target and all(
        s.healthy for s in cluster.states()), 30, "old primary rejoined as a replica")
    cluster.wait_for(lambda: 101 in _ids(cluster, cluster.ctx(old or ""), "seen"), 10,
                     "write on the old primary")


def test_failover_after_kill_then_rejoin(cluster: HaCluster) -> None:
    old, _, seconds = _kill_primary_under_writer(cluster, "async_writes")
    print(f"async failover: writes succeeded again {seconds:.1f}s after the kill")
    assert seconds < FAILOVER_LIMIT
    new = _one_primary(cluster)
    assert new is not None and new != old
    # The killed member, started again, rewinds onto the new timeline and follows;
    # no server but the new primary takes writes at any moment meanwhile.
    writable: list[list[str]] = []
    halt = threading.Event()

    def sample() -> None:
        while not halt.is_set():
            writable.append([c.node_id for c in cluster.ctxs if _in_recovery(cluster, c) is False])
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cluster.restart(old)
    cluster.wait_for(lambda: _one_primary(cluster) == new and all(
        s.healthy for s in cluster.states()), 60, "killed member rejoined")
    halt.set()
    sampler.join(10)
    assert writable and all(w == [new] for w in writable), writable
    on_primary = _ids(cluster, cluster.ctx(new), "async_writes")
    cluster.wait_for(lambda: _ids(cluster, cluster.ctx(old), "async_writes") == on_primary,
                     20, "rejoined member caught up")


def _sync_standbys(cluster: HaCluster) -> list[str]:
    return [s.node_id for s in cluster.states() if s.detail.startswith("synchronous")]


def test_durability_changes_while_running(cluster: HaCluster) -> None:
    sync_topo = replace(cluster.topo, durability="sync")
    for ctx in cluster.ctxs:
        ENGINE.configure_member(ctx, sync_topo, cluster.provider.runner(ctx.node_id))
    cluster.wait_for(lambda: len(_sync_standbys(cluster)) == 1, 20, "a synchronous standby")
    # Patroni switches over only to a synchronous standby; any replica can be chosen.
    primary, standby = cluster.primary(), _sync_standbys(cluster)[0]
    target = next(c.node_id for c in cluster.ctxs if c.node_id not in (primary, standby))
    cluster.ha.switchover(cluster.ctxs, sync_topo, cluster.ca_file, target)
    assert cluster.primary() == target
    cluster.wait_for(lambda: len(_sync_standbys(cluster)) == 1 and all(
        s.healthy for s in cluster.states()), 30, "one synchronous standby again")
    for ctx in cluster.ctxs:
        ENGINE.configure_member(ctx, cluster.topo, cluster.provider.runner(ctx.node_id))
    cluster.wait_for(lambda: not _sync_standbys(cluster) and all(
        s.healthy for s in cluster.states()), 20, "asynchronous again")


def test_remove_primary_then_detach_it(cluster: HaCluster) -> None:
    leaving = cluster.wait_for(lambda: _one_primary(cluster), 30, "one primary")
    assert isinstance(leaving, str)
    cluster.ha.remove_member(cluster.ctxs, cluster.topo, cluster.ca_file, leaving)
    assert cluster.primary() != leaving
    cluster.wait_for(lambda: _in_recovery(cluster, cluster.ctx(leaving)), 30,
                     "the leaving member follows the new primary")
    cluster.provider.stop(leaving)
    # The two that stay form a healthy cluster on their own.
    stay = [c for c in cluster.ctxs if c.node_id != leaving]
    cluster.topo = replace(cluster.topo, members=tuple(
        m for m in cluster.topo.members if m.node_id != leaving))
    gone = cluster.ctx(leaving)
    cluster.ctxs = stay
    cluster.wait_for(lambda: _one_primary(cluster) and all(
        s.healthy for s in cluster.states()), 30, "smaller cluster healthy")
    primary = cluster.ctx(cluster.primary() or "")
    with _connect(cluster, primary) as conn:
        conn.execute("INSERT INTO seen VALUES (102)")
    expected = _ids(cluster, primary, "seen") - {102}

    # The stopped member becomes a standalone node with its data, on a new timeline.
    runner = cluster.provider.runner(leaving)
    cluster.ha.detach(gone, runner)
    ENGINE.configure(gone, runner)
    cluster.provider.start_process(leaving, ENGINE.process(gone, runner))
    # No connection before the promotion: once healthy, it takes writes.
    cluster.wait_for(lambda: ENGINE.health(gone, cluster.ca_file, 2).ok, 30, "standalone up")
    with _connect(cluster, gone) as conn:
        conn.execute("INSERT INTO seen VALUES (1000)")
        timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    assert _ids(cluster, gone, "seen") == expected | {1000}
    with _connect(cluster, primary) as conn:
        cluster_tl = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    assert timeline and cluster_tl and timeline[0] > 1
    assert 1000 not in _ids(cluster, primary, "seen")  # it follows nobody, nobody follows it
    cluster.provider.stop(leaving)
    # It can found a cluster of its own later: what the promotion left is cleared.
    ENGINE.prepare_member(gone, cluster.topo, runner, founder=True)
    assert not runner.exists(PurePosixPath("recovery"))


# --- synchronous replication --------------------------------------------------------


def test_sync_failover_loses_no_acknowledged_write() -> None:
    with running_cluster(ENGINE, nodes=3, durability="sync") as sync:
        sync.wait_for(lambda: any(s.detail.startswith("synchronous") and s.healthy
                                  for s in sync.states()), 30, "a synchronous standby")
        old, writer, seconds = _kill_primary_under_writer(sync, "sync_writes")
        print(f"sync failover: writes succeeded again {seconds:.1f}s after the kill")
        assert seconds < FAILOVER_LIMIT
        new = sync.wait_for(lambda: _one_primary(sync), 30, "one primary")
        assert isinstance(new, str) and new != old
        acked = {n for n, _ in writer.acked}
        assert acked <= _ids(sync, sync.ctx(new), "sync_writes")
        sync.restart(old)
        sync.wait_for(lambda: _one_primary(sync) == new and all(
            s.healthy for s in sync.states()), 60, "killed member rejoined")
        sync.wait_for(lambda: acked <= _ids(sync, sync.ctx(old), "sync_writes"), 20,
                      "rejoined member caught up")


def test_patroni_config_on_the_kubernetes_dcs() -> None:
    """With the Kubernetes provider's DCS, Patroni's configuration has a
    ``kubernetes`` section (no ``etcd3``): its namespace at the top level (Patroni
    hands that one to the DCS), Hoard's labels, the role label and values the
    endpoint Services select, Endpoints with the PostgreSQL port; the member is
    named after its pod, and its address comes from the pod's environment."""
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    dcs = KubernetesDcs(namespace="hoard-databases",
                        labels=(("app.kubernetes.io/managed-by", "hoard"),),
                        scope_label="hoard.dev/cluster", role_label="hoard.dev/role",
                        member_format="hoard-{node_id}-0")
    try:
        provider.place("n0", set(), 1)
        runner = provider.runner("n0")
        ctx = NodeContext("n0", "15", SIZES["nano"], "hoard-n0.hoard-databases.svc", 10000,
                          Credentials("hoard", "pw-service"), Credentials("admin", "pw-admin"))
        api = free_port("127.0.0.1")
        topo = Topology("c1", (Member("n0", 0, "127.0.0.1", 10000, {"patroni": api}),),
                        "async", dcs)
        ENGINE.install_tls(runner, b"cert", b"key", b"ca")
        ENGINE.configure_member(ctx, topo, runner)
        text = Path(runner.abspath(PurePosixPath("patroni/patroni.yml"))).read_text()
        config = yaml.safe_load(text)  # what Patroni reads
        assert "etcd3" not in config
        assert config["namespace"] == "hoard-databases" and config["scope"] == "c1"
        assert config["name"] == "hoard-n0-0"
        assert config["kubernetes"] == {
            "labels": {"app.kubernetes.io/managed-by": "hoard"},
            "scope_label": "hoard.dev/cluster", "role_label": "hoard.dev/role",
            "leader_label_value": "primary", "follower_label_value": "replica",
            "use_endpoints": True, "bypass_api_service": False,
            "ports": [{"name": "postgresql", "port": 10000}]}
        [spec] = ENGINE.member_processes(ctx, topo, runner)
        assert spec.env == {"PATRONI_KUBERNETES_POD_IP": "$(POD_IP)"}
        assert dcs.node_id("hoard-n0-0") == "n0" and dcs.node_id("other") == "other"
    finally:
        provider.destroy("n0")
        remove_state_dir(root)
