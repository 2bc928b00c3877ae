"""Checking configuration values against an engine's parameter schema."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hoard.domain.catalog import SIZES, Size
from hoard.domain.errors import InvalidInput

MAX_STRING = 256
UNIT_BYTES = {"kB": 1024, "MB": 1024**2}  # the units of sized parameters
GB = 1024**3


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


def check_fit(schema: Iterable[Any], values: Mapping[str, Any], size: Size, storage_gb: int,
              *, memory: bool = True, storage: bool = True) -> None:
    """Refuse sized values beyond their share of the node's memory (``memory``) or
    of the cluster's storage (``storage``), naming each limit; all at once.

    A parameter declares its shares (``memory_share``, ``storage_share``). The
    bounds keep a server from being given more than its node has: PostgreSQL
    maps ``shared_buffers`` at start and refuses to start without it; WAL kept
    beyond the volume fills it."""
    problems: list[str] = []
    for param in schema:
        value, unit = values.get(param.name), UNIT_BYTES.get(param.unit)
        if unit is None or isinstance(value, bool) or not isinstance(value, int):
            continue
        bounds = []
        if memory and param.memory_share is not None:
            bounds.append((param.memory_share, size.memory_mb * UNIT_BYTES["MB"],
                           f"a {size.name} node's {size.memory_mb} MB of memory"))
        if storage and param.storage_share is not None:
            bounds.append((param.storage_share, storage_gb * GB,
                           f"{storage_gb} GB of storage"))
        for share, total, what in bounds:
            limit = int(total * share) // unit
            if value > limit:
                problems.append(f"{param.name}: {value} {param.unit} does not fit {what}: "
                                f"at most {limit} {param.unit} ({share:.0%})")
    if problems:
        raise InvalidInput("; ".join(problems))


def check_fits_some_size(schema: Iterable[Any], values: Mapping[str, Any],
                         max_storage_gb: int) -> None:
    """A configuration (not yet attached) must fit at least the largest size and
    storage: a value that fits no cluster is refused when it is made."""
    largest = max(SIZES.values(), key=lambda s: s.memory_mb)
    check_fit(schema, values, largest, max_storage_gb)
