"""PostgreSQL's own checks of a restored backup, on a throwaway node.

The restore itself already ran ``pg_verifybackup`` (every file against the
backup's manifest, and the WAL from the backup's start to its end) and
replayed that WAL to a consistent state. Here, on the running copy, in every
database: ``amcheck`` (installed in the copy only) reads every table's pages
(``verify_heapam``) and checks every B-tree index against its table
(``bt_index_check`` with ``heapallindexed``), and every table's rows are counted.
"""

from __future__ import annotations

from abc import abstractmethod

import psycopg
from psycopg import sql

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import NodeContext, Verification, VerifiesRestores

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm', 't') AND n.nspname NOT LIKE 'pg_temp%'
   AND n.nspname NOT LIKE 'pg_toast_temp%'
 ORDER BY n.nspname, c.relname
"""
_INDEXES = """
SELECT c.oid, n.nspname, c.relname
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_am a ON a.oid = c.relam
 WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready
   AND c.relpersistence <> 't'
 ORDER BY n.nspname, c.relname
"""


class PostgreSQLVerify(VerifiesRestores):
    """The ``VerifiesRestores`` ability of :class:`hoard.engines.postgresql.PostgreSQL`."""

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                 dbname: str = "postgres") -> psycopg.Connection: ...

    def verify(self, ctx: NodeContext, ca_file: str, runner: NodeRunner) -> Verification:
        with self._connect(ctx, ca_file) as conn:
            databases = [str(r[0]) for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                "ORDER BY datname").fetchall()]
        counts: dict[str, int] = {}
        tables = indexes = 0
        for database in databases:
            with self._connect(ctx, ca_file, dbname=database) as conn:
                checked_tables, checked_indexes = _check_database(conn, database, counts)
            tables += checked_tables
            indexes += checked_indexes
        return Verification(
            checks=["pg_verifybackup: every file against the backup manifest, and its WAL",
                    f"amcheck verify_heapam: {tables} tables in {len(databases)} databases",
                    f"amcheck bt_index_check (heapallindexed): {indexes} B-tree indexes"],
            counts=counts)


def _check_database(conn: psycopg.Connection, database: str,
                    counts: dict[str, int]) -> tuple[int, int]:
    """amcheck every table and B-tree index of one database; count the rows of its
    tables (not the system's). How many tables and indexes were checked."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    tables = conn.execute(_TABLES).fetchall()
    for oid, schema, name, _kind in tables:
        try:  # a page whose checksum fails is an error, not a row
            found = conn.execute(
                "SELECT blkno, offnum, msg FROM verify_heapam(%s::oid, on_error_stop => true) "
                "LIMIT 1", (oid,)).fetchone()
        except psycopg.Error as exc:
            raise RuntimeError(f"amcheck: table {database}.{schema}.{name} is corrupted: "
                               f"{_said(exc)}") from None
        if found is not None:
            raise RuntimeError(f"amcheck: table {database}.{schema}.{name} is corrupted "
                               f"(block {found[0]}, item {found[1]}): {found[2]}")
    indexes = conn.execute(_INDEXES).fetchall()
    for oid, schema, name in indexes:
        try:
            conn.execute("SELECT bt_index_check(%s::oid, true)", (oid,))
        except psycopg.Error as exc:
            raise RuntimeError(f"amcheck: index {database}.{schema}.{name} is corrupted: "
                               f"{_said(exc)}") from None
    for _oid, schema, name, kind in tables:
        if kind != "r" or schema in _SYSTEM_SCHEMAS:
            continue
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name))).fetchone()
        counts[f"{database}.{schema}.{name}"] = int(row[0]) if row else 0
    return len(tables), len(indexes)


def _said(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
