"""``hoard cluster logs``: a node's server or slow-query log, followed with -f."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from hoard.cli.client import ApiError, Client
from hoard.cli.output import err_console, fail

_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since_time(text: str) -> str:
    """An RFC 3339 time as given, or one that far back from now (``10m``, ``2h``)."""
    ago = _AGO.fullmatch(text)
    if not ago:
        return text  # the API says what is wrong with it
    at = datetime.now(UTC) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _node_id(client: Client, cluster: dict[str, Any], node: str) -> str:
    """A node by its ordinal (0, 1, ...) or its id."""
    if not node.isdigit():
        return node
    members = client.get(f"/v2/clusters/{cluster['id']}")["members"]
    found = [m["id"] for m in members if m["ordinal"] == int(node)]
    if not found:
        raise ApiError(404, "Not found", f"cluster {cluster['name']!r} has no node {node}")
    return str(found[0])


def _print(entry: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(entry))
    elif "end" in entry:
        err_console.print(f"[yellow]{entry['end']}[/yellow]")
    else:
        typer.echo(f"{entry['time'] or '-'}  {entry['line']}")


def logs(
    name: str,
    follow: Annotated[bool, typer.Option("-f", "--follow",
                                         help="Keep printing new entries (Ctrl-C ends)")] = False,
    node: Annotated[str | None, typer.Option(
        help="A node's ordinal (0, 1, ...) or id; default: the primary")] = None,
    since: Annotated[str | None, typer.Option(
        help="Entries from this RFC 3339 time on, or this far back: 30s, 10m, 2h, 1d")] = None,
    slow: Annotated[bool, typer.Option("--slow", help="The slow-query log (its threshold is "
                                       "a configuration parameter)")] = False,
    limit: Annotated[int, typer.Option(help="The newest this many entries (at most 1000)")
                     ] = 200,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object a line")] = False,
) -> None:
    """A node's server log (or --slow, its slow-query log), secrets scrubbed."""
    client = Client()
    try:
        cluster = client.find_cluster(name)
        params: dict[str, Any] = {"kind": "slow" if slow else "server", "limit": limit}
        if node is not None:
            params["node"] = _node_id(client, cluster, node)
        if since is not None:
            params["since"] = since_time(since)
        path = f"/v2/clusters/{cluster['id']}/logs"
        if not follow:
            page = client.get(path, params=params)
            for entry in page["lines"]:
                _print(entry, json_lines)
            if page["truncated"] and not json_lines:
                err_console.print("[yellow]older entries left out: use --since or "
                                  "--limit[/yellow]")
            return
        for raw in client.stream_lines(path, {**params, "follow": "true"}):
            if raw:
                _print(json.loads(raw), json_lines)
    except ApiError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
