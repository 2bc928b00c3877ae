"""The ``hoard`` command: ``serve`` runs the service; every other command talks to
the API (``HOARD_URL``, ``HOARD_TOKEN``), never to the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hoard.cli import backups, clusters, projects

app = typer.Typer(help="Hoard: databases as a service.", no_args_is_help=True)
app.add_typer(clusters.app, name="cluster", help="Create, list, show and delete clusters.")
app.add_typer(projects.app, name="project", help="Projects and their tokens (admin).")
app.add_typer(backups.app, name="backup", help="Take, list, show and delete backups.")
clusters.app.command("restore")(backups.restore)
app.command("connect")(clusters.connect)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    state_dir: Annotated[Path | None, typer.Option(help="Where Hoard keeps its state")] = None,
) -> None:
    """Run the API and the workers in one process."""
    import logging

    import uvicorn

    from hoard.api.app import create_app
    from hoard.settings import Settings

    # The store holds sealed passwords and token hashes: files Hoard creates are
    # private unless made readable on purpose (the CA certificate, node dirs).
    os.umask(0o077)
    overrides: dict[str, object] = {"host": host, "port": port}
    if state_dir is not None:
        overrides["state_dir"] = state_dir.resolve()
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    token_file = settings.state_dir / "admin-token"
    typer.echo(f"Hoard API on http://{host}:{port}/v2 (docs: /v2/docs)")
    typer.echo(f"State in {settings.state_dir}")
    if not settings.admin_token:
        typer.echo(f"Admin token: {token_file} (export HOARD_TOKEN=$(cat {token_file}))")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def main() -> None:
    app(prog_name="hoard", auto_envvar_prefix=None)

