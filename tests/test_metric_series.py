"""How samples become series (rates from counters, ratios, means), how they are
downsampled, and how the store keeps them bounded: exact numbers, on real
stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from hoard.domain import metrics as m
from hoard.ids import new_id
from hoard.store import metrics as stored
from hoard.store.db import Store
from hoard.store.models import Cluster, MetricSample, Node, Project
from tests.pgserver import migrated_store


def test_rates_ratios_and_means_per_step() -> None:
    samples = [
        (100.0, {m.OPERATIONS: 0, m.CACHE_HITS: 0, m.CACHE_MISSES: 0, m.CONNECTIONS: 2}),
        (110.0, {m.OPERATIONS: 50, m.CACHE_HITS: 90, m.CACHE_MISSES: 10, m.CONNECTIONS: 4}),
        (120.0, {m.OPERATIONS: 150, m.CACHE_HITS: 120, m.CACHE_MISSES: 40, m.CONNECTIONS: 6}),
    ]
    got = m.series(samples, start=100.0, step=20, max_gap=30)
    assert [(p.at, p.value) for p in got["connections"]] == [(100.0, 3.0), (120.0, 6.0)]
    assert [(p.at, p.value) for p in got["operations_per_second"]] == [(100.0, 5.0),
                                                                       (120.0, 10.0)]
    assert [(p.at, p.value) for p in got["cache_hit_ratio"]] == [(100.0, 0.9), (120.0, 0.5)]


def test_a_counter_reset_or_a_gap_gives_no_rate() -> None:
    samples = [(0.0, {m.OPERATIONS: 500.0}), (10.0, {m.OPERATIONS: 3.0}),  # restarted
               (20.0, {m.OPERATIONS: 23.0}), (100.0, {m.OPERATIONS: 1000.0})]  # a gap
    got = m.series(samples, start=0.0, step=10, max_gap=30)
    assert [(p.at, p.value) for p in got["operations_per_second"]] == [(20.0, 2.0)]


def test_cpu_is_a_share_of_the_limit() -> None:
    samples = [(0.0, {m.CPU_SECONDS: 1.0, m.CPU_LIMIT: 0.5}),
               (10.0, {m.CPU_SECONDS: 3.5, m.CPU_LIMIT: 0.5})]
    assert [p.value for p in m.series(samples, 0.0, 10, 30)["cpu_usage_ratio"]] == [0.5]


def test_downsampling_keeps_counters_last_and_averages_gauges() -> None:
    samples = [(float(t), {m.OPERATIONS: float(t), m.CONNECTIONS: float(t // 10 % 2)})
               for t in range(0, 600, 10)]
    folded = m.downsample(samples, 300)
    assert folded == [(290.0, {m.OPERATIONS: 290.0, m.CONNECTIONS: 0.5}),
                      (590.0, {m.OPERATIONS: 590.0, m.CONNECTIONS: 0.5})]
    rates = m.series(folded, 0.0, 300, 600)["operations_per_second"]
    assert [(p.at, p.value) for p in rates] == [(300.0, 1.0)]


def test_since_is_a_duration_or_a_zoned_time() -> None:
    now = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
    assert m.parse_since("15m", now) == now - dt.timedelta(minutes=15)
    assert m.parse_since("2026-12-04T08:00:00+01:00", now) == now - dt.timedelta(hours=2)
    for bad in ("soon", "0h", "2026-12-04T08:00:00", "-1h", "1w"):
        with pytest.raises(ValueError):
            m.parse_since(bad, now)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with migrated_store(request.param) as made:
        yield made


def _node(store: Store) -> str:
    pid, node_id = new_id(), new_id()
    with store.session() as s:
        s.add(Project(id=pid, name=f"p{pid[-12:]}", is_admin=False, quota_clusters=5,
                      quota_nodes=5, quota_storage_gb=50))
        s.flush()
        cluster = Cluster(id=new_id(), project_id=pid, name="c", engine="redis", version="7",
                          size="nano", node_count=1, storage_gb=1, status="ACTIVE",
                          status_reason="", admin_user="admin", admin_password="x",
                          service_password="y")
        cluster.nodes = [Node(id=node_id, ordinal=0, role="primary", provider="local",
                              status="HEALTHY", status_reason="", limits={})]
        s.add(cluster)
    return node_id


def test_the_store_folds_old_samples_and_drops_older_ones(store: Store) -> None:
    node_id = _node(store)
    now = dt.datetime(2026, 12, 4, 12, 0)
    raw_keep, keep = dt.timedelta(hours=1), dt.timedelta(hours=3)
    with store.session() as s:
        # Every 10 s from 4 h ago to now: the first hour goes, the next two fold.
        for t in range(0, 4 * 3600, 10):
            at = now - dt.timedelta(hours=4) + dt.timedelta(seconds=t)
            stored.record(s, at, {node_id: {m.OPERATIONS: float(t), m.CONNECTIONS: 1.0}})
    for _ in range(3):  # an hour of raw samples per call
        with store.session() as s:
            stored.prune(s, now, raw_keep, keep, 300)
    with store.session() as s:
        mine = MetricSample.node_id == node_id
        counts = dict(s.execute(select(MetricSample.resolution, func.count()).where(mine)
                                .group_by(MetricSample.resolution)).all())
        oldest = s.scalar(select(func.min(MetricSample.at)).where(mine))
    assert counts == {0: 360, 300: 24}  # the last hour raw; two hours in 5-minute steps
    assert oldest == now - keep + dt.timedelta(seconds=290)  # a fold is stamped at its last
    with store.session() as s:
        samples = stored.read(s, [node_id], now - dt.timedelta(hours=2))[node_id]
    rates = m.series(samples, stored.epoch(now - dt.timedelta(hours=2)), 300, 600)
    assert {p.value for p in rates["operations_per_second"]} == {1.0}
    assert {p.value for p in rates["connections"]} == {1.0}
