"""Reading the times out of MariaDB binary log files, without the server.

A binlog file is a 4-byte magic number and a sequence of events, each with a
19-byte header: timestamp (seconds, little-endian u32), type, server id, event
length, next position, flags. Hoard needs only the timestamps of the events
that carry transactions, so it walks the headers (compressed and checksummed
events included: the length covers both) instead of decoding events.

MariaDB stamps every event of a statement with the second that statement began
(a transaction's commit with the second its COMMIT, or its autocommit
statement, began). That second is what a point-in-time restore can tell apart:
``mariadb-binlog --stop-datetime`` stops at the first event at or after a given
second.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIII")  # timestamp, type, server id, length, next position
HEADER_SIZE = 19
# Events about the file itself, stamped when it is opened or closed: not transactions.
FILE_EVENTS = frozenset({
    3,    # STOP
    4,    # ROTATE
    15,   # FORMAT_DESCRIPTION
    27,   # HEARTBEAT
    161,  # BINLOG_CHECKPOINT
    163,  # GTID_LIST
    164,  # START_ENCRYPTION
})


def transaction_times(chunks: Iterable[bytes], start: int = 4) -> Iterator[int]:
    """The timestamp (Unix seconds) of every transaction event at or after byte
    ``start`` of a binlog file, in file order. Raises ValueError on a file that is
    not a binlog or whose events do not line up."""
    buffer, offset, checked = b"", 0, False  # offset: file position of buffer[0]
    position = 4
    for chunk in chunks:
        buffer += chunk
        if not checked:
            if len(buffer) < 4:
                continue
            if buffer[:4] != MAGIC:
                raise ValueError("not a binary log file (bad magic number)")
            checked = True
        while position - offset + HEADER_SIZE <= len(buffer):
            at = position - offset
            stamp, kind, _, length, _ = HEADER.unpack_from(buffer, at)
            if length < HEADER_SIZE:
                raise ValueError(f"damaged binary log: an event of {length} bytes "
                                 f"at position {position}")
            if position >= start and kind not in FILE_EVENTS:
                yield stamp
            position += length
        keep = max(0, min(position - offset, len(buffer)))
        buffer, offset = buffer[keep:], offset + keep


def last_transaction(chunks: Iterable[bytes]) -> datetime | None:
    """The latest transaction time in a binlog file (None: it holds none)."""
    latest = max(transaction_times(chunks), default=None)
    return None if latest is None else datetime.fromtimestamp(latest, UTC)


def split_second(files: Iterable[Iterable[bytes]], start: int, target: datetime) -> int:
    """How many transaction events the binlog files (the first read from byte
    ``start``) have in the second that holds ``target``: those a restore to
    ``target`` cannot place before or after it, unless ``target`` is the
    second's last microsecond."""
    second = int(target.replace(microsecond=0).timestamp())
    count = 0
    for index, chunks in enumerate(files):
        count += sum(1 for stamp in transaction_times(chunks, start if index == 0 else 4)
                     if stamp == second)
    return count


def stop_datetime(target: datetime) -> str:
    """``--stop-datetime`` for a restore to ``target`` (UTC): the next whole second,
    so the events of ``target``'s own second are replayed (``split_second`` has
    made sure there are none, or that all of them are at or before ``target``)."""
    return (target.replace(microsecond=0) + timedelta(seconds=1)).strftime(
        "%Y-%m-%d %H:%M:%S")
