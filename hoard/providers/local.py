"""The local provider: each node is a supervised process on this host.

- Each node gets a directory ``<state>/nodes/<node id>`` owned by a dedicated,
  unprivileged OS user; every engine process and tool runs as that user.
- Servers start in their own session, so they outlive Hoard: a restarted Hoard
  re-adopts them from ``process.json`` (pid + kernel start time, which guards
  against a recycled pid) instead of restarting them.
- Processes join their cgroups before ``exec``, through a two-line shell
  launcher, so no Python runs between ``fork`` and ``exec`` in a threaded
  server. ``setpriv`` drops privileges.
- Tools (``initdb`` and the like) die with Hoard (``--pdeathsig``), so a killed
  Hoard leaves no half-done tool behind; the step that ran it is redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from hoard.domain.catalog import Size
from hoard.domain.nodes import ProcessSpec
from hoard.providers import cgroups
from hoard.providers import volumes as volume_fs
from hoard.providers.base import Placement, Provider

LAUNCHER = 'for p in $HOARD_CGROUP_PROCS; do echo $$ > "$p" || exit 97; done; exec "$@"'
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


CHUNK = 1 << 20


class ToolFailed(RuntimeError):
    pass


def _failed(argv: list[str], code: int, output: str) -> ToolFailed:
    tail = output.strip().splitlines()[-5:]
    return ToolFailed(f"{Path(argv[0]).name} exited {code}: " + " | ".join(tail))


def _proc_start_time(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _processes_under(root: Path) -> list[int]:
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


def _kill_all(pids: list[int], wait: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    for pid in pids:
        while time.monotonic() < deadline:
            _reap(pid)
            state = _proc_start_time(pid)
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


class LocalRunner:
    """Files and tools inside one node's directory, as the database OS user."""

    def __init__(self, root: Path, user: OSUser) -> None:
        self.root = root
        self.user = user

    def _path(self, rel: PurePosixPath) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"path {rel} leaves the node directory")
        return path

    def abspath(self, path: PurePosixPath) -> str:
        return str(self._path(path))

    def exists(self, path: PurePosixPath) -> bool:
        return self._path(path).exists()

    def write_file(self, path: PurePosixPath, content: bytes, mode: int = 0o600) -> None:
        target = self._path(path)
        self._mkdirs(target.parent)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        self.user.chown(tmp)
        tmp.replace(target)

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir(mode=0o700)
            self.user.chown(d)

    def remove_tree(self, path: PurePosixPath) -> None:
        """Remove a file or a directory tree; missing is fine."""
        target = self._path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()

    def rename(self, src: PurePosixPath, dst: PurePosixPath) -> None:
        self._path(src).rename(self._path(dst))

    def run(self, argv: list[str], timeout: float = 300.0,
            env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            self.user.wrap(argv, pdeathsig=True), cwd=self.root, env={**SAFE_ENV, **(env or {})},
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if proc.returncode != 0:
            raise _failed(argv, proc.returncode, proc.stderr or proc.stdout)
        return proc.stdout

    def stream(self, argv: list[str], env: dict[str, str] | None = None) -> Iterator[bytes]:
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                self.user.wrap(argv, pdeathsig=True), cwd=self.root,
                env={**SAFE_ENV, **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=errors,
            )
            assert proc.stdout is not None
            try:
                while chunk := proc.stdout.read(CHUNK):
                    yield chunk
            finally:
                if proc.poll() is None and not proc.stdout.closed:
                    proc.stdout.close()
                code = proc.wait()
            if code != 0:
                errors.seek(0)
                raise _failed(argv, code, errors.read().decode(errors="replace"))

    def feed(self, argv: list[str], chunks: Iterable[bytes],
             env: dict[str, str] | None = None, timeout: float = 3600.0) -> str:
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                self.user.wrap(argv, pdeathsig=True), cwd=self.root,
                env={**SAFE_ENV, **(env or {})}, stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT,
            )
            assert proc.stdin is not None
            try:
                for chunk in chunks:
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # the tool stopped reading; its exit code says why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            code = proc.wait(timeout=timeout)
            out.seek(0)
            output = out.read().decode(errors="replace")
        if code != 0:
            raise _failed(argv, code, output)
        return output

    def list_dir(self, path: PurePosixPath) -> list[str]:
        target = self._path(path)
        return sorted(p.name for p in target.iterdir()) if target.is_dir() else []

    def read_stream(self, path: PurePosixPath) -> Iterator[bytes]:
        with open(self._path(path), "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk


class LocalProvider(Provider):
    name = "local"

    def __init__(self, nodes_dir: Path, os_user: str, volumes: str = "auto") -> None:
        """``volumes``: "loop" (a filesystem per node, sized to its storage),
        "directory" (plain directories, size observed only) or "auto"."""
        self.nodes_dir = nodes_dir
        self.volumes_dir = nodes_dir.parent / "volumes"
        self.user = OSUser(os_user)
        nodes_dir.mkdir(parents=True, exist_ok=True)
        nodes_dir.chmod(0o755)
        self._check_traversable(nodes_dir)
        if volumes == "directory":
            self.use_volumes, self.volume_note = False, "HOARD_LOCAL_VOLUMES=directory"
        else:
            self.use_volumes, self.volume_note = volume_fs.supported()
            if volumes == "loop" and not self.use_volumes:
                raise RuntimeError(f"HOARD_LOCAL_VOLUMES=loop, but {self.volume_note}")

    def _check_traversable(self, path: Path) -> None:
        for parent in [path, *path.parents]:
            st = parent.stat()
            if self.user.is_root and not st.st_mode & 0o001 and st.st_uid != self.user.uid:
                raise RuntimeError(
                    f"{parent} is not traversable by the OS user {self.user.name!r}; "
                    "choose a state directory outside it (HOARD_STATE_DIR)"
                )

    def _dir(self, node_id: str) -> Path:
        if not node_id.replace("-", "").isalnum():
            raise ValueError(f"bad node id {node_id!r}")
        return self.nodes_dir / node_id

    def _image(self, node_id: str) -> Path:
        return self.volumes_dir / f"{node_id}.img"

    def place(self, node_id: str, taken_ports: set[int], storage_gb: int) -> Placement:
        root = self._dir(node_id)
        if not root.exists():
            root.mkdir(mode=0o700)
        if self.use_volumes:
            self.volumes_dir.mkdir(mode=0o700, exist_ok=True)
            volume_fs.ensure(self._image(node_id), root, storage_gb)
            root.chmod(0o700)
        self.user.chown(root)
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in taken_ports:
                return Placement(host="127.0.0.1", port=port, zone="local")

    def runner(self, node_id: str) -> LocalRunner:
        return LocalRunner(self._dir(node_id), self.user)

    def apply_limits(self, node_id: str, size: Size, storage_gb: int) -> dict[str, str]:
        result = cgroups.apply(node_id, size.cpus, size.memory_mb)
        self._write_json(node_id, "cgroups.json", {"procs": result.procs_files})
        storage = (f"enforced ({self.volume_note})" if self.use_volumes else
                   f"observed and reported, not enforced: {self.volume_note}")
        return {
            "cpu": f"{size.cpus:g} CPU, {result.report['cpu']}",
            "memory": f"{size.memory_mb} MiB, {result.report['memory']}",
            "storage": f"{storage_gb} GB, {storage}",
        }

    def grow_storage(self, node_id: str, storage_gb: int) -> bool:
        if not self.use_volumes:
            return True  # nothing to grow: the size is a quota figure only
        if self.is_running(node_id):
            return False
        volume_fs.grow(self._image(node_id), self._dir(node_id), storage_gb)
        return True

    def _write_json(self, node_id: str, name: str, data: dict) -> None:
        path = self._dir(node_id) / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    def _read_json(self, node_id: str, name: str) -> dict | None:
        try:
            return dict(json.loads((self._dir(node_id) / name).read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _live_pid(self, node_id: str) -> tuple[int, dict] | None:
        record = self._read_json(node_id, "process.json")
        if not record:
            return None
        pid = int(record["pid"])
        state = _proc_start_time(pid)
        if state is None or state[1] != record["start_time"]:
            return None
        if state[0] == "Z":
            _reap(pid)
            return None
        return pid, record

    def start(self, node_id: str, spec: ProcessSpec) -> bool:
        if self._live_pid(node_id):
            return False
        root = self._dir(node_id)
        # A process started by a Hoard that died before recording it: not ours to trust.
        _kill_all(_processes_under(root))
        log_dir = root / "log"
        log_dir.mkdir(exist_ok=True)
        self.user.chown(log_dir)
        procs = (self._read_json(node_id, "cgroups.json") or {}).get("procs", [])
        env = {**SAFE_ENV, **spec.env, "HOARD_CGROUP_PROCS": " ".join(procs)}
        with open(log_dir / "server.log", "ab") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", LAUNCHER, "hoard-launch",
                 *self.user.wrap(spec.argv, pdeathsig=False)],
                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        state = _proc_start_time(proc.pid)
        if state is None:
            raise RuntimeError(f"server process for node {node_id} exited at once")
        self._write_json(node_id, "process.json", {
            "pid": proc.pid, "start_time": state[1],
            "stop_signal": int(spec.stop_signal), "stop_timeout": spec.stop_timeout,
        })
        return True

    def is_running(self, node_id: str) -> bool:
        return self._live_pid(node_id) is not None

    def pid(self, node_id: str) -> int | None:
        live = self._live_pid(node_id)
        return live[0] if live else None

    def stop(self, node_id: str, graceful: bool = True) -> None:
        """Stop the server: its own stop signal first (unless ``graceful`` is off,
        when its data is about to be thrown away), then SIGKILL for what is left."""
        live = self._live_pid(node_id)
        if live:
            pid, record = live
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, record["stop_signal"] if graceful else signal.SIGKILL)
            deadline = time.monotonic() + (float(record["stop_timeout"]) if graceful else 5.0)
            while time.monotonic() < deadline and self._live_pid(node_id):
                time.sleep(0.05)
            # Whatever is left of the process group (server and its children) goes now.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            while self._live_pid(node_id):
                time.sleep(0.02)
        _kill_all(_processes_under(self._dir(node_id)))
        with contextlib.suppress(FileNotFoundError):
            (self._dir(node_id) / "process.json").unlink()

    def destroy(self, node_id: str) -> None:
        root = self._dir(node_id)
        if root.exists():
            # No shutdown checkpoint or snapshot for data that is deleted next.
            self.stop(node_id, graceful=False)
            volume_fs.remove(self._image(node_id), root)
            shutil.rmtree(root, ignore_errors=True)
        cgroups.remove(node_id)

    def node_ids(self) -> set[str]:
        found = {p.name for p in self.nodes_dir.iterdir() if p.is_dir()}
        if self.volumes_dir.exists():
            found |= {p.stem for p in self.volumes_dir.glob("*.img")}
        return found
