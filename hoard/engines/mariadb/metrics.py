"""MariaDB's numbers for a node, from its global status counters and process list."""

from __future__ import annotations

from typing import Any

import pymysql

from hoard.domain import metrics as m

STATUS = ("Questions", "Innodb_buffer_pool_read_requests", "Innodb_buffer_pool_reads",
          "Innodb_row_lock_current_waits")
# Tenant connections: every session but Hoard's own account, the server's and
# Galera's threads, and clients still logging in.
CONNECTIONS = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER NOT IN "
               "(SUBSTRING_INDEX(CURRENT_USER(), '@', 1), 'system user', "
               "'event_scheduler', 'unauthenticated user')")


def collect(conn: pymysql.Connection[Any]) -> dict[str, float]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN %s", (STATUS,))
        status = {name: float(value) for name, value in cur.fetchall()}
        cur.execute(CONNECTIONS)
        (connections,) = cur.fetchone() or (0,)
    requests = status.get("Innodb_buffer_pool_read_requests", 0.0)
    misses = status.get("Innodb_buffer_pool_reads", 0.0)
    return {m.CONNECTIONS: float(connections),
            m.OPERATIONS: status.get("Questions", 0.0),
            m.CACHE_HITS: max(0.0, requests - misses), m.CACHE_MISSES: misses,
            m.LOCK_WAITS: status.get("Innodb_row_lock_current_waits", 0.0)}
