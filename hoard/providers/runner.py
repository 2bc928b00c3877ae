"""A local node's files and tools (the engine's ``NodeRunner``).

Files go through :class:`hoard.providers.usertree.UserTree`: Hoard runs as
root and the node's directory belongs to the node's OS account, so no path in
it is trusted (no link is followed, nothing is chowned by path). Tools run as
the node's account and die with Hoard (``--pdeathsig``), so a killed Hoard
leaves no half-done tool behind; the step that ran it is redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from hoard.providers.osusers import OSUser
from hoard.providers.processes import SAFE_ENV
from hoard.providers.usertree import UserTree

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
    """Files and tools inside one node's directory, as the node's OS account."""

    def __init__(self, root: Path, user: OSUser) -> None:
        self.root = root
        self.user = user
        self.tree = UserTree(root, user)

    def abspath(self, path: PurePosixPath) -> str:
        return str(self.tree.path(path))

    def exists(self, path: PurePosixPath) -> bool:
        return self.tree.exists(path)

    def write_file(self, path: PurePosixPath, content: bytes, mode: int = 0o600) -> None:
        self.tree.write_stream(path, [content], mode)

    def write_stream(self, path: PurePosixPath, chunks: Iterable[bytes],
                     mode: int = 0o600) -> int:
        return self.tree.write_stream(path, chunks, mode)

    def remove_tree(self, path: PurePosixPath) -> None:
        """Remove a file or a directory tree; missing is fine."""
        self.tree.remove_tree(path)

    def rename(self, src: PurePosixPath, dst: PurePosixPath) -> None:
        self.tree.rename(src, dst)

    def list_dir(self, path: PurePosixPath) -> list[str]:
        return self.tree.list_dir(path)

    def read_stream(self, path: PurePosixPath) -> Iterator[bytes]:
        return self.tree.read_stream(path)

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
