"""``hoard cluster top NAME``: each node's newest numbers in a table, redrawn in
place every few seconds (a live view of GET /v2/clusters/{id}/metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

# What a column shows: its heading, the series it reads, and how to print a value.
COLUMNS: list[tuple[str, str, Callable[[float], str]]] = [
    ("connections", "connections", lambda v: f"{v:.0f}"),
    ("ops/s", "operations_per_second", lambda v: f"{v:,.1f}"),
    ("cache hit", "cache_hit_ratio", lambda v: f"{v:.1%}"),
    ("lock waits", "lock_waits", lambda v: f"{v:.0f}"),
    ("lag", "replication_lag_bytes", lambda v: _bytes(v)),
    ("storage", "storage_used_bytes", lambda v: _bytes(v)),
    ("cpu", "cpu_usage_ratio", lambda v: f"{v:.0%}"),
    ("memory", "memory_used_bytes", lambda v: _bytes(v)),
]


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


def latest(metrics: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Each node's (by ordinal) newest value of every series."""
    out: dict[int, dict[str, float]] = {}
    for series in metrics["series"]:
        if series["points"]:
            out.setdefault(series["ordinal"], {})[series["metric"]] = series["points"][-1][1]
    return out


def top_table(cluster: dict[str, Any], metrics: dict[str, Any]) -> Table:
    table = Table(title=f"{cluster['name']} ({cluster['engine']}, {cluster['status']}): "
                        f"every {metrics['interval']:g} s")
    table.add_column("node")
    table.add_column("role")
    for heading, _, _ in COLUMNS:
        table.add_column(heading, justify="right")
    values = latest(metrics)
    limits = {m["ordinal"]: m for m in cluster["members"]}
    for ordinal, member in sorted(limits.items()):
        row = values.get(ordinal, {})
        table.add_row(str(ordinal), member["role"],
                      *(show(row[key]) if key in row else "-" for _, key, show in COLUMNS))
    return table
