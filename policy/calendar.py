"""The Swedish holiday calendar and Stockholm local time.

The calendar holds every Swedish public holiday ("allmän helgdag") plus the three
de facto holidays that Swedish law treats as Sundays: Midsommarafton, Julafton and
Nyårsafton. Ordinary Sundays are not in it; weekends are handled by the business
periods in :mod:`policy.periods`.

Nothing here reads the clock: callers pass the instant or the day they ask about.
"""

import datetime
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

# Imported from its defining module: the package root re-exports it only at runtime,
# which mypy --strict does not see.
from holidays.countries.sweden import Sweden

__all__ = ["STOCKHOLM", "Holiday", "holiday_on", "local_time", "swedish_holidays"]

STOCKHOLM = ZoneInfo("Europe/Stockholm")
"""The platform's time zone: CET in winter, CEST in summer."""

_CATEGORIES = ("public", "de_facto")
# The holidays package joins the names of two holidays on one day with this separator
# (e.g. Nationaldagen and Pingstdagen on 2049-06-06).
_NAME_SEPARATOR = "; "
# Guards against a future default that lists every Sunday as a holiday.
_PLAIN_SUNDAY = frozenset({"Söndag", "Sunday"})


@dataclass(frozen=True)
class Holiday:
    """One Swedish holiday.

    Attributes:
        date: The calendar day of the holiday.
        name_sv: Its Swedish name, e.g. "Midsommarafton".
        name_en: Its English name, e.g. "Midsummer Eve".
    """

    date: datetime.date
    name_sv: str
    name_en: str


def _names(year: int, language: str) -> dict[datetime.date, str]:
    calendar = Sweden(years=year, categories=_CATEGORIES, language=language, include_sundays=False)
    names = {
        day: [name for name in calendar.get_list(day) if name not in _PLAIN_SUNDAY]
        for day in calendar
    }
    return {day: _NAME_SEPARATOR.join(parts) for day, parts in names.items() if parts}


@functools.cache
def _holidays_of(year: int) -> tuple[Holiday, ...]:
    first, last = Sweden.start_year, Sweden.end_year
    if not first <= year <= last:
        # The holidays package silently returns an empty calendar outside its range,
        # which would make every day a business day.
        raise ValueError(
            f"no Swedish holiday calendar for {year}: supported years are {first}-{last}"
        )
    swedish = _names(year, "sv")
    english = _names(year, "en_US")
    return tuple(
        Holiday(date=day, name_sv=swedish[day], name_en=english[day]) for day in sorted(swedish)
    )


@functools.cache
def _holiday_index(year: int) -> dict[datetime.date, Holiday]:
    return {holiday.date: holiday for holiday in _holidays_of(year)}


def swedish_holidays(year: int) -> list[Holiday]:
    """Return the Swedish holidays of a year, sorted by date.

    The list holds the public holidays plus Midsommarafton, Julafton and Nyårsafton,
    but not ordinary Sundays. Each call returns a new list, so callers may change it.

    Args:
        year: The calendar year, within the range the ``holidays`` package covers.

    Returns:
        The holidays of ``year`` in date order.

    Raises:
        ValueError: If ``year`` lies outside the supported range.
    """
    return list(_holidays_of(year))


def holiday_on(day: datetime.date) -> Holiday | None:
    """Return the Swedish holiday falling on a day, if any.

    Args:
        day: A calendar day (a ``date``, not a ``datetime``: take the Stockholm day of an
            instant with ``local_time(at).date()``).

    Returns:
        The holiday on ``day``, or None when ``day`` is not a holiday.

    Raises:
        TypeError: If ``day`` is a ``datetime``.
        ValueError: If the year of ``day`` lies outside the supported range.
    """
    if isinstance(day, datetime.datetime):
        # A datetime's own date may differ from its Stockholm date near midnight.
        raise TypeError(
            "holiday_on() takes a date, not a datetime: use local_time(at).date() instead"
        )
    return _holiday_index(day.year).get(day)


def local_time(at: datetime.datetime) -> datetime.datetime:
    """Convert an aware datetime to Stockholm local time.

    Args:
        at: A timezone-aware instant.

    Returns:
        The same instant expressed in Europe/Stockholm.

    Raises:
        TypeError: If ``at`` is not a ``datetime``.
        ValueError: If ``at`` is naive.
    """
    if not isinstance(at, datetime.datetime):
        raise TypeError(f"expected a timezone-aware datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            f"naive datetime {at.isoformat()}: pass a timezone-aware datetime, "
            "e.g. with tzinfo=ZoneInfo('Europe/Stockholm')"
        )
    return at.astimezone(STOCKHOLM)
