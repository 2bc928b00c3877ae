"""The local provider: each node is a supervised process on this host.

- Each node gets a directory ``<state>/nodes/<node id>`` owned by a dedicated,
  unprivileged OS user; every engine process and tool runs as that user.
- A node's processes (its server, and sidecars such as Redis Sentinel) are
  supervised by :class:`hoard.providers.processes.Supervisor`: they outlive
  Hoard and are re-adopted, never restarted, by the next one.
- Tools (``initdb`` and the like) die with Hoard (``--pdeathsig``), so a killed
  Hoard leaves no half-done tool behind; the step that ran it is redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from hoard.domain.catalog import Size
from hoard.domain.nodes import Backend, ProcessSpec, RoleCheck
from hoard.domain.placement import Host, choose_host
from hoard.domain.storage import StorageUsage
from hoard.providers import cgroups
from hoard.providers import volumes as volume_fs
from hoard.providers.base import Endpoint, Placement, Provider
from hoard.providers.etcd import LocalEtcd
from hoard.providers.haproxy import LocalEndpoints
from hoard.providers.processes import SAFE_ENV, SERVER, OSUser, Supervisor, free_port

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20  # a tool's pipe holds a whole chunk: fewer wake-ups on either end


class ToolFailed(RuntimeError):
    pass


def _failed(argv: list[str], code: int, output: str) -> ToolFailed:
    tail = output.strip().splitlines()[-5:]
    return ToolFailed(f"{Path(argv[0]).name} exited {code}: " + " | ".join(tail))


def _widen(pipe: IO[bytes]) -> None:
    """Grow a pipe from the kernel's 64 KiB to ``PIPE_SIZE`` (best effort: the
    limit for unprivileged users is /proc/sys/fs/pipe-max-size)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)


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
        self.write_stream(path, [content], mode)

    def write_stream(self, path: PurePosixPath, chunks: Iterable[bytes],
                     mode: int = 0o600) -> int:
        target = self._path(path)
        self._mkdirs(target.parent)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        written = 0
        try:
            with os.fdopen(fd, "wb") as fh:  # large writes go straight through
                os.fchmod(fh.fileno(), mode)
                self.user.chown(tmp)
                for chunk in chunks:
                    written += fh.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(target)
        return written

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
            _widen(proc.stdout)
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
            _widen(proc.stdin)
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

    def __init__(self, nodes_dir: Path, os_user: str, volumes: str = "auto",
                 hosts: list[Host] | None = None) -> None:
        """``volumes``: "loop" (a filesystem per node, sized to its storage),
        "directory" (plain directories, size observed only) or "auto".
        ``hosts``: the loopback addresses (with zones) nodes are spread over."""
        self.nodes_dir = nodes_dir
        self.volumes_dir = nodes_dir.parent / "volumes"
        self.user = OSUser(os_user)
        self.hosts = hosts or [Host("127.0.0.1", "local")]
        self.endpoint_host = self.hosts[0].address
        self.etcd = LocalEtcd(nodes_dir.parent / "etcd", self.user, self.hosts[0].address)
        self.endpoints = LocalEndpoints(nodes_dir.parent / "endpoints", self.user,
                                        self.hosts[0].address)
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

    def place(self, node_id: str, taken_ports: set[int], storage_gb: int,
              port_names: Iterable[str] = (), siblings: Iterable[Host] = ()) -> Placement:
        root = self._dir(node_id)
        if not root.exists():
            root.mkdir(mode=0o700)
        if self.use_volumes:
            self.volumes_dir.mkdir(mode=0o700, exist_ok=True)
            volume_fs.ensure(self._image(node_id), root, storage_gb)
            root.chmod(0o700)
        self.user.chown(root)
        host = choose_host(self.hosts, siblings)
        ports: list[int] = []
        names = list(port_names)
        while len(ports) < 1 + len(names):
            port = free_port(host.address)
            if port not in taken_ports and port not in ports:
                ports.append(port)
        return Placement(host=host.address, port=ports[0], zone=host.zone,
                         ports=dict(zip(names, ports[1:], strict=True)))

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

    def _supervisor(self, node_id: str) -> Supervisor:
        return Supervisor(self._dir(node_id), self.user)

    def start(self, node_id: str, spec: ProcessSpec) -> bool:
        procs = (self._read_json(node_id, "cgroups.json") or {}).get("procs", [])
        return self._supervisor(node_id).start(spec, procs)

    def is_running(self, node_id: str, name: str = SERVER) -> bool:
        return self._supervisor(node_id).live(name) is not None

    def pid(self, node_id: str) -> int | None:
        live = self._supervisor(node_id).live()
        return live[0] if live else None

    def stop(self, node_id: str, graceful: bool = True) -> None:
        """Stop every process of the node, sidecars first: each its own stop signal
        (unless ``graceful`` is off, when its data is about to be thrown away),
        then SIGKILL for what is left."""
        if self._dir(node_id).exists():
            self._supervisor(node_id).stop(graceful)

    def kill(self, node_id: str) -> None:
        """SIGKILL every process of the node at once: a simulated host failure."""
        self._supervisor(node_id).kill()

    def ensure_etcd(self) -> str:
        return self.etcd.ensure()

    def forget_dcs(self, prefix: str) -> None:
        if self.etcd.running():
            self.etcd.delete_prefix(prefix)

    def ensure_endpoint(self, cluster_id: str, backends: list[Backend], check: RoleCheck,
                        ca_file: str, taken_ports: set[int]) -> Endpoint:
        return self.endpoints.ensure(cluster_id, backends, check, ca_file, taken_ports)

    def endpoint_running(self, cluster_id: str) -> bool:
        return self.endpoints.running(cluster_id)

    def remove_endpoint(self, cluster_id: str) -> None:
        self.endpoints.remove(cluster_id)

    def destroy(self, node_id: str) -> None:
        root = self._dir(node_id)
        if root.exists():
            # No shutdown checkpoint or snapshot for data that is deleted next.
            self.stop(node_id, graceful=False)
            volume_fs.remove(self._image(node_id), root)
            shutil.rmtree(root, ignore_errors=True)
        cgroups.remove(node_id)

    def has_storage(self, node_id: str) -> bool:
        return self._dir(node_id).is_dir()

    def storage_usage(self, node_id: str, storage_gb: int) -> StorageUsage | None:
        """A node's own filesystem: statvfs (constant time). A plain directory: the
        bytes its files take, against the storage asked for (the walk stops once
        past it, so a runaway directory costs no more than a full one)."""
        root = self._dir(node_id)
        if not root.is_dir():
            return None
        if self.use_volumes and volume_fs.is_mounted(root):
            st = os.statvfs(root)
            return StorageUsage((st.f_blocks - st.f_bfree) * st.f_frsize,
                                st.f_blocks * st.f_frsize)
        total = storage_gb * volume_fs.GB
        used = 0
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            if used > total:
                break
        return StorageUsage(used, total)

    def output_tail(self, node_id: str, name: str = SERVER, max_bytes: int = 4096) -> str:
        try:
            with open(self._dir(node_id) / "log" / f"{name}.log", "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - max_bytes))
                return log.read().decode(errors="replace")
        except (FileNotFoundError, ValueError):
            return ""

    def node_ids(self) -> set[str]:
        found = {p.name for p in self.nodes_dir.iterdir() if p.is_dir()}
        if self.volumes_dir.exists():
            found |= {p.stem for p in self.volumes_dir.glob("*.img")}
        return found
