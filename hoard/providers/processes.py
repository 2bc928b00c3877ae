"""Supervised long-running processes in one directory, as an unprivileged user.

A node (or a platform service such as etcd, or a cluster's endpoint proxy)
runs one or more named processes. Each runs in its own session, so it outlives
Hoard: a restarted Hoard re-adopts it from ``process[-NAME].json`` (pid + kernel
start time, which guards against a recycled pid) instead of restarting it.

Processes join their cgroups before ``exec``, through a two-line shell
launcher, so no Python runs between ``fork`` and ``exec`` in a threaded
server. ``setpriv`` drops privileges.

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
import pwd
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from hoard.domain.nodes import ProcessSpec

LAUNCHER = 'for p in $HOARD_CGROUP_PROCS; do echo $$ > "$p" || exit 97; done; exec "$@"'
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
SERVER = "server"
_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def free_port(host: str) -> int:
    """A port the kernel says is free on ``host`` now (callers check it against
    the ports already given out, which may be down at this moment)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def processes_under(root: Path) -> list[int]:
    """Processes whose working directory is inside ``root`` (servers and tools
    run there), found even when no record of them was written."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or cwd.is_relative_to(root):
            found.append(int(entry.name))
    return found


def kill_all(pids: list[int], wait: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    for pid in pids:
        while time.monotonic() < deadline:
            _reap(pid)
            state = proc_state(pid)
            if state is None or state[0] == "Z":
                break
            time.sleep(0.01)


class OSUser:
    """The unprivileged account database processes run as (created when root)."""

    def __init__(self, name: str) -> None:
        self.is_root = os.geteuid() == 0
        if self.is_root:
            try:
                pwd.getpwnam(name)
            except KeyError:
                subprocess.run(
                    ["useradd", "--system", "--user-group", "--no-create-home",
                     "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                    check=True, capture_output=True,
                )
            entry = pwd.getpwnam(name)
        else:
            entry = pwd.getpwuid(os.geteuid())
        self.name, self.uid, self.gid = entry.pw_name, entry.pw_uid, entry.pw_gid

    def wrap(self, argv: list[str], pdeathsig: bool) -> list[str]:
        if not self.is_root:
            return argv
        pre = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        if pdeathsig:
            pre.append("--pdeathsig=KILL")
        return [*pre, "--", *argv]

    def chown(self, path: Path) -> None:
        if self.is_root:
            os.chown(path, self.uid, self.gid)


class Supervisor:
    """The named processes of one directory (``root``), each recorded beside it."""

    def __init__(self, root: Path, user: OSUser) -> None:
        self.root = root
        self.user = user

    def _record(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ValueError(f"bad process name {name!r}")
        return self.root / ("process.json" if name == SERVER else f"process-{name}.json")

    def names(self) -> list[str]:
        """Every recorded process name, the server last (it stops last)."""
        found = [p.name[len("process-"):-len(".json")] for p in self.root.glob("process-*.json")]
        if (self.root / "process.json").exists():
            found.append(SERVER)
        return found

    def live(self, name: str = SERVER) -> tuple[int, dict] | None:
        try:
            record = json.loads(self._record(name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = int(record["pid"])
        state = proc_state(pid)
        if state is None or state[1] != record["start_time"]:
            return None
        if state[0] == "Z":
            _reap(pid)
            return None
        return pid, record

    def _live_groups(self) -> set[int]:
        return {live[0] for name in self.names() if (live := self.live(name))}

    def _strays(self) -> list[int]:
        """Processes under the directory that belong to no live recorded process
        (started by a Hoard that died before recording them: not ours to trust)."""
        groups = self._live_groups()
        strays = []
        for pid in processes_under(self.root):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) not in groups:
                    strays.append(pid)
        return strays

    def start(self, spec: ProcessSpec, cgroup_procs: list[str] | None = None) -> bool:
        """Start ``spec`` under its name unless that one runs; True if started."""
        if self.live(spec.name):
            return False
        kill_all(self._strays())
        # TMPDIR inside: its temporary files, and whatever runs in them, are found with it.
        log_dir, tmp = self.root / "log", self.root / "tmp"
        for made in (log_dir, tmp):
            made.mkdir(exist_ok=True)
            self.user.chown(made)
        env = {**SAFE_ENV, "TMPDIR": str(tmp), **spec.env,
               "HOARD_CGROUP_PROCS": " ".join(cgroup_procs or [])}
        with open(log_dir / f"{spec.name}.log", "ab") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", LAUNCHER, "hoard-launch",
                 *self.user.wrap(spec.argv, pdeathsig=False)],
                cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        state = proc_state(proc.pid)
        if state is None:
            raise RuntimeError(f"{spec.name} process in {self.root.name} exited at once")
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
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, record["stop_signal"] if graceful else signal.SIGKILL)
            deadline = time.monotonic() + (float(record["stop_timeout"]) if graceful else 5.0)
            while time.monotonic() < deadline and self.live(name):
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            while self.live(name):
                time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            self._record(name).unlink()

    def stop(self, graceful: bool = True) -> None:
        """Stop every process (the server last), then anything left in the directory."""
        for name in self.names():
            self.stop_one(name, graceful)
        kill_all(processes_under(self.root))

    def kill(self) -> None:
        """SIGKILL every process at once, as a host failure would; records stay, so
        a later ``start`` sees them dead and starts them again."""
        groups = self._live_groups()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        kill_all(processes_under(self.root))
