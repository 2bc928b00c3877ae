"""Redis's numbers for a node, from INFO and the client list."""

from __future__ import annotations

from typing import Any

import redis

from hoard.domain import metrics as m


def collect(client: redis.Redis, service_user: str) -> dict[str, float]:
    info: Any = client.info()  # the default sections: clients, stats
    clients: Any = client.client_list()
    # Tenant connections: not Hoard's own account (the observer, Sentinel's
    # checks), not replication links (flags S and M), and not clients still
    # logging in (they are "default" until AUTH, a user Hoard turns off).
    tenant = [c for c in clients if c.get("user") not in (service_user, "default")
              and not set(str(c.get("flags", ""))) & {"S", "M"}]
    return {m.CONNECTIONS: float(len(tenant)),
            m.OPERATIONS: float(info.get("total_commands_processed", 0)),
            m.CACHE_HITS: float(info.get("keyspace_hits", 0)),
            m.CACHE_MISSES: float(info.get("keyspace_misses", 0)),
            m.LOCK_WAITS: float(info.get("blocked_clients", 0))}
