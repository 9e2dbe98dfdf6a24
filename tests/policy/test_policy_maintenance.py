"""Planned maintenance windows."""

import dataclasses
import datetime as dt

import pytest

from policy import STOCKHOLM, MaintenanceWindow, holiday_on, maintenance_windows, window_at

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """The Stockholm instant of an ISO 'YYYY-MM-DD HH:MM[:SS]' text."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=STOCKHOLM)


def windows_on(day: dt.date) -> list[MaintenanceWindow]:
    return [w for w in maintenance_windows(day.year) if w.start.date() == day]


def test_2027_has_a_window_on_every_sunday_but_four_holidays() -> None:
    windows = maintenance_windows(2027)
    # 52 Sundays less Påskdagen, Pingstdagen, Nationaldagen and Annandag jul.
    assert len(windows) == 48
    assert sum(w.kind == "monthly" for w in windows) == 11
    assert sum(w.kind == "weekly" for w in windows) == 37
    assert [w.start for w in windows] == sorted(w.start for w in windows)
    assert all(w.start.weekday() == 6 and w.end.date() == w.start.date() for w in windows)
    assert all(holiday_on(w.start.date()) is None for w in windows)


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2027, 3, 28),  # Påskdagen
        dt.date(2027, 5, 16),  # Pingstdagen
        dt.date(2027, 6, 6),  # Nationaldagen, also the first Sunday of June
        dt.date(2027, 12, 26),  # Annandag jul
        dt.date(2029, 4, 1),  # Påskdagen, also the first Sunday of April
        dt.date(2029, 5, 20),  # Pingstdagen
    ],
)
def test_no_window_on_a_holiday(day: dt.date) -> None:
    assert windows_on(day) == []


@pytest.mark.parametrize(
    ("day", "kind", "start", "end"),
    [
        (dt.date(2027, 1, 3), "monthly", "2027-01-03T04:00:00+01:00", "2027-01-03T10:00:00+01:00"),
        (dt.date(2027, 3, 7), "monthly", "2027-03-07T04:00:00+01:00", "2027-03-07T10:00:00+01:00"),
        (dt.date(2027, 3, 14), "weekly", "2027-03-14T06:00:00+01:00", "2027-03-14T08:00:00+01:00"),
        (dt.date(2027, 4, 4), "monthly", "2027-04-04T04:00:00+02:00", "2027-04-04T10:00:00+02:00"),
        (dt.date(2027, 4, 11), "weekly", "2027-04-11T06:00:00+02:00", "2027-04-11T08:00:00+02:00"),
        # The day summer time ends: the window is on CET.
        (dt.date(2027, 10, 31), "weekly", "2027-10-31T06:00:00+01:00", "2027-10-31T08:00:00+01:00"),
        # The monthly window lost to Påskdagen is not moved to the next Sunday.
        (dt.date(2029, 4, 8), "weekly", "2029-04-08T06:00:00+02:00", "2029-04-08T08:00:00+02:00"),
    ],
)
def test_window_times(day: dt.date, kind: str, start: str, end: str) -> None:
    (window,) = windows_on(day)
    assert window.kind == kind
    assert (window.start.isoformat(), window.end.isoformat()) == (start, end)
    assert window.start.tzinfo is STOCKHOLM


def test_april_2029_has_no_monthly_window() -> None:
    april = [w for w in maintenance_windows(2029) if w.start.month == 4]
    assert [w.kind for w in april] == ["weekly"] * 4


@pytest.mark.parametrize("year", [2024, 2027, 2029, 2030])
def test_each_month_has_at_most_one_monthly_window_on_its_first_sunday(year: int) -> None:
    monthly = [w for w in maintenance_windows(year) if w.kind == "monthly"]
    assert all(w.start.day <= 7 for w in monthly)
    assert len({w.start.month for w in monthly}) == len(monthly)


@pytest.mark.parametrize(
    ("instant", "kind"),
    [
        (at("2027-03-07 03:59:59"), None),
        (at("2027-03-07 04:00"), "monthly"),
        (at("2027-03-07 07:00"), "monthly"),  # weekly hours on a first Sunday
        (at("2027-03-07 09:59:59"), "monthly"),
        (at("2027-03-07 10:00"), None),
        (at("2027-03-14 05:59"), None),
        (at("2027-03-14 06:00"), "weekly"),
        (at("2027-03-14 07:59:59"), "weekly"),
        (at("2027-03-14 08:00"), None),
        (at("2027-03-13 07:00"), None),  # Saturday
        (at("2027-03-28 07:00"), None),  # Påskdagen
        (at("2029-04-01 05:00"), None),  # Påskdagen on a first Sunday
        (dt.datetime(2027, 3, 14, 5, 0, tzinfo=UTC), "weekly"),  # 06:00 CET
        (dt.datetime(2027, 4, 11, 3, 59, tzinfo=UTC), None),  # 05:59 CEST
        (dt.datetime(2027, 4, 11, 4, 0, tzinfo=UTC), "weekly"),  # 06:00 CEST
        (dt.datetime(2027, 4, 11, 6, 0, tzinfo=UTC), None),  # 08:00 CEST
    ],
)
def test_window_at(instant: dt.datetime, kind: str | None) -> None:
    window = window_at(instant)
    assert (window.kind if window else None) == kind
    if window is not None:
        assert window in maintenance_windows(window.start.year)
        assert window.start <= instant < window.end


def test_maintenance_window_is_frozen() -> None:
    (window,) = windows_on(dt.date(2027, 3, 7))
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.kind = "weekly"  # type: ignore[misc]
