"""How Hoard's cluster statuses read as Trove instance statuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hoard.api.schemas import ClusterView
from hoard.api.trove.views import instance_view

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def cluster(status: str, **fields: Any) -> ClusterView:
    base: dict[str, Any] = dict(
        id="c1", name="one", engine="postgresql", version="15", size="nano",
        provider="local", nodes=1, durability="async", storage_gb=1, status=status,
        status_reason="", configuration_id=None, pending_restart=[], labels={},
        deletion_protection=False, maintenance_window=None, storage_autoscale=None,
        last_verified_restorable_at=None, last_verified_restorable_seconds=None, operation=None,
        endpoints=[], members=[],
        created_at=NOW, updated_at=NOW)
    return ClusterView(**(base | fields))


@pytest.mark.parametrize(("status", "change", "trove", "operating"), [
    ("BUILDING", None, "BUILD", "BUILD"),
    ("ACTIVE", None, "ACTIVE", "HEALTHY"),
    ("DEGRADED", None, "ACTIVE", "ERROR"),
    ("STOPPED", None, "SHUTDOWN", "SHUTDOWN"),
    ("FAILED", None, "ERROR", "ERROR"),
    ("UPDATING", ("update", {"size": "small"}), "RESIZE", "UNKNOWN"),
    ("UPDATING", ("update", {"storage_gb": 2}), "RESIZE", "UNKNOWN"),
    ("UPDATING", ("update", {"configuration_id": "x"}), "ACTIVE", "UNKNOWN"),
    ("UPDATING", ("restart", {}), "REBOOT", "UNKNOWN"),
    ("UPDATING", ("stop", {}), "SHUTDOWN", "UNKNOWN"),
])
def test_statuses(status: str, change: tuple[str, dict[str, Any]] | None, trove: str,
                  operating: str) -> None:
    view = instance_view(cluster(status), "http://h/v1.0/p", change)
    assert (view["status"], view["operating_status"]) == (trove, operating)


def test_restart_required_and_fault() -> None:
    waiting = instance_view(cluster("ACTIVE", pending_restart=["max_connections"]), "b")
    assert waiting["status"] == "RESTART_REQUIRED"
    failed = instance_view(cluster("FAILED", status_reason="disk full"), "b")
    assert failed["fault"]["message"] == "disk full"
    assert failed["flavor"] == {"id": "nano", "links": []}
