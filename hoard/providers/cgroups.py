"""CPU and memory limits for local processes through Linux cgroups (v1 or v2).

A process joins its cgroups before it execs the server (see the local
provider's launcher), so every backend it forks inherits the limits. Which
cgroups a node has is derived from its id every time (``procs_files``), never
read from a file a database account could rewrite.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupResult:
    procs_files: list[str]  # cgroup.procs files the process must join
    report: dict[str, str]


def _unified() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def apply(group: str, cpus: float, memory_mb: int) -> CgroupResult:
    """Create ``hoard/<group>`` with the limits, or report why it cannot."""
    mem_bytes = memory_mb * 1024 * 1024
    quota = int(cpus * PERIOD_US)
    if _unified():
        base = ROOT / "hoard"
        if not _writable(ROOT):
            return _unenforced("cgroup v2 hierarchy is not writable")
        try:
            base.mkdir(exist_ok=True)
            (ROOT / "cgroup.subtree_control").write_text("+cpu +memory")
            (base / "cgroup.subtree_control").write_text("+cpu +memory")
            node = base / group
            node.mkdir(exist_ok=True)
            (node / "memory.max").write_text(str(mem_bytes))
            (node / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        except OSError as exc:
            return _unenforced(f"cgroup v2: {exc.strerror}")
        how = "enforced (cgroup v2)"
        return CgroupResult([str(node / "cgroup.procs")], {"memory": how, "cpu": how})
    report: dict[str, str] = {}
    procs: list[str] = []
    for controller, files in (
        ("memory", {"memory.limit_in_bytes": str(mem_bytes)}),
        ("cpu", {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": str(quota)}),
    ):
        parent = ROOT / controller
        if not _writable(parent):
            report[controller] = f"not enforced: {parent} is not writable"
            continue
        node = parent / "hoard" / group
        try:
            node.mkdir(parents=True, exist_ok=True)
            for name, value in files.items():
                (node / name).write_text(value)
        except OSError as exc:
            report[controller] = f"not enforced: {controller} cgroup: {exc.strerror}"
            continue
        procs.append(str(node / "cgroup.procs"))
        report[controller] = "enforced (cgroup v1)"
    return CgroupResult(procs, report)


def _unenforced(reason: str) -> CgroupResult:
    return CgroupResult([], {"memory": f"not enforced: {reason}", "cpu": f"not enforced: {reason}"})


def _candidates(group: str) -> list[Path]:
    if "/" in group or group in ("", ".", ".."):
        raise ValueError(f"bad cgroup name {group!r}")
    if _unified():
        return [ROOT / "hoard" / group]
    return [ROOT / c / "hoard" / group for c in ("memory", "cpu")]


def procs_files(group: str) -> list[str]:
    """The ``cgroup.procs`` files of the group's cgroups that exist (made by
    ``apply``; only root can make them), for a process to join."""
    return [str(path / "cgroup.procs") for path in _candidates(group) if path.is_dir()]


def remove(group: str, wait: float = 2.0) -> None:
    """Remove the node's cgroups (they must hold no process). Idempotent."""
    deadline = time.monotonic() + wait
    for path in _candidates(group):
        while path.exists():
            try:
                path.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                # Busy: a killed process not yet reaped. Past the wait, the next
                # destroy retries.
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat(path: Path) -> dict[str, int]:
    """A ``key value`` file (memory.stat, cpu.stat) as a dict."""
    found: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            found[key] = int(value)
    return found


def _process_cpu_seconds(procs: Path) -> float | None:
    """CPU time of the processes in a cgroup and of the children they reaped
    (cgroup v1's cpu controller keeps no usage; cpuacct is not joined)."""
    text = _read(procs)
    if text is None:
        return None
    ticks = 0
    for pid in text.split():
        stat = _read(Path(f"/proc/{pid}/stat"))
        if stat is None:
            continue  # exited meanwhile: its time is in its parent's reaped share
        fields = stat.rpartition(")")[2].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def usage(group: str) -> dict[str, float]:
    """What the group's processes use against its limits: ``cpu_seconds_total``,
    ``cpu_limit_cores``, ``memory_used_bytes`` (reclaimable page cache left
    out, as the kernel would reclaim it before failing an allocation) and
    ``memory_limit_bytes``; whatever the host cannot tell is left out."""
    found: dict[str, float] = {}
    if _unified():
        node = _candidates(group)[0]
        cpu = _stat(node / "cpu.stat")
        if "usage_usec" in cpu:
            found["cpu_seconds_total"] = cpu["usage_usec"] / 1e6
        quota, _, period = (_read(node / "cpu.max") or "").partition(" ")
        if quota.isdigit() and period.strip().isdigit():
            found["cpu_limit_cores"] = int(quota) / int(period)
        current, limit = _read(node / "memory.current"), _read(node / "memory.max")
        inactive = _stat(node / "memory.stat").get("inactive_file", 0)
    else:
        memory, cpu_dir = (ROOT / c / "hoard" / group for c in ("memory", "cpu"))
        seconds = _process_cpu_seconds(memory / "cgroup.procs")
        if seconds is not None:
            found["cpu_seconds_total"] = seconds
        cfs_quota = _read(cpu_dir / "cpu.cfs_quota_us")
        cfs_period = _read(cpu_dir / "cpu.cfs_period_us")
        if cfs_quota and cfs_period and int(cfs_quota) > 0:
            found["cpu_limit_cores"] = int(cfs_quota) / int(cfs_period)
        current, limit = (_read(memory / "memory.usage_in_bytes"),
                          _read(memory / "memory.limit_in_bytes"))
        inactive = _stat(memory / "memory.stat").get("total_inactive_file", 0)
    if current and current.strip().isdigit():
        found["memory_used_bytes"] = float(max(0, int(current) - inactive))
    if limit and limit.strip().isdigit() and int(limit) < 2**60:  # else: no limit
        found["memory_limit_bytes"] = float(limit)
    return found
