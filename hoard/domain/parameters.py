"""Checking configuration values against an engine's parameter schema."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hoard.domain.errors import InvalidInput

MAX_STRING = 256


def validate(schema: Iterable[Any], values: Mapping[str, Any]) -> dict[str, int | bool | str]:
    """Every value checked against its parameter; all problems reported at once.

    ``schema`` holds :class:`hoard.engines.base.Parameter` objects (duck-typed
    here so the domain layer does not import engines).
    """
    by_name = {p.name: p for p in schema}
    problems: list[str] = []
    clean: dict[str, int | bool | str] = {}
    for name, value in values.items():
        param = by_name.get(name)
        if param is None:
            problems.append(f"{name}: not a parameter of this engine "
                            f"(known: {', '.join(sorted(by_name))})")
            continue
        if param.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name}: must be an integer")
            elif (param.minimum is not None and value < param.minimum) or (
                param.maximum is not None and value > param.maximum
            ):
                problems.append(f"{name}: {value} is outside {param.minimum}..{param.maximum}"
                                f"{' ' + param.unit if param.unit else ''}")
            else:
                clean[name] = value
        elif param.type == "boolean":
            if not isinstance(value, bool):
                problems.append(f"{name}: must be true or false")
            else:
                clean[name] = value
        elif param.type == "enum":
            if not isinstance(value, str) or value not in param.allowed:
                problems.append(f"{name}: must be one of {', '.join(param.allowed)}")
            else:
                clean[name] = value
        else:  # free strings are not offered: they are where injection lives
            problems.append(f"{name}: parameter type {param.type!r} is not settable")
    if problems:
        raise InvalidInput("; ".join(problems))
    return clean
