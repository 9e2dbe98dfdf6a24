"""Schedules in Europe/Stockholm: the daily backup across DST, holiday-skipping RRules.

Run times are computed the way Prefect's scheduler computes them: by the server-side
schedule models (`prefect.server.schemas.schedules`), never by a re-implementation.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.schedules import RRuleSchedule as ClientRRuleSchedule
from prefect.schedules import Schedule
from prefect.server.schemas import schedules as server_schedules

from deployments import DeploymentSpec, all_deployments, upcoming_runs
from deployments.schedules import TIMEZONE, daily_at, run_times, skipping_holidays
from flows.database_backup import database_backup
from policy import swedish_holidays

STOCKHOLM = ZoneInfo("Europe/Stockholm")
PREFECT_MAX_RRULE_LENGTH = 6500  # prefect.client.schemas.schedules.MAX_RRULE_LENGTH
SPRING_FORWARD = date(2027, 3, 28)  # 02:00 CET -> 03:00 CEST
FALL_BACK = date(2027, 10, 31)  # 03:00 CEST -> 02:00 CET


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM)


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def backup_schedule() -> Schedule:
    (spec,) = [s for s in all_deployments() if s.full_name == "database-backup/daily-0200"]
    (schedule,) = spec.schedules
    return schedule


# --- the daily database backup -----------------------------------------------------------


def test_backup_deployment_is_declared_in_stockholm() -> None:
    assert backup_schedule().timezone == "Europe/Stockholm" == TIMEZONE


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (
            local(2027, 3, 26),
            [
                "2027-03-26T02:00:00+01:00",
                "2027-03-27T02:00:00+01:00",
                "2027-03-28T03:00:00+02:00",  # 02:00 does not exist: once, at 03:00
                "2027-03-29T02:00:00+02:00",
                "2027-03-30T02:00:00+02:00",
            ],
        ),
        (
            local(2027, 10, 29),
            [
                "2027-10-29T02:00:00+02:00",
                "2027-10-30T02:00:00+02:00",
                "2027-10-31T02:00:00+02:00",  # 02:00 happens twice: once, the first
                "2027-11-01T02:00:00+01:00",
                "2027-11-02T02:00:00+01:00",
            ],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_backup_runs_once_a_day_across_dst_run_times(start: datetime, expected: list[str]) -> None:
    runs = run_times(backup_schedule(), start, start + timedelta(days=5))

    assert [r.isoformat() for r in runs] == expected
    assert all(r.tzinfo is not None and r.utcoffset() for r in runs)


@pytest.mark.parametrize(
    ("start", "dst_day", "expected"),
    [
        (local(2027, 3, 25), SPRING_FORWARD, "2027-03-28T03:00:00+02:00"),
        (local(2027, 10, 28), FALL_BACK, "2027-10-31T02:00:00+02:00"),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_backup_runs_once_a_day_across_dst_upcoming_runs(
    start: datetime, dst_day: date, expected: str
) -> None:
    runs = [
        r
        for r in upcoming_runs(start, start + timedelta(days=7))
        if (r["flow"], r["deployment"]) == ("database-backup", "daily-0200")
    ]

    assert len(runs) == 7
    assert all(set(r) == {"flow", "deployment", "at"} for r in runs)
    days = [datetime.fromisoformat(r["at"]).date() for r in runs]
    assert days == [start.date() + timedelta(days=i) for i in range(7)]
    assert [r["at"] for r in runs if datetime.fromisoformat(r["at"]).date() == dst_day] == [
        expected
    ]
    for run in runs:
        at = datetime.fromisoformat(run["at"])
        # Stockholm wall-clock time with Stockholm's offset of that instant.
        assert at.astimezone(STOCKHOLM).isoformat() == run["at"]
        if at.date() != SPRING_FORWARD:
            assert (at.hour, at.minute) == (2, 0)


def test_upcoming_runs_are_sorted_and_half_open() -> None:
    start = local(2027, 3, 27, 2, 0)  # a run exactly at start is included ...
    runs = upcoming_runs(start, local(2027, 3, 29, 2, 0))  # ... one exactly at end is not

    backups = [r["at"] for r in runs if r["flow"] == "database-backup"]
    assert backups == ["2027-03-27T02:00:00+01:00", "2027-03-28T03:00:00+02:00"]
    instants = [datetime.fromisoformat(r["at"]) for r in runs]
    assert instants == sorted(instants)
    assert instants[0] == start and instants[-1] < local(2027, 3, 29, 2, 0)


def test_backup_runs_every_day_of_2027_holidays_included() -> None:
    runs = run_times(backup_schedule(), local(2027, 1, 1), local(2028, 1, 1))

    per_day = Counter(r.date() for r in runs)
    assert sorted(per_day) == days_of(2027)
    assert set(per_day.values()) == {1}
    for holiday in swedish_holidays(2027):
        assert per_day[holiday.date] == 1, holiday
    assert [r for r in runs if (r.hour, r.minute) != (2, 0)] == [local(2027, 3, 28, 3, 0)]


def test_run_times_lists_every_run_of_a_long_span() -> None:
    """`feedback-ops schedule --days 1096` must list 1096 daily backups, not stop early."""
    start = local(2027, 1, 1)
    end = local(2030, 1, 1)

    runs = run_times(daily_at(2), start, end)

    assert len(runs) == (end.date() - start.date()).days == 1096
    assert runs[-1] == local(2029, 12, 31, 2, 0)


def test_run_times_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run_times(daily_at(2), datetime(2027, 1, 1), local(2027, 1, 2))


# --- schedules that skip Swedish holidays ----------------------------------------------


def expected_weekday_runs(year: int, hour: int, minute: int = 0) -> list[datetime]:
    holidays = {h.date for h in swedish_holidays(year)}
    return [
        local(d.year, d.month, d.day, hour, minute)
        for d in days_of(year)
        if d.weekday() < 5 and d not in holidays
    ]


def test_skipping_holidays_runs_every_other_weekday_of_2027_at_0900() -> None:
    schedule = skipping_holidays(9, 0, first_year=2027)

    runs = run_times(schedule, local(2027, 1, 1), local(2028, 1, 1))

    assert schedule.timezone == "Europe/Stockholm"
    assert runs == expected_weekday_runs(2027, 9)
    assert all((r.hour, r.minute, r.second) == (9, 0, 0) for r in runs)
    assert not [r for r in runs if r.weekday() >= 5]
    holidays = {h.date for h in swedish_holidays(2027)}
    assert not [r for r in runs if r.date() in holidays]
    run_days = {r.date() for r in runs}
    for named in (
        date(2027, 1, 1),  # Nyårsdagen
        date(2027, 1, 6),  # Trettondedag jul
        date(2027, 3, 26),  # Långfredagen
        date(2027, 3, 29),  # Annandag påsk
        date(2027, 5, 6),  # Kristi himmelsfärdsdag
        date(2027, 6, 25),  # Midsommarafton
        date(2027, 12, 24),  # Julafton
        date(2027, 12, 31),  # Nyårsafton
    ):
        assert named in holidays
        assert named not in run_days


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (
            local(2027, 3, 22),
            [
                "2027-03-22T09:00:00+01:00",
                "2027-03-23T09:00:00+01:00",
                "2027-03-24T09:00:00+01:00",
                "2027-03-25T09:00:00+01:00",
                # Fri 26 Långfredagen, weekend with the DST switch, Mon 29 Annandag påsk
                "2027-03-30T09:00:00+02:00",
                "2027-03-31T09:00:00+02:00",
            ],
        ),
        (
            local(2027, 10, 27),
            [
                "2027-10-27T09:00:00+02:00",
                "2027-10-28T09:00:00+02:00",
                "2027-10-29T09:00:00+02:00",
                "2027-11-01T09:00:00+01:00",
                "2027-11-02T09:00:00+01:00",
            ],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_skipping_holidays_keeps_0900_stockholm_across_dst(
    start: datetime, expected: list[str]
) -> None:
    schedule = skipping_holidays(9, 0, first_year=2027)
    end = local(2027, 4, 1) if start.month == 3 else local(2027, 11, 3)

    assert [r.isoformat() for r in run_times(schedule, start, end)] == expected


@pytest.mark.parametrize("minute", [0, 30, 59])
def test_skipping_holidays_refuses_the_dst_hour(minute: int) -> None:
    with pytest.raises(ValueError, match="02:00"):
        skipping_holidays(2, minute, first_year=2027)


def test_skipping_holidays_as_the_prefect_scheduler_computes_it() -> None:
    """Through a deployment, as `serve()` registers it and the server schedules it."""
    schedule = skipping_holidays(9, 0, first_year=2027)
    assert len(schedule.rrule) < PREFECT_MAX_RRULE_LENGTH
    spec = DeploymentSpec(database_backup, "weekdays-0900", (schedule,))

    (registered,) = spec.to_runner().schedules
    client_schedule = registered.schedule
    assert isinstance(client_schedule, ClientRRuleSchedule)
    assert client_schedule.timezone == "Europe/Stockholm"
    server_schedule = server_schedules.RRuleSchedule.model_validate(
        client_schedule.model_dump(mode="json")
    )
    dates = asyncio.run(
        server_schedule.get_dates(start=local(2027, 1, 1), end=local(2027, 12, 31, 23, 59))
    )

    assert [d.astimezone(STOCKHOLM) for d in dates] == expected_weekday_runs(2027, 9)


@pytest.mark.parametrize("years", [1, 3])
def test_skipping_holidays_rrule_stays_under_prefects_limit(years: int) -> None:
    schedule = skipping_holidays(9, 0, first_year=2027, years=years)

    assert len(schedule.rrule) < PREFECT_MAX_RRULE_LENGTH
    # Prefect's own validation of the rrule (length included) accepts it.
    ClientRRuleSchedule(rrule=schedule.rrule, timezone=schedule.timezone)
    server_schedules.RRuleSchedule(rrule=schedule.rrule, timezone=schedule.timezone)


def test_skipping_holidays_covers_every_year_it_was_built_for() -> None:
    schedule = skipping_holidays(9, 0, first_year=2027)  # default: 2027-2029

    runs = run_times(schedule, local(2029, 1, 1), local(2030, 1, 1))

    assert runs == expected_weekday_runs(2029, 9)


# --- the monthly DR drill ---------------------------------------------------------------


def test_the_monthly_drill_runs_inside_every_planned_monthly_window_of_2027() -> None:
    from deployments.schedules import monthly_drill
    from policy import maintenance_windows

    runs = run_times(monthly_drill(5, first_year=2027), local(2027, 1, 1), local(2028, 1, 1))
    windows = [w for w in maintenance_windows(2027) if w.kind == "monthly"]
    assert len(runs) == len(windows) == 11  # Sunday 6 June is Sweden's National Day
    for run, window in zip(runs, windows, strict=True):
        assert window.start <= run < window.end and (run.hour, run.minute) == (5, 0)
    holidays = {h.date for h in swedish_holidays(2027)}
    assert not {run.date() for run in runs} & holidays
    assert date(2027, 6, 6) in holidays


def test_the_monthly_drill_refuses_an_hour_outside_the_window() -> None:
    from deployments.schedules import monthly_drill

    with pytest.raises(ValueError, match="inside the monthly maintenance window"):
        monthly_drill(11, first_year=2027)


def test_the_monthly_drill_deployment_is_a_drill_without_a_person() -> None:
    [spec] = [s for s in all_deployments() if s.full_name == "dr-database-loss/monthly-drill"]
    [schedule] = spec.schedules
    assert schedule.parameters == {
        "dry_run": False,
        "drill": True,
        "triggered_by": "the monthly drill schedule",
    }
    assert spec.parameters == {}, "a run by hand from this deployment stays a dry run"
