"""How full a Kubernetes node's volume is: the API server does not say (the
kubelet's volume statistics sit behind rights Hoard does not ask for), so the
filesystem is asked where it is mounted, by one exec into the node's pod
(``ExecRunner.statfs``: coreutils' ``stat -f``).

Used and total are counted as the local provider counts its own volumes
(statvfs: blocks less free blocks, all blocks, times the fundamental block
size), so alarms, the full-disk check and autoscaling read the same numbers
on either provider. Output that is not exactly that gives no reading (None),
with a log line saying what came: never a number guessed from it.

The observer asks every pass (``HOARD_OBSERVE_INTERVAL``, 2 s by default),
and each exec costs the API server a websocket and the kubelet a process in
the pod: a reading is kept for ``TTL`` seconds per node, as long as the
claim's capacity stays what it was (a growth that completes is read at once).
10 s is the autoscaler's own interval: a reading that old changes none of its
decisions, and an alarm or a full disk is said at most that much later. A
failed reading is kept as long, so a pod whose exec hangs costs one bounded
wait per ``TTL``, not one per pass.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hoard.domain.storage import StorageUsage

log = logging.getLogger(__name__)
TTL = 10.0  # seconds a node's reading is kept (see the module's docstring)
TIMEOUT = 10.0  # seconds one reading may take, in the pod and here
_STATFS = re.compile(r"\A(\d{1,20}) (\d{1,20}) (\d{1,20})\n?\Z")


def parse_statfs(text: str) -> StorageUsage:
    """``stat -f -c "%S %b %f"``'s line (block size, blocks, free blocks) as the
    storage used and its size; ValueError, quoting it, for anything else
    (another format, a block size or block count of 0, more free blocks than
    blocks)."""
    found = _STATFS.match(text)
    if found is None:
        raise ValueError(f"stat -f printed {text[:200]!r}, not three whole numbers")
    size, blocks, free = (int(n) for n in found.groups())
    if size == 0 or blocks == 0 or free > blocks:
        raise ValueError(f"stat -f printed {text[:200]!r}: a block size of {size}, "
                         f"{blocks} blocks, {free} free is not a filesystem")
    return StorageUsage((blocks - free) * size, blocks * size)


@dataclass(frozen=True)
class _Reading:
    key: str
    usage: StorageUsage | None
    at: float


class Readings:
    """Each node's last reading, kept ``ttl`` seconds under a key (the claim's
    capacity): thread-safe, as the observer reads nodes from a pool."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._kept: dict[str, _Reading] = {}
        self._lock = threading.Lock()

    def get(self, node_id: str, key: str,
            read: Callable[[], StorageUsage | None]) -> StorageUsage | None:
        """The kept reading if fresh and under ``key``; else ``read()``, kept."""
        now = self.clock()
        with self._lock:
            kept = self._kept.get(node_id)
        if kept is not None and kept.key == key and now - kept.at < self.ttl:
            return kept.usage
        usage = read()
        with self._lock:
            self._kept[node_id] = _Reading(key, usage, self.clock())
        return usage

    def forget(self, node_id: str) -> None:
        """Read the node afresh next time (its volume grew, or is gone)."""
        with self._lock:
            self._kept.pop(node_id, None)
