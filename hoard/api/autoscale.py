"""Checking a cluster's ``storage_autoscale`` before it is recorded: the size it
may grow to is no smaller than the storage it has, and the project's storage
quota holds every node at that size (else growth would stop short of it, and
the tenant would find out only then)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hoard.api.schemas import StorageAutoscale
from hoard.domain.errors import InvalidInput, QuotaExceeded
from hoard.store.models import Project
from hoard.store.quotas import check_quota


def checked(s: Session, project: Project, policy: StorageAutoscale | None, storage_gb: int,
            nodes: int, counted_gb: int = 0) -> dict[str, Any] | None:
    """The policy as stored, once checked. ``counted_gb``: the GB per node the
    project's usage already counts for this cluster (0 for one being created,
    whose own storage was checked on its own)."""
    if policy is None:
        return None
    if policy.max_gb < storage_gb:
        raise InvalidInput(f"storage_autoscale.max_gb ({policy.max_gb}) must be at least "
                           f"the cluster's storage_gb ({storage_gb})")
    try:
        check_quota(s, project, clusters=0, nodes=0,
                    storage_gb=(policy.max_gb - counted_gb) * nodes)
    except QuotaExceeded as exc:
        raise QuotaExceeded(f"storage_autoscale.max_gb {policy.max_gb} GB on {nodes} "
                            f"node(s) would not fit: {exc.detail}") from None
    return policy.model_dump()


def refuse_past_max(policy: dict[str, Any] | None, storage_gb: int) -> None:
    """A storage growth past the policy's max_gb is refused: the policy says so."""
    if policy and storage_gb > int(policy["max_gb"]):
        raise InvalidInput(f"storage_gb {storage_gb} is past storage_autoscale.max_gb "
                           f"({policy['max_gb']}): raise max_gb first, or turn autoscaling "
                           "off (storage_autoscale: null)")
