"""The catalog a tenant chooses from: sizes. Engines publish their own versions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """Compute given to each node; engines derive their memory settings from it."""

    name: str
    cpus: float
    memory_mb: int
    description: str


SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size("nano", 0.5, 256, "development and tests"),
        Size("small", 1, 1024, "small production services"),
        Size("medium", 2, 4096, "general production"),
        Size("large", 4, 16384, "busy production"),
    )
}

MIN_STORAGE_GB = 1
MAX_NODES = 5  # a replicated cluster's largest size
MAX_STORAGE_GB = 16384
