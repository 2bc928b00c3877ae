"""Redis's own checks of a restored backup, on a throwaway node.

The restore already checked the backup's RDB whole with ``redis-check-rdb``
before the server loaded it, and the first start compared the keys loaded with
the keys the checker read. Here, on the running copy: ``redis-check-rdb`` again
on the RDB the server loaded (it may have rewritten it as its AOF base since),
and the keys of every database (``INFO keyspace``).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import PurePosixPath
from typing import Any

import redis

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import NodeContext, Verification, VerifiesRestores
from hoard.engines.redis import backup as rb


class RedisVerify(VerifiesRestores):
    """The ``VerifiesRestores`` ability of :class:`hoard.engines.redis.Redis`."""

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10) -> redis.Redis: ...

    @abstractmethod
    def _loaded_rdb(self, runner: NodeRunner) -> PurePosixPath | None:
        """The RDB file the node's server loads at its start, if it has one."""

    def verify(self, ctx: NodeContext, ca_file: str, runner: NodeRunner) -> Verification:
        checks = []
        rdb = self._loaded_rdb(runner)
        if rdb is not None:
            keys = rb.check_rdb(runner, rdb)
            checks.append(f"redis-check-rdb: {rdb.name} looks OK, {keys} keys")
        with self._connect(ctx, ca_file) as client:
            keyspace: Any = client.info("keyspace")
        counts = {name: int(db["keys"]) for name, db in sorted(keyspace.items())
                  if name.startswith("db") and isinstance(db, dict)}
        checks.append(f"INFO keyspace: {len(counts)} databases with keys")
        return Verification(checks=checks, counts=counts)
