"""A worker process (``hoard worker``), and the background loops every worker
runs: it holds a lease, runs workflows (its own, the queue's, and those of
workers that died), and observes, archives and schedules its share of the
clusters. ``hoard serve`` runs the same inside the API process."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

from hoard.settings import Settings
from hoard.workflows import runtime
from hoard.workflows.archiver import archiver
from hoard.workflows.autoscale import autoscaler
from hoard.workflows.loops import Loop
from hoard.workflows.maintenance import maintainer
from hoard.workflows.observer import observer
from hoard.workflows.sampling import Sampling
from hoard.workflows.scheduler import scheduler, store_sweeper
from hoard.workflows.services import build

log = logging.getLogger(__name__)
WAKE_SECONDS = 0.5  # how often the main thread looks for a stop signal


def background_loops(settings: Settings) -> list[Loop]:
    sampling = Sampling(settings.metrics_interval, timedelta(hours=settings.metrics_raw_hours),
                        timedelta(days=settings.metrics_keep_days))
    return [observer(settings.observe_interval, settings.observe_batch, sampling),
            archiver(settings.archive_interval), scheduler(settings.schedule_interval),
            store_sweeper(settings.sweep_interval, settings.backup_timeout),
            maintainer(settings.maintenance_interval), autoscaler(settings.autoscale_interval),
            runtime.outbox(settings.outbox_interval)]


def start_worker(settings: Settings) -> list[Loop]:
    """Join, launch the workflow runtime and start the loops; return the loops."""
    runtime.launch(settings)
    loops = background_loops(settings)
    for loop in loops:
        loop.start()
    return loops


def stop_worker(settings: Settings, loops: list[Loop]) -> None:
    """Drain: no new passes, running workflows get ``HOARD_DRAIN_SECONDS`` to
    finish, then the lease is given up and the rest is taken over elsewhere."""
    runtime.stop_taking_work()
    for loop in loops:
        loop.stop()
    runtime.shutdown(settings.drain_seconds)


def run(settings: Settings) -> None:
    """``hoard worker``: until SIGTERM or SIGINT, then drain and leave."""
    build(settings, migrate_schema=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loops = start_worker(settings)
    log.info("worker %s running", settings.worker_id)
    # Woken twice a second, not only by the signal: Python runs a handler in the
    # main thread, and a signal the kernel hands to another of the process's
    # threads does not interrupt the main thread's wait (a SIGTERM was seen to
    # go unheard for over a minute that way).
    while not stop.wait(WAKE_SECONDS):
        pass
    log.info("worker %s stopping: draining for up to %g s", settings.worker_id,
             settings.drain_seconds)
    stop_worker(settings, loops)
