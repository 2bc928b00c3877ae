"""Replicated clusters whose members announce a name and listen elsewhere, run
for real on the local provider: every member's address is a name resolving to
the loopback address the members are placed on (this machine's host name:
not ``localhost``, which MariaDB's clients take for the Unix socket) and it
listens on its placed address (``NodeContext.listen``), the shape a member in
a pod has (its per-node Service's name; the pod's interfaces). Sentinel
resolves and announces names, Galera binds IST apart from the address it
announces, Patroni listens apart from its connect address; each cluster forms,
fails over after a kill -9 and takes the killed member back."""

from __future__ import annotations

import socket
from pathlib import PurePosixPath

import pymysql
import pytest
import redis

from hoard.engines.mariadb import MariaDB
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis
from hoard.engines.redis.sentinel import SENTINEL_CONF, master_name
from tests.ha_harness import HaCluster, running_cluster

PLACED = "127.0.0.1"  # where the local provider places nodes by default


def _name() -> str:
    """A name other than ``localhost`` that resolves to ``PLACED`` alone."""
    name = socket.gethostname()
    try:
        found = {a[4][0] for a in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except OSError:
        found = set()
    if name == "localhost" or found != {PLACED}:
        pytest.skip(f"this machine's name {name!r} resolves to {sorted(found)}, "
                    f"not to {PLACED} alone")
    return name


def _formed(c: HaCluster, timeout: float = 60) -> str:
    """Until every member is healthy with one primary; its node id."""
    def one() -> str | None:
        states = c.states()
        primaries = [s.node_id for s in states if s.role == "primary"]
        return primaries[0] if all(s.healthy for s in states) and len(primaries) == 1 \
            else None
    found = c.wait_for(one, timeout, "formed with one primary")
    assert isinstance(found, str)
    return found


def test_sentinel_members_announce_names_and_fail_over() -> None:
    name = _name()
    with running_cluster(Redis(), nodes=3, named=name) as c:
        assert {m.host for m in c.topo.members} == {name}
        assert {ctx.listen for ctx in c.ctxs} == {PLACED}
        old = _formed(c)
        master = master_name(c.topo)

        def known(node_id: str) -> set[str]:
            """The peers a sentinel's file says it found: their names and ports."""
            text = b"".join(c.provider.runner(node_id).read_stream(SENTINEL_CONF)).decode()
            assert f"bind {PLACED}\n" in text
            assert f'sentinel announce-ip "{name}"\n' in text  # as Sentinel rewrites it
            assert "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n" in text
            return {" ".join(ln.split()[3:5]) for ln in text.splitlines()
                    if ln.startswith(f"sentinel known-sentinel {master} ")}

        c.wait_for(lambda: known(old) == {f"{name} {m.ports['sentinel']}"
                                          for m in c.topo.members if m.node_id != old},
                   30, "the sentinels found each other by name")

        def asked(node_id: str) -> list[str]:
            m, ctx = c.topo.member(node_id), c.ctx(node_id)
            with redis.Redis(host=m.host, port=m.ports["sentinel"], ssl=True,
                             ssl_ca_certs=c.ca_file, username=ctx.service.user,
                             password=ctx.service.password, socket_timeout=2,
                             decode_responses=True) as conn:
                return list(conn.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                 master_name(c.topo)))

        # Every sentinel reports the primary by its name, not an IP address.
        assert {tuple(asked(m.node_id)) for m in c.topo.members} == {
            (name, str(c.topo.member(old).port))}
        c.kill(old)
        new = c.wait_for(lambda: (p := c.primary()) not in (None, old) and p, 30,
                         "a new primary")
        assert isinstance(new, str)
        c.restart(old)
        assert _formed(c) == new
        others = [m.node_id for m in c.topo.members if m.node_id != old]
        assert {tuple(asked(n)) for n in others} == {(name, str(c.topo.member(new).port))}


def test_galera_members_bind_apart_and_rejoin() -> None:
    name = _name()
    with running_cluster(MariaDB(), nodes=3, durability="sync", named=name) as c:
        _formed_galera(c)
        ctx = c.ctxs[1]
        conf = b"".join(c.provider.runner(ctx.node_id).read_stream(
            PurePosixPath("conf/my.cnf"))).decode()
        galera = c.topo.member(ctx.node_id).ports
        assert f"gmcast.listen_addr=tcp://{PLACED}:{galera['galera']};" in conf
        assert (f"ist.recv_addr={name}:{galera['ist']};"
                f"ist.recv_bind={PLACED}:{galera['ist']};") in conf
        assert f'wsrep_node_address = "{name}:{galera["galera"]}"' in conf
        c.kill(ctx.node_id)
        c.wait_for(lambda: _size(c, c.ctxs[0].node_id) == 2, 30, "the cluster without it")
        c.restart(ctx.node_id)
        c.wait_joined(ctx.node_id)
        _formed_galera(c)
        assert _size(c, ctx.node_id) == 3
        # It caught up by IST, received where it bound, sent where it announced.
        log = b"".join(c.provider.runner(ctx.node_id).read_stream(
            PurePosixPath("log/server.log"))).decode(errors="replace")
        assert f"IST receiver bind using ssl://{PLACED}:{galera['ist']}" in log
        assert "IST received" in log


def _formed_galera(c: HaCluster) -> None:
    c.wait_for(lambda: all(s.healthy for s in c.states())
               and all(_size(c, x.node_id) == 3 for x in c.ctxs), 120, "three synced")


def _size(c: HaCluster, node_id: str) -> int:
    ctx = c.ctx(node_id)
    with pymysql.connect(host=ctx.host, port=ctx.port, user=ctx.service.user,
                         password=ctx.service.password, ssl={"ca": c.ca_file},
                         connect_timeout=2) as conn, conn.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'wsrep_cluster_size'")
        row = cur.fetchone()
        return int(row[1]) if row else 0


def test_patroni_members_listen_apart_and_fail_over() -> None:
    name = _name()
    with running_cluster(PostgreSQL(), nodes=3, named=name) as c:
        old = _formed(c)
        c.kill(old)
        new = c.wait_for(lambda: (p := c.primary()) not in (None, old) and p, 60,
                         "a new primary")
        assert isinstance(new, str)
        c.restart(old)
        assert _formed(c, 120) == new
