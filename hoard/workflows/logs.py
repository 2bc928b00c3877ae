"""Reading a node's logs for a tenant: the engine says where each log is and how
its lines parse (``hoard.engines.logs``), the node's provider reads the bytes
(``Provider.read_log``), and every entry is scrubbed by the engine before it
leaves. Bounded everywhere: one answer reads at most ``TAIL_BYTES`` of a log
and holds at most ``MAX_LINES`` entries; a follow polls ``FOLLOW_BYTES`` at a
time and ends after ``FOLLOW_MAX_LINES`` entries or ``FOLLOW_MAX_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hoard.domain.nodes import LogSource
from hoard.engines.base import NodeContext
from hoard.engines.logs import LogEntry, ServerLogs
from hoard.providers.base import Provider

TAIL_BYTES = 4 << 20  # the most of one log an answer reads
FOLLOW_BYTES = 1 << 20  # the most of one log a follow's poll reads
MAX_LINES = 1000  # the most entries one answer holds
MAX_LINE_CHARS = 8192  # a longer entry is cut (after it was scrubbed)
FOLLOW_POLL_SECONDS = 0.5
FOLLOW_MAX_LINES = 10_000
FOLLOW_MAX_SECONDS = 3600.0
_EARLIEST = datetime.min.replace(tzinfo=UTC)


class LogUnavailable(RuntimeError):
    """The log cannot be read now (its server is down, its file is not the node's)."""


@dataclass(frozen=True)
class LogLine:
    time: datetime | None
    node: str
    line: str


@dataclass
class NodeLog:
    """One log (``kind``) of one node, and how far it has been read."""

    engine: ServerLogs
    provider: Provider
    ctx: NodeContext
    ca_file: str
    kind: str
    offsets: dict[int, int] = field(default_factory=dict)  # per source: next byte to read
    cursor: dict[str, Any] = field(default_factory=dict)  # the engine's poll state
    last_time: datetime | None = None

    @property
    def sources(self) -> tuple[LogSource, ...]:
        return self.engine.log_sources(self.kind)

    def _entries(self, index: int, offset: int | None, max_bytes: int) -> tuple[list[LogEntry],
                                                                                bool]:
        """Whole lines of source ``index`` from ``offset`` (None: its tail), parsed;
        and whether the log holds more before what was read."""
        try:
            chunk = self.provider.read_log(self.ctx.node_id, self.sources[index], offset,
                                           max_bytes)
        except PermissionError as exc:
            raise LogUnavailable(str(exc)) from None
        data, start = chunk.data, chunk.start
        cut = offset is None and start > 0
        if cut:  # the first line is a part of one
            skip = data.find(b"\n") + 1
            data, start = data[skip:], start + skip
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) >= max_bytes:
            end = len(data)  # one line longer than a read: taken as it is
        self.offsets[index] = start + end
        text = data[:end].decode("utf-8", errors="replace")
        return self.engine.parse_log(self.kind, text), cut

    def read(self, since: datetime | None, limit: int) -> tuple[list[LogLine], bool]:
        """The newest ``limit`` entries (at or after ``since``), oldest first, and
        whether older ones were left out (of the answer, or of the bytes read)."""
        entries: list[LogEntry] = []
        cut = False
        for index in range(len(self.sources)):
            found, more = self._entries(index, None, TAIL_BYTES)
            entries += _fill_times(found)
            cut = cut or more
        entries += self._poll()
        entries.sort(key=lambda e: e.time or _EARLIEST)
        if since is not None:
            entries = [e for e in entries if e.time is not None and e.time >= since]
        truncated = len(entries) > limit or (cut and since is not None)
        kept = entries[-limit:]
        if kept:
            self.last_time = kept[-1].time
        return [self._line(e) for e in kept], truncated

    def more(self) -> list[LogLine]:
        """Entries written since the last read, oldest first."""
        entries: list[LogEntry] = []
        for index in range(len(self.sources)):
            found, _ = self._entries(index, self.offsets.get(index, 0), FOLLOW_BYTES)
            entries += _fill_times(found, self.last_time)
        entries += self._poll()
        entries.sort(key=lambda e: e.time or _EARLIEST)
        if entries and entries[-1].time is not None:
            self.last_time = entries[-1].time
        return [self._line(e) for e in entries]

    def _poll(self) -> list[LogEntry]:
        """What the server keeps in memory. A server that does not answer (stopped,
        crashed) leaves out only that when its files say the rest (they say why
        it is down); a log kept only in memory cannot be read then."""
        try:
            return self.engine.poll_log(self.ctx, self.ca_file, self.kind, self.cursor,
                                        MAX_LINES)
        except Exception as exc:  # the engine's client library's errors
            if self.sources:
                return []
            raise LogUnavailable(f"the {self.kind} log is kept by the server, which does "
                                 f"not answer: {exc}") from None

    def _line(self, entry: LogEntry) -> LogLine:
        text = self.engine.scrub(entry.text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" [cut: {len(text) - MAX_LINE_CHARS} more characters]"
        return LogLine(entry.time, self.ctx.node_id, text)


def _fill_times(entries: list[LogEntry], before: datetime | None = None) -> list[LogEntry]:
    """Lines without a time of their own (a server's banner, a stack trace) take
    the time of the entry before them."""
    filled = []
    for entry in entries:
        if entry.time is None and before is not None:
            entry = LogEntry(before, entry.text)
        before = entry.time
        filled.append(entry)
    return filled
