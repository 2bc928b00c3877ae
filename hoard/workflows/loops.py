"""Background loops of a worker (health observer, log archiver, backup scheduler):
each runs one pass every interval on a daemon thread, over the shards this
worker owns (see :mod:`hoard.workflows.membership`), and a failing pass is
logged, never fatal to the loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hoard.workflows.membership import background_pass

log = logging.getLogger(__name__)


class Loop:
    def __init__(self, name: str, interval: float, run_once: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self._run_once = run_once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hoard-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with background_pass():
                    self._run_once()
            except Exception:
                log.exception("%s pass failed", self.name)
