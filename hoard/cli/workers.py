"""``hoard worker list``: the control plane's workers and their leases (admin)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hoard.cli.client import ApiError, Client
from hoard.cli.output import Format, emit, fail

Output = Annotated[Format, typer.Option("-o", "--output", help="table or json")]


def _shards(shards: list[int]) -> str:
    return f"{len(shards)} ({', '.join(map(str, shards[:8]))}{', …' if len(shards) > 8 else ''})"


def _table(workers: list[dict[str, Any]]) -> Table:
    table = Table("WORKER", "STATE", "EPOCH", "HOST", "PID", "LEASE UNTIL", "SHARDS")
    for w in workers:
        state = w["state"] + (f" by {w['taken_by']}" if w["taken_by"] else "")
        table.add_row(w["id"], state, str(w["epoch"]), w["host"], str(w["pid"]),
                      w["expires_at"], _shards(w["shards"]))
    return table


def list_workers(output: Output = Format.table) -> None:
    """Each worker, its lease and the shards it owns."""
    try:
        emit(Client().get("/v2/workers")["workers"], output, _table)
    except ApiError as exc:
        fail(exc)
