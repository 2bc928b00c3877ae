"""The engines Hoard offers. Adding an engine is one package and one line here."""

from __future__ import annotations

from hoard.engines.base import Engine
from hoard.engines.mariadb import MariaDB
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis

ENGINES: dict[str, Engine] = {e.name: e for e in (PostgreSQL(), MariaDB(), Redis())}

