"""What a node's metrics are, and how stored samples become the series a tenant reads.

A *sample* is what the observer collected from one node at one moment: the
engine's own numbers (``Metrics.metrics``), the provider's (CPU, memory,
storage) and the HA machinery's (replication lag), as a flat ``name -> float``.
Names ending in ``_total`` are counters (they only grow while the server runs);
every other name is a gauge. Samples keep counters raw; rates are derived when
read, from consecutive samples, so a restart of the server (a counter going
back) or of Hoard (no sample for a while) costs one interval, never a wrong
number. Downsampled samples keep a counter's last value and a gauge's mean,
from which the same rates follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

Sample = Mapping[str, float]

# Raw sample keys (what engines and providers report).
CONNECTIONS = "connections"  # the tenant's client connections now (Hoard's own excluded)
OPERATIONS = "operations_total"  # transactions, statements or commands served
CACHE_HITS = "cache_hits_total"  # reads served from memory
CACHE_MISSES = "cache_misses_total"  # reads that went to disk (or missed, for Redis)
LOCK_WAITS = "lock_waits"  # sessions waiting for a lock now (Redis: blocked clients)
LAG = "replication_lag_bytes"
STORAGE_USED = "storage_used_bytes"
STORAGE_TOTAL = "storage_total_bytes"
CPU_SECONDS = "cpu_seconds_total"
CPU_LIMIT = "cpu_limit_cores"
MEMORY_USED = "memory_used_bytes"
MEMORY_LIMIT = "memory_limit_bytes"


def is_counter(name: str) -> bool:
    return name.endswith("_total")


@dataclass(frozen=True)
class SeriesKind:
    """One series the API serves: its unit and what it means."""

    name: str
    unit: str
    description: str


SERIES: tuple[SeriesKind, ...] = (
    SeriesKind("connections", "connections", "Client connections open (Hoard's own excluded)"),
    SeriesKind("operations_per_second", "1/s",
               "Transactions (PostgreSQL), statements (MariaDB) or commands (Redis) per second"),
    SeriesKind("cache_hit_ratio", "ratio", "Share of reads served from memory (0-1)"),
    SeriesKind("lock_waits", "sessions",
               "Sessions waiting for a lock (Redis: clients blocked on a command)"),
    SeriesKind("replication_lag_bytes", "bytes", "How far a replica is behind its primary"),
    SeriesKind("storage_used_bytes", "bytes", "Storage used"),
    SeriesKind("storage_total_bytes", "bytes", "Storage size"),
    SeriesKind("cpu_usage_ratio", "ratio", "CPU used, as a share of the node's CPU limit"),
    SeriesKind("memory_used_bytes", "bytes", "Memory used (reclaimable page cache excluded)"),
    SeriesKind("memory_limit_bytes", "bytes", "The node's memory limit"),
)
SERIES_NAMES = frozenset(kind.name for kind in SERIES)
_GAUGES = {"connections": CONNECTIONS, "lock_waits": LOCK_WAITS, "replication_lag_bytes": LAG,
           "storage_used_bytes": STORAGE_USED, "storage_total_bytes": STORAGE_TOTAL,
           "memory_used_bytes": MEMORY_USED, "memory_limit_bytes": MEMORY_LIMIT}

_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 1440  # a day at one point a minute


def parse_since(value: str, now: datetime) -> datetime:
    """``since`` as a moment: a duration back from now (``90s``, ``15m``, ``1h``,
    ``2d``) or an RFC 3339 time with its zone. ValueError says which form is wanted."""
    found = _DURATION.match(value)
    if found:
        return now - timedelta(seconds=int(found[1]) * _UNIT_SECONDS[found[2]])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration (e.g. 15m, 1h, 2d) nor an "
                         "RFC 3339 time (e.g. 2026-12-04T08:00:00Z)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: add Z or an offset")
    return moment.astimezone(UTC)


def default_step(span_seconds: float, interval: float) -> int:
    """A step giving about 120 points over the span, never finer than the sampling."""
    return max(1, int(interval + 0.999), int(span_seconds // 120))


@dataclass(frozen=True)
class Point:
    at: float  # seconds since the epoch, the bucket's start
    value: float


def _bucket(at: float, start: float, step: int) -> float:
    return start + ((at - start) // step) * step


def _rates(samples: Sequence[tuple[float, Sample]], key: str, start: float, step: int,
           max_gap: float) -> dict[float, tuple[float, float]]:
    """Per bucket: the counter's growth and the time it grew over, from consecutive
    samples no further apart than ``max_gap`` (a reset or a gap counts nothing)."""
    out: dict[float, tuple[float, float]] = {}
    for (t0, a), (t1, b) in pairwise(samples):
        if key not in a or key not in b or not 0 < t1 - t0 <= max_gap or b[key] < a[key]:
            continue
        grown, over = out.get(_bucket(t1, start, step), (0.0, 0.0))
        out[_bucket(t1, start, step)] = (grown + b[key] - a[key], over + t1 - t0)
    return out


def _means(samples: Iterable[tuple[float, Sample]], key: str, start: float,
           step: int) -> dict[float, float]:
    sums: dict[float, tuple[float, int]] = {}
    for at, sample in samples:
        if key in sample:
            total, n = sums.get(_bucket(at, start, step), (0.0, 0))
            sums[_bucket(at, start, step)] = (total + sample[key], n + 1)
    return {b: total / n for b, (total, n) in sums.items()}


def series(samples: Sequence[tuple[float, Sample]], start: float, step: int,
           max_gap: float) -> dict[str, list[Point]]:
    """One node's samples (oldest first, ``at`` in epoch seconds) as the API's
    series, ``step`` seconds a point from ``start``; buckets without data are left
    out. ``max_gap``: the longest two samples may be apart for a rate between them."""
    out: dict[str, list[Point]] = {}
    for name, key in _GAUGES.items():
        out[name] = [Point(b, v) for b, v in sorted(_means(samples, key, start, step).items())]
    ops = _rates(samples, OPERATIONS, start, step, max_gap)
    out["operations_per_second"] = [Point(b, g / t) for b, (g, t) in sorted(ops.items())]
    hits = _rates(samples, CACHE_HITS, start, step, max_gap)
    misses = _rates(samples, CACHE_MISSES, start, step, max_gap)
    out["cache_hit_ratio"] = [Point(b, h / (h + misses[b][0])) for b, (h, _) in sorted(hits.items())
                              if b in misses and h + misses[b][0] > 0]
    cpu = _rates(samples, CPU_SECONDS, start, step, max_gap)
    limit = _means(samples, CPU_LIMIT, start, step)
    out["cpu_usage_ratio"] = [Point(b, g / t / limit[b]) for b, (g, t) in sorted(cpu.items())
                              if limit.get(b)]
    return {name: points for name, points in out.items() if points}


def downsample(samples: Sequence[tuple[float, Sample]], step: int
               ) -> list[tuple[float, dict[str, float]]]:
    """Samples (oldest first) folded into one per ``step`` seconds (aligned to the
    epoch): a gauge's mean and a counter's last value, stamped with the time of
    the bucket's last sample, so rates read across folded and raw samples stay
    exact."""
    buckets: dict[float, list[tuple[float, Sample]]] = {}
    for at, sample in samples:
        buckets.setdefault(at - at % step, []).append((at, sample))
    out: list[tuple[float, dict[str, float]]] = []
    for _, stamped in sorted(buckets.items()):
        at, group = stamped[-1][0], [sample for _, sample in stamped]
        folded: dict[str, float] = {}
        keys = {key for sample in group for key in sample}
        for key in keys:
            values = [s[key] for s in group if key in s]
            folded[key] = values[-1] if is_counter(key) else sum(values) / len(values)
        out.append((at, folded))
    return out
