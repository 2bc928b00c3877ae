"""Where each engine's HA machinery listens and what address it announces to its
peers: a local member listens on its own address and announces it
(the configuration is what it always was); a member placed by the Kubernetes
provider (on kmock's emulator) listens on its pod's interfaces and announces
its per-node Service name, which exposes every HA port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from hoard.domain.catalog import SIZES
from hoard.domain.dcs import Dcs, EtcdDcs
from hoard.domain.nodes import NodeRunner
from hoard.engines.base import Credentials, Member, NodeContext, Topology
from hoard.engines.mariadb import MariaDB
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis
from hoard.engines.redis.sentinel import CONF as REDIS_CONF
from hoard.engines.redis.sentinel import SENTINEL_CONF
from hoard.providers.base import Provider
from hoard.providers.kubernetes import names, render
from hoard.providers.kubernetes.provider import KubernetesProvider
from hoard.providers.local import LocalProvider
from hoard.providers.processes import free_port
from tests.conftest import make_state_dir, remove_state_dir
from tests.kube_support import NAMESPACE, MockApi, api, node_spec, provider, strictly_valid

__all__ = ["api", "provider"]  # the emulator and provider fixtures

CLUSTER = "0190a3b4-0000-7000-8000-0000000000d4"
NODES = [f"0190a3b4-0000-7000-8000-00000000004{i}" for i in range(3)]
GALERA_CONF = PurePosixPath("conf/my.cnf")


@pytest.fixture()
def files() -> Iterator[NodeRunner]:
    """A real node directory (the local provider's runner) to render the first
    member's files into, whichever provider placed the members."""
    root = make_state_dir()
    local = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    local.place("files", set(), 1)
    try:
        yield local.runner("files")
    finally:
        local.destroy("files")
        remove_state_dir(root)


def members(provider: Provider, ha_ports: tuple[str, ...]
            ) -> tuple[tuple[Member, ...], NodeContext]:
    """Three members as ``provider`` places them, and the first one's context with
    the listen address the workflows give it (``provider.listen_host``)."""
    taken: set[int] = set()
    placed = []
    for i, node in enumerate(NODES):
        p = provider.place(node, taken, 10, ha_ports)
        taken |= {p.port, *p.ports.values()}
        placed.append(Member(node, i, p.host, p.port, p.ports))
    first = placed[0]
    ctx = NodeContext(NODES[0], "15", SIZES["nano"], first.host, first.port,
                      Credentials("hoard", "pw-service"), Credentials("admin", "pw-admin"),
                      listen=provider.listen_host(first.host))
    return tuple(placed), ctx


def patroni(ctx: NodeContext, topo: Topology, runner: NodeRunner) -> dict[str, Any]:
    config = PostgreSQL().patroni_config(ctx, topo, runner)
    return {"restapi": {k: config["restapi"][k] for k in ("listen", "connect_address")},
            "postgresql": {k: config["postgresql"][k] for k in ("listen", "connect_address")}}


def redis_lines(ctx: NodeContext, topo: Topology, runner: NodeRunner) -> tuple[list[str],
                                                                            list[str]]:
    """The server's and the sentinel's lines about addresses, as ``configure_member``
    writes them (its files; the live CONFIG SET needs running processes)."""
    engine = Redis()
    engine.install_tls(runner, b"cert", b"key", b"ca")
    engine._write_server_conf(ctx, topo, runner, None)
    engine._write_sentinel_conf(ctx, topo, runner, None)
    keys = ("bind ", "replica-announce-ip ", "replica-announce-port ", "tls-port ",
            "replicaof ", "sentinel announce", "sentinel resolve", "sentinel monitor ",
            "port ")
    return ([ln for ln in _text(runner, REDIS_CONF).splitlines() if ln.startswith(keys)],
            [ln for ln in _text(runner, SENTINEL_CONF).splitlines() if ln.startswith(keys)])


def galera(ctx: NodeContext, topo: Topology, runner: NodeRunner) -> tuple[list[str],
                                                                         dict[str, str]]:
    """The member's network settings and Galera's provider options, as written."""
    engine = MariaDB()
    engine.install_tls(runner, b"cert", b"key", b"ca")
    engine.configure_member(replace(ctx, version="10.11"), topo, runner)
    lines = _text(runner, GALERA_CONF).splitlines()
    keys = ("bind-address", "wsrep_cluster_address", "wsrep_node_address",
            "wsrep_node_incoming_address", "wsrep_sst_receive_address")
    [options] = [ln for ln in lines if ln.startswith("wsrep_provider_options")]
    pairs = options.split(" = ", 1)[1].strip('"').split(";")
    network = {k: v for k, v in (p.split("=", 1) for p in pairs)
               if k.startswith(("gmcast.", "ist."))}
    return [ln for ln in lines if ln.startswith(keys)], network


def _text(runner: NodeRunner, path: PurePosixPath) -> str:
    return Path(runner.abspath(path)).read_text()


def _topo(placed: tuple[Member, ...], dcs: Dcs | None, durability: str) -> Topology:
    return Topology(CLUSTER, placed, durability, dcs)


# --- local: each member on its own loopback address, as always -----------------


def test_local_members_listen_where_they_announce(files: NodeRunner) -> None:
    root = make_state_dir()
    local = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    try:
        pg, ctx = members(local, PostgreSQL.ha_ports)
        a, b, c = pg
        assert ctx.listen == ctx.host == a.host  # the local provider's listen_host
        topo = _topo(pg, EtcdDcs(f"http://127.0.0.1:{free_port('127.0.0.1')}"), "async")
        api = f"{a.host}:{a.ports['patroni']}"
        assert patroni(ctx, topo, files) == {
            "restapi": {"listen": api, "connect_address": api},
            "postgresql": {"listen": f"{a.host}:{a.port}",
                           "connect_address": f"{a.host}:{a.port}"}}
        # The same with no listen address given: NodeContext.bind is the host.
        assert (PostgreSQL().patroni_config(replace(ctx, listen=""), topo, files)
                == PostgreSQL().patroni_config(ctx, topo, files))
        for node in NODES:
            local.destroy(node)

        rd, ctx = members(local, Redis.ha_ports)
        a, b, c = rd
        topo = _topo(rd, None, "async")
        server, sentinel = redis_lines(ctx, topo, files)
        assert server == [f"bind {a.host}", "port 0", f"tls-port {a.port}",
                          f"replica-announce-ip {a.host}", f"replica-announce-port {a.port}"]
        assert sentinel == [
            "port 0", f"tls-port {a.ports['sentinel']}", f"bind {a.host}",
            f"sentinel announce-ip {a.host}",
            f"sentinel announce-port {a.ports['sentinel']}", "sentinel resolve-hostnames no",
            f"sentinel monitor hoard-{CLUSTER} {a.host} {a.port} 2"]
        before = _text(files, SENTINEL_CONF), _text(files, REDIS_CONF)
        redis_lines(replace(ctx, listen=""), topo, files)
        assert (_text(files, SENTINEL_CONF), _text(files, REDIS_CONF)) == before
        for node in NODES:
            local.destroy(node)

        gl, ctx = members(local, MariaDB.ha_ports)
        a, b, c = gl
        topo = _topo(gl, None, "sync")
        lines, network = galera(ctx, topo, files)
        assert lines == [
            f"bind-address = {a.host}",
            f'wsrep_cluster_address = "gcomm://{a.host}:{a.ports["galera"]},'
            f'{b.host}:{b.ports["galera"]},{c.host}:{c.ports["galera"]}"',
            f'wsrep_node_address = "{a.host}:{a.ports["galera"]}"',
            f'wsrep_node_incoming_address = "{a.host}:{a.port}"',
            f'wsrep_sst_receive_address = "{a.host}:{a.ports["sst"]}"']
        assert network == {"gmcast.listen_addr": f"tcp://{a.host}:{a.ports['galera']}",
                           "ist.recv_addr": f"{a.host}:{a.ports['ist']}"}
        before_text = _text(files, GALERA_CONF)
        galera(replace(ctx, listen=""), topo, files)
        assert _text(files, GALERA_CONF) == before_text
    finally:
        for node in NODES:
            local.destroy(node)
        remove_state_dir(root)


# --- Kubernetes: listen on the pod, announce the per-node Service ----------------


def test_pod_members_listen_on_the_pod_and_announce_their_service(
        api: MockApi, provider: KubernetesProvider, files: NodeRunner) -> None:
    pg, ctx = members(provider, PostgreSQL.ha_ports)
    a, b, c = pg
    assert a.host == f"{names.node_object(NODES[0])}.{NAMESPACE}.svc"
    assert ctx.listen == "0.0.0.0"  # noqa: S104 - what the provider says
    topo = _topo(pg, provider.dcs(), "async")
    assert patroni(ctx, topo, files) == {
        "restapi": {"listen": f"0.0.0.0:{a.ports['patroni']}",
                    "connect_address": f"{a.host}:{a.ports['patroni']}"},
        "postgresql": {"listen": f"0.0.0.0:{a.port}", "connect_address": f"{a.host}:{a.port}"}}

    rd, ctx = members(provider, Redis.ha_ports)
    a, b, c = rd
    server, sentinel = redis_lines(ctx, _topo(rd, None, "async"), files)
    assert server == ["bind 0.0.0.0", "port 0", f"tls-port {a.port}",
                      f"replica-announce-ip {a.host}", f"replica-announce-port {a.port}"]
    assert sentinel == [
        "port 0", f"tls-port {a.ports['sentinel']}", "bind 0.0.0.0",
        f"sentinel announce-ip {a.host}",
        f"sentinel announce-port {a.ports['sentinel']}", "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes", f"sentinel monitor hoard-{CLUSTER} {a.host} {a.port} 2"]

    gl, ctx = members(provider, MariaDB.ha_ports)
    a, b, c = gl
    lines, network = galera(ctx, _topo(gl, None, "sync"), files)
    assert lines == [
        "bind-address = 0.0.0.0",
        f'wsrep_cluster_address = "gcomm://{a.host}:{a.ports["galera"]},'
        f'{b.host}:{b.ports["galera"]},{c.host}:{c.ports["galera"]}"',
        f'wsrep_node_address = "{a.host}:{a.ports["galera"]}"',
        f'wsrep_node_incoming_address = "{a.host}:{a.port}"',
        f'wsrep_sst_receive_address = "{a.host}:{a.ports["sst"]}"']
    assert network == {"gmcast.listen_addr": f"tcp://0.0.0.0:{a.ports['galera']}",
                       "ist.recv_addr": f"{a.host}:{a.ports['ist']}",
                       "ist.recv_bind": f"0.0.0.0:{a.ports['ist']}"}


@pytest.mark.parametrize("engine", ["postgresql", "redis", "mariadb"])
def test_the_node_service_exposes_every_ha_port(
        api: MockApi, provider: KubernetesProvider, engine: str) -> None:
    """Peers reach each other by per-node Service name on every HA port: the
    Service ``place`` makes, and the one ``start`` makes sure of, name each one
    and send it to the pod's port of that name; the pod declares them all."""
    ha_ports = {"postgresql": PostgreSQL.ha_ports, "redis": Redis.ha_ports,
                "mariadb": MariaDB.ha_ports}[engine]
    placed = provider.place(NODES[0], set(), 10, ha_ports)
    expected = sorted([{"name": n, "port": p, "targetPort": n, "protocol": "TCP"}
                       for n, p in {"client": placed.port, **placed.ports}.items()],
                      key=lambda port: str(port["name"]))
    service = api.objects("services")[names.node_object(NODES[0])]
    assert service["spec"]["ports"] == expected
    spec = node_spec(engine, NODES[0], CLUSTER, members=3)
    assert dict(spec.ports) == {"client": placed.port, **placed.ports}
    provider.start(NODES[0], spec)
    service = api.objects("services")[names.node_object(NODES[0])]
    assert service["spec"]["ports"] == expected
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod = api.objects("statefulsets")[names.node_object(NODES[0])]["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"] == [
        {"name": p["name"], "containerPort": p["port"], "protocol": "TCP"} for p in expected]
    for manifest in render.node_objects(NODES[0], spec, NAMESPACE, None, None,
                                        provider.control_plane):
        strictly_valid(manifest)
