"""A PostgreSQL cluster's optional connection pooler: what a tenant may ask for.

The pooler answers at an address of its own on PgBouncer's standard port, as a
cluster's endpoints answer on the engine's.
"""

from __future__ import annotations

from typing import Any

POOLER_PORT = 6432  # PgBouncer's standard port, on the pooler's own address
MIN_CLIENT_CONN = 10
MAX_CLIENT_CONN = 10_000


def describe(pooler: dict[str, Any] | None) -> str:
    """A pooler's settings in a few words (operation details, events)."""
    if not pooler:
        return "no pooler"
    return f"pooler {pooler['mode']} mode, max_client_conn {pooler['max_client_conn']}"
