"""Business periods of the platform, by Stockholm clock, weekday and holiday.

A moment belongs to exactly one period. When several rules match, the first wins:

    holiday > peak > business > extended > off-hours

so the whole of a Swedish holiday is HOLIDAY, whatever the clock says; otherwise
the clock and the weekday decide:

=============  =================  =========================
period         weekdays           Saturdays and Sundays
=============  =================  =========================
peak           11:00-15:00        (none)
business       09:00-11:00,       10:00-16:00
               15:00-18:00
extended       18:00-22:00        18:00-22:00
off-hours      22:00-09:00        16:00-18:00, 22:00-10:00
=============  =================  =========================

Every interval is half-open, [start, end): 11:00 is peak, 15:00 is business,
21:59 is extended and 22:00 is off-hours. The runbook gives weekends business hours
of 10:00-16:00 and extended hours of 18:00-22:00 but names nothing for 16:00-18:00,
so that gap is off-hours. Times are Stockholm wall-clock times, CET or CEST.
"""

import datetime
from enum import StrEnum

from policy.calendar import STOCKHOLM, holiday_on, local_time

__all__ = [
    "Period",
    "business_period",
    "clock_period",
    "is_business_day",
    "next_business_day_start",
]


class Period(StrEnum):
    """A period of the platform's operating week, as the runbook names them."""

    PEAK = "peak"
    BUSINESS = "business"
    EXTENDED = "extended"
    OFF_HOURS = "off_hours"
    HOLIDAY = "holiday"


_BUSINESS_DAY_START = datetime.time(9, 0)

# (start, end, period), half-open; a time matching none of them is off-hours.
_Schedule = tuple[tuple[datetime.time, datetime.time, Period], ...]

_WEEKDAY_SCHEDULE: _Schedule = (
    (datetime.time(9), datetime.time(11), Period.BUSINESS),
    (datetime.time(11), datetime.time(15), Period.PEAK),
    (datetime.time(15), datetime.time(18), Period.BUSINESS),
    (datetime.time(18), datetime.time(22), Period.EXTENDED),
)

_WEEKEND_SCHEDULE: _Schedule = (
    (datetime.time(10), datetime.time(16), Period.BUSINESS),
    (datetime.time(18), datetime.time(22), Period.EXTENDED),
)


def _is_weekend(day: datetime.date) -> bool:
    return day.weekday() >= 5


def clock_period(at: datetime.datetime) -> Period:
    """Return the period of an instant by Stockholm clock and weekday, ignoring holidays.

    Args:
        at: A timezone-aware instant.

    Returns:
        PEAK, BUSINESS, EXTENDED or OFF_HOURS; never HOLIDAY.

    Raises:
        ValueError: If ``at`` is naive.
    """
    local = local_time(at)
    schedule = _WEEKEND_SCHEDULE if _is_weekend(local.date()) else _WEEKDAY_SCHEDULE
    clock = local.time()
    for start, end, period in schedule:
        if start <= clock < end:
            return period
    return Period.OFF_HOURS


def business_period(at: datetime.datetime) -> Period:
    """Return the period of an instant, with Swedish holidays taking precedence.

    Args:
        at: A timezone-aware instant.

    Returns:
        HOLIDAY when the Stockholm date of ``at`` is a Swedish holiday, otherwise
        :func:`clock_period` of ``at``.

    Raises:
        ValueError: If ``at`` is naive.
    """
    local = local_time(at)
    if holiday_on(local.date()) is not None:
        return Period.HOLIDAY
    return clock_period(local)


def is_business_day(day: datetime.date) -> bool:
    """Tell whether a day is a business day: Monday to Friday and not a Swedish holiday.

    Args:
        day: A calendar day (a ``date``, not a ``datetime``).

    Returns:
        True for a weekday that is not a holiday.

    Raises:
        TypeError: If ``day`` is a ``datetime``.
    """
    return not _is_weekend(day) and holiday_on(day) is None


def next_business_day_start(at: datetime.datetime) -> datetime.datetime:
    """Return the next start of a business day strictly after an instant.

    A business day starts at 09:00 Stockholm time on a day for which
    :func:`is_business_day` holds. Before 09:00 on a business day that is the same
    morning; from 09:00 on, or on a weekend or holiday, it is a later morning.

    Args:
        at: A timezone-aware instant.

    Returns:
        09:00 of the next business day, aware, in Europe/Stockholm.

    Raises:
        ValueError: If ``at`` is naive.
    """
    local = local_time(at)
    day = local.date()
    if local.time() >= _BUSINESS_DAY_START:
        day += datetime.timedelta(days=1)
    while not is_business_day(day):
        day += datetime.timedelta(days=1)
    return datetime.datetime.combine(day, _BUSINESS_DAY_START, tzinfo=STOCKHOLM)
