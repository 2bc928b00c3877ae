"""Create a cluster: an ordered list of idempotent "ensure X" steps.

Each step may run twice (a worker dies after the work but before DBOS records
it), so each checks what already exists before doing anything. When a step
fails, the workflow compensates: every node is destroyed, the cluster is marked
FAILED with the reason, and nothing half-made is left behind.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from dbos import DBOS
from sqlalchemy import select
from sqlalchemy.orm import Session

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import NodeSecrets, Owner
from hoard.domain.placement import Host
from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.engines.base import Backups, IncrementalBackups, NodeContext, Topology
from hoard.providers.base import Deadlines
from hoard.store import models, operations
from hoard.workflows import addresses
from hoard.workflows import pooler as pooler_steps
from hoard.workflows.accounts import make_initial
from hoard.workflows.backups import restore_inputs
from hoard.workflows.ensure import SLICE, NotYet, until_done
from hoard.workflows.gate import gated
from hoard.workflows.members import (
    configure_node,
    ensure_endpoint,
    ha_engine,
    held_reason,
    hold_node,
    primary,
    record_roles,
    replicated,
    start_joiners,
    start_node,
    states,
    topology,
    wait_primary,
)
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason, wait_for

STEPS = ["place nodes", "bootstrap", "start", "create admin account", "activate"]
RESTORE_STEPS = ["place nodes", "restore data", "start", "finish restore",
                 "create admin account", "activate"]
# A replicated cluster is made as a single node first (its founder, node 0: bootstrapped
# or restored exactly as a standalone one), then the others join it.
HA_STEPS = ["form cluster", "open endpoints"]
# How servers say why they stop, most telling first (PostgreSQL's FATAL before the
# HINT that follows it; MariaDB's [ERROR]; Redis's "FATAL CONFIG FILE ERROR").
_COMPLAINTS = (re.compile(r"FATAL|PANIC"), re.compile(r"ERROR"), re.compile(r"[Ee]rror"))


ACCOUNTS_STEP = "create databases and users"
HELD = "address held"  # an ensure-step's memo: the last start found the address taken


def steps_for(replicated: bool, restore: bool, accounts: bool = False,
              pooler: bool = False) -> list[str]:
    """The plan: a replicated cluster forms before it opens; databases and users
    asked for at create are made last, on the formed cluster, then the pooler
    (which lists them), before it is ACTIVE."""
    base = RESTORE_STEPS if restore else STEPS
    extra = [*(HA_STEPS if replicated else []), *([ACCOUNTS_STEP] if accounts else []),
             *([pooler_steps.OPEN] if pooler else [])]
    return [*base[:-1], *extra, base[-1]]


@dataclass(frozen=True)
class Plan:
    """What the create's first step learns, recorded with it: the operation's
    parameters, whether any node was held, the provider's deadlines, and
    whether the step bootstrapped the founder too."""

    params: dict[str, Any]
    held: bool
    deadlines: Deadlines
    bootstrapped: bool = False


@DBOS.step()
def place_nodes(op_id: str, cluster_id: str) -> Plan:
    """Storage, limits and an address for every node. A standalone cluster's one
    node answers at the cluster's own address on the engine's standard port; a
    replicated cluster's nodes get peer addresses, and its endpoints theirs.

    One recorded step with reading the parameters and deadlines, and, where
    nothing is held and nothing restored (bootstrap follows at once), with
    bootstrap: every recorded step costs the workflow store two writes and a
    cluster load, which a burst of creates queues on. Both halves are
    idempotent, so a retried step does both again safely."""
    svc = services()
    with recorded(op_id, "place nodes") as op:
        params = dict(op.params) if op else {}
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        own = _own_addresses(cluster)
        with svc.store.session() as s:
            s.add(cluster)  # as loaded just now (the create holds its lock): not read again
            held = _place(s, cluster, own)
            deadlines = svc.provider_for(cluster).deadlines
    if held or params.get("restore"):
        return Plan(params, held, deadlines)
    _bootstrap(op_id, cluster_id, cluster)  # as placed: nothing changed it since
    return Plan(params, held, deadlines, bootstrapped=True)


@DBOS.step()
def held_ready(op_id: str, cluster_id: str, memo: str = "") -> None:
    """The end of *place nodes* where nodes are held: an ensure-step, "not yet"
    with the provider's reason (no node with room, an image pull backing off)
    until each held node's runner can reach it, so bootstrap never waits there
    unseen, and the create fails at the start deadline naming why."""
    svc = services()
    with recorded(op_id, "place nodes"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        nodes = list(cluster.nodes)
        within = min(SLICE, svc.provider_for(cluster).deadlines.start)
        wait_for(lambda: held_reason(nodes), within, "the placed nodes were not ready",
                 interval=0.2, slowest=2.0, temporary=True)


def _own_addresses(cluster: models.Cluster) -> tuple[str, int] | None:
    """Record the cluster's own addresses; a standalone node's (address, port)."""
    if replicated(cluster):
        addresses.ensure_endpoints(cluster)
        return None
    if any(n.port is not None for n in cluster.nodes):
        return None  # placed already (by a release before clusters had addresses)
    address = addresses.ensure(cluster, (addresses.NODE,))[addresses.NODE]
    return address, services().engines[cluster.engine].standard_port


def _place(s: Session, cluster: models.Cluster, own: tuple[str, int] | None) -> bool:
    """Place and hold every node of ``cluster`` (in ``s``); whether any was held.
    A node given its own address needs no port chosen, so no other node's
    ports are read then (a read of every node in the store)."""
    svc = services()
    taken = ports_taken(s) if own is None else set()
    port_names = ha_engine(cluster).ha_ports if replicated(cluster) else ()
    placed = [Host(n.host, n.zone or "") for n in cluster.nodes if n.host]
    for node in cluster.nodes:
        placement = svc.provider_for(node).place(node.id, taken, cluster.storage_gb,
                                       port_names, placed, own)
        if node.port is None:
            node.host, node.port, node.zone = placement.host, placement.port, placement.zone
            node.ports = placement.ports
            taken |= {placement.port, *placement.ports.values()}
            placed.append(Host(placement.host, placement.zone))
        node.limits = svc.provider_for(node).apply_limits(
            node.id, SIZES[cluster.size], cluster.storage_gb
        )
        hold_node(cluster, node)
    return any(svc.provider_for(node).holds for node in cluster.nodes)


def ports_taken(s: Session) -> set[int]:
    """Every port a node has, its client port and its HA machinery's."""
    taken: set[int] = set()
    for port, extra in s.execute(select(models.Node.port, models.Node.ports)):
        taken |= {p for p in (port, *(extra or {}).values()) if p is not None}
    return taken


@DBOS.step()
def bootstrap_nodes(op_id: str, cluster_id: str) -> None:
    _bootstrap(op_id, cluster_id)


def _bootstrap(op_id: str, cluster_id: str, cluster: models.Cluster | None = None) -> None:
    """(``cluster``: as the step before loaded it, when nothing changed since.)"""
    svc = services()
    with recorded(op_id, "bootstrap"):
        cluster = cluster or load_cluster(cluster_id)
        assert cluster is not None
        engine = svc.engines[cluster.engine]
        founder = cluster.nodes[0]  # the only node of a standalone cluster
        engine.bootstrap(svc.node_context(cluster, founder),
                         svc.provider_for(founder).runner(founder.id))
        _install_config(cluster, founder)


def install_tls(cluster: models.Cluster, node: models.Node) -> None:
    """The node's certificate: its own address, and the endpoint's, which passes
    TLS through to it."""
    svc = services()
    names = dict.fromkeys(n for n in (node.host, cluster.endpoint_host, cluster.ro_host,
                                      "localhost") if n)
    cert = svc.ca.issue_server_cert(node.id, list(names))
    service = svc.node_context(cluster, node).service
    svc.provider_for(node).publish_secrets(
        node.id, Owner(cluster.project_id, cluster.id, not replicated(cluster)),
        NodeSecrets(cert.cert_pem, cert.key_pem, svc.ca.cert_pem, service.user,
                    service.password))
    svc.engines[cluster.engine].install_tls(svc.provider_for(node).runner(node.id), cert.cert_pem,
                                            cert.key_pem, svc.ca.cert_pem)


def _install_config(cluster: models.Cluster, node: models.Node) -> None:
    """TLS certificate and standalone configuration files for a node (after its
    data exists); a replicated cluster's founder runs so until the others join."""
    svc = services()
    install_tls(cluster, node)
    svc.engines[cluster.engine].configure(svc.node_context(cluster, node),
                                          svc.provider_for(node).runner(node.id))


@DBOS.step()
def restore_nodes(op_id: str, cluster_id: str, restore: dict[str, Any]) -> None:
    """Lay down each node's data from the backup (and logs up to the target time)."""
    svc = services()
    with recorded(op_id, "restore data"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine = svc.engines[cluster.engine]
        assert isinstance(engine, Backups)
        for node in cluster.nodes[:1]:  # a replicated cluster's others join the founder
            chain, logs = restore_inputs(svc, restore["backup_id"], restore.get("time"))
            ctx, runner = svc.node_context(cluster, node), svc.provider_for(node).runner(node.id)
            if len(chain) > 1:
                assert isinstance(engine, IncrementalBackups)
                engine.restore_chain(ctx, runner, list(chain), logs, restore.get("time"))
            else:
                (backup, meta), = chain
                engine.restore(ctx, runner, backup, meta, logs, restore.get("time"))
            _install_config(cluster, node)


@DBOS.step()
def finish_restore(op_id: str, cluster_id: str, restore: dict[str, Any]) -> None:
    svc = services()
    with recorded(op_id, "finish restore"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine = svc.engines[cluster.engine]
        assert isinstance(engine, Backups)
        for node in cluster.nodes[:1]:
            engine.finish_restore(svc.node_context(cluster, node), svc.ca_file,
                                  svc.provider_for(node).runner(node.id), restore.get("time"))


def last_complaint(output: str) -> str:
    """The last line of a server's output that reads like an error (else its last
    line): why it exited, in its own words, rather than "connection refused"."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for complaint in _COMPLAINTS:
        found = [line for line in lines if complaint.search(line)]
        if found:
            return found[-1][:300]
    return lines[-1][:300] if lines else ""


def wait_ready(cluster: models.Cluster, node: models.Node, ctx: NodeContext | None = None,
               standalone: bool = False, within: float | None = None,
               held: bool = False) -> None:
    """Poll the node over its own protocol until it answers, within the provider's
    start deadline, or fail with the reason. (``standalone``: the node was started
    as a single server, and is started again so.) With ``within`` (an ensure-step),
    wait that long, then answer ``NotYet`` with the reason; ``held``: the run
    before found the address held, so an exit now may be that start's."""
    svc = services()
    engine = svc.engines[cluster.engine]
    ctx = ctx or svc.node_context(cluster, node)
    provider = svc.provider_for(node)
    conflict: list[Any] = [held, time.monotonic()]  # last start saw it held; when

    def missing() -> str | None:
        health = engine.health(ctx, svc.ca_file, timeout=2)
        if health.ok:
            return None
        if not provider.is_running(node.id):
            taken = provider.address_taken(ctx.host, ctx.port)
            if taken or conflict[0]:
                # Temporary: another process holds the address for now (one being
                # stopped, another program): start again, once a second, until the
                # deadline, and once more after it is freed (a start made while it
                # was held fails after). Anything else that stops a server is
                # permanent.
                if within is not None:  # an ensure-step: its next run starts it again
                    raise NotYet(f"node {node.ordinal}'s address {ctx.host}:{ctx.port} is "
                                 "held by another process; starting it again once it is "
                                 "free", retry_in=1.0, memo=HELD if taken else "")
                if time.monotonic() - conflict[1] >= 1.0:
                    start_node(cluster, node, ctx, standalone=standalone)
                    conflict[:] = [taken, time.monotonic()]
                return (f"node {node.ordinal}'s address {ctx.host}:{ctx.port} is held by "
                        "another process; starting it again once it is free")
            said = last_complaint(provider.output_tail(node.id))
            raise RuntimeError(f"node {node.ordinal} exited while starting: "
                               f"{said or health.detail}")
        why = provider.waiting_for(node.id)  # the provider's reason says more, if any
        said = f"{why} ({health.detail})" if why else health.detail
        return f"node {node.ordinal} not answering yet: {said}"

    wait_for(missing, within or provider.deadlines.start, f"node {node.ordinal} was not ready",
             interval=0.02, temporary=within is not None,
             slowest=0.05)


@DBOS.step()
def start_founder(op_id: str, cluster_id: str, finish: bool = False, memo: str = "") -> None:
    """Start the new cluster's first node as a standalone server. An ensure-step:
    "not yet" while the server starts or its address is held by another
    process, run again (starting it again) until the provider's start deadline.
    With ``finish`` (a plain create: nothing runs between the start and the
    end), the admin account is made and the cluster activated in the same
    recorded step; all three are idempotent."""
    svc = services()
    cluster = load_cluster(cluster_id)
    assert cluster is not None
    if cluster.operation_id != op_id:
        return  # the create ended: a retried step whose end went unrecorded
    with recorded(op_id, "start"):
        founder = cluster.nodes[0]
        if replicated(cluster) and svc.provider_for(founder).is_running(founder.id):
            return  # already formed: a retried step after "form cluster" began
        ctx = svc.node_context(cluster, founder)
        start_node(cluster, founder, ctx, standalone=True)
        wait_ready(cluster, founder, ctx, standalone=True, within=SLICE, held=memo == HELD)
    if finish:
        _create_admin(op_id, cluster_id, cluster)
        _activate(op_id, cluster_id)


def start_all(cluster: models.Cluster, configure: bool = False) -> None:
    """Start every process of every node that is not running (optionally rewriting
    its files first), then wait until each answers (and, replicated, until the
    machinery has formed the cluster again)."""
    topo = topology(cluster) if replicated(cluster) else None
    for node in cluster.nodes:
        if configure:
            configure_node(cluster, node, topo=topo)
        start_node(cluster, node, topo=topo)
    for node in cluster.nodes:
        wait_ready(cluster, node)
    if topo is not None:
        wait_formed(cluster, topo)


def wait_formed(cluster: models.Cluster, topo: Topology) -> None:
    """Until every member is healthy in its role and one takes writes, within the
    provider's deadline for the machinery to form."""

    def missing() -> str | None:
        try:
            observed = states(cluster, topo)
        except Exception as exc:  # a member still starting may not answer yet
            return str(exc)
        detail = "; ".join(f"node {topo.member(o.node_id).ordinal}: {o.detail}"
                           for o in observed if not o.healthy)
        if detail:
            return detail
        return None if any(o.role == "primary" for o in observed) else "no primary yet"

    wait_for(missing, services().provider_for(cluster).deadlines.form,
             "the cluster did not form", interval=0.2)


@DBOS.step()
def form_cluster(op_id: str, cluster_id: str) -> None:
    """Turn the standalone founder into the first member, then let the others join
    it; each gets its data from the running cluster by the engine's own means."""
    svc = services()
    with recorded(op_id, "form cluster"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine, topo = ha_engine(cluster), topology(cluster)
        founder = cluster.nodes[0]
        svc.provider_for(founder).stop(founder.id)  # it ran standalone; it restarts as a member
        for node in cluster.nodes:
            ctx, runner = svc.node_context(cluster, node), svc.provider_for(node).runner(node.id)
            if node is not founder:
                install_tls(cluster, node)
            engine.prepare_member(ctx, topo, runner, founder=node is founder)
            engine.configure_member(ctx, topo, runner)
        start_node(cluster, founder, topo=topo)
        wait_ready(cluster, founder)
        # The others join a primary: an HA agent may start the founder as a replica
        # and promote it a moment later (Patroni adopting existing data).
        wait_primary(cluster, topo, founder.id)
        start_joiners(cluster, topo, cluster.nodes[1:])
        wait_formed(cluster, topo)


@DBOS.step()
def open_endpoints(op_id: str, cluster_id: str) -> None:
    with recorded(op_id, "open endpoints"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        topo = topology(cluster)
        ensure_endpoint(cluster, topo)
        record_roles(cluster_id, states(cluster, topo))


@DBOS.step()
def create_admin(op_id: str, cluster_id: str) -> None:
    _create_admin(op_id, cluster_id)


def _create_admin(op_id: str, cluster_id: str, cluster: models.Cluster | None = None) -> None:
    """(``cluster``: as the step before loaded it, when nothing changed since.)"""
    svc = services()
    with recorded(op_id, "create admin account"):
        cluster = cluster or load_cluster(cluster_id)
        assert cluster is not None
        founder = cluster.nodes[0]
        svc.engines[cluster.engine].initialize(svc.node_context(cluster, founder), svc.ca_file)


@DBOS.step()
def create_accounts(op_id: str, cluster_id: str, accounts: dict[str, Any]) -> None:
    svc = services()
    with recorded(op_id, ACCOUNTS_STEP):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine, ctx, _ = primary(cluster)
        make_initial(engine, ctx, svc.ca_file, accounts, svc.box.open)


@DBOS.step()
def activate(op_id: str, cluster_id: str, admin: bool = False) -> None:
    """ACTIVE, the operation done; with ``admin``, the admin account made first in
    the same recorded step (nothing runs between them in a plain create, and
    both are idempotent)."""
    if admin:
        _create_admin(op_id, cluster_id)
    _activate(op_id, cluster_id)


def _activate(op_id: str, cluster_id: str) -> None:
    """The cluster ACTIVE and the operation ended, in one transaction."""
    svc = services()
    with svc.store.session() as s, recorded(op_id, "activate", s):
        cluster = s.get(models.Cluster, cluster_id)
        assert cluster is not None
        for node in cluster.nodes:
            node.status = NodeStatus.HEALTHY
            node.status_reason = ""
            node.observed_at = models.utcnow()
            if not replicated(cluster):
                node.role = "primary"
        cluster.status = ClusterStatus.ACTIVE
        cluster.status_reason = ""
        operations.finish(s, op_id)


@DBOS.step()
def compensate(op_id: str, cluster_id: str, reason: str) -> None:
    """Undo a failed create: destroy every node, keep the cluster as FAILED with why."""
    svc = services()
    cluster = load_cluster(cluster_id)
    if cluster is not None:
        svc.provider_for(cluster).remove_endpoint(cluster.id)
        svc.provider_for(cluster).remove_pooler(cluster.id)
        for node in cluster.nodes:
            svc.provider_for(node).destroy(node.id)
    with svc.store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is not None:
            cluster.status = ClusterStatus.FAILED
            cluster.status_reason = reason
            cluster.endpoint_host = cluster.rw_port = cluster.ro_port = None
            cluster.pooler_host = None
            for node in cluster.nodes:
                node.status = NodeStatus.STOPPED
                node.host = node.port = None
                node.ports = {}
        operations.finish(s, op_id, error=reason)


@DBOS.workflow()
@gated
def create_cluster(op_id: str, cluster_id: str) -> None:
    try:
        plan = place_nodes(op_id, cluster_id)
        params, restore = plan.params, plan.params.get("restore")
        if plan.held:
            until_done(held_ready, op_id, cluster_id, deadline=plan.deadlines.start,
                       what="the placed nodes were not ready")
        if restore:
            restore_nodes(op_id, cluster_id, restore)
        elif not plan.bootstrapped:
            bootstrap_nodes(op_id, cluster_id)
        later = bool(params.get("replicated") or params.get("accounts") or params.get("pooler"))
        plain = not (later or restore)  # the start step makes the admin and activates
        until_done(start_founder, op_id, cluster_id, plain, deadline=plan.deadlines.start,
                   what="the first node was not ready")
        if plain:
            return
        if restore:
            finish_restore(op_id, cluster_id, restore)
        if later:
            create_admin(op_id, cluster_id)
        if params.get("replicated"):
            form_cluster(op_id, cluster_id)
            open_endpoints(op_id, cluster_id)
        if params.get("accounts"):
            create_accounts(op_id, cluster_id, params["accounts"])
        if params.get("pooler"):
            pooler_steps.open_pooler(op_id, cluster_id)
        activate(op_id, cluster_id, admin=not later)
    except Exception as exc:
        compensate(op_id, cluster_id, short_reason(exc))
