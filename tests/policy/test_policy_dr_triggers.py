"""The runbook's automated failover triggers, judged on minute-by-minute observations:
each crossed, each just missed, streaks broken by a recovery or a gap, and the error
rate only in Swedish business hours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from policy.calendar import STOCKHOLM
from policy.dr_triggers import (
    DATABASE_CHECK,
    ERROR_RATE_CHECK,
    PRIMARY_REGION_CHECK,
    TRIGGERS,
    Finding,
    Observation,
    Scenario,
    in_business_hours,
    judge,
)

START = dt.datetime(2027, 3, 10, 10, 3, tzinfo=STOCKHOLM)  # a Wednesday, business hours
EVENING = dt.datetime(2027, 3, 10, 19, 0, tzinfo=STOCKHOLM)  # extended hours
MIDSOMMARAFTON = dt.datetime(2027, 6, 25, 12, 0, tzinfo=STOCKHOLM)
SATURDAY_NOON = dt.datetime(2027, 3, 13, 12, 0, tzinfo=STOCKHOLM)
MINUTE = dt.timedelta(minutes=1)


def minutely(check: str, results: Sequence[bool], start: dt.datetime = START) -> list[Observation]:
    """One observation a minute from `start`: True fine, False failed."""
    return [Observation(check, start + n * MINUTE, ok) for n, ok in enumerate(results)]


def rates(values: Sequence[float | None], start: dt.datetime = START) -> list[Observation]:
    """One error rate a minute from `start`."""
    return [
        Observation(ERROR_RATE_CHECK, start + n * MINUTE, v is not None and v <= 0.5, v)
        for n, v in enumerate(values)
    ]


def finding(observations: list[Observation], now: dt.datetime, trigger: str) -> Finding:
    [found] = [f for f in judge(observations, now) if f.trigger == trigger]
    return found


def region(observations: list[Observation], now: dt.datetime) -> Finding:
    return finding(observations, now, "primary-region-unavailable")


def database(observations: list[Observation], now: dt.datetime) -> Finding:
    return finding(observations, now, "database-connection-failures")


def error_rate(observations: list[Observation], now: dt.datetime) -> Finding:
    return finding(observations, now, "error-rate-high")


def test_the_three_triggers_and_their_scenarios() -> None:
    assert [(t.name, t.check, t.scenario) for t in TRIGGERS] == [
        ("primary-region-unavailable", PRIMARY_REGION_CHECK, Scenario.REGIONAL_FAILOVER),
        ("database-connection-failures", DATABASE_CHECK, Scenario.DATABASE_LOSS),
        ("error-rate-high", ERROR_RATE_CHECK, Scenario.REGIONAL_FAILOVER),
    ]
    assert [f.trigger for f in judge([], START)] == [t.name for t in TRIGGERS]


# --- primary region unavailable > 5 minutes ----------------------------------------------


def test_primary_region_unavailable_four_minutes_does_not_fire() -> None:
    seen = minutely(PRIMARY_REGION_CHECK, [True] + [False] * 5)  # failing 10:04-10:08
    now = START + 5 * MINUTE

    found = region(seen, now)

    assert not found.holds
    assert found.why == (
        "primary region unavailable for 4 min 0 s since 10:04:00 (fires after 5 min 0 s)"
    )
    assert found.since == START + MINUTE


def test_primary_region_unavailable_exactly_five_minutes_does_not_fire() -> None:
    seen = minutely(PRIMARY_REGION_CHECK, [False] * 6)

    assert not region(seen, START + 5 * MINUTE).holds


def test_primary_region_unavailable_over_five_minutes_fires() -> None:
    seen = minutely(PRIMARY_REGION_CHECK, [False] * 6)
    now = START + 5 * MINUTE + dt.timedelta(seconds=12)

    found = region(seen, now)

    assert found.holds
    assert found.scenario is Scenario.REGIONAL_FAILOVER
    assert found.why == "primary region unavailable for 5 min 12 s since 10:03:00"
    assert (found.since, found.observed_at) == (START, START + 5 * MINUTE)


def test_a_healthy_answer_in_the_middle_restarts_the_streak() -> None:
    seen = minutely(PRIMARY_REGION_CHECK, [False] * 4 + [True] + [False] * 4)  # 10:03-10:11
    now = START + 8 * MINUTE + dt.timedelta(seconds=30)

    found = region(seen, now)

    assert not found.holds
    assert found.since == START + 5 * MINUTE
    assert region(seen + minutely(PRIMARY_REGION_CHECK, [False] * 3, now), now + 2 * MINUTE).holds


def test_the_primary_region_back_clears_the_trigger() -> None:
    seen = minutely(PRIMARY_REGION_CHECK, [False] * 8 + [True])

    found = region(seen, START + 8 * MINUTE)

    assert not found.holds
    assert found.why == "primary region available at 10:11:00"


def test_missed_watchdog_runs_do_not_count_as_unavailable() -> None:
    # Failed at 10:03 and again at 10:08 after the watchdog missed four runs: nothing
    # shows the region was unavailable in between.
    seen = minutely(PRIMARY_REGION_CHECK, [False]) + minutely(
        PRIMARY_REGION_CHECK, [False, False], START + 5 * MINUTE
    )

    found = region(seen, START + 6 * MINUTE + dt.timedelta(seconds=30))

    assert not found.holds and found.since == START + 5 * MINUTE


def test_no_current_observation_holds_nothing() -> None:
    seen = minutely(PRIMARY_REGION_CHECK, [False] * 8)

    found = region(seen, START + 12 * MINUTE)

    assert not found.holds
    assert found.why == "no observation of the primary region since 10:10:00"
    assert judge([], START)[0].why == "no observation of the primary region in the last 15 min"


# --- database connection failures > 3 consecutive ---------------------------------------


def test_three_consecutive_database_failures_do_not_fire() -> None:
    seen = minutely(DATABASE_CHECK, [True, False, False, False])

    found = database(seen, START + 3 * MINUTE)

    assert not found.holds
    assert found.why == (
        "3 consecutive database connection failures since 10:04:00 (fires after more than 3)"
    )


def test_the_fourth_consecutive_database_failure_fires() -> None:
    seen = minutely(DATABASE_CHECK, [True, False, False, False, False])

    found = database(seen, START + 4 * MINUTE)

    assert found.holds
    assert found.scenario is Scenario.DATABASE_LOSS
    assert found.why == "4 consecutive database connection failures since 10:04:00"


def test_a_database_connection_in_the_middle_resets_the_count() -> None:
    seen = minutely(DATABASE_CHECK, [False, False, False, True, False, False, False])

    found = database(seen, START + 6 * MINUTE)

    assert not found.holds and found.since == START + 4 * MINUTE
    back = database(seen + minutely(DATABASE_CHECK, [True], START + 7 * MINUTE), START + 7 * MINUTE)
    assert not back.holds and back.why == "database connection fine at 10:10:00"


def test_observations_in_the_future_are_not_judged() -> None:
    seen = minutely(DATABASE_CHECK, [False] * 6)

    assert not database(seen, START + 2 * MINUTE).holds


# --- error rate > 50 % for > 2 minutes in business hours ---------------------------------


def test_two_minutes_at_sixty_percent_do_not_fire() -> None:
    seen = rates([0.1, 0.6, 0.6, 0.6])  # high from 10:04

    found = error_rate(seen, START + 3 * MINUTE)

    assert not found.holds
    assert found.why == (
        "error rate above 50 % for 2 min 0 s since 10:04:00 in business hours (now 60 %)"
        " (fires after 2 min 0 s)"
    )


def test_over_two_minutes_above_half_in_business_hours_fires() -> None:
    seen = rates([0.1, 0.6, 0.55, 0.7])

    found = error_rate(seen, START + 3 * MINUTE + dt.timedelta(seconds=1))

    assert found.holds
    assert found.scenario is Scenario.REGIONAL_FAILOVER
    assert found.why == (
        "error rate above 50 % for 2 min 1 s since 10:04:00 in business hours (now 70 %)"
    )


def test_exactly_half_is_not_above_half() -> None:
    seen = rates([0.5] * 6)

    found = error_rate(seen, START + 5 * MINUTE)

    assert not found.holds and found.why == "error rate 50 % at 10:08:00"


def test_fifty_one_percent_outside_business_hours_never_fires() -> None:
    seen = rates([0.51] * 10, EVENING)

    found = error_rate(seen, EVENING + 9 * MINUTE)

    assert not found.holds
    assert (
        found.why == "error rate 51 % at 19:09:00, outside business hours (extended): does not fire"
    )


@pytest.mark.parametrize(
    ("start", "holds"),
    [(MIDSOMMARAFTON, False), (SATURDAY_NOON, True), (START.replace(hour=12), True)],
    ids=["midsommarafton", "saturday-noon", "weekday-peak"],
)
def test_business_hours_are_the_projects(start: dt.datetime, holds: bool) -> None:
    seen = rates([0.9] * 4, start)

    assert error_rate(seen, start + 3 * MINUTE).holds is holds


def test_minutes_before_business_hours_do_not_count() -> None:
    opening = dt.datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)
    seen = rates([0.9] * 10, opening - 5 * MINUTE)  # 08:55-09:04

    assert not error_rate(seen, opening + 2 * MINUTE).holds
    found = error_rate(seen, opening + 2 * MINUTE + dt.timedelta(seconds=1))
    assert found.holds and found.since == opening


def test_an_error_rate_back_under_half_or_unreported_breaks_the_streak() -> None:
    assert not error_rate(rates([0.9, 0.9, 0.2, 0.9, 0.9]), START + 4 * MINUTE).holds
    assert not error_rate(rates([0.9, 0.9, None, 0.9, 0.9]), START + 4 * MINUTE).holds
    unreported = error_rate(rates([0.9, 0.9, 0.9, 0.9, None]), START + 4 * MINUTE)
    assert not unreported.holds and unreported.why == "no error rate reported at 10:07:00"


def test_business_hours() -> None:
    assert in_business_hours(START)
    assert not in_business_hours(EVENING)
    assert not in_business_hours(MIDSOMMARAFTON)


# --- all together --------------------------------------------------------------------------


def test_judge_reads_each_check_on_its_own() -> None:
    seen = (
        minutely(PRIMARY_REGION_CHECK, [True] * 6)
        + minutely(DATABASE_CHECK, [False] * 6)
        + rates([0.9] * 6)
    )

    found = judge(list(reversed(seen)), START + 5 * MINUTE)

    assert [(f.trigger, f.holds) for f in found] == [
        ("primary-region-unavailable", False),
        ("database-connection-failures", True),
        ("error-rate-high", True),
    ]


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        judge([], dt.datetime(2027, 3, 10, 10, 0))
    with pytest.raises(ValueError, match="naive"):
        judge([Observation(DATABASE_CHECK, dt.datetime(2027, 3, 10, 10, 0), True)], START)
