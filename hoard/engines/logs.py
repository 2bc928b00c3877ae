"""A node's logs, as its engine knows them: where each log is, how its lines
become entries (with their time), and how secrets are scrubbed from them.

Engines inherit :class:`ServerLogs`; Hoard reads the bytes through the node's
provider (``Provider.read_log``), never by opening paths itself, so a log is
read wherever the node runs, and only the sources the engine declares.

Scrubbing is the engine's, because only the engine knows how its statements
carry a secret (``PASSWORD '...'``, ``IDENTIFIED BY '...'``, ``AUTH ...``);
:func:`scrub_common` catches what every engine can log: connection URIs and
``password=...`` pairs. A scrubbed secret reads ``***``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hoard.domain.nodes import LogSource
from hoard.engines.base import NodeContext

KINDS = ("server", "slow")  # the server's own log; its slow-query log
REDACTED = "***"

# A quoted string as SQL engines write it ('it''s', 'a\'b', "x"); an unterminated
# one runs to the end of the line, so a cut statement still hides its secret.
SQL_STRING = (r"(?:[Ee]?'(?:[^'\\\n]|\\.|'')*(?:'|$)"
              r"|\"(?:[^\"\\\n]|\\.|\"\")*(?:\"|$)"
              r"|\$(?P<tag>[A-Za-z_]*)\$.*?(?:\$(?P=tag)\$|$))")
_URI = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@'\"]+@")
_PAIR = re.compile(r"(?i)\b((?:master_)?(?:password|passwd|pwd|requirepass|masterauth|auth-pass)"
                   r"\s*=\s*)(" + SQL_STRING + r"|[^\s'\";,()]++(?!\())", re.MULTILINE)


@dataclass(frozen=True)
class LogEntry:
    """One entry of a log: a line, or the lines of one event (a statement that
    spans lines, a slow-log record). ``time`` is None when the line has none."""

    time: datetime | None
    text: str


def scrub_common(text: str) -> str:
    """Passwords in connection URIs (``scheme://user:secret@``) and in
    ``password=secret`` pairs (libpq conninfo, MariaDB's ``MASTER_PASSWORD=``)."""
    text = _URI.sub(lambda m: m[1] + REDACTED + "@", text)
    return _PAIR.sub(lambda m: m[1] + f"'{REDACTED}'", text)


def split_entries(text: str, starts: re.Pattern[str],
                  when: Callable[[re.Match[str]], datetime]) -> list[LogEntry]:
    """Entries of a log whose entries begin with a line matching ``starts``; other
    lines continue the entry before them. ``when(match)`` gives an entry's time."""
    entries: list[LogEntry] = []
    lines: list[str] = []
    time: datetime | None = None
    for line in text.splitlines():
        match = starts.match(line)
        if match and lines:
            entries.append(LogEntry(time, "\n".join(lines)))
            lines = []
        if match:
            time = when(match)
        elif not lines:
            time = None  # a continuation whose start was before what was read
        lines.append(line)
    if lines:
        entries.append(LogEntry(time, "\n".join(lines)))
    return entries


class ServerLogs(ABC):
    """A node's server log and slow-query log (``KINDS``).

    A log is in one or more ``log_sources`` (read by the provider, parsed by
    ``parse_log``) and, for an engine that keeps one in memory only (Redis's
    slow log, its ACL log of refused logins), asked of the server by
    ``poll_log``. Every entry's text goes through ``scrub`` before it leaves."""

    # The configuration parameters that set the slow-query threshold.
    slow_log_parameters: tuple[str, ...]

    @abstractmethod
    def log_sources(self, kind: str) -> tuple[LogSource, ...]:
        """Where the log of ``kind`` is written; () when only the server holds it."""

    @abstractmethod
    def parse_log(self, kind: str, text: str) -> list[LogEntry]:
        """Whole lines of a source of ``kind``, as entries with their times (UTC),
        only those that belong to ``kind``; not yet scrubbed."""

    @abstractmethod
    def scrub(self, text: str) -> str:
        """``text`` with every secret the engine can log replaced by ``***``."""

    def poll_log(self, ctx: NodeContext, ca_file: str, kind: str, cursor: dict[str, Any],
                 limit: int) -> list[LogEntry]:
        """Entries of ``kind`` the server keeps in memory, at most the newest
        ``limit`` and only those newer than ``cursor`` says were seen (updated in
        place). Most engines write everything to files: none."""
        return []
