"""Run a replicated cluster of any engine directly on the local provider, without
the API: for engine-level tests of the HA machinery (forming, switchover,
failover, rejoin, detach) and of the endpoint proxy in front of it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hoard.domain.catalog import SIZES
from hoard.domain.dcs import Dcs
from hoard.domain.nodes import Backend, ProcessSpec
from hoard.domain.placement import Host
from hoard.engines.base import (
    Credentials,
    Engine,
    Member,
    MemberState,
    NodeContext,
    Replication,
    Topology,
)
from hoard.providers.base import Endpoint
from hoard.providers.local import LocalProvider
from hoard.providers.processes import free_port
from hoard.security.ca import CertificateAuthority
from hoard.security.secrets import generate_password
from tests.conftest import make_state_dir, remove_state_dir
from tests.serverlogs import print_logs

FORM_TIMEOUT = 120.0


@dataclass
class HaCluster:
    engine: Engine
    provider: LocalProvider
    ca: CertificateAuthority
    topo: Topology
    ctxs: list[NodeContext]
    # What runs a member's declared process here (e.g. a pod's image paths
    # and downward-API variables made local); None: as declared.
    adapt: Callable[[NodeContext, ProcessSpec], ProcessSpec] | None = None
    _endpoint: Endpoint | None = field(default=None)

    @property
    def ca_file(self) -> str:
        return str(self.ca.cert_path)

    @property
    def ha(self) -> Replication:
        assert isinstance(self.engine, Replication)
        return self.engine

    def ctx(self, node_id: str) -> NodeContext:
        return next(c for c in self.ctxs if c.node_id == node_id)

    def states(self) -> list[MemberState]:
        return self.ha.member_states(self.ctxs, self.topo, self.ca_file)

    def primary(self) -> str | None:
        """The one primary's node id, or None while there is none (or several)."""
        primaries = [s.node_id for s in self.states() if s.role == "primary" and s.healthy]
        return primaries[0] if len(primaries) == 1 else None

    def wait_for(self, predicate: Callable[[], object], timeout: float = 60.0,
                 what: str = "condition") -> object:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = predicate()
            except Exception as exc:  # a member may be down mid-check
                result, last = None, repr(exc)
            else:
                last = repr(result)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not met after {timeout:.0f}s; last: {last}; "
                                   f"states: {self._safe_states()}")
            time.sleep(0.1)

    def _safe_states(self) -> object:
        try:
            return self.states()
        except Exception as exc:
            return repr(exc)

    def wait_formed(self, timeout: float = FORM_TIMEOUT) -> None:
        """Until every member is healthy and exactly one is primary (multi-primary
        engines: every member reports primary)."""
        def formed() -> bool:
            states = self.states()
            return all(s.healthy for s in states) and any(s.role == "primary" for s in states)
        self.wait_for(formed, timeout, "cluster formed")

    def start_member(self, node_id: str) -> None:
        ctx = self.ctx(node_id)
        runner = self.provider.runner(node_id)
        for spec in self.ha.member_processes(ctx, self.topo, runner):
            self.provider.start_process(node_id, self.adapt(ctx, spec) if self.adapt else spec)

    def wait_joined(self, node_id: str) -> None:
        """Until the member is healthy, started again if it exits meanwhile (a
        Galera joiner whose state transfer failed does), as Hoard's workflows do."""
        def joined() -> bool:
            if not self.provider.is_running(node_id):
                self.start_member(node_id)
            return any(s.node_id == node_id and s.healthy for s in self.states())

        self.wait_for(joined, FORM_TIMEOUT, f"member {self.topo.member(node_id).ordinal} joined")

    def kill(self, node_id: str) -> None:
        """kill -9 every process of the member: a host failure."""
        self.provider.kill(node_id)

    def restart(self, node_id: str) -> None:
        """Start the member's processes again, as Hoard's observer would."""
        self.start_member(node_id)

    def endpoint(self) -> tuple[str, int, int]:
        """(host, read-write port, read-only port) of an HAProxy in front."""
        backends = [Backend(m.node_id, m.host, m.port, dict(m.ports)) for m in self.topo.members]
        check = self.ha.role_check(self.topo, self.ctxs[0].service, self.ca_file)
        if self._endpoint is None:  # kept for the cluster's life, as Hoard keeps it
            # On the host the certificates name; Hoard's own addresses are tested
            # through the API (tests/test_addresses.py).
            taken = {m.port for m in self.topo.members}
            rw = next(p for p in iter(lambda: free_port("127.0.0.1"), 0) if p not in taken)
            ro = next(p for p in iter(lambda: free_port("127.0.0.1"), 0)
                      if p not in taken | {rw})
            self._endpoint = Endpoint("127.0.0.1", rw, "127.0.0.1", ro)
        self.provider.ensure_endpoint(self.topo.cluster_id, backends, check, self.ca_file,
                                      self._endpoint)
        return self._endpoint.rw_host, self._endpoint.rw_port, self._endpoint.ro_port


@contextmanager
def running_cluster(engine: Engine, nodes: int = 3, durability: str = "async",
                    size: str = "nano", storage_gb: int = 1,
                    hosts: list[Host] | None = None, named: str = "",
                    dcs: Dcs | None = None, ids: tuple[str, list[str]] | None = None,
                    adapt: Callable[[NodeContext, ProcessSpec], ProcessSpec] | None = None,
                    ) -> Iterator[HaCluster]:
    """Form a ``nodes``-member cluster (founder first, then the others join) and
    wait until it is healthy; destroy everything afterwards. ``named``: every
    member's address is that name (one resolving to the members' placed
    address) and it listens on its placed address, as a member in a pod
    announces its Service's name and listens on the pod's interfaces.
    ``dcs`` (default: the local provider's etcd), ``ids`` (the cluster's and
    its nodes' ids) and ``adapt`` (``HaCluster.adapt``) run the machinery as
    another provider would configure it."""
    assert isinstance(engine, Replication)
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", hosts=hosts)
    ca = CertificateAuthority(root / "ca")
    cluster_id, node_ids = ids or ("c-" + secrets.token_hex(6),
                                   [f"n{i}-" + secrets.token_hex(4) for i in range(nodes)])
    service = Credentials("hoard", generate_password())
    admin = Credentials("admin", generate_password())
    try:
        members, ctxs, taken = [], [], set()
        placed: list[Host] = []
        for i, node_id in enumerate(node_ids):
            p = provider.place(node_id, taken, storage_gb, engine.ha_ports, placed)
            taken |= {p.port, *p.ports.values()}
            placed.append(Host(p.host, p.zone))
            provider.apply_limits(node_id, SIZES[size], storage_gb)
            host = named or p.host
            members.append(Member(node_id, i, host, p.port, p.ports, p.zone))
            ctxs.append(NodeContext(node_id=node_id, version=engine.installed_versions()[0],
                                    size=SIZES[size], host=host, port=p.port,
                                    service=service, admin=admin,
                                    listen=p.host if named else ""))
        if dcs is None and engine.needs_dcs:
            dcs = provider.dcs()
        topo = Topology(cluster_id, tuple(members), durability, dcs)
        cluster = HaCluster(engine, provider, ca, topo, ctxs, adapt)
        for i, ctx in enumerate(ctxs):
            runner = provider.runner(ctx.node_id)
            if i == 0:
                engine.bootstrap(ctx, runner)
            cert = ca.issue_server_cert(ctx.node_id, [ctx.host, "127.0.0.1", "localhost"])
            engine.install_tls(runner, cert.cert_pem, cert.key_pem, ca.cert_pem)
            engine.prepare_member(ctx, topo, runner, founder=i == 0)
            engine.configure_member(ctx, topo, runner)
            cluster.start_member(ctx.node_id)
            if i == 0:
                # The primary, not just up: an HA agent may start the founder as a
                # replica and promote it a moment later (Patroni adopting its data).
                cluster.wait_for(lambda c=ctx: engine.health(c, cluster.ca_file, 2).ok and any(
                    s.node_id == c.node_id and s.role == "primary" and s.healthy
                    for s in cluster.states()), FORM_TIMEOUT, "founder healthy as the primary")
                engine.initialize(ctx, cluster.ca_file)
            elif engine.serial_joins:  # each joiner healthy before the next starts
                cluster.wait_joined(ctx.node_id)
        cluster.wait_formed()
        yield cluster
    except BaseException:
        print_logs(root)
        raise
    finally:
        provider.remove_endpoint(cluster_id)
        for node_id in node_ids:
            provider.destroy(node_id)
        provider.etcd.stop()
        remove_state_dir(root)
