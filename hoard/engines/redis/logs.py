"""Redis's logs. The server writes its log to stdout (kept by the provider),
but neither refused logins nor slow commands go there: both live only in the
server's memory, read over its protocol as Hoard's account. The server log is
its output plus the ACL log (``ACL LOG``: a refused login, a denied command or
key, never the password tried); the slow log is ``SLOWLOG GET``
(``slowlog-log-slower-than``, in microseconds; ``slowlog-max-len`` entries kept).

Slow-log entries are argument lists, scrubbed by position: everything after
``AUTH``, ``HELLO``'s ``AUTH user <password>``, ``ACL SETUSER``'s ``>pass``,
``<pass``, ``#hash`` and ``!hash`` rules, ``CONFIG SET requirepass|masterauth``,
``MIGRATE``'s ``AUTH``/``AUTH2`` (Redis 7 already hides some of these as
"(redacted)"). An output line starts ``<pid>:<role> 01 Jan 2026 12:00:00.123``
(the server's local time: its process runs with ``TZ=UTC``).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from hoard.domain.nodes import LogSource
from hoard.engines.base import NodeContext
from hoard.engines.logs import REDACTED, LogEntry, ServerLogs, scrub_common, split_entries

SERVER_OUTPUT = LogSource(process="server")
_START = re.compile(r"\d+:[A-Z] (\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d)\.(\d{3}) ")
_SECRET_CONFIGS = frozenset({"requirepass", "masterauth", "tls-key-file-pass",
                             "tls-client-key-file-pass"})
_ADDR = re.compile(r"\baddr=(\S+)")


def _when(match: re.Match[str]) -> datetime:
    at = datetime.strptime(match[1], "%d %b %Y %H:%M:%S").replace(tzinfo=UTC)
    return at.replace(microsecond=int(match[2]) * 1000)


def scrub_args(args: list[str]) -> list[str]:
    """A command's arguments with every password or password hash in it hidden."""
    out = list(args)
    name = out[0].lower() if out else ""
    sub = out[1].lower() if len(out) > 1 else ""
    if name == "auth":
        out[1:] = [REDACTED] * (len(out) - 1)
    elif name in ("hello", "migrate"):
        for i, arg in enumerate(args):
            # HELLO 3 AUTH <user> <password>; MIGRATE ... AUTH <password> | AUTH2 <user> <password>
            skip = {"auth": 2 if name == "hello" else 1, "auth2": 2}.get(arg.lower())
            if skip and i + skip < len(out):
                out[i + skip] = REDACTED
    elif name == "acl" and sub in ("setuser", "dryrun"):
        out[2:] = [a[0] + REDACTED if a[:1] in (">", "<", "#", "!") else a for a in out[2:]]
    elif name == "config" and sub == "set":
        for i in range(2, len(out) - 1, 2):
            if out[i].lower() in _SECRET_CONFIGS:
                out[i + 1] = REDACTED
    elif name == "sentinel":
        for i, arg in enumerate(args[:-1]):
            if arg.lower() in ("auth-pass", "sentinel-pass"):
                out[i + 1] = REDACTED
    return out


def _quote(arg: str) -> str:
    return arg if arg and re.fullmatch(r"[^\s\"']+", arg) else '"' + arg.replace('"', '\\"') + '"'


class RedisLogs(ServerLogs):
    slow_log_parameters = ("slowlog-log-slower-than",)
    acl_log_length = 128  # the server's acllog-max-len

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10) -> redis.Redis: ...

    def log_sources(self, kind: str) -> tuple[LogSource, ...]:
        return () if kind == "slow" else (SERVER_OUTPUT,)

    def parse_log(self, kind: str, text: str) -> list[LogEntry]:
        return split_entries(text, _START, _when) if kind == "server" else []

    def scrub(self, text: str) -> str:
        return scrub_common(text)

    def poll_log(self, ctx: NodeContext, ca_file: str, kind: str, cursor: dict[str, Any],
                 limit: int) -> list[LogEntry]:
        with self._connect(ctx, ca_file, timeout=5) as client:
            if kind == "slow":
                return _slow_entries(client.execute_command("SLOWLOG", "GET", limit), cursor)
            now = datetime.now(UTC)
            reply = client.execute_command("ACL", "LOG", min(limit, self.acl_log_length))
        return _acl_entries(reply, cursor, now)


def _slow_entries(reply: list[Any], cursor: dict[str, Any]) -> list[LogEntry]:
    """SLOWLOG GET's entries (newest first: id, unix time, microseconds, arguments,
    client address, client name) newer than the last id seen, oldest first."""
    seen = int(cursor.get("slow_id", -1))
    entries = []
    for item in reversed(reply):
        entry_id, stamp, micros, args = int(item[0]), int(item[1]), int(item[2]), item[3]
        if entry_id <= seen:
            continue
        addr = item[4] if len(item) > 4 else ""
        client = item[5] if len(item) > 5 else ""
        command = " ".join(_quote(str(a)) for a in scrub_args([str(a) for a in args]))
        entries.append(LogEntry(datetime.fromtimestamp(stamp, UTC),
                                f"slow: {micros} us: {command} (client {addr} {client})".rstrip()))
        seen = max(seen, entry_id)
    cursor["slow_id"] = seen
    return entries


def _acl_entries(reply: list[Any], cursor: dict[str, Any], now: datetime) -> list[LogEntry]:
    """ACL LOG's entries, oldest first: each the first time it is seen, and again
    when its count grows (the server folds repeats of an event into one entry)."""
    counts: dict[str, int] = cursor.setdefault("acl", {})
    entries = []
    for item in reversed(reply):
        info = dict(zip(item[::2], item[1::2], strict=True))
        key = "|".join(str(info.get(k, "")) for k in ("reason", "context", "object", "username",
                                                      "entry-id"))
        count = int(info.get("count", 1))
        if counts.get(key, 0) >= count:
            continue
        counts[key] = count
        addr = _ADDR.search(str(info.get("client-info", "")))
        where = f" from {addr[1]}" if addr else ""
        reason, user, obj = info.get("reason"), info.get("username"), info.get("object")
        what = (f"authentication failed for user '{user}'" if reason == "auth"
                else f"{reason} '{obj}' denied to user '{user}'")
        at = now - timedelta(seconds=float(info.get("age-seconds", 0)))
        entries.append(LogEntry(at, f"ACL: {what}{where} ({count} so far)"))
    return entries
