"""A cluster's connection pooler on the local provider: one supervised process
per cluster, declared by the engine (``ServiceSpec``), under ``<root>/<cluster
id>/`` as an OS account of its own, with Hoard's records of it (account,
process) under ``<records>/<cluster id>/``, where that account cannot write.

The pooler reads its files relative to its working directory, so the engine
needs to know nothing of where it runs. A file that changes under a running
pooler is followed by the spec's reload signal (PgBouncer re-reads its
configuration and users on SIGHUP, keeping its clients); a pooler that is not
running is started (a dead one too: the observer ensures it on every pass,
which is also how its users are kept in sync). Files marked ``keep`` (its key
and certificate) are written only when missing.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

from hoard.domain.nodes import ServiceFile, ServiceSpec
from hoard.providers.clusterdirs import ClusterDirectories
from hoard.providers.osusers import UserPool
from hoard.providers.processes import Supervisor
from hoard.providers.usertree import UserTree


class LocalPoolers(ClusterDirectories):
    def __init__(self, root: Path, records: Path, users: UserPool) -> None:
        super().__init__(root, records, users)
        # One change at a time per pooler in this process (the observer's upkeep
        # and a workflow's step may ensure the same one at once).
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    @staticmethod
    def _write(tree: UserTree, file: ServiceFile) -> bool:
        """Write ``file`` unless it holds that already (or is kept and exists)."""
        current = tree.read_bytes(file.name)
        if current == file.content or (file.keep and current is not None):
            return False
        tree.write_stream(file.name, [file.content], file.mode)
        return True

    def ensure(self, cluster_id: str, spec: ServiceSpec) -> bool:
        """Write the files; start the pooler unless it runs, else reload it if a
        file changed. True if it was started."""
        with self._locks[cluster_id]:
            tree = self._tree(cluster_id, "pooler")
            changed = [self._write(tree, f) for f in spec.files]
            supervisor = Supervisor(self._dir(cluster_id), self._record(cluster_id), tree.user)
            if supervisor.start(spec.process):
                return True
            if any(changed):
                supervisor.signal(spec.process.name, spec.reload_signal)
            return False

    def remove(self, cluster_id: str) -> None:
        """Stop the pooler, remove its files and account. Idempotent."""
        with self._locks[cluster_id]:
            self._remove(cluster_id, graceful=False)
        self._locks.pop(cluster_id, None)
