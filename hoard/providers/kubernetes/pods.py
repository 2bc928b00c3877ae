"""Why a pod is not ready, or not running, in Kubernetes' own words: what an
operation shows while it waits (an image being pulled, no node with room, a
failing probe)."""

from __future__ import annotations

from typing import Any


def waiting_reason(pod: Any | None) -> str | None:
    """None when the pod is ready; else the most telling reason it is not."""
    if pod is None:
        return "no pod yet: its StatefulSet has not made it"
    if pod.metadata.deletionTimestamp is not None:
        return "the pod is being deleted"
    status = pod.status
    if status is None:
        return "the pod is not scheduled yet"
    conditions = {c.type: c for c in status.conditions or []}
    if conditions.get("Ready") is not None and conditions["Ready"].status == "True":
        return None
    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        return f"not scheduled: {scheduled.reason or ''} {scheduled.message or ''}".strip()
    for container in status.containerStatuses or []:
        state = container.state
        if state is not None and state.waiting is not None:
            said = f": {state.waiting.message}" if state.waiting.message else ""
            return f"container {container.name} is waiting ({state.waiting.reason}){said}"
        if state is not None and state.terminated is not None:
            return (f"container {container.name} exited ({state.terminated.reason}, "
                    f"code {state.terminated.exitCode})")
    if status.phase == "Pending":
        return "the pod is pending"
    return "the server is not ready yet (its readiness probe has not passed)"


def running_reason(pod: Any | None, container: str = "server") -> str | None:
    """None when the pod runs ``container`` (a command can be exec'd into it, ready
    or not); else why it does not."""
    if pod is None or pod.metadata.deletionTimestamp is not None or pod.status is None:
        return waiting_reason(pod)
    for status in pod.status.containerStatuses or []:
        if status.name == container:
            if status.state is not None and status.state.running is not None:
                return None
            break
    return waiting_reason(pod) or f"container {container} is not running yet"
