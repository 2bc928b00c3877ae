"""Storage alarms: past 80% and 95% used, a node's storage is named in the
cluster's status_reason and an event is written, once per crossing (up or back
down), never once per observer pass. The rules on their own, then against a
real Hoard whose Redis node's volume is filled by a file beside the server's."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from hoard.domain.storage import (
    CLEAR_MARGIN,
    GIB,
    StorageUsage,
    alarm_event,
    standing_alarm,
)
from hoard.store.models import Cluster, Node
from hoard.workflows.observer import Observation, _differs, _overall
from tests.conftest import HoardServer, create_cluster, delete_cluster, new_tenant


def use(percent: float) -> StorageUsage:
    return StorageUsage(math.ceil(GIB * percent / 100), GIB)


def _seen(percents: list[float], held: int = 0) -> tuple[int, list[tuple[str, str]]]:
    """The standing alarm and the events after the observer sees each use in
    turn (as it records them: the standing alarm carried from pass to pass)."""
    said = []
    for percent in percents:
        now = standing_alarm(use(percent), held)
        event = alarm_event(0, held, now, use(percent))
        if event is not None:
            said.append(event)
        held = now
    return held, said


def test_thresholds_and_one_event_per_crossing() -> None:
    assert [use(p).alarm for p in (0, 79.99, 80, 94.9, 95, 100)] == [0, 0, 80, 80, 95, 95]
    assert _seen([50, 79]) == (0, [])
    assert _seen([81, 90]) == (80, [  # the same side: no new event
        ("storage.alarm", "node 0: storage 81% used, past 80%: grow storage_gb before it fills")])
    held, said = _seen([81, 96])
    assert held == 95 and said[1][1].startswith("node 0: storage 96% used, past 95%")
    assert _seen([89], held=95) == (80, [
        ("storage.cleared", "node 0: storage back under 95% (89% used)")])
    assert _seen([10], held=95) == (0, [
        ("storage.cleared", "node 0: storage back under 80% (10% used)")])
    assert _seen([85]) == (80, [("storage.alarm", "node 0: storage 85% used, past 80%: "
                                                  "grow storage_gb before it fills")])
    assert _seen([5]) == (0, [])  # first seen under every threshold


def test_a_use_hovering_at_a_threshold_raises_its_alarm_once() -> None:
    """WAL segments made and recycled move a small volume's use by a point or
    two each way: the alarm is raised once, and clears only CLEAR_MARGIN points
    under its threshold."""
    hovering = [79.5, 80.2, 79.1, 80.9, 77.0, 80.1, 76.0, 81.0]
    held, said = _seen(hovering)
    assert held == 80 and [kind for kind, _ in said] == ["storage.alarm"]
    held, said = _seen([80 - CLEAR_MARGIN + 0.5, 80 - CLEAR_MARGIN - 0.1], held)
    assert held == 0 and said == [("storage.cleared",
                                   "node 0: storage back under 80% (74% used)")]
    assert _seen([94.5, 95.2, 93.0, 96.0, 90.5], held=80)[1] == [
        ("storage.alarm", "node 0: storage 95% used, past 95%: grow storage_gb before it fills")]
    assert standing_alarm(use(90.5), 95) == 95 and standing_alarm(use(89.9), 95) == 80


def _cluster(percent: float, status: str = "HEALTHY", reason: str = "",
             alarm: int | None = None) -> Cluster:
    cluster = Cluster(id="c", status="ACTIVE", status_reason="")
    cluster.nodes = [Node(id="n", ordinal=0, status=status, status_reason=reason,
                          storage_used_bytes=use(percent).used_bytes,
                          storage_total_bytes=GIB, storage_alarm=alarm)]
    return cluster


def test_a_crossing_is_recorded_though_it_moved_less_than_one_percent() -> None:
    assert _differs(_cluster(79.8), [Observation("n", True, "", use(80.1))])
    assert not _differs(_cluster(50), [Observation("n", True, "", use(50.5))])
    # Back under the threshold but within the margin: the alarm stands, nothing to write.
    standing = _cluster(80.2, alarm=80)
    standing.status_reason = _overall(list(standing.nodes))[1]
    assert not _differs(standing, [Observation("n", True, "", use(79.8))])
    assert _differs(standing, [Observation("n", True, "", use(74.8))])  # cleared


def test_the_cluster_reason_names_a_node_past_a_threshold() -> None:
    assert _overall(list(_cluster(50).nodes)) == ("ACTIVE", "")
    assert _overall(list(_cluster(83.4).nodes)) == (
        "ACTIVE", "node 0: storage 83% used (past 80%)")
    assert _overall(list(_cluster(77.2, alarm=80).nodes)) == (
        "ACTIVE", "node 0: storage 77% used (past 80% until under 75%)")
    assert _overall(list(_cluster(77.2, alarm=0).nodes)) == ("ACTIVE", "")
    full = _cluster(97, "UNHEALTHY", "storage full (1 of 2 bytes used): resize the storage")
    assert _overall(list(full.nodes)) == (
        "DEGRADED", "node 0: storage full (1 of 2 bytes used): resize the storage")
    refused = _cluster(85, "UNHEALTHY", "refused")
    assert _overall(list(refused.nodes)) == (
        "DEGRADED", "node 0: refused; node 0: storage 85% used (past 80%)")


def _view(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v2/clusters/{cluster_id}").json())


def _until(client: httpx.Client, cluster_id: str, check: Callable[[dict[str, Any]], bool],
           timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = _view(client, cluster_id)
        if check(view):
            return view
        assert time.monotonic() < deadline, (view["status_reason"], view["members"])
        time.sleep(0.1)


def _alarms(client: httpx.Client, cluster_id: str) -> list[tuple[str, str]]:
    events = client.get(f"/v2/clusters/{cluster_id}/events").json()["events"]
    return [(e["kind"], e["message"]) for e in events if e["kind"].startswith("storage.")]


def _allocate(path: str, size: int) -> None:
    """Blocks really taken on the node's filesystem (not a sparse file), added
    past the file's end (XFS reserves a whole range again before it looks at
    what is allocated in it, so a nearly full one refuses to re-allocate)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        end = os.fstat(fd).st_size
        if size > end:
            os.posix_fallocate(fd, end, size - end)
    finally:
        os.close(fd)


def test_a_filling_volume_raises_and_clears_its_alarms(admin: httpx.Client,
                                                       hoard: HoardServer) -> None:
    with hoard.client(new_tenant(admin, f"alarms-{time.monotonic_ns()}")) as client:
        cluster = create_cluster(client, "filling", engine="redis", storage_gb=1)
        filler = str(hoard.state_dir / "nodes" / cluster["members"][0]["id"] / "filler")
        try:
            view = _until(client, cluster["id"], lambda v: v["members"][0]["storage"])
            storage = view["members"][0]["storage"]
            base, total = storage["used_bytes"], storage["total_bytes"]
            assert base < total * 0.5 and view["status_reason"] == ""

            _allocate(filler, int(total * 0.87) - base)
            view = _until(client, cluster["id"], lambda v: "past 80%" in v["status_reason"])
            assert view["status"] == "ACTIVE", view["status_reason"]
            assert [k for k, _ in _alarms(client, cluster["id"])] == ["storage.alarm"]

            _allocate(filler, int(total * 0.97) - base)
            view = _until(client, cluster["id"], lambda v: len(_alarms(client, v["id"])) == 2)
            kind, message = _alarms(client, cluster["id"])[1]
            assert kind == "storage.alarm" and "past 95%" in message, message
            # Past 95% of a 1 GB volume is also full (under 10% free): said once.
            view = _until(client, cluster["id"], lambda v: v["status"] == "DEGRADED")
            assert view["status_reason"].startswith("node 0: storage full"), view
            assert "past" not in view["status_reason"], view["status_reason"]

            os.unlink(filler)
            view = _until(client, cluster["id"], lambda v: v["status"] == "ACTIVE"
                          and v["status_reason"] == "")
            alarms = _alarms(client, cluster["id"])
            assert [k for k, _ in alarms] == ["storage.alarm", "storage.alarm",
                                              "storage.cleared"], alarms
            assert "back under 80%" in alarms[2][1]
        finally:
            if os.path.exists(filler):
                os.unlink(filler)
            delete_cluster(client, cluster["id"])
