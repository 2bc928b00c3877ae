"""A cluster's own addresses, held in the store for the cluster's life.

A standalone cluster's node answers at an address of its own on the engine's
standard port; a replicated cluster's read-write and read-only endpoints get
one each. The provider proposes a candidate (``Provider.new_address``); the
``addresses`` table's primary key makes it the cluster's, so two clusters never
share one even when two creates choose at once. Each is recorded in its own
short transaction before it is used: a step that runs again finds it there.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hoard.store import models
from hoard.workflows.services import services

NODE, READ_WRITE, READ_ONLY, POOLER = "node", "read-write", "read-only", "pooler"
ATTEMPTS = 20  # candidates tried before giving up (each taken one is a 1-in-4M chance)


def held(cluster_id: str) -> dict[str, str]:
    """The cluster's addresses by role."""
    with services().store.session() as s:
        return {role: address for address, role in s.execute(
            select(models.Address.address, models.Address.role)
            .where(models.Address.cluster_id == cluster_id))}


def ensure(cluster: models.Cluster, roles: tuple[str, ...]) -> dict[str, str]:
    """Give the cluster an address for each of ``roles`` it does not hold yet, from
    the cluster's provider."""
    svc = services()
    cluster_id = cluster.id
    have = held(cluster_id)
    for role in roles:
        tries = 0
        while role not in have:
            tries += 1
            if tries > ATTEMPTS:
                raise RuntimeError(f"no free address for the cluster's {role} endpoint "
                                   f"after {ATTEMPTS} tries: is HOARD_LOCAL_ADDRESSES too "
                                   "small?")
            candidate = svc.provider_for(cluster).new_address()
            try:
                with svc.store.session() as s:
                    s.add(models.Address(address=candidate, cluster_id=cluster_id,
                                         role=role))
            except IntegrityError:
                continue  # another cluster's: try the next
            have[role] = candidate
    return have


def ensure_endpoints(cluster: models.Cluster) -> None:
    """A replicated cluster's two endpoint addresses, on the engine's standard port,
    recorded on the cluster (those of a cluster that already has endpoints stay)."""
    if cluster.endpoint_host is not None:
        return
    have = ensure(cluster, (READ_WRITE, READ_ONLY))
    port = services().engines[cluster.engine].standard_port
    with services().store.session() as s:
        row = s.get(models.Cluster, cluster.id)
        if row is not None:
            row.endpoint_host, row.ro_host = have[READ_WRITE], have[READ_ONLY]
            row.rw_port = row.ro_port = port
    cluster.endpoint_host, cluster.ro_host = have[READ_WRITE], have[READ_ONLY]
    cluster.rw_port = cluster.ro_port = port


def release(cluster_id: str, role: str) -> None:
    """Give the cluster's address for ``role`` back (its pooler was removed)."""
    with services().store.session() as s:
        for row in s.scalars(select(models.Address).where(
                models.Address.cluster_id == cluster_id, models.Address.role == role)):
            s.delete(row)
