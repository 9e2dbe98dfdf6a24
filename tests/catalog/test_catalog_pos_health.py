"""POS health in the ops catalog, on a real PostgreSQL: damped endpoint states that
survive a restart and ignore a late sweep, the checks of every sweep, and uptime counted
in the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from blocks import PostgresDatabase
from blocks.catalog import opened
from blocks.catalog.pos_health import Check, advance_states, record_checks, states, uptime
from policy.calendar import STOCKHOLM
from policy.pos_health import Damped, EndpointState

START = dt.datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)
SWEEP = dt.timedelta(minutes=5)
PRIMARY = ("square", "primary")
SECONDARY = ("square", "secondary")


@pytest.fixture
def catalog_url(db_factory: Callable[[], str]) -> str:
    return db_factory()


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Engine]:
    with opened(PostgresDatabase.from_url(catalog_url)) as engine:
        yield engine


def test_three_failed_sweeps_are_down_and_stay_down_after_a_restart(
    catalog: Engine, catalog_url: str
) -> None:
    for n in range(2):
        after = advance_states(catalog, {PRIMARY: False, SECONDARY: True}, START + n * SWEEP)
        assert after[PRIMARY] == Damped(EndpointState.UP, None, n + 1)
    after = advance_states(catalog, {PRIMARY: False, SECONDARY: True}, START + 2 * SWEEP)
    assert after == {
        PRIMARY: Damped(EndpointState.DOWN, START + 2 * SWEEP, 0),
        SECONDARY: Damped(EndpointState.UP, None, 0),
    }

    # A new process (a new engine on the same catalog) sees the same states.
    with opened(PostgresDatabase.from_url(catalog_url)) as restarted:
        assert states(restarted) == after


def test_a_late_sweep_changes_nothing(catalog: Engine) -> None:
    for n in range(3):
        advance_states(catalog, {PRIMARY: False}, START + n * SWEEP)
    down = states(catalog)[PRIMARY]

    # A sweep that started before the last one applied, arriving after it.
    late = advance_states(catalog, {PRIMARY: True}, START + SWEEP)
    assert late[PRIMARY] == down == states(catalog)[PRIMARY]
    # The same sweep applied twice counts once.
    advance_states(catalog, {PRIMARY: True}, START + 3 * SWEEP)
    again = advance_states(catalog, {PRIMARY: True}, START + 3 * SWEEP)
    assert again[PRIMARY] == Damped(EndpointState.DOWN, START + 2 * SWEEP, 1)


def test_checks_are_recorded_and_uptime_is_counted_since_a_moment(catalog: Engine) -> None:
    def check(n: int, ok: bool) -> Check:
        return Check(
            "zettle",
            "primary",
            ok,
            START + n * SWEEP,
            http_status=200 if ok else 503,
            connect_ms=3.5,
            total_ms=41.0,
            detail={"endpoint": "oauth.zettle.com"},
            error=None if ok else "zettle: GET /users/me answered HTTP 503",
        )

    assert record_checks(catalog, "sweep-1", [check(0, False), check(1, True)]) == 2
    assert record_checks(catalog, "sweep-2", [check(2, True), check(3, True)]) == 2
    assert record_checks(catalog, "sweep-3", []) == 0

    assert uptime(catalog, "zettle", "primary", START) == 0.75
    assert uptime(catalog, "zettle", "primary", START + SWEEP) == 1.0
    assert uptime(catalog, "zettle", "secondary", START) is None
    assert uptime(catalog, "square", "primary", START) is None
