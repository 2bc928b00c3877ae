"""``hoard backup ...`` and ``hoard cluster restore``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hoard.cli.client import ApiError, Client
from hoard.cli.clusters import finish, follow
from hoard.cli.output import Format, emit, err_console, fail

app = typer.Typer(no_args_is_help=True)
Output = Annotated[Format, typer.Option("-o", "--output", help="table or json")]


def _table(backups: list[dict[str, Any]]) -> Table:
    table = Table("ID", "CLUSTER", "ENGINE", "REASON", "STATUS", "SIZE", "FINISHED")
    for b in backups:
        table.add_row(b["id"], b["cluster_name"], f"{b['engine']} {b['version']}", b["reason"],
                      b["status"], f"{b['size_bytes'] / 1e6:.1f} MB", str(b["finished_at"]))
    return table


@app.command("create")
def create(
    cluster: str,
    incremental: Annotated[bool, typer.Option("--incremental",
                                              help="Only what changed since the last one")
                           ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the backup to its end")] = False,
    output: Output = Format.table,
) -> None:
    """Take a backup of a cluster now."""
    client = Client()
    try:
        found = client.find_cluster(cluster)
        accepted = client.post(f"/v2/clusters/{found['id']}/backups",
                               {"kind": "incremental" if incremental else "full"})
        if wait:
            op = follow(client, accepted["operation"], output == Format.json)
            backup = client.get(f"/v2/backups/{accepted['backup']['id']}")
            emit(backup if output == Format.json else [backup], output, _table)
            if op["status"] == "failed":
                err_console.print(f"[red]backup failed:[/red] {op['error']}")
                raise typer.Exit(1)
            return
    except ApiError as exc:
        fail(exc)
    emit(accepted, output, lambda a: _table([a["backup"]]))


@app.command("list")
def list_(
    cluster_id: Annotated[str | None, typer.Option(help="Only this cluster's backups")] = None,
    output: Output = Format.table,
) -> None:
    """List backups (of every cluster, deleted ones too)."""
    client = Client()
    params = {"cluster_id": cluster_id} if cluster_id else {}
    try:
        page = client.get("/v2/backups", params={**params, "limit": 1000})
        items = list(page["backups"])
        while page["next"]:
            page = client.get(page["next"])
            items.extend(page["backups"])
    except ApiError as exc:
        fail(exc)
    emit(items, output, _table)
    if output == Format.table and page.get("restorable"):
        window = page["restorable"]
        typer.echo(f"restorable from {window['earliest']} to {window['latest']}")


@app.command("show")
def show(backup_id: str, output: Output = Format.table) -> None:
    try:
        emit([Client().get(f"/v2/backups/{backup_id}")], output, _table)
    except ApiError as exc:
        fail(exc)


@app.command("verify")
def verify(
    backup_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the verification to its end")
                    ] = False,
    output: Output = Format.table,
) -> None:
    """Restore a backup into a throwaway node and check it with the engine's own
    tools; the outcome is shown on the backup (exit 1 when it failed)."""
    client = Client()
    try:
        accepted = client.post(f"/v2/backups/{backup_id}/actions/verify", {})
        if not wait:
            emit(accepted, output, lambda a: _table([a["backup"]]))
            return
        op = follow(client, accepted["operation"], output == Format.json)
        backup = client.get(f"/v2/backups/{backup_id}")
    except ApiError as exc:
        fail(exc)
    emit(backup if output == Format.json else [backup], output, _table)
    result = backup.get("verification") or {}
    if output == Format.table and result:
        typer.echo(f"verification {result['status']} in {result['seconds']} s: "
                   + (result["reason"] or ", ".join(f"{k} {v}" for k, v in
                                                    result["counts"].items())))
    if op["status"] == "failed":
        err_console.print(f"[red]verification failed:[/red] {op['error']}")
        raise typer.Exit(1)


@app.command("delete")
def delete(backup_id: str) -> None:
    """Delete a backup from the backup store."""
    try:
        Client().delete(f"/v2/backups/{backup_id}")
    except ApiError as exc:
        fail(exc)


def restore(
    name: str,
    backup: Annotated[str | None, typer.Option(help="Backup id to restore")] = None,
    cluster_id: Annotated[str | None, typer.Option(help="Restore this cluster's data...")
                          ] = None,
    time: Annotated[str | None, typer.Option(help="...as it was at this time (ISO-8601)")
                    ] = None,
    engine: Annotated[str, typer.Option(help="The backup's engine")] = "postgresql",
    size: Annotated[str, typer.Option(help="Size of the new cluster")] = "small",
    storage_gb: Annotated[int, typer.Option("--storage-gb")] = 10,
    provider: Annotated[str | None, typer.Option(
        help="Where the new cluster runs (default: the operator's), whatever the "
             "backup's cluster ran on")] = None,
    output: Output = Format.table,
) -> None:
    """Create a new cluster NAME from a backup, or from a cluster at a point in time."""
    spec: dict[str, Any] = {"backup_id": backup} if backup else {"cluster_id": cluster_id,
                                                                  "time": time}
    body: dict[str, Any] = {"name": name, "engine": engine, "size": size,
                            "storage_gb": storage_gb, "restore": spec}
    if provider:
        body["provider"] = provider
    client = Client()
    try:
        accepted = client.post("/v2/clusters", body)
    except ApiError as exc:
        fail(exc)
    finish(client, accepted, output)
