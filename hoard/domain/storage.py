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
# Percentage points under its threshold that use must fall before an alarm
# clears. A disk hovering at a threshold (PostgreSQL making and recycling 16 MiB
# WAL segments is 1.6% of a 1 GB volume) would otherwise raise and clear it on
# every observer pass, and each time write an event.
CLEAR_MARGIN = 5


def standing_alarm(usage: StorageUsage, held: int) -> int:
    """The alarm threshold standing once ``usage`` is seen, ``held`` the one
    standing before (0: none): the highest threshold reached, or a held one
    while use stays within ``CLEAR_MARGIN`` points under it."""
    kept = max((t for t in ALARMS if t <= held and usage.percent >= t - CLEAR_MARGIN),
               default=0)
    return max(usage.alarm, kept)


def alarm_event(ordinal: int, was: int, now: int, usage: StorageUsage
                ) -> tuple[str, str] | None:
    """The event (kind, message) for a node whose standing alarm moved from
    ``was`` to ``now`` (``standing_alarm``) as its use became ``usage``: one
    event per crossing, however many passes see the same side of it."""
    if now == was:
        return None
    if now > was:
        return ("storage.alarm", f"node {ordinal}: storage {usage.percent}% used, past "
                                 f"{now}%: grow storage_gb before it fills")
    below = min(t for t in ALARMS if t > now)
    return ("storage.cleared", f"node {ordinal}: storage back under {below}% "
                               f"({usage.percent}% used)")


def alarm_note(usage: StorageUsage, level: int) -> str:
    """What a cluster's status_reason says of a node whose standing alarm is
    ``level`` ('' if none)."""
    if not level:
        return ""
    if usage.percent >= level:
        return f"storage {usage.percent}% used (past {level}%)"
    return (f"storage {usage.percent}% used (past {level}% until under "
            f"{level - CLEAR_MARGIN}%)")
