"""Replay the failed webhook deliveries of a time window by hand, like Svix's "recover":
the run form takes the provider, the window in Stockholm time, the kinds of failure and
`dry_run` (on unless turned off).

The run first counts what it would send, up to the newest delivery at that moment;
more than APPROVE_ABOVE events wait for an operator's approval in the UI, and then
exactly the events counted are sent, under the same one-claim-per-event guard as the
scheduled reconciliation: an event delivered once is never sent again. A manual replay
does not wait for an event's backoff and may take back a dead-lettered one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    GATEWAY_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
    POS_TOKENS_BLOCK,
    WEBHOOK_DELIVERIES_BLOCK,
)
from feedback_ops.errors import ConfigError, OpsError
from flows.alert_steps import AlertTargets
from flows.approvals import Approval, wait_for_approval
from flows.locks import system_lock
from flows.parameters import (
    ApprovalSeconds,
    BlockName,
    FailureKind,
    ReplayProvider,
)
from flows.webhook_steps import (
    REPLAY_LOCK,
    Tally,
    WebhookAlerts,
    load_sources,
    log_unchecked,
    raise_tally_alerts,
    tally_markdown,
    walk,
)
from policy import STOCKHOLM
from policy.webhooks import Failure
from tasks.webhooks import inspect_webhook_table, read_newest_delivery_id

APPROVE_ABOVE = 100
"""More events than this wait for an operator's approval before any is sent."""
REPLAY_LOCK_WAIT_SECONDS = 15 * 60
"""A scheduled reconciliation's replays take well under this."""

EVERY_FAILURE: list[FailureKind] = list(get_args(FailureKind))


class ReplayApproval(Approval):
    """The approval form the paused run shows in the UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Tick to send the events counted above."
    )


class ReplayResult(BaseModel):
    """What `feedback-ops run webhook-replay --json` prints as `result`."""

    since: datetime
    until: datetime
    provider: str
    dry_run: bool
    failed_events: int = 0
    would_replay: int = 0
    outcome: Literal["dry run", "nothing to replay", "declined", "replayed"] = "dry run"
    decided_by: str | None = None
    replayed: int = 0
    replay_failed: int = 0
    dead_lettered: int = 0
    skipped: dict[str, int] = {}
    not_replayable: dict[str, int] = {}


@flow(name="webhook-replay")
def webhook_replay(
    since: datetime,
    until: datetime | None = None,
    provider: ReplayProvider = "all",
    failures: list[FailureKind] = EVERY_FAILURE,
    dry_run: bool = True,
    approval_timeout_seconds: ApprovalSeconds = 1800,
    deliveries_block: BlockName = WEBHOOK_DELIVERIES_BLOCK,
    providers_block: BlockName = POS_PROVIDERS_BLOCK,
    tokens_block: BlockName = POS_TOKENS_BLOCK,
    gateway_block: BlockName = GATEWAY_BLOCK,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
) -> ReplayResult:
    """Re-deliver the failed webhooks of a window to the gateway, each event at most once,
    after approval when there are more than 100.

    Args:
        since: Start of the window (Stockholm time unless it says otherwise).
        until: End of the window; empty means now.
        provider: Whose deliveries: one provider, or all.
        failures: Which failures to replay: no answer, 5xx, 429, signature rejected
            (only those signed with a key the platform knows), refused (4xx; the
            gateway is likely to refuse them again).
        dry_run: Count and list what would be replayed, and send nothing.
        approval_timeout_seconds: How long the run waits for approval before it stops
            without sending anything.
        deliveries_block: Name of the Webhook Deliveries block.
        providers_block: Name of the POS Providers block.
        tokens_block: Name of the POS Tokens block (the Zettle signing key in use).
        gateway_block: Name of the Platform Gateway block: where replays go.
        database_block: Name of the Postgres Database block of the platform's database.
        ops_database_block: Name of the Postgres Database block of the ops catalog.
        alert_channels_block: Name of the Alert Channels block.
    """
    start, end = _window(since, until, datetime.now(UTC))
    kinds = _kinds(failures)
    only = None if provider == "all" else provider
    logger = get_run_logger()
    sources = load_sources(
        deliveries_block,
        providers_block,
        tokens_block,
        gateway_block,
        database_block,
        ops_database_block,
    )
    shape = inspect_webhook_table(sources.deliveries, sources.platform_db)
    log_unchecked(shape)
    if not shape.can("replay"):
        raise OpsError(f"nothing can be replayed: {shape.why_not('replay')}")
    if not dry_run:
        sources.require_target()
    newest = read_newest_delivery_id(sources.deliveries, sources.platform_db)
    now = datetime.now(UTC)
    plan = walk(
        sources, shape, start, end, now, send=False, provider=only, kinds=kinds, max_id=newest
    )
    count = sum(plan.replayable.values())
    result = ReplayResult(
        since=start,
        until=end,
        provider=provider,
        dry_run=dry_run,
        failed_events=plan.events,
        would_replay=count,
        not_replayable=dict(plan.not_replayable),
    )
    if dry_run or count == 0:
        result.outcome = "dry run" if dry_run else "nothing to replay"
        _publish(result, plan)
        return result
    if count > APPROVE_ABOVE:
        answer = _approval(result, plan, approval_timeout_seconds)
        result.decided_by = answer.decided_by
        if not answer.approve:
            logger.info("Replay of %d events declined by %s", count, result.decided_by)
            result.outcome = "declined"
            _publish(result, plan)
            return result
    with system_lock(REPLAY_LOCK, timeout_seconds=REPLAY_LOCK_WAIT_SECONDS):
        # Exactly the counted set: nothing newer than `newest`, no more than `count`.
        done = walk(
            sources,
            shape,
            start,
            end,
            datetime.now(UTC),
            send=True,
            provider=only,
            kinds=kinds,
            max_id=newest,
            budget=count,
            manual=True,
        )
    alerts = WebhookAlerts(now, AlertTargets(ops_database_block, alert_channels_block))
    raise_tally_alerts(alerts, done, audited=False)
    result.outcome = "replayed"
    result.replayed = sum(done.delivered.values())
    result.replay_failed = sum(done.failed.values())
    result.dead_lettered = sum(done.dead.values())
    result.skipped = dict(done.skipped)
    _publish(result, done)
    return result


def _window(since: datetime, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The window as aware times (naive ones are Stockholm time).

    Raises:
        ConfigError: it is empty, reversed, or starts in the future.
    """
    start = _stockholm(since)
    end = now if until is None else _stockholm(until)
    if start >= now:
        raise ConfigError(f"since ({_local(start)}) is in the future: nothing failed yet")
    if start >= end:
        raise ConfigError(f"since ({_local(start)}) must be before until ({_local(end)})")
    return start, min(end, now)


def _local(when: datetime) -> str:
    return f"{when.astimezone(STOCKHOLM):%Y-%m-%d %H:%M:%S} Stockholm time"


def _stockholm(when: datetime) -> datetime:
    return when.replace(tzinfo=STOCKHOLM) if when.tzinfo is None else when


def _kinds(failures: list[FailureKind]) -> set[Failure]:
    """The failure kinds chosen.

    Raises:
        ConfigError: none was chosen.
    """
    if not failures:
        raise ConfigError("failures is empty: choose at least one kind of failure to replay")
    return {Failure(kind) for kind in failures}


def _approval(result: ReplayResult, plan: Tally, timeout: int) -> ReplayApproval:
    """Wait for an operator to approve sending `result.would_replay` events."""
    per = ", ".join(f"{p} {n}" for p, n in sorted(plan.replayable.items()))
    text = (
        f"Replay {result.would_replay} failed webhook events ({per}) received between "
        f"{result.since.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} and "
        f"{result.until.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} Stockholm time to the "
        "gateway? Each is sent at most once; events delivered meanwhile are skipped."
    )
    return wait_for_approval(
        ReplayApproval, text, timeout, f"none of the {result.would_replay} events was sent"
    )


def _publish(result: ReplayResult, tally: Tally) -> None:
    hours = max(1, round((result.until - result.since).total_seconds() / 3600))
    note = {
        "dry run": "dry run: nothing was sent",
        "nothing to replay": "nothing to replay",
        "declined": f"declined by {result.decided_by}: nothing was sent",
        "replayed": None,
    }[result.outcome]
    lines = [
        f"# Webhook replay: {result.provider}, "
        f"{result.since.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} to "
        f"{result.until.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} Stockholm time",
        "",
        *tally_markdown(tally, hours, result.dry_run or result.outcome != "replayed", note),
    ]
    create_markdown_artifact(
        key="webhook-replay",
        markdown="\n".join(lines) + "\n",
        description=f"{result.outcome}: {result.would_replay} events counted, "
        f"{result.replayed} replayed",
    )
