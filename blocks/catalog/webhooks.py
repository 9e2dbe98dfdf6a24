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

from sqlalchemy import Engine, and_, bindparam, func, or_, select, tuple_
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
        # In key order, so that two runs claiming overlapping events lock their rows
        # in the same order and one waits for the other instead of deadlocking.
        for provider, event_id, source_id, first_failed_at in sorted(events, key=lambda e: e[:2])
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
        changes = []
        for o in outcomes:
            after = next_replay_at(o.attempt, at)
            state = "delivered" if o.ok else "dead" if after is None else "failed"
            if state == "dead":
                dead.append(o)
            changes.append(
                {
                    "key_provider": o.provider,
                    "key_event_id": o.event_id,
                    "new_state": state,
                    "new_attempts": o.attempt,
                    "new_http_status": o.http_status,
                    "new_error": o.error,
                    "new_next": after if state == "failed" else None,
                    "new_delivered": at if o.ok else None,
                }
            )
        table = webhook_replays
        # One statement for the page, sent as a batch: a page is hundreds of events.
        conn.execute(
            table.update()
            .where(
                table.c.provider == bindparam("key_provider"),
                table.c.event_id == bindparam("key_event_id"),
            )
            .values(
                state=bindparam("new_state"),
                attempts=bindparam("new_attempts"),
                last_attempt_at=at,
                last_http_status=bindparam("new_http_status"),
                last_error=bindparam("new_error"),
                lease_until=None,
                # Kept as they were where this outcome sets none (a dead event keeps
                # the time its last try was due).
                next_attempt_at=func.coalesce(
                    bindparam("new_next", type_=table.c.next_attempt_at.type),
                    table.c.next_attempt_at,
                ),
                delivered_at=func.coalesce(
                    bindparam("new_delivered", type_=table.c.delivered_at.type),
                    table.c.delivered_at,
                ),
            ),
            changes,
        )
        delivered = [(o.provider, o.event_id) for o in outcomes if o.ok]
        if delivered:
            # A dead letter an operator's replay has now delivered is dead no more.
            conn.execute(
                webhook_dead_letters.delete().where(
                    tuple_(webhook_dead_letters.c.provider, webhook_dead_letters.c.event_id).in_(
                        delivered
                    )
                )
            )
        if dead:
            letters = pg_insert(webhook_dead_letters)
            conn.execute(
                letters.values(
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
                ).on_conflict_do_update(
                    index_elements=[
                        webhook_dead_letters.c.provider,
                        webhook_dead_letters.c.event_id,
                    ],
                    # Dead again after an operator's replay: the newest reason and count.
                    set_={
                        column: letters.excluded[column]
                        for column in (
                            "source_id",
                            "reason",
                            "attempts",
                            "last_http_status",
                            "dead_at",
                            "flow_run_id",
                        )
                    },  # fmt: skip
                )
            )
    return dead
