"""Storage autoscaling (opt-in per cluster): when a node's storage passes a
threshold, the cluster's storage grows by one step, never past the tenant's
``max_gb``. The rules here are pure; ``hoard.workflows.autoscale`` acts on them.

The step: half again the current size, rounded up, at least 1 GB (1 → 2 → 3 →
5 → 8 → 12 GB …), capped at ``max_gb``. Proportional, so a large volume is not
grown in steps too small to matter and a small one not to many times its size;
a growth is an ordinary storage update, which on the local provider's volumes
runs with the servers up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hoard.domain.storage import StorageUsage

DEFAULT_THRESHOLD = 80
MIN_THRESHOLD, MAX_THRESHOLD = 50, 90  # past 90% a small volume already counts as full


@dataclass(frozen=True)
class Policy:
    """A cluster's ``storage_autoscale``, as stored."""

    max_gb: int
    threshold_percent: int = DEFAULT_THRESHOLD

    @classmethod
    def of(cls, stored: Mapping[str, Any]) -> Policy:
        return cls(int(stored["max_gb"]),
                   int(stored.get("threshold_percent") or DEFAULT_THRESHOLD))


def next_size(storage_gb: int, max_gb: int) -> int:
    """The size one growth step takes ``storage_gb`` to (see the module's note)."""
    return min(max_gb, max(storage_gb + 1, -(-storage_gb * 3 // 2)))


@dataclass(frozen=True)
class Decision:
    """What to do for a cluster: grow to ``grow_to`` GB, or say it cannot grow
    (``grow_to`` None) — both explained in ``reason``."""

    grow_to: int | None
    reason: str


def decide(storage_gb: int, policy: Policy,
           usages: Sequence[tuple[int, StorageUsage | None]]) -> Decision | None:
    """For nodes' (ordinal, storage use): None while every one is under the
    threshold; else grow one step, or (at ``max_gb`` already) a Decision
    without a size."""
    over = [(n, u) for n, u in usages
            if u is not None and u.percent >= policy.threshold_percent]
    if not over:
        return None
    ordinal, usage = max(over, key=lambda pair: pair[1].percent)
    why = (f"node {ordinal}: storage {usage.percent}% used, past the autoscaling "
           f"threshold of {policy.threshold_percent}%")
    if storage_gb >= policy.max_gb:
        return Decision(None, f"{why}, but storage is at storage_autoscale.max_gb "
                              f"({policy.max_gb} GB): it cannot grow further; raise max_gb "
                              "or free space")
    target = next_size(storage_gb, policy.max_gb)
    return Decision(target, f"{why}: growing storage from {storage_gb} to {target} GB "
                            f"(max {policy.max_gb} GB)")
