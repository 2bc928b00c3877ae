"""Where the local provider runs a cluster's own services (its endpoint proxy,
its connection pooler): ``<root>/<cluster id>/``, owned by an OS account of the
service's own, and Hoard's records of it (account, process) under
``<records>/<cluster id>/``, where that account cannot write."""

from __future__ import annotations

import shutil
from pathlib import Path

from hoard.providers.osusers import UserPool
from hoard.providers.processes import Supervisor
from hoard.providers.usertree import UserTree


class ClusterDirectories:
    """One directory, account and record per cluster, for one kind of service."""

    def __init__(self, root: Path, records: Path, users: UserPool) -> None:
        self.root = root
        self.records = records
        self.users = users

    def _dir(self, cluster_id: str) -> Path:
        if not cluster_id.replace("-", "").isalnum():
            raise ValueError(f"bad cluster id {cluster_id!r}")
        return self.root / cluster_id

    def _record(self, cluster_id: str) -> Path:
        self._dir(cluster_id)  # checks the id
        return self.records / cluster_id

    def _tree(self, cluster_id: str, what: str) -> UserTree:
        """The cluster's directory, made and owned by its ``what`` account."""
        self.root.mkdir(exist_ok=True)
        self.root.chmod(0o711)  # each account reaches its own directory, lists none
        user = self.users.ensure(self._record(cluster_id), f"{what} {cluster_id}")
        directory = self._dir(cluster_id)
        directory.mkdir(exist_ok=True, mode=0o700)
        tree = UserTree(directory, user)
        tree.own_root(0o700)
        return tree

    def _remove(self, cluster_id: str, graceful: bool) -> None:
        """Stop the service, remove its files, account and record. Idempotent."""
        directory, record = self._dir(cluster_id), self._record(cluster_id)
        if directory.exists() or record.exists():
            Supervisor(directory, record, self.users.recorded(record)).stop(graceful)
        shutil.rmtree(directory, ignore_errors=True)
        self.users.remove(record)
        shutil.rmtree(record, ignore_errors=True)

    def cluster_ids(self) -> set[str]:
        found: set[str] = set()
        for parent in (self.root, self.records):
            if parent.exists():
                found |= {p.name for p in parent.iterdir() if p.is_dir()}
        return found
