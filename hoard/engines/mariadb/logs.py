"""MariaDB's logs: the error log goes to stderr (no ``log_error``: the provider
keeps the output), refused logins in it as "Access denied for user ..."
(``log_warnings`` 2, the default); the slow-query log is ``data/slow.log``
(``slow_query_log``, ``long_query_time``), on the node's volume.

An error-log line starts with its time (``2026-01-01 12:00:00``, the server's
local time: its process runs with ``TZ=UTC``). A slow-log record is the lines
from ``# User@Host:`` (after an optional ``# Time:``) to its statement, its time
exact in ``SET timestamp=<epoch>;``. Secrets are in ``IDENTIFIED BY [PASSWORD]
'...'``, ``IDENTIFIED VIA plugin USING '...'``, ``PASSWORD('...')``, ``SET
PASSWORD = '...'`` and ``MASTER_PASSWORD='...'``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hoard.domain.nodes import LogSource
from hoard.engines.logs import (
    REDACTED,
    SQL_STRING,
    LogEntry,
    ServerLogs,
    scrub_common,
    split_entries,
)
from hoard.engines.mariadb.backup import DATA

SERVER_OUTPUT = LogSource(process="server")
SLOW_LOG = LogSource(path=DATA / "slow.log")
_START = re.compile(r"(\d{4}-\d\d-\d\d) +(\d{1,2}:\d\d:\d\d) ")
_SLOW_START = re.compile(r"# (?:Time|User@Host): ")
_STAMP = re.compile(r"^SET timestamp=(\d+);$", re.MULTILINE)
_BANNER = re.compile(r"^(?:\S+, Version: .*|Tcp port: .*|Time +Id Command +Argument)$")
_SECRETS = [
    re.compile(r"(?i)(\bIDENTIFIED\s+BY\s+(?:PASSWORD\s+)?)(" + SQL_STRING + ")", re.MULTILINE),
    re.compile(r"(?i)(\bIDENTIFIED\s+(?:VIA|WITH)\s+\w+\s+(?:USING|AS)\s+)(" + SQL_STRING + ")",
               re.MULTILINE),
    re.compile(r"(?i)(\b(?:OLD_)?PASSWORD\s*\(\s*)(" + SQL_STRING + ")", re.MULTILINE),
    re.compile(r"(?i)(\bSET\s+PASSWORD\b[^=\n]*=\s*)(" + SQL_STRING + ")", re.MULTILINE),
]


def _when(match: re.Match[str]) -> datetime:
    return datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _slow_entries(text: str) -> list[LogEntry]:
    """Records of the slow log; the banner a server writes when it opens the file
    is left out."""
    lines = [line for line in text.splitlines() if not _BANNER.match(line)]
    records: list[list[str]] = []
    for line in lines:
        starts = _SLOW_START.match(line)
        follows_time = bool(records) and records[-1][-1].startswith("# Time: ")
        if not records or (starts and not follows_time):
            records.append([])
        records[-1].append(line)
    entries = []
    for record in records:
        text = "\n".join(record)
        stamp = _STAMP.search(text)
        at = datetime.fromtimestamp(int(stamp[1]), UTC) if stamp else None
        entries.append(LogEntry(at, text))
    return entries


class MariaDBLogs(ServerLogs):
    slow_log_parameters = ("slow_query_log", "long_query_time")

    def log_sources(self, kind: str) -> tuple[LogSource, ...]:
        return (SLOW_LOG,) if kind == "slow" else (SERVER_OUTPUT,)

    def parse_log(self, kind: str, text: str) -> list[LogEntry]:
        if kind == "slow":
            return _slow_entries(text)
        return split_entries(text, _START, _when)

    def scrub(self, text: str) -> str:
        for pattern in _SECRETS:
            text = pattern.sub(lambda m: m[1] + f"'{REDACTED}'", text)
        return scrub_common(text)
