"""PostgreSQL's logs: the server writes one log to stderr (kept by the provider),
and its slow queries are in it (``log_min_duration_statement``: "duration: N ms
statement: ..."), so both kinds are read from the server's output.

A line starts with ``log_line_prefix`` (``%m [%p] %q%u@%d``: the time in
``log_timezone``, UTC); a statement that spans lines continues on lines of its
own. Under Patroni the same output also holds Patroni's lines (``2026-01-01
12:00:00,123 INFO: ...``). Secrets are in ``PASSWORD '...'`` (CREATE/ALTER
ROLE, a user mapping's options) and in conninfo strings (dblink, postgres_fdw,
a subscription's CONNECTION).
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

SERVER_OUTPUT = LogSource(process="server")
_START = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[.,](\d{3})\b")
_SLOW = re.compile(r"\bLOG:\s+duration: [\d.]+ ms\s+(?:statement|execute|bind|parse)\b")
_PASSWORD = re.compile(r"(?i)\b(password\s+)(" + SQL_STRING + ")", re.MULTILINE | re.DOTALL)


def _when(match: re.Match[str]) -> datetime:
    at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return at.replace(microsecond=int(match[2]) * 1000)


class PostgreSQLLogs(ServerLogs):
    slow_log_parameters = ("log_min_duration_statement",)

    def log_sources(self, kind: str) -> tuple[LogSource, ...]:
        return (SERVER_OUTPUT,)

    def parse_log(self, kind: str, text: str) -> list[LogEntry]:
        entries = split_entries(text, _START, _when)
        if kind == "slow":
            return [e for e in entries if _SLOW.search(e.text)]
        return entries

    def scrub(self, text: str) -> str:
        text = _PASSWORD.sub(lambda m: m[1] + f"'{REDACTED}'", text)
        return scrub_common(text)
