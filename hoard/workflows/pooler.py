"""A PostgreSQL cluster's connection pooler (PgBouncer): opened at create or
by ``PATCH {"pooler": {...}}``, changed in place, closed by ``{"pooler": null}``
or with the cluster.

The pooler answers at an address of its own (``addresses.POOLER``, on port
6432) with a certificate from Hoard's CA naming it, and sends every client to
the cluster's read-write endpoint (a replicated cluster's, which follows the
primary through failovers and switchovers) or a standalone cluster's own
address: it never needs re-pointing. Its users are the cluster's login roles
(see ``hoard/engines/postgresql/pooler.py``), written again after every
account change Hoard makes and on every observer pass, which also starts a
pooler that died.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from dbos import DBOS

from hoard.domain.pooler import POOLER_PORT, describe
from hoard.domain.status import ClusterStatus
from hoard.engines.base import PoolerTarget, Pooling
from hoard.store import events, models, operations
from hoard.workflows import addresses
from hoard.workflows.gate import gated
from hoard.workflows.members import primary, replicated
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason, wait_for

log = logging.getLogger(__name__)
OPEN, CLOSE = "open pooler", "close pooler"
LISTEN_DEADLINE = 15.0  # seconds a started pooler may take to listen


def _engine(cluster: models.Cluster) -> Pooling:
    engine = services().engines[cluster.engine]
    if not isinstance(engine, Pooling):
        raise ValueError(f"{cluster.engine} clusters have no connection pooler")
    return engine


def server(cluster: models.Cluster) -> tuple[str, int]:
    """Where the pooler sends clients: an address that always reaches the primary."""
    if replicated(cluster):
        assert cluster.endpoint_host and cluster.rw_port, "endpoints are open"
        return cluster.endpoint_host, cluster.rw_port
    node = cluster.nodes[0]
    assert node.host and node.port, "the node is placed"
    return node.host, node.port


def _listening(address: str) -> str | None:
    try:
        with socket.create_connection((address, POOLER_PORT), timeout=1):
            return None
    except OSError as exc:
        return f"the pooler does not answer at {address}:{POOLER_PORT} yet: {exc}"


def ensure(cluster: models.Cluster, settings: dict[str, Any], live: bool = True,
           started: list[bool] | None = None) -> str:
    """Run the pooler with ``settings`` (mode, max_client_conn) at the cluster's
    pooler address (given it first if it has none), its users read from the
    primary (``live``: as the HA machinery says now; else the recorded one, which
    is enough, since every member holds the roles); its address. ``started`` gets
    whether the pooler had to be started."""
    svc = services()
    engine = _engine(cluster)
    address = cluster.pooler_host or addresses.ensure(
        cluster, (addresses.POOLER,))[addresses.POOLER]
    if live:
        _, ctx, _ = primary(cluster)
    else:
        node = next((n for n in cluster.nodes if n.role == "primary"), cluster.nodes[0])
        ctx = svc.node_context(cluster, node)
    cert = svc.ca.issue_server_cert(f"pooler-{cluster.id}", [address])
    where = svc.provider_for(cluster)
    # It listens where its provider says (a pod's own interfaces behind a Service).
    target = PoolerTarget((where.listen_host(address), POOLER_PORT), server(cluster),
                          str(settings["mode"]),
                          int(settings["max_client_conn"]), cert.cert_pem, cert.key_pem,
                          svc.ca.cert_pem)
    spec = engine.pooler_spec(ctx, target, engine.pooler_users(ctx, svc.ca_file))
    began = where.ensure_pooler(cluster.id, address, spec)
    if started is not None:
        started.append(began)
    wait_for(lambda: _listening(address), LISTEN_DEADLINE, "the pooler did not listen")
    return address


def remove(cluster_id: str) -> None:
    """Stop the pooler, give its address back, forget it. Idempotent."""
    svc = services()
    cluster = load_cluster(cluster_id)
    if cluster is not None:
        svc.provider_for(cluster).remove_pooler(cluster_id)
    addresses.release(cluster_id, addresses.POOLER)
    _record(cluster_id, None, None)


def _record(cluster_id: str, settings: dict[str, Any] | None, host: str | None) -> None:
    with services().store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        if row is not None:
            row.pooler, row.pooler_host = settings, host


def sync_users(cluster_id: str) -> None:
    """Rewrite the pooler's users now (after an account change), if it has one.
    Best effort: the observer's next pass does it again."""
    cluster = load_cluster(cluster_id)
    if cluster is None or not cluster.pooler or not cluster.pooler_host:
        return
    try:
        started: list[bool] = []
        ensure(cluster, cluster.pooler, started=started)
        if any(started):
            _said_restarted(cluster.id)
    except Exception:
        log.warning("cluster %s: the pooler's users were not updated; the observer will",
                    cluster.name, exc_info=True)


def upkeep(cluster: models.Cluster) -> None:
    """The observer's look: start a pooler that is not running, and keep its users
    in step with the cluster's roles (a reload only when they changed)."""
    if not cluster.pooler_host:
        return
    # Read again: an operation (a PATCH closing the pooler) may have taken the
    # cluster since the observer's batch was loaded.
    fresh = load_cluster(cluster.id)
    if (fresh is None or fresh.status not in (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)
            or not fresh.pooler or not fresh.pooler_host):
        return
    # Whether it was down is the start's own answer, not a look before it: a pooler
    # dying during the pass is restarted and said so, never restarted silently.
    started: list[bool] = []
    ensure(fresh, fresh.pooler, live=False, started=started)
    if any(started):
        _said_restarted(cluster.id)


def _said_restarted(cluster_id: str) -> None:
    log.warning("the pooler of cluster %s was not running; restarted", cluster_id)
    with services().store.session() as s:
        events.record(s, cluster_id, "pooler.restarted",
                      "the connection pooler was not running; restarted it")


# --- durable steps ----------------------------------------------------------------


@DBOS.step()
def open_pooler(op_id: str, cluster_id: str) -> None:
    """The create's step: the pooler the cluster was asked with, once it serves."""
    with recorded(op_id, OPEN):
        cluster = load_cluster(cluster_id)
        assert cluster is not None and cluster.pooler is not None
        _record(cluster_id, cluster.pooler, ensure(cluster, cluster.pooler))


@DBOS.step()
def apply_pooler(op_id: str, cluster_id: str, settings: dict[str, Any] | None) -> None:
    """Open or change (``settings``) or close (None) the pooler, then finish."""
    with recorded(op_id, OPEN if settings else CLOSE):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        if settings:
            _record(cluster_id, settings, ensure(cluster, settings))
        else:
            remove(cluster_id)
    _finish(op_id, cluster_id, describe(settings), "")


def _finish(op_id: str, cluster_id: str, message: str, error: str) -> None:
    with services().store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        if row is not None:
            row.status, row.status_reason = ClusterStatus.ACTIVE, ""
            events.record(s, cluster_id, "cluster.pooler", message, op_id)
        operations.finish(s, op_id, error=error)


@DBOS.step()
def pooler_failed(op_id: str, cluster_id: str, reason: str,
                  previous: dict[str, Any] | None) -> None:
    """Put back what was there: the previous pooler as it was, or none at all."""
    error = reason
    cluster = load_cluster(cluster_id)
    try:
        if cluster is not None and previous:
            _record(cluster_id, previous, ensure(cluster, previous))
        else:
            remove(cluster_id)
        message = f"pooler change failed: {reason}; {describe(previous)} as before"
    except Exception as exc:
        error = f"{reason}; putting the previous pooler back failed: {short_reason(exc)}"
        message = f"pooler change failed: {error}"
    _finish(op_id, cluster_id, message, error)


@DBOS.workflow()
@gated
def change_pooler(op_id: str, cluster_id: str, params: dict[str, Any]) -> None:
    try:
        apply_pooler(op_id, cluster_id, params.get("pooler"))
    except Exception as exc:
        pooler_failed(op_id, cluster_id, short_reason(exc), params.get("previous"))
