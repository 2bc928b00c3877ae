"""``hoard cluster ...`` and ``hoard connect``."""

from __future__ import annotations

import os
import shutil
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hoard.cli.client import ApiError, Client
from hoard.cli.logs import logs
from hoard.cli.output import (
    Format,
    cluster_table,
    clusters_table,
    console,
    emit,
    err_console,
    fail,
    plan_table,
)
from hoard.cli.top import latest, top_table

app = typer.Typer(no_args_is_help=True)
app.command("logs")(logs)
Output = Annotated[Format, typer.Option("-o", "--output", help="table or json")]


def follow(client: Client, op: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Poll an operation to its end, drawing a progress bar unless quiet."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=err_console, disable=quiet, transient=False,
    ) as progress:
        task = progress.add_task(op["kind"], total=100)
        while True:
            op = client.get(f"/v2/operations/{op['id']}")
            step = next((s["name"] for s in op["steps"] if s["status"] == "running"), "")
            progress.update(task, completed=op["progress"],
                            description=f"{op['kind']}: {step or op['status']}")
            if op["status"] != "running":
                return op
            time.sleep(0.2)


@app.command("create")
def create(
    name: str,
    engine: Annotated[str, typer.Option(help="postgresql, mariadb or redis")] = "postgresql",
    size: Annotated[str, typer.Option(help="A size from GET /v2/sizes")] = "small",
    version: Annotated[str | None, typer.Option(help="Engine version (default: newest)")] = None,
    nodes: Annotated[int, typer.Option(help="1, or 2-5 for a replicated cluster")] = 1,
    durability: Annotated[str | None, typer.Option(
        help="Replicated clusters: sync (a commit waits for a replica) or async")] = None,
    storage_gb: Annotated[int, typer.Option("--storage-gb", help="Storage per node")] = 10,
    provider: Annotated[str | None, typer.Option(
        help="Where it runs, for its whole life (default: the operator's; "
             "see hoard engine list)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the build to its end")] = False,
    output: Output = Format.table,
) -> None:
    """Create a cluster."""
    client = Client()
    body: dict[str, Any] = {"name": name, "engine": engine, "size": size, "nodes": nodes,
                            "storage_gb": storage_gb}
    if version:
        body["version"] = version
    if durability:
        body["durability"] = durability
    if provider:
        body["provider"] = provider
    try:
        accepted = client.post("/v2/clusters", body)
    except ApiError as exc:
        fail(exc)
    if wait:
        finish(client, accepted, output)
    else:
        emit(accepted, output, lambda a: cluster_table(a["cluster"]))


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only clusters in this status")] = None,
    engine: Annotated[str | None, typer.Option(help="Only clusters of this engine")] = None,
    output: Output = Format.table,
) -> None:
    """List the project's clusters."""
    client = Client()
    params = {k: v for k, v in {"status": status, "engine": engine, "limit": 1000}.items() if v}
    try:
        page = client.get("/v2/clusters", params=params)
        clusters = list(page["clusters"])
        while page["next"]:
            page = client.get(page["next"])
            clusters.extend(page["clusters"])
    except ApiError as exc:
        fail(exc)
    emit(clusters, output, clusters_table)


@app.command("show")
def show(name: str, output: Output = Format.table) -> None:
    """Show one cluster, its nodes and their limits."""
    try:
        emit(Client().find_cluster(name), output, cluster_table)
    except ApiError as exc:
        fail(exc)


@app.command("delete")
def delete(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the delete to its end")] = False,
    output: Output = Format.table,
) -> None:
    """Delete a cluster and everything it holds."""
    client = Client()
    try:
        cluster = client.find_cluster(name)
        accepted = client.delete(f"/v2/clusters/{cluster['id']}")
        op = follow(client, accepted["operation"], output == Format.json) if wait else accepted[
            "operation"]
    except ApiError as exc:
        fail(exc)
    emit(op, output)
    if op["status"] == "failed":
        raise typer.Exit(1)


def _cluster_get(name: str, suffix: str) -> Any:
    """GET a sub-resource of the cluster called ``name``; errors end the command."""
    client = Client()
    try:
        cluster = client.find_cluster(name)
        return client.get(f"/v2/clusters/{cluster['id']}{suffix}")
    except ApiError as exc:
        fail(exc)


@app.command("credentials")
def credentials(name: str, output: Output = Format.table) -> None:
    """Show the admin username, password and connection URI."""
    creds = _cluster_get(name, "/credentials")
    if output == Format.json:
        emit(creds, output)
    else:
        for key in ("username", "password", "host", "port", "uri", "ca_cert_url"):
            typer.echo(f"{key}: {creds[key]}")


def connect(name: str) -> None:
    """Open the engine's own client (psql, mariadb, redis-cli) on a cluster, with its
    credentials, verifying the server against Hoard's CA (fetched and cached)."""
    creds = _cluster_get(name, "/credentials")
    command = creds["connect_command"]
    try:
        ca_file = str(Client().ca_file(creds["ca_cert_url"]))
    except ApiError as exc:
        fail(exc)
    placeholder = command["ca_file_placeholder"]
    argv = [ca_file if arg == placeholder else arg for arg in command["argv"]]
    env = {k: ca_file if v == placeholder else v for k, v in command["env"].items()}
    if shutil.which(argv[0]) is None:
        err_console.print(f"[red]error:[/red] {argv[0]} is not installed")
        raise typer.Exit(1)
    # Replace this process with the engine's own client; the password travels in
    # its environment, not its argv (which any user can read in ps).
    os.execvpe(argv[0], argv, {**os.environ, **env})  # noqa: S606


def finish(client: Client, accepted: dict[str, Any], output: Format) -> None:
    """Follow an accepted change to its end, show the cluster, and exit 1 if it failed."""
    try:
        op = follow(client, accepted["operation"], output == Format.json)
        cluster = client.get(f"/v2/clusters/{accepted['cluster']['id']}")
    except ApiError as exc:
        fail(exc)
    emit(cluster, output, cluster_table)
    if op["status"] == "failed":
        err_console.print(f"[red]{op['kind']} failed:[/red] {op['error']}")
        raise typer.Exit(1)


def _change(client: Client, name: str, method: str, suffix: str, body: dict[str, Any] | None,
            output: Format) -> None:
    """Start a change on a cluster and follow its operation to the end."""
    try:
        cluster = client.find_cluster(name)
        accepted = client.request(method, f"/v2/clusters/{cluster['id']}{suffix}", json=body)
    except ApiError as exc:
        fail(exc)
    finish(client, accepted, output)


DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan (what applies live, "
                                      "what needs a restart, the downtime); change nothing")]


def _patch(name: str, body: dict[str, Any], dry_run: bool, output: Format) -> None:
    """PATCH the cluster and follow the change, or with ``dry_run`` show its plan."""
    if not dry_run:
        _change(Client(), name, "PATCH", "", body, output)
        return
    client = Client()
    try:
        cluster = client.find_cluster(name)
        answer = client.request("PATCH", f"/v2/clusters/{cluster['id']}",
                                params={"dry_run": "true"}, json=body)
    except ApiError as exc:
        fail(exc)
    emit(answer["plan"], output, plan_table)


@app.command("resize")
def resize(
    name: str,
    size: Annotated[str | None, typer.Option(help="New size")] = None,
    storage_gb: Annotated[int | None, typer.Option("--storage-gb", help="New storage")] = None,
    dry_run: DryRun = False,
    output: Output = Format.table,
) -> None:
    """Change a cluster's size or grow its storage (restarts only when needed)."""
    body = {k: v for k, v in {"size": size, "storage_gb": storage_gb}.items() if v is not None}
    _patch(name, body, dry_run, output)


@app.command("window")
def window(
    name: str,
    day: Annotated[str | None, typer.Option(help="daily, or mon ... sun")] = None,
    start: Annotated[str | None, typer.Option(help="HH:MM, UTC")] = None,
    minutes: Annotated[int, typer.Option(help="How long it stays open (30-480)")] = 60,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the window")] = False,
    output: Output = Format.table,
) -> None:
    """Set the maintenance window in which Hoard restarts the cluster to apply
    settings waiting for a restart (or remove it)."""
    if remove == (day is not None or start is not None):
        err_console.print("[red]error:[/red] give --day and --start, or --remove")
        raise typer.Exit(2)
    body = None if remove else {"day": day, "start": start, "duration_minutes": minutes}
    _set_setting(name, "maintenance_window", body, output)


def _set_setting(name: str, field: str, value: dict[str, Any] | None, output: Format) -> None:
    """PATCH one of the cluster's settings that apply at once (null: remove it)."""
    client = Client()
    try:
        cluster = client.find_cluster(name)
        answer = client.request("PATCH", f"/v2/clusters/{cluster['id']}", json={field: value})
    except ApiError as exc:
        fail(exc)
    emit(answer["cluster"], output, cluster_table)


@app.command("autoscale")
def autoscale(
    name: str,
    max_gb: Annotated[int | None, typer.Option(help="The largest size the storage grows "
                                                    "to")] = None,
    threshold: Annotated[int, typer.Option(help="Percent used past which it grows "
                                                "(50-90)")] = 80,
    off: Annotated[bool, typer.Option("--off", help="Turn storage autoscaling off")] = False,
    output: Output = Format.table,
) -> None:
    """Let the storage grow by itself before it fills (by half again, up to
    --max-gb), or turn that off."""
    if off == (max_gb is not None):
        err_console.print("[red]error:[/red] give --max-gb, or --off")
        raise typer.Exit(2)
    body = None if off else {"max_gb": max_gb, "threshold_percent": threshold}
    _set_setting(name, "storage_autoscale", body, output)


@app.command("scale")
def scale(
    name: str,
    nodes: Annotated[int, typer.Option(help="The new number of nodes (1-5)")],
    output: Output = Format.table,
) -> None:
    """Grow or shrink a replicated cluster (new nodes copy the data from it)."""
    _change(Client(), name, "PATCH", "", {"nodes": nodes}, output)


@app.command("switchover")
def switchover(
    name: str,
    node: Annotated[str, typer.Option(help="Id of the replica to make the primary")],
    output: Output = Format.table,
) -> None:
    """Make a chosen replica the primary, losing no acknowledged write."""
    _change(Client(), name, "POST", "/switchover", {"node_id": node}, output)


@app.command("promote")
def promote(
    name: str,
    node: Annotated[str, typer.Option(help="Id of the replica to promote out")],
    new_name: Annotated[str, typer.Option("--name", help="Name of the new cluster")],
    output: Output = Format.table,
) -> None:
    """Promote a replica out into a standalone cluster of its own, with the data."""
    _change(Client(), name, "POST", f"/nodes/{node}/promote", {"name": new_name}, output)


@app.command("configure")
def configure(
    name: str,
    configuration: Annotated[str | None, typer.Argument(help="Configuration id; none detaches")
                             ] = None,
    dry_run: DryRun = False,
    output: Output = Format.table,
) -> None:
    """Attach a configuration to a cluster (or detach with no id)."""
    _patch(name, {"configuration_id": configuration}, dry_run, output)


@app.command("restart")
def restart(name: str, output: Output = Format.table) -> None:
    """Restart a cluster's servers (applies settings waiting for a restart)."""
    _change(Client(), name, "POST", "/actions/restart", None, output)


@app.command("apply-pending")
def apply_pending(name: str, output: Output = Format.table) -> None:
    """Restart now to apply the settings waiting for a restart (without waiting for
    the maintenance window)."""
    _change(Client(), name, "POST", "/actions/apply-pending", None, output)


@app.command("stop")
def stop(name: str, output: Output = Format.table) -> None:
    """Stop a cluster's servers; data is kept."""
    _change(Client(), name, "POST", "/actions/stop", None, output)


@app.command("start")
def start(name: str, output: Output = Format.table) -> None:
    """Start a stopped cluster."""
    _change(Client(), name, "POST", "/actions/start", None, output)


@app.command("events")
def events(name: str, output: Output = Format.table) -> None:
    """What happened to a cluster, oldest first."""
    page = _cluster_get(name, "/events?limit=1000")
    if output == Format.json:
        emit(page["events"], output)
    else:
        for event in page["events"]:
            typer.echo(f"{event['created_at']}  {event['kind']:<26} {event['message']}")


@app.command("top")
def top(
    name: str,
    every: Annotated[float, typer.Option("--every", min=0.5,
                                         help="Seconds between refreshes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print once and exit")] = False,
    output: Output = Format.table,
) -> None:
    """Each node's connections, operations per second, cache hits, lock waits,
    lag, storage, CPU and memory, refreshed in place until Ctrl-C."""
    client = Client()

    def fetch() -> tuple[dict[str, Any], dict[str, Any]]:
        cluster = client.find_cluster(name)
        # One-second steps: each series' last point is the newest sample itself,
        # not an average of a wider step that still holds older ones.
        return cluster, client.get(f"/v2/clusters/{cluster['id']}/metrics?since=2m&step=1")

    try:
        cluster, metrics = fetch()
        if once or output == Format.json:
            emit({str(k): v for k, v in latest(metrics).items()}, output,
                 lambda _: top_table(cluster, metrics))
            return
        with Live(top_table(cluster, metrics), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(every)
                live.update(top_table(*fetch()), refresh=True)
    except ApiError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
