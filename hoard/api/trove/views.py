"""A Hoard cluster as a Trove instance: statuses translated, the read-write
endpoint as the instance's address."""

from __future__ import annotations

from typing import Any

from hoard.api.schemas import ClusterView
from hoard.api.trove.catalog import flavor_view

# Trove's status for each of Hoard's; UPDATING is refined by the running change.
STATUS = {"BUILDING": "BUILD", "ACTIVE": "ACTIVE", "DEGRADED": "ACTIVE",
          "FAILED": "ERROR", "DELETING": "SHUTDOWN", "STOPPED": "SHUTDOWN"}
OPERATION_STATUS = {"restart": "REBOOT", "start": "REBOOT", "stop": "SHUTDOWN",
                    "scale": "RESIZE", "switchover": "PROMOTE", "promote": "PROMOTE"}


def change_status(kind: str | None, params: dict[str, Any]) -> str:
    """Trove's status while a change holds the instance. A size or storage change is
    a RESIZE; attaching a configuration leaves the instance ACTIVE, as in Trove."""
    if kind == "update":
        return "RESIZE" if {"size", "storage_gb"} & params.keys() else "ACTIVE"
    return OPERATION_STATUS.get(kind or "", "BUILD")


def instance_status(c: ClusterView, change: tuple[str, dict[str, Any]] | None) -> str:
    if c.status == "UPDATING":
        return change_status(*(change or (None, {})))
    if c.status == "ACTIVE" and c.pending_restart:
        return "RESTART_REQUIRED"
    return STATUS.get(c.status, "ERROR")


def operating_status(c: ClusterView) -> str:
    return {"ACTIVE": "HEALTHY", "DEGRADED": "ERROR", "FAILED": "ERROR",
            "STOPPED": "SHUTDOWN", "BUILDING": "BUILD"}.get(c.status, "UNKNOWN")


def instance_view(c: ClusterView, base: str,
                  change: tuple[str, dict[str, Any]] | None = None,
                  detail: bool = True) -> dict[str, Any]:
    """The Trove instance document for a cluster; ``base`` is ``.../v1.0/{project}``."""
    writable = next((e for e in c.endpoints if e.role == "read-write"), None)
    link = f"{base}/instances/{c.id}"
    flavor = flavor_view(c.size)
    view: dict[str, Any] = {
        "id": c.id, "name": c.name, "status": instance_status(c, change),
        "operating_status": operating_status(c),
        "links": [{"href": link, "rel": "self"}, {"href": link, "rel": "bookmark"}],
        "flavor": {"id": flavor["str_id"], "links": []},
        "datastore": {"type": c.engine, "version": c.version},
        "volume": {"size": c.storage_gb},
        "region": "local",
        "ip": [writable.host] if writable else [],
        "addresses": ([{"address": writable.host, "type": "private", "port": writable.port}]
                      if writable else []),
    }
    if writable:
        view["hostname"] = writable.host
        view["port"] = writable.port
    if c.configuration_id:
        view["configuration"] = {"id": c.configuration_id, "links": []}
    if c.nodes > 1:
        view["replica_count"] = c.nodes - 1
    if c.status == "FAILED":
        view["fault"] = {"message": c.status_reason or "the instance failed",
                         "created": c.updated_at.isoformat(), "details": ""}
    if detail:
        view["created"] = c.created_at.strftime("%Y-%m-%dT%H:%M:%S")
        view["updated"] = c.updated_at.strftime("%Y-%m-%dT%H:%M:%S")
        if c.storage_gb and c.members and c.members[0].storage:
            used = c.members[0].storage.used_bytes / 1024 ** 3
            view["volume"]["used"] = round(used, 3)
    return view
