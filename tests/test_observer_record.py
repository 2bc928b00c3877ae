"""The observer writes only what moved: a pass whose observations match what
it loaded opens no write transaction (at 100,000 clusters that is the
difference between one read per batch and a transaction per cluster:
bench/observer_pass.py). These cases pin down what counts as a change."""

from __future__ import annotations

from hoard.domain.storage import StorageUsage
from hoard.store.models import Cluster, Node
from hoard.workflows.observer import Observation, _differs

GB = 1 << 30


def _cluster(status: str = "ACTIVE", reason: str = "", node_status: str = "HEALTHY",
             node_reason: str = "", used: int | None = GB // 2) -> Cluster:
    cluster = Cluster(id="c", status=status, status_reason=reason)
    cluster.nodes = [Node(id="n", ordinal=0, status=node_status, status_reason=node_reason,
                          storage_used_bytes=used, storage_total_bytes=GB)]
    return cluster


def test_a_quiet_observation_changes_nothing() -> None:
    assert not _differs(_cluster(), [Observation("n", True, "", StorageUsage(GB // 2, GB))])
    assert not _differs(_cluster(), [Observation("n", True, "")])  # no storage reading
    down = _cluster("DEGRADED", "node 0: refused", "UNHEALTHY", "refused")
    assert not _differs(down, [Observation("n", False, "refused")])


def test_health_and_its_reason_are_changes() -> None:
    assert _differs(_cluster(), [Observation("n", False, "refused")])
    down = _cluster("DEGRADED", "node 0: refused", "UNHEALTHY", "refused")
    assert _differs(down, [Observation("n", True, "")])
    assert _differs(down, [Observation("n", False, "timed out")])


def test_storage_is_a_change_once_it_moves_by_one_percent() -> None:
    assert not _differs(_cluster(), [Observation("n", True, "",
                                                 StorageUsage(GB // 2 + GB // 200, GB))])
    assert _differs(_cluster(), [Observation("n", True, "",
                                             StorageUsage(GB // 2 + GB // 50, GB))])
    assert _differs(_cluster(used=None), [Observation("n", True, "", StorageUsage(1, GB))])


def test_a_cluster_status_out_of_step_with_its_nodes_is_a_change() -> None:
    assert _differs(_cluster(status="DEGRADED", reason="node 0: old"),
                    [Observation("n", True, "")])
