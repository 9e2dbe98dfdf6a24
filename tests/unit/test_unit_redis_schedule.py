"""The six-hourly Redis snapshot: 00, 06, 12, 18 Stockholm time, every day, DST days too.

Run times are computed the way Prefect's scheduler computes them (`run_times`, on the
server-side schedule models), never by a re-implementation.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from prefect.schedules import Schedule

from deployments import all_deployments, upcoming_runs
from deployments.schedules import TIMEZONE, run_times

STOCKHOLM = ZoneInfo("Europe/Stockholm")
HOURS = (0, 6, 12, 18)
SPRING_FORWARD = date(2027, 3, 28)  # 02:00 CET -> 03:00 CEST
FALL_BACK = date(2027, 10, 31)  # 03:00 CEST -> 02:00 CET


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM)


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def snapshot_schedule() -> Schedule:
    (spec,) = [s for s in all_deployments() if s.flow_name == "redis-snapshot"]
    assert spec.name == "every-6h"
    assert spec.full_name == "redis-snapshot/every-6h"
    (schedule,) = spec.schedules
    return schedule


def test_the_snapshot_schedule_is_declared_in_stockholm() -> None:
    schedule = snapshot_schedule()

    assert schedule.timezone == "Europe/Stockholm" == TIMEZONE
    assert schedule.parameters == {}


def test_snapshots_run_four_times_every_day_of_2027() -> None:
    runs = run_times(snapshot_schedule(), local(2027, 1, 1), local(2028, 1, 1))

    assert len(runs) == 4 * 365 == 1460
    expected = [local(d.year, d.month, d.day, hour) for d in days_of(2027) for hour in HOURS]
    assert runs == expected
    # Equal instants are not enough: each run is that wall-clock time, in Stockholm's offset.
    assert [r.isoformat() for r in runs] == [e.isoformat() for e in expected]
    per_day = Counter(r.date() for r in runs)
    assert sorted(per_day) == days_of(2027)
    assert set(per_day.values()) == {4}
    assert {(r.hour, r.minute, r.second, r.microsecond) for r in runs} == {
        (h, 0, 0, 0) for h in HOURS
    }


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (
            SPRING_FORWARD,
            [
                "2027-03-28T00:00:00+01:00",
                "2027-03-28T06:00:00+02:00",  # 20 hours a day: 00 to 06 is 5 real hours
                "2027-03-28T12:00:00+02:00",
                "2027-03-28T18:00:00+02:00",
            ],
        ),
        (
            FALL_BACK,
            [
                "2027-10-31T00:00:00+02:00",
                "2027-10-31T06:00:00+01:00",  # 25 hours a day: 00 to 06 is 7 real hours
                "2027-10-31T12:00:00+01:00",
                "2027-10-31T18:00:00+01:00",
            ],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_snapshots_keep_their_hours_on_dst_days(day: date, expected: list[str]) -> None:
    start = local(day.year, day.month, day.day)

    runs = run_times(snapshot_schedule(), start, start + timedelta(days=1))

    assert [r.isoformat() for r in runs] == expected
    # Aware datetimes of one zone subtract as wall-clock times: compare real instants.
    hours = [(b.timestamp() - a.timestamp()) / 3600 for a, b in itertools.pairwise(runs)]
    assert hours == ([5, 6, 6] if day == SPRING_FORWARD else [7, 6, 6])


@pytest.mark.parametrize("dst_day", [SPRING_FORWARD, FALL_BACK], ids=["spring", "fall"])
def test_snapshots_on_dst_days_in_upcoming_runs(dst_day: date) -> None:
    """As `feedback-ops schedule` lists them (one day: every-minute runs are many)."""
    start = local(dst_day.year, dst_day.month, dst_day.day)

    runs = [
        r["at"]
        for r in upcoming_runs(start, start + timedelta(days=1))
        if (r["flow"], r["deployment"]) == ("redis-snapshot", "every-6h")
    ]

    assert runs == [local(dst_day.year, dst_day.month, dst_day.day, h).isoformat() for h in HOURS]
