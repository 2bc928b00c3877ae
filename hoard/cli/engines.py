"""``hoard engine list``: the catalog, each version with the providers that
offer it, and what a provider cannot do yet (a create asking it is refused)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hoard.cli.client import ApiError, Client
from hoard.cli.output import Format, emit, fail

Output = Annotated[Format, typer.Option("-o", "--output", help="table or json")]


def rows(catalog: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(engine, version, providers, missing abilities by provider) per version,
    newest first; the default provider marked with '*'."""
    default = next((p["name"] for p in catalog["providers"] if p["default"]), "")
    found = []
    for engine in catalog["engines"]:
        missing = {p["name"]: p["missing_abilities"] for p in engine["providers"]}
        for offer in engine["version_providers"]:
            names = offer["providers"]
            lacks = "; ".join(f"{name}: {', '.join(missing[name])}"
                              for name in names if missing.get(name))
            found.append((engine["name"], offer["version"],
                          ", ".join(n + ("*" if n == default else "") for n in names),
                          lacks or "-"))
    return found


def _table(catalog: dict[str, Any]) -> Table:
    table = Table("ENGINE", "VERSION", "PROVIDERS (* default)", "NOT OFFERED YET")
    for row in rows(catalog):
        table.add_row(*row)
    return table


def list_engines(output: Output = Format.table) -> None:
    """Engines and versions, and the providers offering each."""
    try:
        emit(Client().get("/v2/engines"), output, _table)
    except ApiError as exc:
        fail(exc)
