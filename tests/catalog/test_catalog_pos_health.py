"""POS health in the ops catalog, on a real PostgreSQL: damped endpoint states that
survive a restart and ignore a late sweep, the checks of every sweep, and uptime counted
in the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from blocks import PostgresDatabase
from blocks.catalog import opened
from blocks.catalog.pos_health import (
    KEEP_CHECKS,
    SERVICE,
    Check,
    advance_states,
    record_checks,
    record_move,
    states,
    uptime,
    uptimes,
)
from blocks.catalog.pos_health import history as history_of
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


def test_checks_older_than_the_slo_windows_are_dropped(catalog: Engine) -> None:
    old = START - KEEP_CHECKS - SWEEP
    record_checks(catalog, "sweep-old", [Check("square", SERVICE, False, old)])
    record_checks(catalog, "sweep-kept", [Check("square", SERVICE, True, START - SWEEP)])
    assert uptimes(catalog, START)["square"]["30d"] == 1.0  # the old one is outside anyway

    record_checks(catalog, "sweep-new", [Check("square", SERVICE, True, START)])

    with catalog.connect() as conn:
        kept = conn.execute(text("SELECT sweep_id FROM ops.pos_health_checks ORDER BY id")).all()
    assert [row.sweep_id for row in kept] == ["sweep-kept", "sweep-new"]


def test_history_gives_each_providers_last_move_and_uptime_per_window(catalog: Engine) -> None:
    record_checks(
        catalog,
        "sweep-1",
        [
            Check("shopify", SERVICE, False, START - dt.timedelta(days=3)),
            Check("shopify", SERVICE, True, START - dt.timedelta(hours=2)),
            Check("shopify", SERVICE, True, START - dt.timedelta(hours=1)),
        ],
    )
    for n, direction in enumerate(("failover", "failback", "failover")):
        record_move(
            catalog,
            provider="shopify",
            direction=direction,
            reason=f"move {n}",
            requested_by="pos-health-sweep",
            at=START - dt.timedelta(hours=3 - n),
            flow_run_id=None,
            checks={"n": n},
            gateway_answer={"active_endpoint": "secondary"},
        )

    history = history_of(catalog, START)

    assert history.failed_over("shopify") and not history.failed_over("square")
    assert history.moves["shopify"]["reason"] == "move 2"
    assert history.uptime["shopify"] == {"1d": 1.0, "7d": 2 / 3, "30d": 2 / 3}
    assert history.last[("shopify", SERVICE)]["ok"] is True
