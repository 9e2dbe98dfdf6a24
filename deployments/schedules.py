"""Schedules, all in Europe/Stockholm, and the upcoming runs they produce.

Daily times use cron: Prefect's cron runs a 02:00 job once on both DST days (at 03:00
on the spring-forward day, once on the fall-back day). An RRule with BYHOUR=2 fires at
01:00 on the spring-forward day, and a one-day Interval drifts to 03:00 for good, so
neither is used for a time of day. Schedules that must skip Swedish holidays are
RRules with the holidays as EXDATEs, so the UI's upcoming runs show no holiday run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from prefect.schedules import Cron, RRule, Schedule
from prefect.server.schemas import schedules as server_schedules

from policy import STOCKHOLM, maintenance_windows, swedish_holidays

TIMEZONE = "Europe/Stockholm"
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR")
# EXDATEs are written for this many years from the first year asked for; `up` builds
# the schedules afresh at every start, so they roll forward with it.
HOLIDAY_YEARS = 3


def daily_at(hour: int, minute: int = 0, parameters: dict[str, Any] | None = None) -> Schedule:
    """Every day at hh:mm Stockholm time, holidays included, once per calendar day.

    `parameters` apply to the scheduled runs only, not to runs started by hand.
    """
    return Cron(f"{minute} {hour} * * *", timezone=TIMEZONE, parameters=parameters or {})


def at_hours(hours: Iterable[int], minute: int = 0) -> Schedule:
    """At hh:mm Stockholm time for each of `hours`, every day (00, 06, 12, 18 for the
    six-hourly Redis snapshot: none of them falls in a DST gap or fold)."""
    return Cron(f"{minute} {','.join(str(h) for h in sorted(hours))} * * *", timezone=TIMEZONE)


def every_minutes(step: int, parameters: dict[str, Any] | None = None) -> Schedule:
    """Every `step` minutes, on the minute, with these parameters."""
    return Cron(
        f"*/{step} * * * *" if step > 1 else "* * * * *",
        timezone=TIMEZONE,
        parameters=parameters or {},
    )


def skipping_holidays(
    hour: int,
    minute: int = 0,
    *,
    weekdays: Iterable[str] = WEEKDAYS,
    first_year: int,
    years: int = HOLIDAY_YEARS,
) -> Schedule:
    """hh:mm on the given weekdays, except Swedish holidays (incl. Midsommarafton,
    Julafton, Nyårsafton), from `first_year` for `years` years.

    Not for hours that DST skips or repeats (02:00–03:00): RRules misplace those.
    """
    if 2 <= hour < 3:
        raise ValueError("holiday-skipping schedules cannot start between 02:00 and 03:00")
    days = ",".join(weekdays)
    exdates = [
        f"{h.date:%Y%m%d}T{hour:02d}{minute:02d}00"
        for year in range(first_year, first_year + years)
        for h in swedish_holidays(year)
    ]
    lines = [
        f"DTSTART:{first_year}0101T{hour:02d}{minute:02d}00",
        f"RRULE:FREQ=WEEKLY;BYDAY={days};BYHOUR={hour};BYMINUTE={minute};BYSECOND=0;"
        f"UNTIL={first_year + years - 1}1231T235959",
        "EXDATE:" + ",".join(exdates),
    ]
    return RRule("\n".join(lines), timezone=TIMEZONE)


def monthly_drill(
    hour: int,
    first_year: int,
    years: int = HOLIDAY_YEARS,
    parameters: dict[str, Any] | None = None,
) -> Schedule:
    """hh:00 on each month's first Sunday, inside its planned monthly maintenance window
    (04:00-10:00), except where the policy plans no window: a first Sunday that is a
    Swedish holiday (Påskdagen, Pingstdagen, …) gets no drill that month. `parameters`
    apply to the scheduled runs only."""
    if not 4 <= hour < 10:
        raise ValueError("a drill runs inside the monthly maintenance window, 04:00-10:00")
    planned = {
        w.start.date()
        for year in range(first_year, first_year + years)
        for w in maintenance_windows(year)
        if w.kind == "monthly"
    }
    skipped = []
    for year in range(first_year, first_year + years):
        for month in range(1, 13):
            first = date(year, month, 1)
            sunday = first + timedelta(days=(6 - first.weekday()) % 7)
            if sunday not in planned:
                skipped.append(f"{sunday:%Y%m%d}T{hour:02d}0000")
    lines = [
        f"DTSTART:{first_year}0101T{hour:02d}0000",
        f"RRULE:FREQ=MONTHLY;BYDAY=1SU;BYHOUR={hour};BYMINUTE=0;BYSECOND=0;"
        f"UNTIL={first_year + years - 1}1231T235959",
    ]
    if skipped:
        lines.append("EXDATE:" + ",".join(skipped))
    return RRule("\n".join(lines), timezone=TIMEZONE, parameters=parameters or {})


def _server_schedule(
    schedule: Schedule,
) -> server_schedules.CronSchedule | server_schedules.RRuleSchedule:
    """The server-side schedule the Prefect scheduler computes runs with."""
    if schedule.cron is not None:
        return server_schedules.CronSchedule(
            cron=schedule.cron, timezone=schedule.timezone, day_or=schedule.day_or
        )
    if schedule.rrule is not None:
        return server_schedules.RRuleSchedule(rrule=schedule.rrule, timezone=schedule.timezone)
    raise ValueError("interval schedules are not used: they drift across DST")


def run_times(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every run of `schedule` in [start, end), in Stockholm time, as the server
    scheduler computes them."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    server_schedule = _server_schedule(schedule)
    last = end - timedelta(microseconds=1)
    runs: list[datetime] = []
    cursor = start
    while True:
        # Prefect checks at most 1,000 candidates a call, and may return fewer dates
        # than that before the end: page on until a call finds nothing more.
        batch = asyncio.run(server_schedule.get_dates(start=cursor, end=last))
        if not batch:
            return runs
        runs += [datetime.fromtimestamp(d.timestamp(), STOCKHOLM) for d in batch]
        cursor = runs[-1] + timedelta(microseconds=1)
