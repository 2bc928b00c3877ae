"""Metric samples in the store: written by the observer, read by the API, and kept
to a bounded window: raw for ``raw_keep``, then one sample per ``step`` seconds
until ``keep``, then gone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, select, true
from sqlalchemy.orm import Session

from hoard.domain.metrics import Sample, downsample
from hoard.store.models import Cluster, MetricSample, Node, Project

ROLLUP_CHUNK = dt.timedelta(hours=1)  # the most raw time one prune folds


def epoch(at: dt.datetime) -> float:
    """A naive UTC store time as seconds since the epoch."""
    return at.replace(tzinfo=dt.UTC).timestamp()


def from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def record(s: Session, at: dt.datetime, samples: Mapping[str, Sample]) -> None:
    """One raw sample per node (by node id), all taken at ``at``."""
    s.add_all(MetricSample(node_id=node_id, resolution=0, at=at, values=dict(values))
              for node_id, values in samples.items())


def read(s: Session, node_ids: Iterable[str], since: dt.datetime
         ) -> dict[str, list[tuple[float, Sample]]]:
    """Each node's samples from ``since`` on, oldest first, at whatever resolution
    they are kept (raw and downsampled ones never cover the same time)."""
    out: dict[str, list[tuple[float, Sample]]] = {node_id: [] for node_id in node_ids}
    if not out:
        return out
    rows = s.execute(select(MetricSample.node_id, MetricSample.at, MetricSample.values)
                     .where(MetricSample.node_id.in_(list(out)), MetricSample.at >= since)
                     .order_by(MetricSample.at))
    for node_id, at, values in rows:
        out[node_id].append((epoch(at), values))
    return out


@dataclass(frozen=True)
class Latest:
    """A node's newest raw sample, with what an operator's labels need."""

    project: str
    cluster: str
    cluster_id: str
    node_id: str
    engine: str
    values: Sample


def latest(s: Session, since: dt.datetime) -> list[Latest]:
    """Every node's newest raw sample taken since ``since`` (nodes without one are
    left out: a scrape shows what is current, never a stale value)."""
    newest = (select(MetricSample.node_id, func.max(MetricSample.at).label("at"))
              .where(MetricSample.resolution == 0, MetricSample.at >= since)
              .group_by(MetricSample.node_id).subquery())
    rows = s.execute(
        select(Project.name, Cluster.name, Cluster.id, Node.id, Cluster.engine,
               MetricSample.values)
        .join(newest, (MetricSample.node_id == newest.c.node_id)
              & (MetricSample.at == newest.c.at) & (MetricSample.resolution == 0))
        .join(Node, Node.id == MetricSample.node_id)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Project, Project.id == Cluster.project_id)
        .order_by(Project.name, Cluster.name, Node.ordinal))
    return [Latest(*row) for row in rows]


def prune(s: Session, now: dt.datetime, raw_keep: dt.timedelta, keep: dt.timedelta,
          step: int, mine: ColumnElement[bool] | None = None) -> None:
    """Fold raw samples older than ``raw_keep`` into one per ``step`` seconds (up
    to an hour of them per call, whole steps only) and delete what is older than
    ``keep``, for the nodes of clusters matching ``mine``."""
    nodes = select(Node.id).join(Cluster, Cluster.id == Node.cluster_id).where(
        true() if mine is None else mine)
    s.execute(delete(MetricSample).where(MetricSample.at < now - keep,
                                         MetricSample.node_id.in_(nodes)))
    oldest = s.scalar(select(func.min(MetricSample.at)).where(
        MetricSample.resolution == 0, MetricSample.node_id.in_(nodes)))
    cutoff = from_epoch(epoch(now - raw_keep) // step * step)
    if oldest is None or oldest >= cutoff:
        return
    low = from_epoch(epoch(oldest) // step * step)
    high = min(cutoff, low + ROLLUP_CHUNK)
    window = (MetricSample.resolution == 0, MetricSample.at >= low, MetricSample.at < high,
              MetricSample.node_id.in_(nodes))
    by_node: dict[str, list[tuple[float, Sample]]] = {}
    for node_id, at, values in s.execute(
            select(MetricSample.node_id, MetricSample.at, MetricSample.values)
            .where(*window).order_by(MetricSample.at)):
        by_node.setdefault(node_id, []).append((epoch(at), values))
    s.execute(delete(MetricSample).where(*window))
    for node_id, samples in by_node.items():
        s.add_all(MetricSample(node_id=node_id, resolution=step, at=from_epoch(at), values=v)
                  for at, v in downsample(samples, step))
