"""The Swedish holiday calendar and Stockholm local time."""

import dataclasses
import datetime as dt

import pytest

from policy import STOCKHOLM, Holiday, holiday_on, local_time, swedish_holidays

D = dt.date
UTC = dt.UTC
CET = dt.timezone(dt.timedelta(hours=1))
CEST = dt.timezone(dt.timedelta(hours=2))

# "Holiday Operations" of the runbook, verbatim.
RUNBOOK_2024 = [
    (D(2024, 1, 1), "Nyårsdagen"),
    (D(2024, 1, 6), "Trettondedag jul"),
    (D(2024, 3, 29), "Långfredagen"),
    (D(2024, 4, 1), "Annandag påsk"),
    (D(2024, 5, 1), "Första maj"),
    (D(2024, 5, 9), "Kristi himmelfärds dag"),
    (D(2024, 6, 6), "Sveriges nationaldag"),
    (D(2024, 6, 21), "Midsommarafton"),
    (D(2024, 6, 22), "Midsommardagen"),
    (D(2024, 12, 24), "Julafton"),
    (D(2024, 12, 25), "Juldagen"),
    (D(2024, 12, 26), "Annandag jul"),
    (D(2024, 12, 31), "Nyårsafton"),
]
# The calendar takes its names from the holidays package; two differ from the runbook's.
CALENDAR_SPELLING = {
    "Kristi himmelfärds dag": "Kristi himmelsfärdsdag",
    "Sveriges nationaldag": "Nationaldagen",
}
# Public holidays of 2024 that the runbook's list leaves out (two fall on a Sunday).
NOT_IN_RUNBOOK_2024 = {D(2024, 3, 31), D(2024, 5, 19), D(2024, 11, 2)}

HOLIDAYS_2027 = [
    Holiday(D(2027, 1, 1), "Nyårsdagen", "New Year's Day"),
    Holiday(D(2027, 1, 6), "Trettondedag jul", "Epiphany"),
    Holiday(D(2027, 3, 26), "Långfredagen", "Good Friday"),
    Holiday(D(2027, 3, 28), "Påskdagen", "Easter Sunday"),
    Holiday(D(2027, 3, 29), "Annandag påsk", "Easter Monday"),
    Holiday(D(2027, 5, 1), "Första maj", "May Day"),
    Holiday(D(2027, 5, 6), "Kristi himmelsfärdsdag", "Ascension Day"),
    Holiday(D(2027, 5, 16), "Pingstdagen", "Pentecost"),
    Holiday(D(2027, 6, 6), "Nationaldagen", "National Day"),
    Holiday(D(2027, 6, 25), "Midsommarafton", "Midsummer Eve"),
    Holiday(D(2027, 6, 26), "Midsommardagen", "Midsummer Day"),
    Holiday(D(2027, 11, 6), "Alla helgons dag", "All Saints' Day"),
    Holiday(D(2027, 12, 24), "Julafton", "Christmas Eve"),
    Holiday(D(2027, 12, 25), "Juldagen", "Christmas Day"),
    Holiday(D(2027, 12, 26), "Annandag jul", "Second Day of Christmas"),
    Holiday(D(2027, 12, 31), "Nyårsafton", "New Year's Eve"),
]


@pytest.mark.parametrize(("day", "runbook_name"), RUNBOOK_2024)
def test_every_runbook_2024_holiday_is_in_the_calendar(day: dt.date, runbook_name: str) -> None:
    holiday = holiday_on(day)
    assert holiday is not None
    assert holiday.name_sv == CALENDAR_SPELLING.get(runbook_name, runbook_name)
    assert holiday in swedish_holidays(2024)


def test_2024_holds_the_runbook_list_and_the_public_holidays_it_leaves_out() -> None:
    dates = {holiday.date for holiday in swedish_holidays(2024)}
    assert dates == {day for day, _ in RUNBOOK_2024} | NOT_IN_RUNBOOK_2024


@pytest.mark.parametrize(
    ("day", "name_en"),
    [
        (D(2024, 6, 21), "Midsummer Eve"),
        (D(2024, 12, 24), "Christmas Eve"),
        (D(2024, 12, 31), "New Year's Eve"),
    ],
)
def test_english_names(day: dt.date, name_en: str) -> None:
    holiday = holiday_on(day)
    assert holiday is not None
    assert holiday.name_en == name_en


def test_2027_is_exactly_the_swedish_holidays() -> None:
    assert swedish_holidays(2027) == HOLIDAYS_2027


@pytest.mark.parametrize("holiday", HOLIDAYS_2027, ids=lambda holiday: holiday.name_en)
def test_holiday_on_finds_each_2027_holiday(holiday: Holiday) -> None:
    assert holiday_on(holiday.date) == holiday


@pytest.mark.parametrize(
    "day",
    [D(2027, 1, 2), D(2027, 3, 27), D(2027, 6, 24), D(2027, 12, 23), D(2027, 12, 30)],
)
def test_ordinary_days_are_not_holidays(day: dt.date) -> None:
    assert holiday_on(day) is None


@pytest.mark.parametrize("year", [2024, 2027, 2029, 2049])
def test_ordinary_sundays_are_not_holidays(year: int) -> None:
    sundays_in_calendar = [h for h in swedish_holidays(year) if h.date.weekday() == 6]
    assert all(h.name_sv != "Söndag" for h in swedish_holidays(year))
    # Only holidays that happen to fall on a Sunday: a few a year, never all 52.
    assert len(sundays_in_calendar) <= 6


def test_the_sundays_of_2027_in_the_calendar_are_real_holidays() -> None:
    sundays = [h.name_sv for h in swedish_holidays(2027) if h.date.weekday() == 6]
    assert sundays == ["Påskdagen", "Pingstdagen", "Nationaldagen", "Annandag jul"]


@pytest.mark.parametrize("year", [1953, 2024, 2027, 2029, 2100])
def test_holidays_are_sorted_and_unique(year: int) -> None:
    dates = [holiday.date for holiday in swedish_holidays(year)]
    assert dates == sorted(set(dates))
    assert all(day.year == year for day in dates)


def test_two_holidays_on_one_day_are_one_entry_with_both_names() -> None:
    holiday = holiday_on(D(2049, 6, 6))
    assert holiday == Holiday(
        D(2049, 6, 6), "Nationaldagen; Pingstdagen", "National Day; Pentecost"
    )


def test_each_call_returns_a_list_of_its_own() -> None:
    first = swedish_holidays(2027)
    first.clear()
    assert swedish_holidays(2027) == HOLIDAYS_2027


def test_holiday_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HOLIDAYS_2027[0].name_sv = "Annan dag"  # type: ignore[misc]


@pytest.mark.parametrize("year", [1952, 2101])
def test_years_outside_the_calendar_are_refused(year: int) -> None:
    with pytest.raises(ValueError, match=f"no Swedish holiday calendar for {year}"):
        swedish_holidays(year)


def test_holiday_on_refuses_a_datetime() -> None:
    with pytest.raises(TypeError, match="takes a date"):
        holiday_on(dt.datetime(2027, 6, 25, 12, tzinfo=STOCKHOLM))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (dt.datetime(2027, 1, 15, 11, tzinfo=UTC), "2027-01-15T12:00:00+01:00"),
        (dt.datetime(2027, 7, 15, 11, tzinfo=UTC), "2027-07-15T13:00:00+02:00"),
        # 2027-03-28: clocks go from 02:00 CET to 03:00 CEST, so 02:xx does not exist.
        (dt.datetime(2027, 3, 28, 2, 30, tzinfo=CET), "2027-03-28T03:30:00+02:00"),
        (dt.datetime(2027, 3, 28, 2, 30, tzinfo=CEST), "2027-03-28T01:30:00+01:00"),
        (dt.datetime(2027, 3, 28, 0, 59, tzinfo=UTC), "2027-03-28T01:59:00+01:00"),
        (dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC), "2027-03-28T03:00:00+02:00"),
        # 2027-10-31: clocks go from 03:00 CEST back to 02:00 CET, so 02:xx happens twice.
        (dt.datetime(2027, 10, 31, 2, 30, tzinfo=CEST), "2027-10-31T02:30:00+02:00"),
        (dt.datetime(2027, 10, 31, 2, 30, tzinfo=CET), "2027-10-31T02:30:00+01:00"),
    ],
)
def test_local_time_converts_to_stockholm(at: dt.datetime, expected: str) -> None:
    local = local_time(at)
    assert local.tzinfo is STOCKHOLM
    assert local.isoformat() == expected
    # Compared in UTC: Python never calls a time in a repeated hour equal across zones.
    assert local.astimezone(UTC) == at.astimezone(UTC)


def test_local_time_marks_the_second_pass_of_the_repeated_hour() -> None:
    first = local_time(dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC))
    second = local_time(dt.datetime(2027, 10, 31, 1, 30, tzinfo=UTC))
    assert (first.hour, first.fold) == (2, 0)
    assert (second.hour, second.fold) == (2, 1)


def test_local_time_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match=r"^naive datetime 2027-06-25T12:00:00: .*aware"):
        local_time(dt.datetime(2027, 6, 25, 12))
