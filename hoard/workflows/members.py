"""What workflows and the observer do the same way for every node, standalone or
replicated: write its files, start its processes, and (replicated clusters)
ask the engine's HA machinery who is primary and keep the endpoint in front.

A cluster is replicated when it has more than one node or has endpoints (a
cluster shrunk to one node keeps its addresses). Its nodes run the engine's
``Replication`` processes (Patroni, Galera, Sentinel); Hoard never picks a
primary itself, it only reads what the machinery decided.
"""

from __future__ import annotations

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import Backend, NodeSpec, Owner, Resources, Volume
from hoard.engines.base import (
    Engine,
    Member,
    MemberState,
    NodeContext,
    Replication,
    Topology,
)
from hoard.providers.base import Endpoint
from hoard.store import events, models
from hoard.workflows import addresses
from hoard.workflows.services import services
from hoard.workflows.steps import wait_for


def replicated(cluster: models.Cluster) -> bool:
    return cluster.node_count > 1 or cluster.rw_port is not None


def ha_engine(cluster: models.Cluster) -> Replication:
    engine = services().engines[cluster.engine]
    if not isinstance(engine, Replication):
        raise ValueError(f"{engine.display_name} clusters have a single node")
    return engine


def topology(cluster: models.Cluster, nodes: list[models.Node] | None = None) -> Topology:
    """The cluster's shape for its engine: ``nodes`` (default: all) as members."""
    svc = services()
    engine = ha_engine(cluster)
    members = tuple(
        Member(n.id, n.ordinal, n.host or "", n.port or 0, dict(n.ports or {}), n.zone or "")
        for n in (cluster.nodes if nodes is None else nodes))
    dcs = svc.provider_for(cluster).dcs() if engine.needs_dcs else None
    return Topology(cluster.id, members, cluster.durability, dcs)


def configure_node(cluster: models.Cluster, node: models.Node,
                   ctx: NodeContext | None = None, topo: Topology | None = None) -> None:
    """(Re)write the node's configuration files."""
    svc = services()
    ctx = ctx or svc.node_context(cluster, node)
    runner = svc.provider_for(node).runner(node.id)
    if replicated(cluster):
        ha_engine(cluster).configure_member(ctx, topo or topology(cluster), runner)
    else:
        svc.engines[cluster.engine].configure(ctx, runner)


def node_spec(cluster: models.Cluster, node: models.Node, ctx: NodeContext | None = None,
              topo: Topology | None = None, standalone: bool = False) -> NodeSpec:
    """The node as its engine declares it: a member of a replicated cluster runs
    the HA machinery's processes, a standalone node (or a replicated cluster's
    founder before the others join: ``standalone``) the server alone."""
    svc = services()
    engine = svc.engines[cluster.engine]
    ctx = ctx or svc.node_context(cluster, node)
    runner = svc.provider_for(node).runner(node.id)
    if replicated(cluster) and not standalone:
        procs = ha_engine(cluster).member_processes(ctx, topo or topology(cluster), runner)
    else:
        procs = [engine.process(ctx, runner)]
    size = SIZES[cluster.size]
    return NodeSpec(
        engine=cluster.engine, version=cluster.version, image=engine.image(cluster.version),
        processes=tuple(procs), ports={"client": ctx.port, **(node.ports or {})},
        volume=Volume(cluster.storage_gb), resources=Resources(size.cpus, size.memory_mb),
        readiness=engine.readiness(ctx),
        owner=Owner(cluster.project_id, cluster.id, not replicated(cluster)),
        uses_dcs=replicated(cluster) and not standalone and ha_engine(cluster).needs_dcs)


def hold_node(cluster: models.Cluster, node: models.Node) -> None:
    """Once the node is placed, before anything is written through its runner:
    what the runner needs of the node's own (a pod on its volume), where its
    provider needs one; nothing, and no declaration made, where it does not."""
    provider = services().provider_for(node)
    if provider.holds:
        provider.hold(node.id, node_spec(cluster, node, standalone=True))


def held_reason(nodes: list[models.Node]) -> str | None:
    """Why one of ``nodes`` that its provider holds cannot be reached through
    its runner yet, in the provider's words ("node 1: <why>"); None once all can."""
    svc = services()
    for node in nodes:
        provider = svc.provider_for(node)
        why = provider.waiting_for(node.id) if provider.holds else None
        if why is not None:
            return f"node {node.ordinal}: {why}"
    return None


def start_node(cluster: models.Cluster, node: models.Node, ctx: NodeContext | None = None,
               topo: Topology | None = None, standalone: bool = False) -> list[str]:
    """Bring the node to its declared spec: start whichever of its processes is
    not running; their names."""
    spec = node_spec(cluster, node, ctx, topo, standalone)
    return services().provider_for(node).start(node.id, spec)


def node_running(cluster: models.Cluster, node: models.Node) -> bool:
    """Whether all of the node's processes run (without asking the engine)."""
    svc = services()
    names = ["server", *(ha_engine(cluster).sidecars if replicated(cluster) else ())]
    return all(svc.provider_for(node).is_running(node.id, name) for name in names)


def states(cluster: models.Cluster, topo: Topology | None = None) -> list[MemberState]:
    svc = services()
    topo = topo or topology(cluster)
    by_id = {n.id: n for n in cluster.nodes}
    ctxs = [svc.node_context(cluster, by_id[m.node_id]) for m in topo.members]
    return ha_engine(cluster).member_states(ctxs, topo, svc.ca_file)


def wait_primary(cluster: models.Cluster, topo: Topology, node_id: str | None = None) -> None:
    """Until the machinery reports a healthy primary among ``topo``'s members (the
    member ``node_id`` if given), or a TimeoutError. Members that do not answer yet
    (starting, mid-failover) are asked again: the deadline decides."""
    which = (f"node {topo.member(node_id).ordinal} did not become the primary"
             if node_id else "no primary among the nodes")

    def missing() -> str | None:
        try:
            observed = states(cluster, topo)
        except Exception as exc:  # not answering yet; the deadline decides
            return f"the nodes do not answer yet: {exc}"
        if any(o.role == "primary" and o.healthy and node_id in (None, o.node_id)
               for o in observed):
            return None
        return "; ".join(f"node {topo.member(o.node_id).ordinal}: {o.role}"
                         f"{'' if o.healthy else ', ' + o.detail}" for o in observed)

    wait_for(missing, services().provider_for(cluster).deadlines.form, which)


def start_joiners(cluster: models.Cluster, topo: Topology, nodes: list[models.Node]) -> None:
    """Start members that join the running cluster: all at once, or, where the
    machinery asks for it, one at a time, each healthy before the next starts
    (and started again if it exits meanwhile, as a Galera joiner whose state
    transfer failed does)."""
    if not ha_engine(cluster).serial_joins:
        for node in nodes:
            start_node(cluster, node, topo=topo)
        return
    for node in nodes:
        def missing(node: models.Node = node) -> str | None:
            if _healthy(cluster, topo, node.id):
                return None
            if not node_running(cluster, node):
                start_node(cluster, node, topo=topo)
                return f"node {node.ordinal} exited while joining; started again"
            return f"node {node.ordinal} is joining (copying the data)"

        wait_for(missing, services().provider_for(cluster).deadlines.join,
                 f"node {node.ordinal} did not join")


def _healthy(cluster: models.Cluster, topo: Topology, node_id: str) -> bool:
    try:
        return any(o.node_id == node_id and o.healthy for o in states(cluster, topo))
    except Exception:  # not answering yet
        return False


def ensure_endpoint(cluster: models.Cluster, topo: Topology | None = None) -> None:
    """Run (or update) the proxy in front of the cluster's nodes, at the cluster's
    endpoint addresses (given them first if it has none yet)."""
    svc = services()
    topo = topo or topology(cluster)
    engine = ha_engine(cluster)
    backends = [Backend(m.node_id, m.host, m.port, dict(m.ports)) for m in topo.members]
    service = svc.node_context(cluster, cluster.nodes[0]).service
    addresses.ensure_endpoints(cluster)
    assert cluster.endpoint_host and cluster.rw_port and cluster.ro_port
    endpoint = Endpoint(cluster.endpoint_host, cluster.rw_port,
                        cluster.ro_host or cluster.endpoint_host, cluster.ro_port)
    svc.provider_for(cluster).ensure_endpoint(cluster.id, backends,
                                 engine.role_check(topo, service, svc.ca_file), svc.ca_file,
                                 endpoint)


def record_roles(cluster_id: str, observed: list[MemberState]) -> None:
    """Store each node's role and lag as the machinery reports them, and an event
    when the primary moved (a failover or a switchover)."""
    with services().store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        if row is None:
            return
        by_id = {o.node_id: o for o in observed}
        before = [n.ordinal for n in row.nodes if n.role == "primary"]
        for node in row.nodes:
            state = by_id.get(node.id)
            if state is None:
                continue
            # A member not serving keeps its last role, unless another one is primary now.
            someone_else = any(o.role == "primary" and o.node_id != node.id for o in observed)
            role = state.role or ("replica" if someone_else else node.role)
            if (node.role, node.lag_bytes) != (role, state.lag_bytes):
                node.role, node.lag_bytes = role, state.lag_bytes
        after = [n.ordinal for n in row.nodes if n.role == "primary"]
        if before and after and set(before) != set(after):
            events.record(s, cluster_id, "cluster.primary_changed",
                          f"primary moved from node {', '.join(map(str, before))} to node "
                          f"{', '.join(map(str, after))}")
        roles = {n.id: n.role for n in row.nodes if n.role in ("primary", "replica")}
        engine = services().engines[row.engine]
        provider = services().provider_for(row)
    # Machinery that keeps its state in the provider's DCS labels its members there
    # itself (Patroni); for the rest (Sentinel, Galera) the provider is told, and
    # changes only what changed (a no-op where the endpoint asks the nodes).
    if not (isinstance(engine, Replication) and engine.needs_dcs):
        provider.set_roles(cluster_id, roles)


def primary(cluster: models.Cluster) -> tuple[Engine, NodeContext, models.Node]:
    """The engine, context and node of the node that takes writes."""
    node = primary_node(cluster)
    svc = services()
    return svc.engines[cluster.engine], svc.node_context(cluster, node), node


def primary_node(cluster: models.Cluster) -> models.Node:
    """The node that takes writes: for a replicated cluster, as its machinery says
    right now (falling back to the last recorded role while it cannot answer)."""
    if replicated(cluster):
        try:
            live = [s.node_id for s in states(cluster) if s.role == "primary" and s.healthy]
        except Exception:
            live = []
        for node in cluster.nodes:
            if node.id in live:
                return node
    return next(n for n in cluster.nodes if n.role == "primary")
