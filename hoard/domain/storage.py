"""A node's storage as observed, and when it counts as full."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class StorageUsage:
    """Bytes used of a node's storage, and its size (the filesystem's, or the
    storage quota where the provider only observes a directory)."""

    used_bytes: int
    total_bytes: int

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes)

    @property
    def full(self) -> bool:
        """Too little left for an engine to go on writing: under 10% of the
        storage (at least 64 MiB, at most 1 GiB). Engines stop well before the
        last byte: PostgreSQL was seen refusing every insert (DiskFull) with 9%
        of a 1 GB volume free, as it could not make the next WAL segments;
        InnoDB extends in extents. An engine that hits the end fails writes,
        checkpoints or its next start with errors that never name the disk, so
        Hoard says it instead."""
        return self.free_bytes < max(64 * MIB, min(self.total_bytes // 10, GIB))

    def describe(self) -> str:
        return (f"storage full ({self.used_bytes} of {self.total_bytes} bytes used): "
                "resize the storage")

    @property
    def percent(self) -> int:
        """Whole percent of the storage used (rounded down: 79.9% is not yet 80%)."""
        return self.used_bytes * 100 // self.total_bytes if self.total_bytes else 100

    @property
    def alarm(self) -> int:
        """The highest alarm threshold (percent) the use has reached, or 0."""
        return max((t for t in ALARMS if self.percent >= t), default=0)


# Storage alarms, in percent used: a tenant hears of a filling disk before it is full.
ALARMS = (80, 95)


def alarm_event(ordinal: int, before: StorageUsage | None, after: StorageUsage
                ) -> tuple[str, str] | None:
    """The event (kind, message) for a node whose storage use moved from ``before``
    (None: never observed) to ``after``, if it crossed an alarm threshold: one
    event per crossing, however many passes see the same side of it."""
    was = before.alarm if before is not None else 0
    now = after.alarm
    if now == was:
        return None
    if now > was:
        return ("storage.alarm", f"node {ordinal}: storage {after.percent}% used, past "
                                 f"{now}%: grow storage_gb before it fills")
    below = min(t for t in ALARMS if t > now)
    return ("storage.cleared", f"node {ordinal}: storage back under {below}% "
                               f"({after.percent}% used)")


def alarm_note(usage: StorageUsage) -> str:
    """What a cluster's status_reason says of a node past an alarm ('' if none)."""
    if not usage.alarm:
        return ""
    return f"storage {usage.percent}% used (past {usage.alarm}%)"
