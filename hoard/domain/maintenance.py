"""A cluster's maintenance window: when Hoard may restart it to apply settings
that wait for a restart. Times are UTC; a window may run past midnight.

Kept as plain data (``{"day", "start", "duration_minutes"}``) so the store,
the API and the worker loop share one reading of it, and every function takes
the time it judges (``now``) rather than reading a clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = "daily"
START_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MIN_MINUTES, MAX_MINUTES = 30, 480  # under a day: only yesterday's window can reach today


def check_day(day: str) -> str:
    if day != EVERY_DAY and day not in DAYS:
        raise ValueError(f"day {day!r} is not one of {EVERY_DAY}, {', '.join(DAYS)}")
    return day


def check_start(start: str) -> str:
    if not START_RE.fullmatch(start):
        raise ValueError(f"start {start!r} is not a time of day as HH:MM (UTC), "
                         "00:00 to 23:59")
    return start


def _starts(window: Mapping[str, Any], around: dt.datetime, days: range
            ) -> list[dt.datetime]:
    """The window's openings on the days ``days`` away from ``around``'s date."""
    hour, minute = (int(part) for part in str(window["start"]).split(":"))
    found = []
    for offset in days:
        date = around.date() + dt.timedelta(days=offset)
        if window["day"] == EVERY_DAY or DAYS[date.weekday()] == window["day"]:
            found.append(dt.datetime.combine(date, dt.time(hour, minute)))
    return found


def opened_at(window: Mapping[str, Any] | None, now: dt.datetime) -> dt.datetime | None:
    """When the window open at ``now`` (naive UTC) opened, or None if it is shut."""
    if not window:
        return None
    length = dt.timedelta(minutes=int(window["duration_minutes"]))
    for start in _starts(window, now, range(-1, 1)):
        if start <= now < start + length:
            return start
    return None


def next_opening(window: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """The window's next opening after ``now``; if it is open, when it opened."""
    current = opened_at(window, now)
    if current is not None:
        return current
    return min(start for start in _starts(window, now, range(0, 8)) if start > now)


def restart_due(window: Mapping[str, Any] | None, pending: Iterable[str], now: dt.datetime,
                failed: Iterable[dt.datetime] = ()) -> dt.datetime | None:
    """When the window open at ``now`` opened, if Hoard is to restart the cluster
    now to apply the ``pending`` settings: the window is open, something waits,
    and no restart of this opening has ``failed`` (their start times). Settings
    that come to wait later in the same opening are applied in it too; a failed
    (rolled back) restart is not repeated before the next opening, so a setting
    that keeps a server from starting does not restart it pass after pass."""
    opened = opened_at(window, now)
    if opened is None or not list(pending) or any(t >= opened for t in failed):
        return None
    return opened


def describe(window: Mapping[str, Any]) -> str:
    """The window in words: 'daily 03:00 UTC for 60 min'."""
    return f"{window['day']} {window['start']} UTC for {window['duration_minutes']} min"
