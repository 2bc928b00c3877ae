"""When a backup schedule is due (pure logic; the loop is exercised end to end in
tests/test_backups.py)."""

import datetime as dt

from hoard.workflows.scheduler import cron_problem, is_due, verify_cron, verify_problem

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


def test_a_schedule_must_fire_every_year() -> None:
    """Never (31 February, 31 April) and only in leap years (29 February, or the
    fifth Monday of a February) are refused; the last day of February is fine."""
    today = dt.date(2026, 12, 3)
    for cron in ("0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *"):
        assert "never fires" in str(cron_problem(cron, today)), cron
    for cron in ("0 0 29 2 *", "0 0 29 2 1#5"):
        assert "must fire at least once every year" in str(cron_problem(cron, today)), cron
    # 29 February is refused even in a leap year: it would skip the next three.
    assert cron_problem("0 0 29 2 *", dt.date(2028, 1, 10)) is not None
    for cron in ("0 3 * * *", "0 0 1 1 *", "0 0 L 2 *", "0 0 31 * *", "0 0 31 2 1"):
        assert cron_problem(cron, today) is None, cron
    for cron in ("every day", "* * * * * *", "61 * * * *", ""):
        assert "not a 5-field cron expression" in str(cron_problem(cron, today)), cron


def test_a_verify_schedule_is_daily_weekly_or_a_cron() -> None:
    today = dt.date(2026, 12, 3)
    for value in ("daily", "weekly", "30 6 * * 1-5"):
        assert verify_problem(value, today) is None, value
    for value in ("hourly", "Daily", "61 * * * *", "0 0 31 2 *", ""):
        assert "verify must be 'daily', 'weekly'" in str(verify_problem(value, today)), value
    # Daily: once a day at 05:00 UTC; weekly: Sundays at 05:00 UTC.
    assert verify_cron("30 6 * * 1-5") == "30 6 * * 1-5"
    monday = dt.datetime(2026, 11, 23, 4, 59)
    assert is_due(verify_cron("daily"), monday, monday + dt.timedelta(minutes=2))
    assert not is_due(verify_cron("weekly"), monday, monday + dt.timedelta(days=5))
    assert is_due(verify_cron("weekly"), monday, monday + dt.timedelta(days=6, minutes=2))
