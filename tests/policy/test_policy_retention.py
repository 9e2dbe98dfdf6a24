"""Grandfather-father-son retention over a synthetic nine-year history."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from policy import BackupInfo, RetentionRules, plan_retention

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = dt.datetime(2027, 1, 1, 6, 0, tzinfo=STOCKHOLM)


def klass(day: dt.date) -> str:
    return "monthly" if day.day == 1 else "weekly" if day.weekday() == 6 else "daily"


def history(
    first: dt.date, last: dt.date, verified_until: dt.date | None = None
) -> list[BackupInfo]:
    """One database backup a day at 02:00 Stockholm."""
    out = []
    day = first
    while day <= last:
        out.append(
            BackupInfo(
                backup_id=f"database-{day:%Y%m%d}",
                kind="database",
                created_at=dt.datetime.combine(day, dt.time(2), STOCKHOLM),
                retention_class=klass(day),  # type: ignore[arg-type]
                verified=verified_until is None or day <= verified_until,
            )
        )
        day += dt.timedelta(days=1)
    return out


def test_nine_years_of_daily_backups_keep_exactly_the_gfs_set() -> None:
    backups = history(dt.date(2018, 1, 1), dt.date(2026, 12, 31))
    assert len(backups) == 3287

    kept = {
        d.backup.created_at.date() for d in plan_retention(backups, NOW, RetentionRules()) if d.keep
    }

    # Daily: younger than 35 days at 06:00 on 2027-01-01, i.e. from 2026-11-28 02:00.
    daily = {dt.date(2026, 11, 28) + dt.timedelta(days=i) for i in range(34)}
    # Weekly: Sundays younger than 13 weeks (91 days): from 2026-10-02 06:00.
    sundays = {
        dt.date(2026, 10, 4) + dt.timedelta(weeks=i) for i in range(13)
    }  # 2026-10-04 … 2026-12-27
    # Monthly: firsts younger than 7 years: 2020-01-01 02:00 expired at 2027-01-01 02:00.
    firsts = {dt.date(y, m, 1) for y in range(2020, 2027) for m in range(1, 13)} - {
        dt.date(2020, 1, 1)
    }
    expected = {d for d in daily} | {d for d in sundays if klass(d) == "weekly"} | firsts
    assert kept == expected
    # 34 days of the last five weeks; 7 Sundays before them (2026-10-04 … 2026-11-22,
    # 2026-11-01 being a first); 82 firsts before them (2020-02-01 … 2026-11-01).
    assert len(kept) == 34 + 7 + 82


def test_the_newest_verified_backup_survives_its_age() -> None:
    # Backups stopped in 2025 and only those up to March were ever verified.
    backups = history(dt.date(2025, 1, 2), dt.date(2025, 6, 30), dt.date(2025, 3, 18))
    decisions = {d.backup.backup_id: d for d in plan_retention(backups, NOW, RetentionRules())}

    assert decisions["database-20250318"].keep
    assert decisions["database-20250318"].reason == "the newest verified backup of its kind"
    assert decisions["database-20250630"].keep
    assert decisions["database-20250630"].reason == "the newest backup of its kind"
    assert not decisions["database-20250317"].keep
    assert decisions["database-20250317"].reason == "daily, expired 2025-04-21"
    assert decisions["database-20250601"].keep  # monthly: kept until 2032
    assert decisions["database-20250601"].reason == "monthly, kept until 2032-06-01"


def test_kinds_are_kept_apart() -> None:
    old = dt.datetime(2020, 3, 3, 2, tzinfo=STOCKHOLM)
    backups = [
        BackupInfo("database-a", "database", old, "daily", True),
        BackupInfo("redis-a", "redis", old, "daily", True),
        BackupInfo("redis-b", "redis", old + dt.timedelta(hours=6), "daily", False),
    ]
    decisions = {d.backup.backup_id: d.keep for d in plan_retention(backups, NOW, RetentionRules())}
    assert decisions == {"database-a": True, "redis-a": True, "redis-b": True}


def test_rules_and_times_are_checked() -> None:
    with pytest.raises(ValueError, match="daily_days must be at least 1, got 0"):
        RetentionRules(daily_days=0)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        plan_retention([], dt.datetime(2027, 1, 1), RetentionRules())
