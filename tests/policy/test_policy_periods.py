"""Business periods, holiday precedence and the start of the next business day."""

import datetime as dt
from collections.abc import Callable

import pytest

from policy import (
    STOCKHOLM,
    Period,
    business_period,
    clock_period,
    is_business_day,
    local_time,
    next_business_day_start,
    response_plan,
    window_at,
)

UTC = dt.UTC
PEAK, BUSINESS, EXTENDED, OFF = Period.PEAK, Period.BUSINESS, Period.EXTENDED, Period.OFF_HOURS

WEDNESDAY = dt.date(2027, 6, 23)
SATURDAY = dt.date(2027, 6, 19)
SUNDAY = dt.date(2027, 6, 20)


def at(day: dt.date, clock: str) -> dt.datetime:
    """The Stockholm instant of a day at an HH:MM[:SS[.ffffff]] clock time."""
    return dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=STOCKHOLM)


WEEKDAY_BOUNDARIES = [
    ("00:00", OFF),
    ("08:59", OFF),
    ("08:59:59.999999", OFF),
    ("09:00", BUSINESS),
    ("10:59", BUSINESS),
    ("11:00", PEAK),
    ("14:59", PEAK),
    ("15:00", BUSINESS),
    ("17:59", BUSINESS),
    ("18:00", EXTENDED),
    ("21:59", EXTENDED),
    ("21:59:59.999999", EXTENDED),
    ("22:00", OFF),
    ("23:59", OFF),
]

WEEKEND_BOUNDARIES = [
    ("00:00", OFF),
    ("08:59", OFF),
    ("09:00", OFF),
    ("09:59", OFF),
    ("10:00", BUSINESS),
    ("10:59", BUSINESS),
    ("11:00", BUSINESS),
    ("14:59", BUSINESS),
    ("15:00", BUSINESS),
    ("15:59", BUSINESS),
    # The runbook names nothing for weekend afternoons after 16:00 until extended hours.
    ("16:00", OFF),
    ("17:59", OFF),
    ("18:00", EXTENDED),
    ("21:59", EXTENDED),
    ("22:00", OFF),
    ("23:59", OFF),
]


@pytest.mark.parametrize("period_of", [clock_period, business_period])
@pytest.mark.parametrize(("clock", "expected"), WEEKDAY_BOUNDARIES)
def test_weekday_boundaries(
    period_of: Callable[[dt.datetime], Period], clock: str, expected: Period
) -> None:
    assert period_of(at(WEDNESDAY, clock)) is expected


@pytest.mark.parametrize("period_of", [clock_period, business_period])
@pytest.mark.parametrize("day", [SATURDAY, SUNDAY], ids=["saturday", "sunday"])
@pytest.mark.parametrize(("clock", "expected"), WEEKEND_BOUNDARIES)
def test_weekend_boundaries(
    period_of: Callable[[dt.datetime], Period], day: dt.date, clock: str, expected: Period
) -> None:
    assert period_of(at(day, clock)) is expected


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # Winter, CET: 10:00 UTC is 11:00 in Stockholm.
        (dt.datetime(2027, 1, 13, 10, 0, tzinfo=UTC), PEAK),
        (dt.datetime(2027, 1, 13, 9, 59, tzinfo=UTC), BUSINESS),
        # Summer, CEST: 09:00 UTC is 11:00 in Stockholm.
        (dt.datetime(2027, 6, 23, 9, 0, tzinfo=UTC), PEAK),
        (dt.datetime(2027, 6, 23, 19, 59, tzinfo=UTC), EXTENDED),
        (dt.datetime(2027, 6, 23, 20, 0, tzinfo=UTC), OFF),
        # A UTC Wednesday evening that is already Thursday in Stockholm.
        (dt.datetime(2027, 6, 23, 22, 30, tzinfo=UTC), OFF),
        # A UTC Friday evening that is already Saturday in Stockholm: weekend hours.
        (dt.datetime(2027, 6, 18, 22, 30, tzinfo=UTC), OFF),
        (dt.datetime(2027, 6, 19, 7, 30, tzinfo=UTC), OFF),
        (dt.datetime(2027, 6, 19, 8, 0, tzinfo=UTC), BUSINESS),
    ],
)
def test_periods_follow_stockholm_time_not_the_given_zone(
    instant: dt.datetime, expected: Period
) -> None:
    assert clock_period(instant) is expected


@pytest.mark.parametrize(
    ("instant", "clock"),
    [
        (at(dt.date(2027, 6, 25), "12:00"), PEAK),  # Midsommarafton, a Friday
        (at(dt.date(2027, 6, 25), "09:30"), BUSINESS),
        (at(dt.date(2027, 6, 25), "19:00"), EXTENDED),
        (at(dt.date(2027, 6, 25), "23:30"), OFF),
        (at(dt.date(2027, 6, 26), "12:00"), BUSINESS),  # Midsommardagen, a Saturday
        (at(dt.date(2024, 12, 24), "10:00"), BUSINESS),  # Julafton, a Tuesday
        (at(dt.date(2024, 12, 31), "12:00"), PEAK),  # Nyårsafton, a Tuesday
        (at(dt.date(2027, 3, 28), "12:00"), BUSINESS),  # Påskdagen, a Sunday
        (at(dt.date(2027, 1, 1), "00:00"), OFF),  # Nyårsdagen from its first moment
        # 22:30 UTC on Thursday 2027-06-24 is 00:30 on Midsommarafton in Stockholm.
        (dt.datetime(2027, 6, 24, 22, 30, tzinfo=UTC), OFF),
    ],
)
def test_a_holiday_takes_precedence_over_every_clock_period(
    instant: dt.datetime, clock: Period
) -> None:
    assert clock_period(instant) is clock
    assert business_period(instant) is Period.HOLIDAY


def test_the_stockholm_date_decides_whether_it_is_a_holiday() -> None:
    # 23:30 UTC on Trettondedag jul is already 00:30 on Thursday 2027-01-07 in Stockholm.
    assert business_period(dt.datetime(2027, 1, 6, 23, 30, tzinfo=UTC)) is OFF
    assert business_period(dt.datetime(2027, 1, 6, 22, 59, tzinfo=UTC)) is Period.HOLIDAY


@pytest.mark.parametrize(
    ("instant", "clock", "business"),
    [
        # 2027-03-28, Påskdagen and a Sunday: clocks jump from 02:00 CET to 03:00 CEST.
        (dt.datetime(2027, 3, 28, 0, 30, tzinfo=UTC), OFF, Period.HOLIDAY),
        (dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC), OFF, Period.HOLIDAY),
        (dt.datetime(2027, 3, 28, 7, 59, tzinfo=UTC), OFF, Period.HOLIDAY),  # 09:59 CEST
        (dt.datetime(2027, 3, 28, 8, 0, tzinfo=UTC), BUSINESS, Period.HOLIDAY),  # 10:00 CEST
        # 2027-10-31, an ordinary Sunday: 02:00-03:00 happens twice, in CEST then CET.
        (dt.datetime(2027, 10, 31, 0, 0, tzinfo=UTC), OFF, OFF),  # 02:00 CEST
        (dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC), OFF, OFF),  # 02:30 CEST
        (dt.datetime(2027, 10, 31, 1, 30, tzinfo=UTC), OFF, OFF),  # 02:30 CET
        (dt.datetime(2027, 10, 31, 8, 59, tzinfo=UTC), OFF, OFF),  # 09:59 CET
        (dt.datetime(2027, 10, 31, 9, 0, tzinfo=UTC), BUSINESS, BUSINESS),  # 10:00 CET
        (dt.datetime(2027, 10, 31, 14, 59, tzinfo=UTC), BUSINESS, BUSINESS),  # 15:59 CET
        (dt.datetime(2027, 10, 31, 15, 0, tzinfo=UTC), OFF, OFF),  # 16:00 CET
    ],
)
def test_daylight_saving_days_of_2027(
    instant: dt.datetime, clock: Period, business: Period
) -> None:
    assert clock_period(instant) is clock
    assert business_period(instant) is business


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(2027, 6, 23), True),  # Wednesday
        (dt.date(2027, 6, 24), True),  # Thursday before Midsommarafton
        (dt.date(2027, 6, 25), False),  # Midsommarafton
        (dt.date(2027, 6, 26), False),  # Saturday, Midsommardagen
        (dt.date(2027, 6, 27), False),  # Sunday
        (dt.date(2027, 3, 29), False),  # Annandag påsk
        (dt.date(2027, 3, 30), True),  # Tuesday after Easter
        (dt.date(2027, 12, 24), False),  # Julafton
        (dt.date(2027, 12, 31), False),  # Nyårsafton
        (dt.date(2028, 1, 3), True),  # Monday
    ],
)
def test_is_business_day(day: dt.date, expected: bool) -> None:
    assert is_business_day(day) is expected


def test_is_business_day_refuses_a_datetime() -> None:
    with pytest.raises(TypeError, match="takes a date"):
        is_business_day(at(WEDNESDAY, "12:00"))


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (at(dt.date(2027, 6, 25), "12:00"), "2027-06-28T09:00:00+02:00"),  # Midsommarafton
        (at(dt.date(2027, 6, 24), "08:00"), "2027-06-24T09:00:00+02:00"),
        (at(dt.date(2027, 6, 24), "08:59:59.999999"), "2027-06-24T09:00:00+02:00"),
        (at(dt.date(2027, 6, 24), "09:00"), "2027-06-28T09:00:00+02:00"),
        (at(dt.date(2027, 6, 23), "09:00"), "2027-06-24T09:00:00+02:00"),
        (at(dt.date(2027, 6, 23), "23:00"), "2027-06-24T09:00:00+02:00"),
        (at(dt.date(2027, 6, 19), "08:00"), "2027-06-21T09:00:00+02:00"),  # Saturday
        (at(dt.date(2027, 6, 20), "23:59"), "2027-06-21T09:00:00+02:00"),  # Sunday
        (at(dt.date(2027, 12, 23), "18:00"), "2027-12-27T09:00:00+01:00"),  # before Christmas
        (at(dt.date(2027, 12, 30), "12:00"), "2028-01-03T09:00:00+01:00"),  # before New Year
        # Långfredagen to Annandag påsk, across the change to summer time.
        (at(dt.date(2027, 3, 25), "12:00"), "2027-03-30T09:00:00+02:00"),
        # 06:59 UTC is 08:59 CEST: the same morning.
        (dt.datetime(2027, 6, 24, 6, 59, tzinfo=UTC), "2027-06-24T09:00:00+02:00"),
        # 22:30 UTC on Sunday is 23:30 CET, still Sunday in Stockholm.
        (dt.datetime(2027, 11, 7, 22, 30, tzinfo=UTC), "2027-11-08T09:00:00+01:00"),
    ],
)
def test_next_business_day_start(instant: dt.datetime, expected: str) -> None:
    start = next_business_day_start(instant)
    assert start.isoformat() == expected
    assert start.tzinfo is STOCKHOLM


def test_next_business_day_start_is_the_first_business_morning_after_any_moment() -> None:
    moment = at(dt.date(2027, 6, 14), "00:00")
    while moment < at(dt.date(2027, 7, 5), "00:00"):
        start = next_business_day_start(moment)
        assert start > moment
        assert is_business_day(start.date()) and start.time() == dt.time(9)
        earlier = [
            at(moment.date() + dt.timedelta(days=n), "09:00")
            for n in range((start.date() - moment.date()).days)
        ]
        assert not any(moment < e and is_business_day(e.date()) for e in earlier)
        moment += dt.timedelta(minutes=30)


@pytest.mark.parametrize(
    "function",
    [
        local_time,
        clock_period,
        business_period,
        next_business_day_start,
        window_at,
        lambda naive: response_plan("critical", naive),
    ],
    ids=[
        "local_time",
        "clock_period",
        "business_period",
        "next_business_day_start",
        "window_at",
        "response_plan",
    ],
)
def test_every_time_based_function_refuses_a_naive_datetime(
    function: Callable[[dt.datetime], object],
) -> None:
    with pytest.raises(ValueError, match="^naive datetime 2027-06-25T12:00:00: "):
        function(dt.datetime(2027, 6, 25, 12))


def test_period_values() -> None:
    assert [period.value for period in Period] == [
        "peak",
        "business",
        "extended",
        "off_hours",
        "holiday",
    ]
