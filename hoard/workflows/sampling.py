"""Metric samples taken during the observer's pass: the observer already reaches
every node over its own protocol, so a sample costs one more short query on a
pass that is due (every ``HOARD_METRICS_INTERVAL`` seconds), no process of its
own. Samples are written one transaction per observed batch, and the loop prunes
the store to its bounded window once a minute."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from hoard.domain import metrics as m
from hoard.domain.storage import StorageUsage
from hoard.engines.base import Metrics
from hoard.store import metrics as stored
from hoard.store import models
from hoard.workflows.membership import my_clusters
from hoard.workflows.services import services

log = logging.getLogger(__name__)
ROLLUP_STEP = 300  # seconds a downsampled sample stands for
PRUNE_EVERY = 60.0


class Sampling:
    """When the observer's passes take samples, and when they prune."""

    def __init__(self, interval: float, raw_keep: dt.timedelta, keep: dt.timedelta) -> None:
        self.interval = interval  # 0: no samples
        self.raw_keep, self.keep = raw_keep, keep
        self._lock = threading.Lock()
        self._last_sample = self._last_prune = float("-inf")

    def due(self) -> bool:
        """Whether this pass takes samples (and from now on, the next one is due
        ``interval`` later)."""
        if self.interval <= 0:
            return False
        with self._lock:
            now = time.monotonic()
            # A little slack, so a pass that starts a hair early is not skipped.
            if now - self._last_sample < self.interval * 0.9:
                return False
            self._last_sample = now
            return True

    def prune_due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last_prune < PRUNE_EVERY:
                return False
            self._last_prune = now
            return True


def node_sample(cluster: models.Cluster, node: models.Node, healthy: bool,
                storage: StorageUsage | None, lag_bytes: int | None = None) -> dict[str, float]:
    """One node's sample: its engine's numbers (when it answers), the provider's
    CPU and memory, the storage the observer already measured, and the lag the
    HA machinery reported."""
    svc = services()
    engine = svc.engines[cluster.engine]
    values: dict[str, float] = {}
    if healthy and isinstance(engine, Metrics):
        try:
            values.update(engine.metrics(svc.node_context(cluster, node), svc.ca_file, timeout=2))
        except Exception as exc:  # a probe reports through health, never raises
            log.debug("metrics of node %s: %s", node.id, exc)
    try:
        values.update(svc.provider_for(node).resource_usage(node.id))
    except Exception as exc:  # a sample never costs the node its health check
        log.debug("resource use of node %s: %s", node.id, exc)
    if storage is not None:
        values[m.STORAGE_USED] = float(storage.used_bytes)
        values[m.STORAGE_TOTAL] = float(storage.total_bytes)
    if lag_bytes is not None:
        values[m.LAG] = float(lag_bytes)
    return values


def record(samples: Mapping[str, Mapping[str, float]]) -> None:
    """Write one batch's samples (by node id) in one transaction, leaving out
    nodes removed since the batch was loaded. A failed write loses these
    samples only (the next pass takes new ones), never the pass."""
    if not samples:
        return
    try:
        with services().store.session() as s:
            alive = set(s.scalars(select(models.Node.id).where(models.Node.id.in_(list(samples)))))
            stored.record(s, models.utcnow(), {k: v for k, v in samples.items() if k in alive})
    except SQLAlchemyError as exc:  # e.g. a node deleted between the two statements
        log.warning("metric samples of %d nodes not recorded: %s", len(samples), exc)


def prune(sampling: Sampling) -> None:
    """Fold and drop this worker's clusters' aged samples; a failure is logged and
    left to the next prune, never a reason to skip the pass's health checks."""
    try:
        with services().store.session() as s:
            stored.prune(s, models.utcnow(), sampling.raw_keep, sampling.keep, ROLLUP_STEP,
                         my_clusters())
    except SQLAlchemyError:
        log.exception("pruning metric samples failed")
