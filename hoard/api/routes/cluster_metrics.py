"""GET /v2/clusters/{id}/metrics: a cluster's nodes' metrics over time, from the
samples the observer keeps (hoard/workflows/sampling.py); never a query to a node."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from hoard.api.auth import Principal, authenticate
from hoard.api.changes import get_cluster
from hoard.api.schemas import ClusterMetrics, MetricSeries
from hoard.domain import metrics as m
from hoard.domain.errors import InvalidInput
from hoard.settings import Settings
from hoard.store import metrics as stored
from hoard.workflows.sampling import ROLLUP_STEP
from hoard.workflows.services import Services

router = APIRouter(prefix="/v2/clusters", tags=["clusters"])
Auth = Annotated[Principal, Depends(authenticate)]
UNITS = {kind.name: kind.unit for kind in m.SERIES}


def _window(settings: Settings, since: str, step: int | None,
            now: dt.datetime) -> tuple[dt.datetime, int]:
    """The validated start (UTC) and step of a query, or a 422 that says what to fix."""
    try:
        start = m.parse_since(since, now)
    except ValueError as exc:
        raise InvalidInput(f"since: {exc}") from None
    span = (now - start).total_seconds()
    if span <= 0:
        raise InvalidInput(f"since: {since!r} is not in the past")
    keep = dt.timedelta(days=settings.metrics_keep_days)
    if now - start > keep:
        raise InvalidInput(f"since: samples are kept for {settings.metrics_keep_days:g} days; "
                           f"ask for {since!r} no further back than that")
    if step is None:
        return start, m.default_step(span, settings.metrics_interval)
    if span / step > m.MAX_POINTS:
        raise InvalidInput(f"step: {step} s over {int(span)} s gives more than {m.MAX_POINTS} "
                           f"points; use a step of at least {int(span // m.MAX_POINTS) + 1} s")
    return start, step


@router.get("/{cluster_id}/metrics", response_model=ClusterMetrics)
def cluster_metrics(
    cluster_id: str, principal: Auth, request: Request,
    since: Annotated[str, Query(max_length=64, description=(
        "Where the series start: a duration back from now (90s, 15m, 1h, 2d) or an "
        "RFC 3339 time with its zone"))] = "1h",
    step: Annotated[int | None, Query(ge=1, le=86400, description=(
        "Seconds per point (default: about 120 points over the range); at most "
        f"{m.MAX_POINTS} points"))] = None,
) -> ClusterMetrics:
    """Each node's connections, operations per second, cache hit ratio, lock waits,
    replication lag, storage, CPU and memory: raw samples for the last
    ``HOARD_METRICS_RAW_HOURS``, 5-minute ones before that."""
    svc: Services = request.app.state.services
    now = dt.datetime.now(dt.UTC)
    start, step_s = _window(svc.settings, since, step, now)
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        nodes = {n.id: n.ordinal for n in cluster.nodes}
        samples = stored.read(s, nodes, start.replace(tzinfo=None))
    raw_gap = 3 * svc.settings.metrics_interval
    # Steps on a grid of whole multiples of the step: the same sample falls in the
    # same step whenever it is asked for, so polls see stable points.
    grid = start.timestamp() // step_s * step_s
    series = [
        MetricSeries(metric=name, unit=UNITS[name], node_id=node_id, ordinal=nodes[node_id],
                     points=[(p.at, round(p.value, 6)) for p in points])
        for node_id, node_samples in samples.items()
        for name, points in m.series(node_samples, grid, step_s,
                                     max(raw_gap, 2 * ROLLUP_STEP)).items()]
    return ClusterMetrics(cluster_id=cluster_id, since=start, until=now, step=step_s,
                          interval=svc.settings.metrics_interval,
                          series=sorted(series, key=lambda x: (x.metric, x.ordinal)))
