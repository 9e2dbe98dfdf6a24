"""Webhook replay claims in the ops catalog, on a real PostgreSQL: one run per event at a
time, even when two runs claim the same events at once; the lease; the backoff after a
failed replay; dead letters after the last attempt; delivered events never sent again;
and every attempt recorded."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from blocks import PostgresDatabase
from blocks.catalog import engine_for, opened
from blocks.catalog.webhooks import LEASE, Claimed, Outcome, claim, record, states
from policy import STOCKHOLM

AT = dt.datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)  # a Wednesday
FIRST_FAILED = AT - dt.timedelta(hours=2)
SECOND = dt.timedelta(seconds=1)
EVENT = ("square", "sq-evt-1", 101, FIRST_FAILED)


@pytest.fixture
def catalog_url(db_factory: Callable[[], str]) -> str:
    return db_factory()


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Engine]:
    with opened(PostgresDatabase.from_url(catalog_url)) as engine:
        yield engine


def failed(attempt: int, event: tuple[str, str, int, dt.datetime] = EVENT) -> Outcome:
    provider, event_id, source_id, _ = event
    return Outcome(provider, event_id, attempt, False, 503, None, source_id)


def delivered(attempt: int, event: tuple[str, str, int, dt.datetime] = EVENT) -> Outcome:
    provider, event_id, source_id, _ = event
    return Outcome(provider, event_id, attempt, True, 200, None, source_id)


def scalar(engine: Engine, query: str) -> object:
    with engine.connect() as conn:
        return conn.execute(text(query)).scalar_one()


@pytest.mark.parametrize("opposite", [False, True], ids=["same order", "opposite order"])
def test_two_runs_claiming_the_same_events_at_once_split_them(
    catalog: Engine, catalog_url: str, opposite: bool
) -> None:
    events = [("zettle", f"zt-evt-{n:03}", n, FIRST_FAILED) for n in range(2000)]
    # Given in opposite orders, the two would lock the same rows crosswise (a deadlock)
    # unless claim() takes them in one order.
    given = {"run-a": events, "run-b": events[::-1] if opposite else events}
    other = engine_for(PostgresDatabase.from_url(catalog_url))
    engines = {"run-a": catalog, "run-b": other}
    for engine in engines.values():  # connected before the race, not during it
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    barrier = threading.Barrier(len(engines))
    held: dict[str, list[Claimed]] = {}
    errors: list[BaseException] = []

    def run(flow_run_id: str, engine: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            held[flow_run_id] = claim(engine, given[flow_run_id], AT, flow_run_id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in engines.items()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        other.dispose()

    assert errors == []
    a = {(c.provider, c.event_id) for c in held["run-a"]}
    b = {(c.provider, c.event_id) for c in held["run-b"]}
    assert len(held["run-a"]) + len(held["run-b"]) == 2000
    assert a.isdisjoint(b)
    assert a | b == {(p, e) for p, e, _, _ in events}
    assert {c.attempts for c in held["run-a"] + held["run-b"]} == {0}
    with catalog.connect() as conn:
        owners = dict(
            conn.execute(
                text("SELECT flow_run_id, count(*) FROM ops.webhook_replays GROUP BY 1")
            ).all()
        )
    assert owners == {run: len(held[run]) for run in engines if held[run]}


def test_a_claim_holds_until_its_lease_runs_out(catalog: Engine) -> None:
    assert claim(catalog, [EVENT], AT, "run-1") == [Claimed("square", "sq-evt-1", 0)]

    assert claim(catalog, [EVENT], AT + dt.timedelta(minutes=1), "run-2") == []
    assert claim(catalog, [EVENT], AT + LEASE, "run-2") == []
    assert claim(catalog, [EVENT], AT + LEASE, "run-2", manual=True) == []

    # The run that held it died: after its lease another run takes it.
    assert claim(catalog, [EVENT], AT + LEASE + SECOND, "run-2") == [
        Claimed("square", "sq-evt-1", 0)
    ]
    state = states(catalog, [("square", "sq-evt-1")])[("square", "sq-evt-1")]
    assert (state["state"], state["attempts"]) == ("sending", 0)
    assert scalar(catalog, "SELECT flow_run_id FROM ops.webhook_replays") == "run-2"


def test_a_failed_replay_waits_fifteen_minutes_before_its_next_claim(catalog: Engine) -> None:
    claim(catalog, [EVENT], AT, "run-1")

    assert record(catalog, [failed(1)], AT, "run-1") == []

    state = states(catalog, [("square", "sq-evt-1")])[("square", "sq-evt-1")]
    assert state == {
        "provider": "square",
        "event_id": "sq-evt-1",
        "state": "failed",
        "attempts": 1,
        "next_attempt_at": AT + dt.timedelta(minutes=15),
    }
    assert claim(catalog, [EVENT], AT + dt.timedelta(minutes=15) - SECOND, "run-2") == []
    assert claim(catalog, [EVENT], AT + dt.timedelta(minutes=15), "run-2") == [
        Claimed("square", "sq-evt-1", 1)
    ]


def test_a_manual_replay_does_not_wait_for_the_backoff(catalog: Engine) -> None:
    claim(catalog, [EVENT], AT, "run-1")
    record(catalog, [failed(1)], AT, "run-1")

    later = AT + dt.timedelta(minutes=1)
    assert claim(catalog, [EVENT], later, "run-2") == []
    assert claim(catalog, [EVENT], later, "operator", manual=True) == [
        Claimed("square", "sq-evt-1", 1)
    ]


def test_the_fifth_failed_replay_dead_letters_the_event(catalog: Engine) -> None:
    at = AT
    for attempt in range(1, 6):
        assert claim(catalog, [EVENT], at, f"run-{attempt}") == [
            Claimed("square", "sq-evt-1", attempt - 1)
        ]
        dead = record(catalog, [failed(attempt)], at, f"run-{attempt}")
        if attempt < 5:
            assert dead == []
            at = states(catalog, [("square", "sq-evt-1")])[("square", "sq-evt-1")][
                "next_attempt_at"
            ]
    assert at == AT + dt.timedelta(minutes=15 + 30 + 60 + 120)
    assert dead == [failed(5)]

    state = states(catalog, [("square", "sq-evt-1")])[("square", "sq-evt-1")]
    assert (state["state"], state["attempts"], state["next_attempt_at"]) == ("dead", 5, at)
    with catalog.connect() as conn:
        letters = conn.execute(
            text(
                "SELECT provider, event_id, source_id, reason, attempts, last_http_status, "
                "dead_at, flow_run_id FROM ops.webhook_dead_letters"
            )
        ).all()
    assert [tuple(row) for row in letters] == [
        ("square", "sq-evt-1", 101, "HTTP 503", 5, 503, at, "run-5")
    ]

    # Only an operator takes it back, and it is sent as its sixth attempt.
    later = at + dt.timedelta(days=30)
    assert claim(catalog, [EVENT], later, "run-6") == []
    assert claim(catalog, [EVENT], later, "operator", manual=True) == [
        Claimed("square", "sq-evt-1", 5)
    ]
    # Failing again, it stays dead with the newest count; delivered, it is dead no more.
    assert record(catalog, [failed(6)], later, "operator") == [failed(6)]
    assert scalar(catalog, "SELECT attempts FROM ops.webhook_dead_letters") == 6
    assert scalar(catalog, "SELECT dead_at FROM ops.webhook_dead_letters") == later
    claim(catalog, [EVENT], later, "operator-2", manual=True)
    assert record(catalog, [delivered(7)], later, "operator-2") == []
    assert scalar(catalog, "SELECT count(*) FROM ops.webhook_dead_letters") == 0


def test_a_dead_letter_keeps_the_last_error(catalog: Engine) -> None:
    event = ("shopify", "shop-evt-9", 909, FIRST_FAILED)
    claim(catalog, [event], AT, "run-1")
    error = "shopify: POST /webhooks/shopify timed out after 10.0 s"
    outcome = Outcome("shopify", "shop-evt-9", 5, False, None, error, 909)

    assert record(catalog, [outcome], AT, "run-1") == [outcome]

    assert scalar(catalog, "SELECT reason FROM ops.webhook_dead_letters") == error


def test_a_delivered_event_is_never_claimed_again(catalog: Engine) -> None:
    claim(catalog, [EVENT], AT, "run-1")
    assert record(catalog, [delivered(1)], AT, "run-1") == []

    state = states(catalog, [("square", "sq-evt-1")])[("square", "sq-evt-1")]
    assert (state["state"], state["attempts"], state["next_attempt_at"]) == ("delivered", 1, None)
    assert scalar(catalog, "SELECT delivered_at FROM ops.webhook_replays") == AT
    for later in (AT + dt.timedelta(minutes=15), AT + LEASE + SECOND, AT + dt.timedelta(days=7)):
        assert claim(catalog, [EVENT], later, "run-2") == []
        assert claim(catalog, [EVENT], later, "operator", manual=True) == []


def test_every_record_adds_its_attempts(catalog: Engine) -> None:
    other = ("zettle", "zt-evt-2", 202, FIRST_FAILED)
    claim(catalog, [EVENT, other], AT, "run-1")

    def attempts() -> object:
        return scalar(catalog, "SELECT count(*) FROM ops.webhook_replay_attempts")

    assert record(catalog, [], AT, "run-1") == []
    assert attempts() == 0
    record(catalog, [failed(1), failed(1, other)], AT, "run-1")
    assert attempts() == 2
    at = AT + dt.timedelta(minutes=15)
    claim(catalog, [EVENT, other], at, "run-2")
    record(catalog, [failed(2), delivered(2, other)], at, "run-2")
    assert attempts() == 4

    with catalog.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT provider, event_id, attempt, at, ok, http_status, source_id, flow_run_id "
                "FROM ops.webhook_replay_attempts ORDER BY id"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("square", "sq-evt-1", 1, AT, False, 503, 101, "run-1"),
        ("zettle", "zt-evt-2", 1, AT, False, 503, 202, "run-1"),
        ("square", "sq-evt-1", 2, at, False, 503, 101, "run-2"),
        ("zettle", "zt-evt-2", 2, at, True, 200, 202, "run-2"),
    ]
