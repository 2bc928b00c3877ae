"""Removes uploads a crashed writer left in the backup store.

A writer killed mid-put (``kill -9``, a lost machine) leaves a temporary file or
an S3 multipart upload behind: never visible as an object, but it takes space
(and S3 bills for the parts) until someone aborts it.

An upload is aborted once this sweeper has seen it unfinished for ``grace``
seconds by its own clock, across looks, never by the time the store says it
began: stores' clocks differ from Hoard's, and some S3-compatible servers report
one fixed time for every upload. ``grace`` must exceed the longest a put can
run (the backup timeout), so a live upload is never aborted. A restarted control
plane starts counting again: an abandoned upload then waits one more ``grace``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hoard.backups.store import BackupStore, Unfinished

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, store: BackupStore, grace: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.grace, self.clock = store, grace, clock
        self.first_seen: dict[Unfinished, float] = {}

    def once(self) -> list[Unfinished]:
        """Look at the store's unfinished uploads; abort those seen for ``grace``."""
        now = self.clock()
        current = set(self.store.unfinished())
        self.first_seen = {u: self.first_seen.get(u, now) for u in current}
        aborted = [u for u, seen in self.first_seen.items() if now - seen >= self.grace]
        for upload in aborted:
            log.warning("aborting an upload left unfinished for %.0f s: %s",
                        now - self.first_seen.pop(upload), upload.key)
            self.store.abort(upload)
        return aborted
