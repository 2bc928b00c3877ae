"""Redis backups: the pieces the engine's ``Backups`` methods are made of.

A backup is an RDB snapshot taken over the replication protocol
(``redis-cli --rdb -``): the server forks, and the child writes the data as it
was at the fork, while the server goes on serving; nothing is locked. Redis
keeps no log Hoard could archive and replay, so a restore brings back exactly
one backup, never a point in time between two.

The RDB file does not hold ACL users, so the stream carries the tenant's users
(not the admin's or Hoard's: those come from the restored node's credentials)
in a short header before the RDB (meta ``format``: :data:`FORMAT`)::

    hoard-redis-backup 1\\n
    acl <n>\\n  <n bytes: one "user <name> <rules>" line per user, as ACL LIST gives them>
    rdb\\n      <the RDB file, to the end of the stream>
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Iterator, Set
from pathlib import PurePosixPath
from typing import Any

import redis

from hoard.domain.nodes import NodeRunner

FORMAT = "hoard-redis-backup/1"
MAGIC = b"hoard-redis-backup 1\n"
REDIS_CHECK_RDB = "/usr/bin/redis-check-rdb"
CHECK_TIMEOUT = 3600.0  # redis-check-rdb reads the whole file
MAX_ACL = 16 << 20
_EOF_MARK = re.compile(rb"[0-9a-f]{40}")  # ends a diskless transfer
_TAIL = 1 + 8 + 40  # end-of-file opcode, CRC64, end mark
_ACL_LINE = re.compile(r"user ([A-Za-z0-9][A-Za-z0-9_.-]{0,63}) [^\r\n]+")
_CHILDREN = ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "module_fork_in_progress")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def wait_persistence(client: redis.Redis, ready: Callable[[dict[str, Any]], bool],
                     timeout: float, failure: str) -> dict[str, Any]:
    """Poll INFO persistence until ``ready``; TimeoutError with ``failure`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info: Any = client.info("persistence")
        if ready(info):
            return info
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{failure} after {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def idle(info: dict[str, Any]) -> bool:
    """No background save, AOF rewrite or module fork running: a snapshot forks at once."""
    return not any(int(info.get(name, 0)) for name in _CHILDREN)


def tenant_lines(rules: Iterable[str], hidden: Set[str]) -> list[str]:
    """The ``user ...`` lines of users not in ``hidden``."""
    kept = []
    for line in rules:
        found = _ACL_LINE.fullmatch(line)
        if found is None:
            raise RuntimeError(f"unexpected ACL line {line[:40]!r}")
        if found[1] not in hidden:
            kept.append(line)
    return kept


def header(acl_lines: list[str]) -> bytes:
    acl = "".join(line + "\n" for line in acl_lines).encode()
    return MAGIC + b"acl %d\n" % len(acl) + acl + b"rdb\n"


def split(chunks: Iterable[bytes]) -> tuple[list[str], Iterator[bytes]]:
    """Read the header off a backup stream: (ACL lines, the RDB's chunks)."""
    source = iter(chunks)
    buf = b""

    def want(size: int) -> None:
        nonlocal buf
        while len(buf) < size:
            chunk = next(source, None)
            if chunk is None:
                raise RuntimeError("the backup is cut short: it ends inside its header")
            buf += chunk

    start = len(MAGIC) + 4
    want(start)
    if not buf.startswith(MAGIC + b"acl "):
        raise RuntimeError("not a Hoard Redis backup (no header)")
    while (end := buf.find(b"\n", start, start + 12)) < 0 and len(buf) < start + 12:
        want(len(buf) + 1)
    if end < 0 or not buf[start:end].isdigit() or int(buf[start:end]) > MAX_ACL:
        raise RuntimeError("damaged Hoard Redis backup header")
    size = int(buf[start:end])
    want(end + 1 + size + 4)
    acl, rest = buf[end + 1:end + 1 + size], buf[end + 1 + size:]
    if not rest.startswith(b"rdb\n"):
        raise RuntimeError("damaged Hoard Redis backup header")
    lines = acl.decode().splitlines()

    def body() -> Iterator[bytes]:
        if len(rest) > 4:
            yield rest[4:]
        yield from source

    return lines, body()


def rdb_only(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """An RDB stream, checked on the way: it starts like an RDB file and ends with
    the end-of-file opcode and a checksum (a cut-short stream raises after its
    last chunk). redis-cli 7.0 writing to stdout leaves the 40-character end mark
    of the diskless transfer after those: it is dropped here.

    A chunk is held back until the next one shows the stream's end is not in it,
    then passed on as it is, uncopied; chunks shorter than the end's bytes
    (rare: at the start and end of a stream) are joined to what is held back."""
    head = b""
    held = b""
    for chunk in chunks:
        if len(head) < 5:
            head += chunk[:5 - len(head)]
            if len(head) == 5 and head != b"REDIS":
                raise RuntimeError("the snapshot is not an RDB file")
        if len(chunk) >= _TAIL:
            if held:
                yield held
            held = chunk
        else:
            held += chunk
            if len(held) > _TAIL:
                yield held[:-_TAIL]
                held = held[-_TAIL:]
    if len(held) >= _TAIL and held[-_TAIL] == 0xFF and _EOF_MARK.fullmatch(held[-40:]):
        held = held[:-40]
    if len(head) < 5 or len(held) < 9 or held[-9] != 0xFF:
        raise RuntimeError("the RDB stream is cut short: it does not end with the "
                           "end-of-file opcode and checksum")
    yield held


def timed(chunks: Iterable[bytes], timeout: float, meta: dict[str, str]) -> Iterator[bytes]:
    """Pass the snapshot tool's output through; its first byte comes after the
    fork, when the snapshot was taken (meta ``end_time``). A tool killed by
    ``timeout`` shows as a TimeoutError."""
    started = time.monotonic()
    try:
        for chunk in chunks:
            meta.setdefault("end_time", utc_now())
            yield chunk
    except Exception as exc:
        if time.monotonic() - started >= timeout:
            raise TimeoutError(f"the Redis snapshot did not finish within {timeout:g} s "
                               "and was abandoned") from exc
        raise


def check_rdb(runner: NodeRunner, path: PurePosixPath, timeout: float = CHECK_TIMEOUT) -> int:
    """Check a whole RDB file (structure, checksum, RDB version) with the server's
    own checker; return how many keys it holds (expired ones included)."""
    try:
        out = runner.run([REDIS_CHECK_RDB, runner.abspath(path)], timeout=timeout)
    except Exception as exc:
        raise RuntimeError(f"the backup's RDB is damaged or cut short: {exc}") from exc
    found = re.search(r"\[info\] (\d+) keys read", out)
    if "RDB looks OK" not in out or found is None:
        raise RuntimeError("redis-check-rdb did not confirm the backup's RDB")
    return int(found[1])
