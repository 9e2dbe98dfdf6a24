"""Planned maintenance windows from the runbook's "Scheduled Maintenance".

* Weekly: every Sunday 06:00-08:00.
* Monthly: the first Sunday of each month 04:00-10:00. That window covers the
  weekly one, so on a first Sunday only the monthly window is planned.
* Never on a Swedish holiday ("Holiday Operations: No planned maintenance"): a
  Sunday that is a holiday, such as Påskdagen or Pingstdagen, has no window at all,
  and a monthly window that falls on one is dropped, not moved.

Times are Stockholm wall-clock times (the runbook's "CET" means CET or CEST). The
runbook's quarterly database maintenance has no fixed time and is not modelled here.
"""

import datetime
from dataclasses import dataclass
from typing import Literal

from policy.calendar import STOCKHOLM, holiday_on, local_time

__all__ = ["MaintenanceWindow", "maintenance_windows", "window_at"]

_SUNDAY = 6
_WEEKLY_HOURS = (datetime.time(6), datetime.time(8))
_MONTHLY_HOURS = (datetime.time(4), datetime.time(10))


@dataclass(frozen=True)
class MaintenanceWindow:
    """One planned maintenance window, the half-open interval [start, end).

    Attributes:
        kind: "weekly" for the Sunday morning window, "monthly" for the longer window
            of a month's first Sunday.
        start: When the window opens, aware, in Europe/Stockholm.
        end: When the window closes, aware, in Europe/Stockholm.
    """

    kind: Literal["weekly", "monthly"]
    start: datetime.datetime
    end: datetime.datetime


def _window_on(day: datetime.date) -> MaintenanceWindow | None:
    if day.weekday() != _SUNDAY or holiday_on(day) is not None:
        return None
    kind: Literal["weekly", "monthly"] = "monthly" if day.day <= 7 else "weekly"
    opens, closes = _MONTHLY_HOURS if kind == "monthly" else _WEEKLY_HOURS
    return MaintenanceWindow(
        kind=kind,
        start=datetime.datetime.combine(day, opens, tzinfo=STOCKHOLM),
        end=datetime.datetime.combine(day, closes, tzinfo=STOCKHOLM),
    )


def maintenance_windows(year: int) -> list[MaintenanceWindow]:
    """Return the planned maintenance windows of a year, sorted by start.

    Args:
        year: The calendar year.

    Returns:
        One window per Sunday of ``year`` that is not a Swedish holiday: monthly on
        a month's first Sunday, weekly on the others.

    Raises:
        ValueError: If ``year`` lies outside the holiday calendar's range.
    """
    first_day = datetime.date(year, 1, 1)
    sunday = first_day + datetime.timedelta(days=(_SUNDAY - first_day.weekday()) % 7)
    windows = []
    while sunday.year == year:
        window = _window_on(sunday)
        if window is not None:
            windows.append(window)
        sunday += datetime.timedelta(weeks=1)
    return windows


def window_at(at: datetime.datetime) -> MaintenanceWindow | None:
    """Return the maintenance window an instant falls in, if any.

    Args:
        at: A timezone-aware instant.

    Returns:
        The window with ``start <= at < end``, or None outside every window.

    Raises:
        ValueError: If ``at`` is naive.
    """
    local = local_time(at)
    window = _window_on(local.date())
    if window is not None and window.start <= local < window.end:
        return window
    return None
