"""Supervised long-running processes in one directory, as an unprivileged user.

A node (or a platform service such as etcd, or a cluster's endpoint proxy)
runs one or more named processes. Each runs in its own session, so it outlives
Hoard: a restarted Hoard re-adopts it from its record ``process[-NAME].json``
(pid + kernel start time, which guards against a recycled pid) instead of
restarting it. Records live in a directory of Hoard's own, never in the one the
processes can write: a forged record would otherwise point Hoard's signals at
any process on the host.

Processes join their cgroups before ``exec``, through a two-line shell
launcher, so no Python runs between ``fork`` and ``exec`` in a threaded
server. ``setpriv`` drops privileges. The cgroups are the caller's (derived
from the node's id), never read from a file.

Stopping escalates: the process's own stop signal, SIGKILL to its process
group, then a sweep that kills whatever is left of the node however it hid:
by working directory, by cgroup, and (an account of its own) by uid.

``TMPDIR`` is the directory's own ``tmp``: a helper that a server spawns in a
temporary directory (Galera's SST script runs its listener in one, under
``timeout``, in a process group of its own) is then still found by its working
directory and killed with the node, instead of holding its port after the
server died.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from hoard.domain.nodes import ProcessSpec
from hoard.providers.osusers import OSUser
from hoard.providers.usertree import UserTree

LAUNCHER = 'for p in $HOARD_CGROUP_PROCS; do echo $$ > "$p" || exit 97; done; exec "$@"'
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
SERVER = "server"
SWEEP_TIMEOUT = 10.0
PROCESS_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


SERVICE_PORTS_FROM = 10000  # the lowest port handed to a server
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral ports begin (32768 unless configured)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str) -> int:
    """A port free on ``host`` now, below the kernel's ephemeral range (callers
    check it against the ports already given out, which may be down at this
    moment). Not from the ephemeral range: every outgoing connection takes its
    local port from there, so a server down for a moment could find its port
    held by some client's connection and not listen again until that closed
    (seen: a replica unable to bind for a minute while the port was the local
    end of a long-lived connection). Random within the range, so processes
    choosing at once rarely choose alike; the kernel's choice if the range is
    too narrow to search."""
    low, high = SERVICE_PORTS_FROM, _ephemeral_low() - 1
    if high - low >= 1000:
        for _ in range(200):
            port = secrets.randbelow(high - low + 1) + low
            if not address_taken(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def address_taken(host: str, port: int) -> bool:
    """Whether some process listens on ``host:port`` now (a connection lingering in
    TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pids() -> list[int]:
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]


def _cwd_within(pid: int, root: str) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == root or cwd.startswith(root + "/")


def _uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uid of a process (from ``status``,
    which a process cannot hide by making itself non-dumpable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh.read().split(b"\n"):
                if line.startswith(b"Uid:"):
                    return {int(u) for u in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def cgroup_members(procs_files: Sequence[str]) -> set[int]:
    found: set[int] = set()
    for path in procs_files:
        with contextlib.suppress(OSError, ValueError):
            found |= {int(line) for line in Path(path).read_text().split()}
    return found


def processes_under_or_of(root: Path, uid: int | None) -> set[int]:
    """Processes whose working directory is inside ``root`` (servers and tools run
    there, found even when no record of them was written), or that run as ``uid``:
    one pass over /proc."""
    where = os.path.abspath(root)
    return {pid for pid in _pids()
            if _cwd_within(pid, where) or (uid is not None and uid in _uids(pid))}


def _gone(pid: int) -> bool:
    _reap(pid)
    state = proc_state(pid)
    return state is None or state[0] == "Z"


class Supervisor:
    """The named processes of one directory (``root``, which ``user`` owns), each
    recorded in ``records`` (Hoard's own directory, root only)."""

    def __init__(self, root: Path, records: Path, user: OSUser | None,
                 cgroup_procs: Sequence[str] = (), enter: Sequence[str] = ()) -> None:
        """``enter``: a command that runs the rest of the line elsewhere, as root,
        before the switch to ``user`` (e.g. into the node's network namespace)."""
        self.root = root
        self.records = records
        self.user = user  # None: unknown (a node half made, or of an earlier layout)
        self.cgroup_procs = list(cgroup_procs)
        self.enter = list(enter)

    def _record(self, name: str) -> Path:
        if not PROCESS_NAME.fullmatch(name):
            raise ValueError(f"bad process name {name!r}")
        return self.records / ("process.json" if name == SERVER else f"process-{name}.json")

    def names(self) -> list[str]:
        """Every recorded process name, the server last (it stops last)."""
        found = [p.name[len("process-"):-len(".json")]
                 for p in self.records.glob("process-*.json")]
        if (self.records / "process.json").exists():
            found.append(SERVER)
        return [n for n in found if PROCESS_NAME.fullmatch(n)]

    def live(self, name: str = SERVER) -> tuple[int, dict] | None:
        path = self._record(name)
        try:
            record = json.loads(path.read_text())
            pid, start_time = int(record["pid"]), int(record["start_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        state = proc_state(pid)
        if state is None or state[1] != start_time:
            return None
        if state[0] == "Z":
            _reap(pid)
            return None
        return pid, record

    def _live_groups(self) -> set[int]:
        return {live[0] for name in self.names() if (live := self.live(name))}

    def members(self, by_uid: bool = True) -> set[int]:
        """Every process of the directory: by working directory, by cgroup, and
        (``by_uid``) by uid when the account runs nothing else."""
        user = self.user
        uid = user.uid if by_uid and user is not None and user.dedicated else None
        found = processes_under_or_of(self.root, uid) | cgroup_members(self.cgroup_procs)
        return found - {os.getpid()}

    def _strays(self) -> list[int]:
        """Processes of the directory that belong to no live recorded process
        (started by a Hoard that died before recording them, or escaped from
        their process group): not ours to trust.

        Where the node has cgroups, its cgroup and the working directory find
        them all without reading every process's uid (the costliest part of a
        start while many nodes start at once): every process the account ever
        ran as a server was put in the cgroup by the launcher before it became
        the account, and the account cannot move a process out of a cgroup
        root owns; Hoard's own tools run in the directory. ``sweep`` (stop,
        destroy) still looks by uid too."""
        groups = self._live_groups()
        strays = []
        for pid in self.members(by_uid=not self.cgroup_procs):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) not in groups:
                    strays.append(pid)
        return strays

    def start(self, spec: ProcessSpec) -> bool:
        """Start ``spec`` under its name unless that one runs; True if started."""
        if self.live(spec.name):
            return False
        if self.user is None:
            raise RuntimeError(f"no OS account is recorded for {self.root.name}")
        self._kill_until_none(self._strays)
        # TMPDIR inside: its temporary files, and whatever runs in them, are found with it.
        tree = UserTree(self.root, self.user)
        tree.ensure_dir("tmp")
        env = {**SAFE_ENV, "TMPDIR": str(tree.path("tmp")), **spec.env,
               "HOARD_CGROUP_PROCS": " ".join(self.cgroup_procs)}
        log = tree.open_append(f"log/{spec.name}.log")
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", LAUNCHER, "hoard-launch",
                 *self.enter, *self.user.wrap(spec.argv, pdeathsig=False)],
                cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)
        state = proc_state(proc.pid)
        if state is None:
            raise RuntimeError(f"{spec.name} process in {self.root.name} exited at once")
        self.records.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._record(spec.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "pid": proc.pid, "start_time": state[1],
            "stop_signal": int(spec.stop_signal), "stop_timeout": spec.stop_timeout,
        }))
        tmp.replace(path)
        return True

    def signal(self, name: str, signum: int) -> bool:
        """Send ``signum`` to the live process ``name``; False if it is not running."""
        live = self.live(name)
        if not live:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(live[0], signum)
        return True

    def stop_one(self, name: str, graceful: bool = True) -> None:
        """Its own stop signal first (unless ``graceful`` is off), then SIGKILL for
        whatever is left of its process group."""
        live = self.live(name)
        if live:
            pid, record = live
            stop_signal = (int(record.get("stop_signal", signal.SIGTERM)) if graceful
                           else signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, stop_signal)
            wait = float(record.get("stop_timeout", 30.0)) if graceful else 5.0
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.live(name):
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + SWEEP_TIMEOUT
            while self.live(name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} of {self.root.name} survives SIGKILL")
                time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            self._record(name).unlink()

    def stop(self, graceful: bool = True) -> None:
        """Stop every process (the server last), then anything left of the node."""
        for name in self.names():
            self.stop_one(name, graceful)
        self.sweep()

    def kill(self) -> None:
        """SIGKILL every process at once, as a host failure would; records stay, so
        a later ``start`` sees them dead and starts them again."""
        for pgid in self._live_groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self.sweep()

    def sweep(self, timeout: float = SWEEP_TIMEOUT) -> None:
        """SIGKILL every process of the directory until none is left."""
        if self.user is not None and self.user.dedicated and self.user.is_root:
            # Every process of the account at once, as the account: one that forks
            # as fast as it is killed cannot outrun it.
            subprocess.run(self.user.wrap(["kill", "-KILL", "-1"], pdeathsig=True),
                           env=SAFE_ENV, capture_output=True, check=False, timeout=30)
        self._kill_until_none(self.members, timeout)

    def _kill_until_none(self, find: Callable[[], Iterable[int]],
                         timeout: float = SWEEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while alive := sorted(pid for pid in find() if not _gone(pid)):
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {alive} of {self.root.name} survive SIGKILL")
            time.sleep(0.02)
