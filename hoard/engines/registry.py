"""The engines Hoard offers. Adding an engine is one module and one line here."""

from __future__ import annotations

from hoard.domain.errors import InvalidInput
from hoard.engines.base import Engine
from hoard.engines.mariadb import MariaDB
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis

ENGINES: dict[str, Engine] = {e.name: e for e in (PostgreSQL(), MariaDB(), Redis())}


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise InvalidInput(f"unknown engine {name!r}; available: {known}") from None
