"""The ``hoard`` command: ``serve`` runs the service; every other command talks to
the API (``HOARD_URL``, ``HOARD_TOKEN``), never to the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hoard.cli import backups, clusters, engines, projects, workers

if TYPE_CHECKING:
    from hoard.settings import Settings

app = typer.Typer(help="Hoard: databases as a service.", no_args_is_help=True)
app.add_typer(clusters.app, name="cluster", help="Create, list, show and delete clusters.")
app.add_typer(projects.app, name="project", help="Projects and their tokens (admin).")
app.add_typer(backups.app, name="backup", help="Take, list, show and delete backups.")
clusters.app.command("restore")(backups.restore)
engine_app = typer.Typer(no_args_is_help=True)
app.add_typer(engine_app, name="engine", help="The catalog: engines, versions, providers.")
engine_app.command("list")(engines.list_engines)
app.command("connect")(clusters.connect)


StateDir = Annotated[Path | None, typer.Option(help="Where Hoard keeps its state")]


def _settings(state_dir: Path | None, **overrides: object) -> Settings:
    """Settings from HOARD_* and the options; logging set up; private files."""
    import logging

    from hoard.settings import Settings

    # The store holds sealed passwords and token hashes: files Hoard creates are
    # private unless made readable on purpose (the CA certificate, node dirs).
    os.umask(0o077)
    if state_dir is not None:
        overrides["state_dir"] = state_dir.resolve()
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


def _serve_http(settings: Settings, run_workers: bool, processes: int = 1) -> None:
    import uvicorn

    from hoard.api.app import create_app
    from hoard.api.serving import HTTP

    typer.echo(f"Hoard API on http://{settings.host}:{settings.port}/v2 (docs: /v2/docs)")
    typer.echo(f"Console on http://{settings.host}:{settings.port}/ (open it in a browser)")
    typer.echo(f"State in {settings.state_dir}")
    if not settings.admin_token:
        token_file = settings.state_dir / "admin-token"
        typer.echo(f"Admin token: {token_file} (export HOARD_TOKEN=$(cat {token_file}))")
    if processes > 1:  # uvicorn's own process manager, each building its app
        os.environ["HOARD_STATE_DIR"] = str(settings.state_dir)
        uvicorn.run("hoard.api.app:api_from_environment", factory=True, host=settings.host,
                    port=settings.port, workers=processes, log_level="warning",
                    http=HTTP, access_log=False)
        return
    # httptools parses a request in C (h11, the default, in Python), with
    # TCP_NODELAY (hoard/api/serving.py); no access log, as /metrics counts requests.
    uvicorn.run(create_app(settings, run_workers=run_workers), host=settings.host,
                port=settings.port, log_level="warning", http=HTTP, access_log=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    state_dir: StateDir = None,
) -> None:
    """Run the API and a worker in one process (the embedded default: SQLite)."""
    _serve_http(_settings(state_dir, host=host, port=port), run_workers=True)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    state_dir: StateDir = None,
    processes: Annotated[int, typer.Option(help="HTTP processes to run", min=1)] = 1,
) -> None:
    """Run the API only: operations are announced to the `hoard worker`s.
    Any number may run on one PostgreSQL store (run `hoard migrate` first)."""
    settings = _settings(state_dir, host=host, port=port)
    if not settings.database_url:
        typer.echo("hoard api: `hoard api` needs a PostgreSQL store (HOARD_DATABASE_URL) "
                   "shared with `hoard worker`s; on SQLite run `hoard serve`", err=True)
        raise typer.Exit(1)
    _serve_http(settings, run_workers=False, processes=processes)


worker_app = typer.Typer(help="Run a worker, or list the workers (admin).")
app.add_typer(worker_app, name="worker")


@worker_app.callback(invoke_without_command=True)
def worker(ctx: typer.Context, state_dir: StateDir = None) -> None:
    """Run a worker: workflows, health observer, log archiver, backup schedules.
    Any number may run on one PostgreSQL store, each with its own
    HOARD_WORKER_ID; they split the clusters and take over each other's work."""
    if ctx.invoked_subcommand is not None:
        return
    from hoard.workflows.worker import run

    try:
        run(_settings(state_dir))
    except RuntimeError as exc:
        typer.echo(f"hoard worker: {exc}", err=True)
        raise typer.Exit(1) from None


worker_app.command("list")(workers.list_workers)


@app.command()
def migrate(state_dir: StateDir = None) -> None:
    """Bring the state store's schema (and the workflow store's) up to date, and
    make the state directory's keys and CA if they are not there yet."""
    from hoard.api.auth import bootstrap_admin
    from hoard.workflows.runtime import migrate_workflows
    from hoard.workflows.services import build

    settings = _settings(state_dir)
    services = build(settings, migrate_schema=True)
    bootstrap_admin(services.store, settings)
    migrate_workflows(settings)
    typer.echo("the state store is up to date")


def main() -> None:
    app(prog_name="hoard", auto_envvar_prefix=None)

