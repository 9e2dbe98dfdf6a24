"""Tasks on the platform's webhook deliveries: the table's shape and indexes, the
delivery health, the failed deliveries page by page, and their replay to the gateway
under the ops catalog's one-claim-per-event guard."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from blocks.catalog import opened
from blocks.catalog import webhooks as claims
from blocks.catalog.webhooks import Outcome
from blocks.pos.deliveries import (
    Count,
    Page,
    Shape,
    WebhookDeliveries,
    delivery_health,
    failed_page,
    inspect,
    newest_id,
)
from blocks.pos.replay import Replay, replay_all
from blocks.pos.signatures import REPLAY_HEADER
from blocks.postgres import PostgresDatabase
from blocks.postgres.client import connect
from tasks import QUICK, REPLAY, SWEEP_RETRY_DELAYS, step


@step("inspect-webhook-table", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def inspect_webhook_table(deliveries: WebhookDeliveries, platform_db: PostgresDatabase) -> Shape:
    """Which of the block's columns the platform's table has, and which of the indexes
    the reconciliation's queries want; with `create_indexes`, the missing ones made."""
    with connect(platform_db, autocommit=True) as conn:
        return inspect(conn, deliveries)


@step("aggregate-webhook-deliveries", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def aggregate_webhook_deliveries(
    deliveries: WebhookDeliveries, platform_db: PostgresDatabase, at: datetime
) -> list[Count]:
    """Deliveries by provider and status over the last hour and 24 hours before `at`,
    counted by PostgreSQL (the runbook's GROUP BY), never row by row here."""
    with connect(platform_db) as conn:
        return delivery_health(conn, deliveries, at)


@step("read-failed-deliveries", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def read_failed_deliveries(
    deliveries: WebhookDeliveries,
    platform_db: PostgresDatabase,
    shape: Shape,
    since: datetime,
    until: datetime,
    after: tuple[str, str] | None = None,
    provider: str | None = None,
    max_id: int | None = None,
) -> Page:
    """One page of the events whose deliveries in (since, until] all failed, after the
    event `after`: each with its newest failed attempt as stored."""
    with connect(platform_db) as conn:
        return failed_page(
            conn,
            deliveries,
            shape,
            since=since,
            until=until,
            after=after,
            provider=provider,
            max_id=max_id,
        )


@step("read-newest-delivery-id", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def read_newest_delivery_id(
    deliveries: WebhookDeliveries, platform_db: PostgresDatabase
) -> int | None:
    """The highest delivery attempt id now: what an approved plan is bounded by."""
    with connect(platform_db) as conn:
        return newest_id(conn, deliveries)


@dataclass(frozen=True)
class Replayed:
    """What one page of replays did: the outcome of each event this run claimed, those
    dead-lettered, and why the others were not sent (another run holds them, they wait
    for their next try, they were delivered or given up on)."""

    outcomes: list[Outcome] = field(default_factory=list)
    dead: list[Outcome] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


@step("replay-webhooks", limit=REPLAY, retries=0)
def replay_webhooks(
    ops_db: PostgresDatabase,
    replays: list[Replay],
    first_failed: dict[tuple[str, str], datetime],
    at: datetime,
    flow_run_id: str | None,
    concurrency: int,
    timeout: float,
    manual: bool = False,
) -> Replayed:
    """Claim each event in the ops catalog, send those this run holds, and record every
    attempt and the event's new state. Not retried: a claimed event whose run fails is
    taken again by a later run once its lease runs out."""
    with opened(ops_db) as engine:
        held = claims.claim(
            engine,
            [
                (r.provider, r.event_id, r.source_id, first_failed[(r.provider, r.event_id)])
                for r in replays
            ],
            at,
            flow_run_id,
            manual=manual,
        )
        attempts = {(c.provider, c.event_id): c.attempts for c in held}
        mine = [
            _numbered(r, attempts[(r.provider, r.event_id)] + 1)
            for r in replays
            if (r.provider, r.event_id) in attempts
        ]
        others = [
            (r.provider, r.event_id) for r in replays if (r.provider, r.event_id) not in attempts
        ]
        skipped: dict[str, int] = {}
        for state in claims.states(engine, others).values():
            reason = _skip_reason(str(state["state"]))
            skipped[reason] = skipped.get(reason, 0) + 1
        sent = replay_all(mine, concurrency, timeout)
        outcomes = [
            Outcome(
                s.replay.provider,
                s.replay.event_id,
                s.replay.attempt,
                s.ok,
                s.http_status,
                s.error,
                s.replay.source_id,
            )
            for s in sent
        ]
        dead = claims.record(engine, outcomes, at, flow_run_id)
    return Replayed(outcomes, dead, skipped)


def _numbered(replay: Replay, attempt: int) -> Replay:
    """The replay marked with its attempt number (the header the gateway sees too)."""
    return replace(replay, attempt=attempt, headers={**replay.headers, REPLAY_HEADER: str(attempt)})


SKIP_REASONS = {
    "sending": "another run is sending it",
    "failed": "waiting for its next try",
    "delivered": "already delivered by a replay",
    "dead": "dead-lettered",
}
"""Why a replayable event was not sent, by its state in the catalog."""


def _skip_reason(state: str) -> str:
    return SKIP_REASONS.get(state, state)


@step("read-replay-states", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def read_replay_states(
    ops_db: PostgresDatabase, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The replay state (sending, failed, delivered, dead) of each of these events that
    has one in the ops catalog."""
    with opened(ops_db) as engine:
        return {key: str(row["state"]) for key, row in claims.states(engine, keys).items()}
