"""A throwaway node: a backup restored where no tenant reaches it, to be checked
and destroyed.

It is made by the same provider calls and engine steps as a restored cluster's
first node (place, hold where the provider holds nodes, restore, TLS and
configuration, start, finish the restore), under an OS account and on an
address of its own, but it belongs to no cluster: it is in no list, counts
against no quota, and the observer, archiver and scheduler never see it. Where
a provider labels what it makes by owner (Kubernetes), its owner is the
backup's project and a cluster of its own, its id the node's: so it is never
found, nor deleted, with the backup's cluster, and it is removed as a cluster
is. Its id is chosen before it is made and recorded with the operation, so
whoever finishes the operation (another worker, after a crash) can destroy it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import NodeRunner, NodeSpec, Owner, Resources, Volume
from hoard.engines.base import Backups, IncrementalBackups, NodeContext, SealedCredentials
from hoard.providers.base import Provider
from hoard.store import models
from hoard.workflows.backups import restore_inputs
from hoard.workflows.cluster_create import last_complaint
from hoard.workflows.services import SERVICE_USER, Services
from hoard.workflows.steps import wait_for

ATTEMPTS = 20  # addresses tried before giving up (a taken one is a 1-in-4M chance)


@dataclass(frozen=True)
class Scratch:
    """Where a throwaway node is, and what it runs as (plain data: recorded by
    the workflow and handed from step to step)."""

    node_id: str
    backup_id: str
    provider: str
    size: str
    host: str = ""
    port: int = 0


def provider(svc: Services, scratch: Scratch) -> Provider:
    found = svc.providers.get(scratch.provider)
    if found is None:
        raise RuntimeError(f"provider {scratch.provider!r} is not enabled in this Hoard")
    return found


def _backup(svc: Services, backup_id: str) -> models.Backup:
    with svc.store.session() as s:
        backup = s.get(models.Backup, backup_id)
    if backup is None:
        raise RuntimeError(f"backup {backup_id} was deleted")
    return backup


def place(svc: Services, scratch: Scratch) -> Scratch:
    """Storage, limits and an OS account for the node, and an address of its own
    (not held by any cluster) on the engine's standard port."""
    backup = _backup(svc, scratch.backup_id)
    where = provider(svc, scratch)
    port = svc.engines[backup.engine].standard_port
    for _ in range(ATTEMPTS):
        address = where.new_address()
        with svc.store.session() as s:
            held = s.get(models.Address, address) is not None
        if not held and not where.address_taken(address, port):
            break
    else:
        raise RuntimeError(f"no free address for a throwaway node after {ATTEMPTS} tries")
    placed = where.place(scratch.node_id, set(), backup.storage_gb, (), (), (address, port))
    where.apply_limits(scratch.node_id, SIZES[scratch.size], backup.storage_gb)
    made = Scratch(scratch.node_id, scratch.backup_id, scratch.provider, scratch.size,
                   placed.host, placed.port)
    if where.holds:  # as a created node is (members.hold_node): its runner needs it
        ctx = context(svc, made, backup)
        where.hold(made.node_id, declaration(svc, made, backup, ctx,
                                             where.runner(made.node_id)))
    return made


def owner(backup: models.Backup, scratch: Scratch) -> Owner:
    """The backup's project, and a cluster of the node's own (its id)."""
    return Owner(backup.project_id, scratch.node_id, standalone=True)


def declaration(svc: Services, scratch: Scratch, backup: models.Backup, ctx: NodeContext,
                runner: NodeRunner) -> NodeSpec:
    """The node as its engine declares it: the server alone, at the scratch size."""
    engine = svc.engines[backup.engine]
    size = SIZES[scratch.size]
    return NodeSpec(
        engine=backup.engine, version=backup.version, image=engine.image(backup.version),
        processes=(engine.process(ctx, runner),), ports={"client": ctx.port},
        volume=Volume(backup.storage_gb), resources=Resources(size.cpus, size.memory_mb),
        readiness=engine.readiness(ctx), owner=owner(backup, scratch))


def context(svc: Services, scratch: Scratch, backup: models.Backup) -> NodeContext:
    """The node as its engine sees it: the backup's accounts, default settings."""
    return NodeContext(
        node_id=scratch.node_id, version=backup.version, size=SIZES[scratch.size],
        host=scratch.host, port=scratch.port,
        service=SealedCredentials(SERVICE_USER, partial(svc.box.open, backup.service_password)),
        admin=SealedCredentials(backup.admin_user, partial(svc.box.open, backup.admin_password)),
        parameters={}, storage_gb=backup.storage_gb)


def restore(svc: Services, scratch: Scratch) -> None:
    """Lay the backup (and, MariaDB, the incrementals it builds on) down on the
    node, then its TLS certificate and configuration; nothing runs yet."""
    backup = _backup(svc, scratch.backup_id)
    engine = svc.engines[backup.engine]
    assert isinstance(engine, Backups)
    where = provider(svc, scratch)
    ctx, runner = context(svc, scratch, backup), where.runner(scratch.node_id)
    if where.holds:  # the step says why it waits (no node with room, an image pull)
        wait_for(lambda: where.waiting_for(scratch.node_id), where.deadlines.start,
                 "the throwaway node was not ready", interval=0.2, slowest=2.0)
    chain, logs = restore_inputs(svc, scratch.backup_id, None)
    if len(chain) > 1:
        assert isinstance(engine, IncrementalBackups)
        engine.restore_chain(ctx, runner, list(chain), logs, None)
    else:
        (stream, meta), = chain
        engine.restore(ctx, runner, stream, meta, logs, None)
    cert = svc.ca.issue_server_cert(scratch.node_id, [scratch.host, "localhost"])
    engine.install_tls(runner, cert.cert_pem, cert.key_pem, svc.ca.cert_pem)
    engine.configure(ctx, runner)


def start(svc: Services, scratch: Scratch) -> None:
    """Start the server, wait until it answers (within the provider's start
    deadline) and let the engine finish the restore (recovery, key counts)."""
    backup = _backup(svc, scratch.backup_id)
    engine = svc.engines[backup.engine]
    assert isinstance(engine, Backups)
    where = provider(svc, scratch)
    ctx, runner = context(svc, scratch, backup), where.runner(scratch.node_id)
    where.start(scratch.node_id, declaration(svc, scratch, backup, ctx, runner))

    def missing() -> str | None:
        health = engine.health(ctx, svc.ca_file, timeout=2)
        if health.ok:
            return None
        if not where.is_running(scratch.node_id):
            said = last_complaint(where.output_tail(scratch.node_id))
            raise RuntimeError(f"the restored server exited while starting: "
                               f"{said or health.detail}")
        return f"the restored server does not answer yet: {health.detail}"

    wait_for(missing, where.deadlines.start, "the restored server was not ready",
             interval=0.02, slowest=0.2)
    engine.finish_restore(ctx, svc.ca_file, runner, None)


def destroy(svc: Services, scratch: Scratch) -> None:
    """Stop the node and remove everything it had (idempotent); where nodes are
    held (a provider that makes objects per owner), its own cluster's objects too."""
    where = provider(svc, scratch)
    where.destroy(scratch.node_id)
    if where.holds:
        where.remove_endpoint(scratch.node_id)
