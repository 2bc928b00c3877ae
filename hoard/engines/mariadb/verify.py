"""MariaDB's own checks of a restored backup, on a throwaway node.

The restore already ran ``mbstream`` (each chunk of the stream carries a
checksum) and ``mariadb-backup --prepare`` (crash recovery of the copied InnoDB
files, which checks each page it reads). Here, on the running copy:
``CHECK TABLE ... EXTENDED`` on every base table (what ``mariadb-check
--extended`` runs), the system's tables included, and a row count of every
table of the tenant's databases.
"""

from __future__ import annotations

from abc import abstractmethod

import pymysql

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import NodeContext, Verification, VerifiesRestores

_NOT_COUNTED = frozenset({"mysql", "sys"})
_SKIPPED = ("information_schema", "performance_schema")  # views over the server's memory


def _ident(name: str) -> str:
    """A backtick-quoted identifier (statements here go unformatted: no ``%``
    escaping)."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL")
    return "`" + name.replace("`", "``") + "`"


class MariaDBVerify(VerifiesRestores):
    """The ``VerifiesRestores`` ability of :class:`hoard.engines.mariadb.MariaDB`."""

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                 io_timeout: float | None = None) -> pymysql.Connection: ...

    def verify(self, ctx: NodeContext, ca_file: str, runner: NodeRunner) -> Verification:
        counts: dict[str, int] = {}
        with self._connect(ctx, ca_file) as conn, conn.cursor() as cur:
            cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                        "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN "
                        f"({', '.join(repr(s) for s in _SKIPPED)}) "
                        "ORDER BY TABLE_SCHEMA, TABLE_NAME")
            tables = [(str(schema), str(name)) for schema, name in cur.fetchall()]
            for schema, name in tables:
                table = f"{_ident(schema)}.{_ident(name)}"
                cur.execute(f"CHECK TABLE {table} EXTENDED")
                rows = list(cur.fetchall())
                problems = [str(r[3]) for r in rows if str(r[2]).lower() == "error"]
                status = [str(r[3]) for r in rows if str(r[2]).lower() == "status"]
                if problems or not status or status[-1] != "OK":
                    said = "; ".join(problems or status or ["no status"])
                    raise RuntimeError(f"CHECK TABLE {schema}.{name} failed: {said[:300]}")
                if schema not in _NOT_COUNTED:
                    cur.execute(f"SELECT COUNT(*) FROM {table}")
                    found = cur.fetchone()
                    counts[f"{schema}.{name}"] = int(found[0]) if found else 0
        return Verification(
            checks=["mbstream and mariadb-backup --prepare (page checksums, crash recovery)",
                    f"CHECK TABLE ... EXTENDED: {len(tables)} tables"],
            counts=counts)
