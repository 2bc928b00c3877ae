"""When a backup schedule is due (pure logic; the loop is exercised end to end in
tests/test_backups.py)."""

import datetime as dt

from hoard.workflows.scheduler import is_due

T0 = dt.datetime(2026, 11, 23, 2, 59, 30)


def test_daily_schedule_fires_once_after_its_time() -> None:
    assert not is_due("0 3 * * *", T0, T0 + dt.timedelta(seconds=20))
    assert is_due("0 3 * * *", T0, T0 + dt.timedelta(seconds=31))
    # Having fired at 03:00, it is not due again until the next day.
    fired = dt.datetime(2026, 11, 23, 3, 0, 1)
    assert not is_due("0 3 * * *", fired, fired + dt.timedelta(hours=23))
    assert is_due("0 3 * * *", fired, fired + dt.timedelta(hours=24))


def test_missed_runs_fire_once() -> None:
    assert is_due("*/5 * * * *", T0, T0 + dt.timedelta(hours=5))
