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
