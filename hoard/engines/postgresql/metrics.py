"""PostgreSQL's numbers for a node, from its statistics views in one query."""

from __future__ import annotations

import psycopg

from hoard.domain import metrics as m

# Tenant connections exclude Hoard's own account (the observer, Patroni) and
# replication senders; lock waits are sessions waiting for a lock right now.
QUERY = """
SELECT (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND usename <> current_user),
       sum(xact_commit + xact_rollback), sum(blks_hit), sum(blks_read),
       (SELECT count(*) FROM pg_locks WHERE NOT granted)
  FROM pg_stat_database
"""


def collect(conn: psycopg.Connection) -> dict[str, float]:
    row = conn.execute(QUERY).fetchone()
    assert row is not None  # an aggregate always answers one row
    return {m.CONNECTIONS: float(row[0]), m.OPERATIONS: float(row[1] or 0),
            m.CACHE_HITS: float(row[2] or 0), m.CACHE_MISSES: float(row[3] or 0),
            m.LOCK_WAITS: float(row[4])}
