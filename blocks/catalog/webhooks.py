"""`ops.webhook_replays`, `ops.webhook_replay_attempts` and `ops.webhook_dead_letters`:
the one claim per event that makes a replay happen once, every attempt, and the events
given up on.

A run replays only the events it claimed. `claim` inserts an event's row, or takes an
existing one that is due again (a failed replay whose backoff has passed, or a claim
whose run died and whose lease ran out), in one `INSERT … ON CONFLICT DO UPDATE …
WHERE`: two runs claiming the same event at once queue on its row, and the second finds
it taken. A delivered event is never claimed again; a dead-lettered one only by an operator's
manual replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blocks.catalog.schema import webhook_dead_letters, webhook_replay_attempts, webhook_replays
from policy.webhooks import next_replay_at

LEASE = timedelta(minutes=30)
"""How long a claim holds before another run may take it: longer than any page of
replays takes, so only a run that died leaves one to lapse."""

EventKey = tuple[str, str]
"""(provider, event_id)."""


@dataclass(frozen=True)
class Claimed:
    """An event this run may replay now, and how many replays it has had before."""

    provider: str
    event_id: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What one replay got from the gateway."""

    provider: str
    event_id: str
    attempt: int
    ok: bool
    http_status: int | None
    error: str | None
    source_id: int | None


def claim(
    engine: Engine,
    events: Sequence[tuple[str, str, int | None, datetime]],
    at: datetime,
    flow_run_id: str | None,
    *,
    manual: bool = False,
) -> list[Claimed]:
    """Claim the events (provider, event id, attempt id, first failure) that are due
    at `at`; returns those this run holds. A `manual` replay (an operator's
    `webhook-replay`) does not wait for a failed event's backoff and takes a
    dead-lettered one back; a delivered event, or one another run is sending, it never
    takes."""
    if not events:
        return []
    table = webhook_replays
    rows = [
        {
            "provider": provider,
            "event_id": event_id,
            "state": "sending",
            "source_id": source_id,
            "first_failed_at": first_failed_at,
            "lease_until": at + LEASE,
            "flow_run_id": flow_run_id,
        }
        for provider, event_id, source_id, first_failed_at in events
    ]
    insert = pg_insert(table).values(rows)
    retry = (
        table.c.state.in_(("failed", "dead"))
        if manual
        else and_(table.c.state == "failed", table.c.next_attempt_at <= at)
    )
    due = or_(retry, and_(table.c.state == "sending", table.c.lease_until < at))
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.provider, table.c.event_id],
        set_={
            "state": "sending",
            "source_id": insert.excluded.source_id,
            "lease_until": insert.excluded.lease_until,
            "flow_run_id": insert.excluded.flow_run_id,
        },
        where=due,
    ).returning(table.c.provider, table.c.event_id, table.c.attempts)
    with engine.begin() as conn:
        return [Claimed(p, e, int(n)) for p, e, n in conn.execute(statement)]


def states(engine: Engine, keys: Sequence[EventKey]) -> dict[EventKey, dict[str, Any]]:
    """The stored replay state of each of these events that has one."""
    if not keys:
        return {}
    table = webhook_replays
    query = select(
        table.c.provider,
        table.c.event_id,
        table.c.state,
        table.c.attempts,
        table.c.next_attempt_at,
    ).where(tuple_(table.c.provider, table.c.event_id).in_(list(keys)))
    with engine.connect() as conn:
        return {(row.provider, row.event_id): dict(row._mapping) for row in conn.execute(query)}


def record(
    engine: Engine,
    outcomes: Sequence[Outcome],
    at: datetime,
    flow_run_id: str | None,
) -> list[Outcome]:
    """Store each replay's attempt and the event's new state: delivered, failed until
    its next try, or dead-lettered after the last; returns the dead-lettered ones."""
    if not outcomes:
        return []
    dead: list[Outcome] = []
    with engine.begin() as conn:
        conn.execute(
            webhook_replay_attempts.insert(),
            [
                {
                    "provider": o.provider,
                    "event_id": o.event_id,
                    "attempt": o.attempt,
                    "at": at,
                    "ok": o.ok,
                    "http_status": o.http_status,
                    "error": o.error,
                    "source_id": o.source_id,
                    "flow_run_id": flow_run_id,
                }
                for o in outcomes
            ],
        )
        for o in outcomes:
            after = next_replay_at(o.attempt, at)
            if o.ok:
                values: dict[str, Any] = {"state": "delivered", "delivered_at": at}
            elif after is None:
                values = {"state": "dead"}
                dead.append(o)
            else:
                values = {"state": "failed", "next_attempt_at": after}
            conn.execute(
                webhook_replays.update()
                .where(
                    webhook_replays.c.provider == o.provider,
                    webhook_replays.c.event_id == o.event_id,
                )
                .values(
                    attempts=o.attempt,
                    last_attempt_at=at,
                    last_http_status=o.http_status,
                    last_error=o.error,
                    lease_until=None,
                    **values,
                )
            )
        if dead:
            conn.execute(
                pg_insert(webhook_dead_letters)
                .values(
                    [
                        {
                            "provider": o.provider,
                            "event_id": o.event_id,
                            "source_id": o.source_id,
                            "reason": o.error or f"HTTP {o.http_status}",
                            "attempts": o.attempt,
                            "last_http_status": o.http_status,
                            "dead_at": at,
                            "flow_run_id": flow_run_id,
                        }
                        for o in dead
                    ]
                )
                .on_conflict_do_nothing()
            )
    return dead
