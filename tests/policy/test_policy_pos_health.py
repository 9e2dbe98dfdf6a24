"""Damping of POS endpoint states and the failover/failback decision, by Stockholm time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest

from policy.calendar import STOCKHOLM
from policy.pos_health import (
    FAILBACK_AFTER,
    Damped,
    EndpointState,
    Move,
    decide_move,
    merchants_escalate,
    observe,
    provider_down_severity,
)
from policy.response import Severity

START = dt.datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)  # a Wednesday
SWEEP = dt.timedelta(minutes=5)
UP = Damped()
DOWN = Damped(EndpointState.DOWN, START, 0)


def sweeps(results: Iterable[bool], state: Damped = UP) -> list[Damped]:
    """The damped state after each sweep, five minutes apart from START."""
    seen = []
    for n, ok in enumerate(results):
        state = observe(state, ok, START + n * SWEEP)
        seen.append(state)
    return seen


def test_two_failures_are_not_down_the_third_is() -> None:
    after = sweeps([False, False, False])
    assert [s.state for s in after] == [EndpointState.UP, EndpointState.UP, EndpointState.DOWN]
    assert after[1].against == 2
    assert after[2] == Damped(EndpointState.DOWN, START + 2 * SWEEP, 0)


def test_a_flapping_endpoint_keeps_its_state() -> None:
    after = sweeps([False, False, True] * 4)
    assert {s.state for s in after} == {EndpointState.UP}
    down = sweeps([False] * 3)[-1]
    after = sweeps([True, True, False] * 4, down)
    assert {s.state for s in after} == {EndpointState.DOWN}


def test_down_needs_three_good_sweeps_to_be_up() -> None:
    down = sweeps([False] * 3)[-1]
    after = sweeps([True, True, True], down)
    assert [s.state for s in after] == [EndpointState.DOWN, EndpointState.DOWN, EndpointState.UP]
    assert after[-1].since == START + 2 * SWEEP


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        observe(Damped(), True, dt.datetime(2027, 3, 10, 9, 0))


def test_failover_when_the_primary_is_down_and_the_secondary_up() -> None:
    decision = decide_move(DOWN, UP, failed_over=False, at=START)
    assert decision.move is Move.FAILOVER
    assert decision.reason.startswith("primary_endpoint_down: 3 failed sweeps in a row")


@pytest.mark.parametrize(
    ("primary", "secondary", "failed_over"),
    [(UP, UP, False), (DOWN, DOWN, False), (DOWN, UP, True)],
    ids=["all up", "both down", "already failed over"],
)
def test_no_move(primary: Damped, secondary: Damped, failed_over: bool) -> None:
    assert decide_move(primary, secondary, failed_over, START).move is None


def back_up_since(minutes_ago: int, at: dt.datetime) -> Damped:
    return Damped(EndpointState.UP, at - dt.timedelta(minutes=minutes_ago), 0)


@pytest.mark.parametrize(
    ("at", "minutes_up", "expected"),
    [
        (START.replace(hour=10), 29, None),
        (START.replace(hour=10), 30, Move.FAILBACK),
        (START.replace(hour=10, minute=59), 45, Move.FAILBACK),
        (START.replace(hour=11), 45, None),  # peak starts at 11:00
        (START.replace(hour=14, minute=59), 240, None),
        (START.replace(hour=15), 240, Move.FAILBACK),
        (dt.datetime(2027, 3, 13, 12, 0, tzinfo=STOCKHOLM), 60, Move.FAILBACK),  # a Saturday
        (dt.datetime(2027, 6, 25, 12, 0, tzinfo=STOCKHOLM), 60, None),  # Midsommarafton
        (dt.datetime(2027, 6, 25, 16, 0, tzinfo=STOCKHOLM), 60, Move.FAILBACK),
    ],
)
def test_failback_after_30_minutes_up_never_in_peak_hours(
    at: dt.datetime, minutes_up: int, expected: Move | None
) -> None:
    decision = decide_move(back_up_since(minutes_up, at), UP, failed_over=True, at=at)
    assert decision.move is expected, decision.reason
    if expected is None and minutes_up < FAILBACK_AFTER.total_seconds() / 60:
        assert (
            decision.reason
            == "on the secondary; primary up for 29 min of the 30 before failing back"
        )
    if expected is Move.FAILBACK:
        assert decision.reason == f"failback: primary up for {minutes_up} min"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (START.replace(hour=10), Severity.CRITICAL),
        (START.replace(hour=12), Severity.CRITICAL),
        (START.replace(hour=17, minute=59), Severity.CRITICAL),
        (START.replace(hour=20), Severity.MEDIUM),
        (START.replace(hour=3), Severity.MEDIUM),
        (dt.datetime(2027, 3, 13, 12, 0, tzinfo=STOCKHOLM), Severity.CRITICAL),  # Saturday
        (dt.datetime(2027, 3, 13, 17, 0, tzinfo=STOCKHOLM), Severity.MEDIUM),
        (dt.datetime(2027, 6, 25, 12, 0, tzinfo=STOCKHOLM), Severity.LOW),  # Midsommarafton
        (dt.datetime(2027, 12, 24, 10, 0, tzinfo=STOCKHOLM), Severity.LOW),  # Julafton
    ],
)
def test_a_provider_down_by_swedish_time(at: dt.datetime, expected: Severity) -> None:
    assert provider_down_severity(at) is expected


@pytest.mark.parametrize(
    ("failing", "with_connections", "expected"),
    [(25, 100, False), (26, 100, True), (1, 3, True), (0, 0, False), (0, 10, False)],
)
def test_merchant_failures_escalate_above_a_quarter(
    failing: int, with_connections: int, expected: bool
) -> None:
    assert merchants_escalate(failing, with_connections) is expected
