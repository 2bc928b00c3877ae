"""A Kubernetes node's files and tools (the engine's ``NodeRunner``), by exec
into its pod's "server" container.

Every operation is a command run in the pod with the node's volume as its
working directory: files are streamed to (or from) small POSIX shell commands
whose paths are positional arguments, never written into a script. Exec has
no environment of its own, so a tool's ``env`` (passwords) is sent first on
its stdin, as ``NAME=value`` lines ended by an empty line, and exported by the
shell before it execs the tool: a secret is never in an argv, where the API
server's audit log and the pod's process list would show it.

A file is written under a staging name beside its path, then checked for its
size and renamed in a second command, only once the last chunk is in: a
stream that raises, or a connection cut short (the command then sees the end
of its stdin as if it were the end of the file), leaves nothing under
``path``.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePosixPath
from typing import IO

from hoard.providers.kubernetes.channels import STATUS, STDERR, STDOUT, Channels, exit_code
from hoard.providers.kubernetes.client import Kube
from hoard.providers.runner import ToolFailed

CONTAINER = "server"  # the node's first container, the holder's as well as the server's
TAIL = 64 * 1024  # what is kept of a tool's stderr, for its error
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# $0 is the volume; each command runs there. The environment lines come first on stdin.
_ENTER = 'cd -- "$0" || exit 125; '
_ENV = 'while IFS= read -r kv && [ -n "$kv" ]; do export "$kv"; done; '
_SH = {
    "exec": _ENTER + 'exec "$@"',
    "exec_env": _ENTER + _ENV + 'exec "$@"',
    "exec_timed": _ENTER + 'exec timeout -k 10 "$@"',
    "exec_env_timed": _ENTER + _ENV + 'exec timeout -k 10 "$@"',
    "exists": _ENTER + '[ -e "$1" ] || [ -L "$1" ]',
    "remove": _ENTER + 'rm -rf -- "$1"',
    "rename": _ENTER + 'mkdir -p -- "$(dirname -- "$2")" && mv -f -T -- "$1" "$2"',
    "list": _ENTER + '[ ! -d "$1" ] || find "$1" -mindepth 1 -maxdepth 1 -printf "%f\\0"',
    "read": _ENTER + 'exec cat -- "$1"',
    # The volume's filesystem (coreutils' stat -f, in every engine's image): its
    # fundamental block size, its blocks and its free blocks, on one line.
    "statfs": _ENTER + 'exec timeout -k 2 "$1" stat -f -c "%S %b %f" -- .',
    # The staging file is made (and held open) before "ok": a discard after it
    # removes its one name, whatever the writer still writes (to no name).
    "stage": _ENTER + 'umask 077 && mkdir -p -- "$(dirname -- "$1")" && exec 3> "$1" && '
             'echo ok && exec cat >&3',
    "commit": _ENTER + '[ "$(wc -c < "$1")" = "$3" ] || { echo "$1: short" >&2; exit 1; }; '
              'chmod "$4" "$1" && mv -f -T -- "$1" "$2"',
    "discard": _ENTER + 'rm -f -- "$1"',
    # A regular file's size and where the range starts (its last $3 bytes when
    # $2 is "-"; from its start when $2 is past its end: it was cut), then the range.
    "range": _ENTER + '{ [ -f "$1" ] && [ ! -L "$1" ]; } || { echo "0 0"; exit 0; }; '
             'size=$(wc -c < "$1") || exit 1; '
             'if [ "$2" = - ]; then start=$((size > $3 ? size - $3 : 0)); '
             'elif [ "$2" -le "$size" ]; then start=$2; else start=0; fi; '
             'echo "$size $start"; tail -c +$((start + 1)) -- "$1" | head -c "$3"',
}


def checked(path: PurePosixPath | str, whole: bool = False) -> str:
    """``path`` inside the volume, as the commands take it (from "./", so a name
    that starts with "-" is never read as an option); refuses one that leaves it
    (absolute, ``..``), and (``whole``) the volume itself."""
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts:
        raise ValueError(f"path {path} leaves the node's volume")
    names = [p for p in parts if p != "."]
    if whole and not names:
        raise ValueError(f"path {path} names the node's volume itself")
    return "/".join([".", *names])


def _env_lines(env: dict[str, str] | None) -> bytes:
    """The environment as the commands' shell reads it (a name, ``=``, a value on
    one line); names and values that could not be read back are refused."""
    lines = []
    for name, value in (env or {}).items():
        if not _NAME.match(name) or "\n" in value or "\0" in value:
            raise ValueError(f"environment variable {name!r}: not a name, or a value of "
                             "more than one line")
        lines.append(f"{name}={value}\n")
    return ("".join(lines) + "\n").encode()


def _failed(argv: list[str], code: int, errors: bytes) -> ToolFailed:
    tail = errors.decode(errors="replace").strip().splitlines()[-5:]
    return ToolFailed(f"{PurePosixPath(argv[0]).name} exited {code}: " + " | ".join(tail))


class _Outcome:
    """What a command said on stdout and stderr, and its exit code."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self.out, self.errors, self.code = out, b"", -1

    def take(self, channels: Channels, timeout: float | None,
             merge: bool = False) -> _Outcome:
        """Read every frame until the status (``merge``: stderr goes to ``out``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for channel, data in channels.frames(_left(deadline)):
            if channel == STDOUT or (merge and channel == STDERR):
                if self.out is not None:
                    self.out.write(data)
                if merge:
                    self.errors = (self.errors + data)[-TAIL:]
            elif channel == STDERR:
                self.errors = (self.errors + data)[-TAIL:]
            elif channel == STATUS:
                self.code = exit_code(data)
        return self


def _seconds(timeout: float) -> str:
    """A duration as coreutils' ``timeout`` reads it (whole seconds, at least one)."""
    return str(max(1, math.ceil(timeout)))


def _send_all(channels: Channels, chunks: Iterable[bytes], reader: threading.Thread) -> None:
    """Send ``chunks`` while the tool reads; stop when it has ended (its status,
    which the reader takes, says why). A chunk that fails to come raises."""
    for chunk in chunks:
        if not reader.is_alive():
            return
        try:
            channels.send(chunk)
        except Exception:
            return  # the connection ended under the tool: its status, or its lack, says why


def _started(channels: Channels) -> None:
    """Until the command says "ok" (its first output), or its failure to."""
    errors = b""
    for channel, data in channels.frames(300.0):
        if channel == STDOUT:
            return
        if channel == STDERR:
            errors = (errors + data)[-TAIL:]
        elif channel == STATUS:
            raise _failed(["sh"], exit_code(data), errors)


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the command did not end in time")
    return left


class ExecRunner:
    """Files and tools inside one node's pod, on its volume at ``mount``.
    ``ready`` waits (within the provider's start deadline) until the pod runs
    its "server" container; it is asked once, at the first command, so a
    runner can be had (for its paths) while the node is stopped."""

    def __init__(self, kube: Kube, pod: str, mount: str,
                 ready: Callable[[], None] | None = None) -> None:
        self.kube, self.pod, self.mount = kube, pod, mount.rstrip("/") or "/"
        self._ready = ready

    def abspath(self, path: PurePosixPath) -> str:
        rel = checked(path).removeprefix(".").lstrip("/")
        return f"{self.mount}/{rel}" if rel else self.mount

    # --- one command ---

    @contextlib.contextmanager
    def _open(self, script: str, args: list[str], stdin: bool) -> Iterator[Channels]:
        if self._ready is not None:
            self._ready()
            self._ready = None
        with self.kube.exec(self.pod, CONTAINER, ["sh", "-c", _SH[script], self.mount, *args],
                            stdin) as channels:
            if stdin and not channels.closable:
                channels.close_stdin()  # refused, saying why, before anything is sent
            yield channels

    def _call(self, script: str, *args: str, out: IO[bytes] | None = None,
              timeout: float | None = 300.0) -> _Outcome:
        with self._open(script, list(args), stdin=False) as channels:
            return _Outcome(out).take(channels, timeout)

    def _must(self, script: str, *args: str) -> None:
        done = self._call(script, *args)
        if done.code != 0:
            raise _failed([script], done.code, done.errors)

    # --- files ---

    def exists(self, path: PurePosixPath) -> bool:
        done = self._call("exists", checked(path))
        if done.code not in (0, 1):
            raise _failed(["test"], done.code, done.errors)
        return done.code == 0

    def remove_tree(self, path: PurePosixPath) -> None:
        self._must("remove", checked(path, whole=True))

    def rename(self, src: PurePosixPath, dst: PurePosixPath) -> None:
        self._must("rename", checked(src, whole=True), checked(dst, whole=True))

    def list_dir(self, path: PurePosixPath) -> list[str]:
        with tempfile.SpooledTemporaryFile(max_size=TAIL) as out:
            done = self._call("list", checked(path), out=out)
            if done.code != 0:
                raise _failed(["find"], done.code, done.errors)
            out.seek(0)
            return sorted(name.decode(errors="surrogateescape")
                          for name in out.read().split(b"\0") if name)

    def write_file(self, path: PurePosixPath, content: bytes, mode: int = 0o600) -> None:
        self.write_stream(path, [content], mode)

    def write_stream(self, path: PurePosixPath, chunks: Iterable[bytes],
                     mode: int = 0o600) -> int:
        """Stream into a staging name beside ``path``; rename it once complete."""
        final = checked(path, whole=True)
        staging = f"{final}.hoard-stage-{secrets.token_hex(6)}"
        written, started = 0, False
        try:
            with self._open("stage", [staging], stdin=True) as channels:
                _started(channels)
                started = True
                for chunk in chunks:
                    channels.send(chunk)
                    written += len(chunk)
                channels.close_stdin()
                done = _Outcome(None).take(channels, None)
            if done.code != 0:
                raise _failed(["cat"], done.code, done.errors)
            self._must("commit", staging, final, str(written), f"{mode:o}")
        except BaseException:
            if started:  # else there is no staging file (nor, maybe, a pod) to clean
                with contextlib.suppress(Exception):
                    self._call("discard", staging, timeout=30.0)
            raise
        return written

    def read_range(self, path: PurePosixPath, offset: int | None,
                   max_bytes: int) -> tuple[bytes, int, int]:
        """At most ``max_bytes`` of the regular file ``path`` from ``offset`` (None:
        its last ``max_bytes``; past its end: from its start, it was cut), as
        (bytes, where they start, where they end); a missing file (or a link) is
        empty. A log's reader: it never takes more than asked."""
        where = "-" if offset is None else str(max(0, int(offset)))
        with tempfile.SpooledTemporaryFile(max_size=max_bytes + 64) as out:
            done = self._call("range", checked(path, whole=True), where, str(int(max_bytes)),
                              out=out, timeout=60.0)
            if done.code != 0:
                raise _failed(["tail"], done.code, done.errors)
            out.seek(0)
            _size, start = (int(n) for n in out.readline().split())
            data = out.read(max_bytes)
        return data, start, start + len(data)

    def read_stream(self, path: PurePosixPath) -> Iterator[bytes]:
        """A file's bytes as they come (a missing one raises ``ToolFailed``)."""
        return self._stream("read", [checked(path, whole=True)], b"", ["cat"])

    def statfs(self, timeout: float) -> str:
        """What ``stat -f`` prints of the volume's filesystem (its block size,
        blocks and free blocks), within ``timeout`` here and in the pod: a
        volume that hangs (a lost network disk) costs a reader no more."""
        out = io.BytesIO()
        done = self._call("statfs", _seconds(timeout), out=out, timeout=timeout + 5.0)
        if done.code != 0:
            raise _failed(["stat"], done.code, done.errors)
        return out.getvalue().decode(errors="replace")

    # --- tools ---

    def run(self, argv: list[str], timeout: float = 300.0,
            env: dict[str, str] | None = None) -> str:
        """The tool under ``timeout`` (coreutils') in the pod as well: a tool cut
        short here does not run on there."""
        header = _env_lines(env) if env else b""  # refused before anything runs
        with tempfile.SpooledTemporaryFile(max_size=1 << 20) as out:
            with self._open("exec_env_timed" if env else "exec_timed",
                            [_seconds(timeout), *argv], stdin=bool(env)) as channels:
                if header:
                    channels.send(header)
                    channels.close_stdin()
                done = _Outcome(out).take(channels, timeout + 15.0)
            out.seek(0)
            output = out.read().decode(errors="replace")
        if done.code != 0:
            raise _failed(argv, done.code, done.errors or output.encode())
        return output

    def stream(self, argv: list[str], env: dict[str, str] | None = None) -> Iterator[bytes]:
        """(Its environment is checked when it is asked for, not at its first chunk.)"""
        return self._stream("exec_env" if env else "exec", argv,
                            _env_lines(env) if env else b"", argv)

    def _stream(self, script: str, args: list[str], header: bytes,
                argv: list[str]) -> Iterator[bytes]:
        """stdout as it comes; after the last chunk, raise if the command failed."""
        with self._open(script, args, stdin=bool(header)) as channels:
            if header:
                channels.send(header)
                channels.close_stdin()
            errors, code = b"", -1
            for channel, data in channels.frames():
                if channel == STDOUT:
                    yield data
                elif channel == STDERR:
                    errors = (errors + data)[-TAIL:]
                elif channel == STATUS:
                    code = exit_code(data)
        if code != 0:
            raise _failed(argv, code, errors)

    def feed(self, argv: list[str], chunks: Iterable[bytes],
             env: dict[str, str] | None = None, timeout: float = 3600.0) -> str:
        """``chunks`` to the tool's stdin while its output is read beside (a tool
        that writes as it reads never waits on a full connection)."""
        header = _env_lines(env)
        with tempfile.SpooledTemporaryFile(max_size=1 << 20) as out:
            with self._open("exec_env_timed", [_seconds(timeout), *argv],
                            stdin=True) as channels:
                outcome = _Outcome(out)
                failure: list[BaseException] = []

                def read() -> None:
                    try:
                        outcome.take(channels, timeout + 15.0, merge=True)
                    except BaseException as exc:
                        failure.append(exc)

                reader = threading.Thread(target=read, daemon=True)
                reader.start()
                _send_all(channels, [header], reader)
                _send_all(channels, chunks, reader)
                with contextlib.suppress(Exception):  # the tool ended: its status says why
                    channels.close_stdin()
                reader.join()
                if failure:
                    raise failure[0]
            out.seek(0)
            output = out.read().decode(errors="replace")
        if outcome.code != 0:
            raise _failed(argv, outcome.code, output.encode())
        return output
