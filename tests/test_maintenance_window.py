"""Maintenance windows: when they are open (times given, never a clock read), how
the API validates them, and, against a real Hoard with real Redis servers, that
settings waiting for a restart are applied inside an open window and left
alone outside one, or applied at once on request."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hoard.domain.maintenance import next_opening, opened_at, restart_due
from tests.conftest import HoardServer, create_cluster, delete_cluster, new_tenant, wait_operation
from tests.test_api_validation import assert_problem

MON = dt.datetime(2026, 11, 30)  # a Monday


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return MON + dt.timedelta(days=day, hours=hour, minutes=minute)


def test_a_weekly_window_is_open_on_its_day_only() -> None:
    window = {"day": "tue", "start": "03:00", "duration_minutes": 60}
    assert opened_at(window, at(1, 3)) == at(1, 3)
    assert opened_at(window, at(1, 3, 59)) == at(1, 3)
    assert opened_at(window, at(1, 4)) is None  # the end is outside
    assert opened_at(window, at(1, 2, 59)) is None
    assert opened_at(window, at(0, 3, 30)) is None  # Monday
    assert opened_at(window, at(8, 3, 30)) == at(8, 3)  # the next Tuesday
    assert next_opening(window, at(1, 4)) == at(8, 3)
    assert next_opening(window, at(0, 12)) == at(1, 3)
    assert next_opening(window, at(1, 3, 30)) == at(1, 3)  # open: since when


def test_a_window_may_run_past_midnight() -> None:
    window = {"day": "sun", "start": "23:00", "duration_minutes": 120}
    assert opened_at(window, at(6, 23, 30)) == at(6, 23)
    assert opened_at(window, at(7, 0, 59)) == at(6, 23)  # Monday, still Sunday's window
    assert opened_at(window, at(7, 1)) is None
    assert opened_at(window, at(7, 23, 30)) is None
    daily = {"day": "daily", "start": "22:30", "duration_minutes": 480}
    assert opened_at(daily, at(3, 6, 29)) == at(2, 22, 30)
    assert opened_at(daily, at(3, 6, 30)) is None
    assert next_opening(daily, at(3, 6, 30)) == at(3, 22, 30)


def test_a_restart_is_due_in_the_window_and_not_again_after_one_failed() -> None:
    window = {"day": "wed", "start": "01:00", "duration_minutes": 120}
    assert restart_due(window, ["shared_buffers"], at(2, 1, 30)) == at(2, 1)
    assert restart_due(window, [], at(2, 1, 30)) is None  # nothing waits
    assert restart_due(window, ["shared_buffers"], at(2, 3)) is None  # shut
    assert restart_due(None, ["shared_buffers"], at(2, 1, 30)) is None  # no window
    # A restart of this opening failed (rolled back): not again until the next one.
    assert restart_due(window, ["shared_buffers"], at(2, 2), [at(2, 1, 5)]) is None
    assert restart_due(window, ["shared_buffers"], at(9, 1, 30), [at(2, 1, 5)]) == at(9, 1)
    # One of an earlier opening does not hold this one back.
    assert restart_due(window, ["shared_buffers"], at(2, 2), [at(-5, 1, 5)]) == at(2, 1)


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, hoard: HoardServer) -> Iterator[httpx.Client]:
    with hoard.client(new_tenant(admin, f"windows-{time.monotonic_ns()}")) as client:
        yield client


BAD_WINDOWS = [
    ({"day": "monday", "start": "03:00", "duration_minutes": 60}, "day 'monday'"),
    ({"day": "Mon", "start": "03:00", "duration_minutes": 60}, "day 'Mon'"),
    ({"day": "mon", "start": "24:00", "duration_minutes": 60}, "start '24:00'"),
    ({"day": "mon", "start": "3:00", "duration_minutes": 60}, "start '3:00'"),
    ({"day": "mon", "start": "03:00:00", "duration_minutes": 60}, "HH:MM"),
    ({"day": "mon", "start": "03:00", "duration_minutes": 29}, "duration_minutes"),
    ({"day": "mon", "start": "03:00", "duration_minutes": 481}, "duration_minutes"),
    ({"day": "mon", "start": "03:00", "duration_minutes": "60"}, "duration_minutes"),
    ({"day": "mon", "start": "03:00"}, "duration_minutes"),
    ({"day": "mon", "start": "03:00", "duration_minutes": 60, "tz": "CET"}, "tz"),
]


@pytest.mark.parametrize(("window", "words"), BAD_WINDOWS)
def test_a_bad_window_is_refused_at_create(tenant: httpx.Client, window: dict[str, Any],
                                           words: str) -> None:
    before = tenant.get("/v2/clusters").json()["clusters"]
    answer = tenant.post("/v2/clusters", json={"name": "windowed", "engine": "redis",
                                               "size": "nano", "maintenance_window": window})
    assert_problem(answer, 422, words)
    assert tenant.get("/v2/clusters").json()["clusters"] == before


def _window(start: dt.datetime, minutes: int = 60) -> dict[str, Any]:
    return {"day": "daily", "start": f"{start:%H:%M}", "duration_minutes": minutes}


def _events(client: httpx.Client, cluster_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/v2/clusters/{cluster_id}/events").json()["events"])


def _attach(client: httpx.Client, cluster_id: str, config_id: str) -> None:
    answer = client.patch(f"/v2/clusters/{cluster_id}", json={"configuration_id": config_id})
    assert answer.status_code == 202, answer.text
    assert wait_operation(client, answer.json()["operation"]["id"])["status"] == "succeeded"


def test_pending_settings_wait_for_the_window(tenant: httpx.Client) -> None:
    now = dt.datetime.now(dt.UTC)
    open_now = _window(now - dt.timedelta(minutes=5))
    shut = _window(now + dt.timedelta(hours=3))
    inside = create_cluster(tenant, "in-window", engine="redis", maintenance_window=open_now)
    outside = create_cluster(tenant, "out-of-window", engine="redis")
    try:
        assert inside["maintenance_window"] == open_now
        assert outside["maintenance_window"] is None
        # Set, shown, validated on PATCH (bad: refused, nothing changed), removed.
        for bad, words in BAD_WINDOWS[:3]:
            assert_problem(tenant.patch(f"/v2/clusters/{outside['id']}",
                                        json={"maintenance_window": bad}), 422, words)
        set_shut = tenant.patch(f"/v2/clusters/{outside['id']}",
                                json={"maintenance_window": shut})
        assert set_shut.status_code == 200 and set_shut.json()["operation"] is None
        assert tenant.get(f"/v2/clusters/{outside['id']}").json()["maintenance_window"] == shut
        listed = {c["id"]: c for c in tenant.get("/v2/clusters").json()["clusters"]}
        assert listed[outside["id"]]["maintenance_window"] == shut

        config = tenant.post("/v2/configurations", json={
            "name": f"dbs{time.monotonic_ns()}", "engine": "redis",
            "values": {"databases": 32}}).json()["id"]
        _attach(tenant, outside["id"], config)
        plan = tenant.patch(f"/v2/clusters/{outside['id']}", params={"dry_run": "true"},
                            json={"size": "small"}).json()["plan"]
        assert plan["pending_restart"] == ["databases"]
        assert plan["pending_applies"].startswith("in the maintenance window (daily ")
        _attach(tenant, inside["id"], config)

        # Inside its window: restarted by Hoard, pending emptied, an event says why;
        # and so again for settings that come to wait while the window is open.
        for times, databases in ((1, 32), (2, 48)):
            if databases != 32:
                _attach(tenant, inside["id"], tenant.post("/v2/configurations", json={
                    "name": f"dbs{time.monotonic_ns()}", "engine": "redis",
                    "values": {"databases": databases}}).json()["id"])
            deadline = time.monotonic() + 60
            while tenant.get(f"/v2/clusters/{inside['id']}").json()["pending_restart"]:
                assert time.monotonic() < deadline, _events(tenant, inside["id"])
                time.sleep(0.2)
            done = [e for e in _events(tenant, inside["id"])
                    if e["kind"] == "cluster.maintenance"]
            assert len(done) == times, done
            assert "restarting to apply databases" in done[-1]["message"], done
            restart = wait_operation(tenant, done[-1]["operation_id"])
            assert (restart["kind"], restart["status"]) == ("restart", "succeeded"), restart
            assert tenant.get(f"/v2/clusters/{inside['id']}").json()["status"] == "ACTIVE"

        # Outside it: judged in the same pass, and left alone.
        view = tenant.get(f"/v2/clusters/{outside['id']}").json()
        assert view["pending_restart"] == ["databases"] and view["status"] == "ACTIVE"
        assert not [e for e in _events(tenant, outside["id"])
                    if e["kind"] == "cluster.maintenance"]

        # Applied at once on request; then there is nothing left to apply.
        applied = tenant.post(f"/v2/clusters/{outside['id']}/actions/apply-pending")
        assert applied.status_code == 202, applied.text
        assert wait_operation(tenant, applied.json()["operation"]["id"])["status"] == (
            "succeeded")
        assert tenant.get(f"/v2/clusters/{outside['id']}").json()["pending_restart"] == []
        assert_problem(tenant.post(f"/v2/clusters/{outside['id']}/actions/apply-pending"),
                       422, "nothing waits for a restart")
        removed = tenant.patch(f"/v2/clusters/{outside['id']}",
                               json={"maintenance_window": None})
        assert removed.status_code == 200 and removed.json()["cluster"][
            "maintenance_window"] is None
    finally:
        delete_cluster(tenant, inside["id"])
        delete_cluster(tenant, outside["id"])
