"""``hoard project ...``: tenants and their tokens (needs an admin token)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hoard.cli.client import ApiError, Client
from hoard.cli.output import Format, emit, fail

app = typer.Typer(no_args_is_help=True)
Output = Annotated[Format, typer.Option("-o", "--output", help="table or json")]


def _table(projects: list[dict[str, Any]]) -> Table:
    table = Table("NAME", "ID", "CLUSTERS", "NODES", "STORAGE GB")
    for p in projects:
        q, u = p["quotas"], p["usage"]
        table.add_row(p["name"], p["id"], f"{u['clusters']}/{q['clusters']}",
                      f"{u['nodes']}/{q['nodes']}", f"{u['storage_gb']}/{q['storage_gb']}")
    return table


@app.command("create")
def create(
    name: str,
    clusters: Annotated[int | None, typer.Option(help="Cluster quota")] = None,
    nodes: Annotated[int | None, typer.Option(help="Node quota")] = None,
    storage_gb: Annotated[int | None, typer.Option("--storage-gb", help="Storage quota")] = None,
    output: Output = Format.table,
) -> None:
    """Create a project (a tenant)."""
    body: dict[str, Any] = {"name": name}
    if clusters is not None or nodes is not None or storage_gb is not None:
        body["quotas"] = {"clusters": clusters or 10, "nodes": nodes or 20,
                          "storage_gb": storage_gb or 200}
    try:
        emit([Client().post("/v2/projects", body)], output, _table)
    except ApiError as exc:
        fail(exc)


@app.command("list")
def list_(output: Output = Format.table) -> None:
    """List projects with quotas and usage."""
    try:
        emit(Client().get("/v2/projects"), output, _table)
    except ApiError as exc:
        fail(exc)


@app.command("token")
def token(
    project_id: str,
    description: Annotated[str, typer.Option(help="What the token is for")] = "",
    output: Output = Format.table,
) -> None:
    """Issue an API token for a project; it is shown once."""
    try:
        result = Client().post(f"/v2/projects/{project_id}/tokens", {"description": description})
    except ApiError as exc:
        fail(exc)
    if output == Format.json:
        emit(result, output)
    else:
        typer.echo(result["token"])
