"""Printing results as tables for people or JSON for programs (``-o json``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hoard.cli.client import ApiError

console = Console()
err_console = Console(stderr=True)


class Format(StrEnum):
    table = "table"
    json = "json"


def emit(data: Any, fmt: Format, table: Callable[[Any], Table] | None = None) -> None:
    if fmt == Format.json or table is None:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(table(data))


def fail(exc: ApiError) -> None:
    err_console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


STATUS_STYLE = {"ACTIVE": "green", "BUILDING": "yellow", "DEGRADED": "yellow",
                "FAILED": "red", "DELETING": "magenta"}


def clusters_table(clusters: list[dict[str, Any]]) -> Table:
    table = Table("NAME", "ID", "ENGINE", "SIZE", "NODES", "STATUS", "ENDPOINT")
    for c in clusters:
        ep = c["endpoints"][0] if c["endpoints"] else None
        style = STATUS_STYLE.get(c["status"], "")
        table.add_row(
            c["name"], c["id"], f"{c['engine']} {c['version']}", c["size"], str(c["nodes"]),
            f"[{style}]{c['status']}[/{style}]" if style else c["status"],
            f"{ep['host']}:{ep['port']}" if ep else "-",
        )
    return table


def plan_table(plan: dict[str, Any]) -> Table:
    """A change's plan (``--dry-run``): each field, then what the servers go through."""
    table = Table("FIELD", "NOW", "ASKED", "APPLIES", "HOW", title="Plan (nothing changed)")
    for c in plan["changes"]:
        table.add_row(c["field"], json.dumps(c["current"]), json.dumps(c["requested"]),
                      c["applies"], c["detail"])
    for key in ("live", "restart", "pending_restart"):
        if plan[key]:
            table.add_row(f"settings: {key}", "", "", "", ", ".join(plan[key]))
    if plan["pending_applies"]:
        table.add_row("pending applies", "", "", "", plan["pending_applies"])
    downtime = plan["downtime"]
    table.add_row("downtime", "", "", downtime["kind"] + (" + failover" if downtime["failover"]
                                                          else ""), downtime["detail"])
    return table


def cluster_table(c: dict[str, Any]) -> Table:
    table = Table("FIELD", "VALUE", show_header=False)
    for key in ("name", "id", "engine", "version", "size", "nodes", "durability", "storage_gb",
                "status", "status_reason", "created_at"):
        table.add_row(key, str(c.get(key, "")))
    if c.get("pending_restart"):
        table.add_row("pending_restart", ", ".join(c["pending_restart"]))
    window = c.get("maintenance_window")
    if window:
        table.add_row("maintenance_window", f"{window['day']} {window['start']} UTC, "
                                            f"{window['duration_minutes']} min")
    autoscale = c.get("storage_autoscale")
    if autoscale:
        table.add_row("storage_autoscale", f"past {autoscale['threshold_percent']}% used, up "
                                           f"to {autoscale['max_gb']} GB")
    for ep in c["endpoints"]:
        table.add_row(f"endpoint ({ep['role']})", f"{ep['host']}:{ep['port']}")
    for n in c["members"]:
        lag = f" lag {n['lag_bytes']} B" if n.get("lag_bytes") is not None else ""
        table.add_row(f"node {n['ordinal']} ({n['role']})",
                      f"{n['status']} {n['host']}:{n['port']} zone {n.get('zone')}{lag} "
                      f"{n['status_reason']}".strip())
        for k, v in n["limits"].items():
            table.add_row(f"  {k}", v)
    return table
