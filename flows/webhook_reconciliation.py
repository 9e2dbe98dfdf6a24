"""Runbook, "Review recent webhook deliveries", every 15 minutes: the delivery health by
provider against the 98 % SLO and the 10 % failure alert; the audit of deliveries the
gateway rejected for their signature ("Invalid Webhook Signatures", "Shopify HMAC");
the replay of genuine failed deliveries, once per event; and the events whose
provider has stopped retrying, which only a replay recovers.

A Zettle event past its 72 hours means Zettle has deleted the subscription: the run
starts the POS health sweep, the one place that re-creates it. A run started by hand
is a dry run unless told: it lists what it would replay, and why, and sends nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import AwareDatetime, BaseModel

from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    GATEWAY_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
    POS_TOKENS_BLOCK,
    WEBHOOK_DELIVERIES_BLOCK,
)
from blocks.pos import PROVIDERS
from blocks.pos.deliveries import Shape
from flows.alert_steps import AlertTargets
from flows.locks import lock_if_free
from flows.metric_steps import push_figures, webhook_figures
from flows.parameters import BlockName, LookbackHours
from flows.webhook_health import (
    ProviderHealth,
    delivery_frame,
    health_table,
    provider_health,
)
from flows.webhook_steps import (
    REPLAY_LOCK,
    Sources,
    Tally,
    WebhookAlerts,
    deleted_subscriptions,
    load_sources,
    log_unchecked,
    raise_tally_alerts,
    tally_markdown,
    walk,
)
from policy.webhooks import RETRY_WINDOWS
from tasks.prefect_api import start_deployment_run
from tasks.webhooks import aggregate_webhook_deliveries, inspect_webhook_table

POS_SWEEP_DEPLOYMENT = "pos-health-sweep/every-5-minutes"
LOOKBACK_HOURS = 96
"""Longer than the longest provider window (Zettle, about 72 h), so an event is still
seen, and replayed, after its provider stopped retrying."""


class ReconciliationResult(BaseModel):
    """What `feedback-ops run webhook-reconciliation --json` prints as `result`."""

    checked_at: datetime
    dry_run: bool
    health: dict[str, ProviderHealth] = {}
    unchecked: dict[str, str] = {}
    """Checks the table's columns did not allow, with the reason."""
    missing_indexes: list[str] = []
    """The statements that make the recommended indexes the table lacks."""
    failed_events: int = 0
    replayable: dict[str, int] = {}
    not_replayable: dict[str, int] = {}
    signatures: dict[str, dict[str, int]] = {}
    retries_over: dict[str, int] = {}
    replayed: dict[str, int] = {}
    replay_failed: dict[str, int] = {}
    dead_lettered: dict[str, int] = {}
    skipped: dict[str, int] = {}
    replay_note: str | None = None
    handed_on: dict[str, str] = {}
    """Per provider whose subscription was deleted: the POS sweep run started, or why not."""
    alerts: list[str] = []


@flow(name="webhook-reconciliation")
def webhook_reconciliation(
    as_of: AwareDatetime | None = None,
    dry_run: bool = True,
    lookback_hours: LookbackHours = LOOKBACK_HOURS,
    deliveries_block: BlockName = WEBHOOK_DELIVERIES_BLOCK,
    providers_block: BlockName = POS_PROVIDERS_BLOCK,
    tokens_block: BlockName = POS_TOKENS_BLOCK,
    gateway_block: BlockName = GATEWAY_BLOCK,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    pos_sweep_deployment: str = POS_SWEEP_DEPLOYMENT,
    metrics_block: BlockName = METRICS_BLOCK,
) -> ReconciliationResult:
    """Check the webhook deliveries' health, audit rejected signatures, replay genuine
    failed deliveries once per event, and report those whose provider stopped retrying
    (runbook: "Review recent webhook deliveries", WEBHOOK_DELIVERY_FAILURES).

    Args:
        as_of: The run's time, for a drill at another moment; empty means now.
        dry_run: List what would be replayed, and why, and send nothing. The schedule
            turns it off; a run started by hand keeps it unless told.
        lookback_hours: Hours of failed deliveries to reconcile (the default outlasts
            every provider's retries).
        deliveries_block: Name of the Webhook Deliveries block: the table's columns,
            the signing keys, how replays are sent.
        providers_block: Name of the POS Providers block (the webhook URL, Shopify's
            shop domain and API version for replayed headers).
        tokens_block: Name of the POS Tokens block, where the POS health sweep keeps the
            signing key of a Zettle subscription it re-created.
        gateway_block: Name of the Platform Gateway block: its URL + `/webhooks` is
            where replays go unless the POS Providers block sets a webhook URL.
        database_block: Name of the Postgres Database block of the platform's database
            (`webhook_delivery_attempts`).
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (replay claims and attempts, dead letters, alerts).
        alert_channels_block: Name of the Alert Channels block alerts go to.
        pos_sweep_deployment: The POS health sweep's deployment (`flow/deployment`),
            started when Zettle has deleted a subscription.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    at = as_of or datetime.now(UTC)
    sources = load_sources(
        deliveries_block,
        providers_block,
        tokens_block,
        gateway_block,
        database_block,
        ops_database_block,
    )
    if not dry_run:
        sources.require_target()  # without it nothing could be replayed: say so first
    shape = inspect_webhook_table(sources.deliveries, sources.platform_db)
    log_unchecked(shape)
    alerts = WebhookAlerts(at, AlertTargets(ops_database_block, alert_channels_block))
    result = ReconciliationResult(
        checked_at=at,
        dry_run=dry_run,
        unchecked=shape.unchecked(),
        missing_indexes=[i.statement for i in shape.indexes if not i.present],
    )
    if shape.can("delivery health"):
        result.health = _health(sources, at, alerts)
    tally = Tally()
    if shape.can("failed deliveries"):
        tally = _reconcile(sources, shape, at, lookback_hours, dry_run, result)
        raise_tally_alerts(alerts, tally, audited=shape.can("signature audit"))
        for provider in deleted_subscriptions(tally):
            result.handed_on[provider] = _hand_on(pos_sweep_deployment, provider)
    _fill(result, tally)
    result.alerts = alerts.raised
    _publish(result, shape, tally, lookback_hours)
    success = {
        p: {"1h": h.hour_success_rate, "24h": h.day_success_rate} for p, h in result.health.items()
    }
    push_figures(metrics_block, webhook_figures(success))
    return result


def _health(sources: Sources, at: datetime, alerts: WebhookAlerts) -> dict[str, ProviderHealth]:
    """The counts by provider and status, the failure alert raised or resolved, and the
    pandas table of them as the run's artifact."""
    deliveries = sources.deliveries
    counts = aggregate_webhook_deliveries(deliveries, sources.platform_db, at)
    health = provider_health(
        delivery_frame(counts),
        list(PROVIDERS),
        deliveries.delivered_status,
        deliveries.failed_status,
    )
    for provider, one in health.items():
        rate = one.hour_failure_rate
        if one.alerting and rate is not None:
            alerts.failures(provider, rate, one.hour_failed, one.hour_delivered + one.hour_failed)
        elif provider in RETRY_WINDOWS:
            alerts.failures_fine(provider)
    create_table_artifact(
        key="webhook-delivery-health",
        table=health_table(health).to_dict("records"),
        description=f"Webhook deliveries by provider before {at.isoformat()}",
    )
    return health


def _reconcile(
    sources: Sources,
    shape: Shape,
    at: datetime,
    lookback_hours: int,
    dry_run: bool,
    result: ReconciliationResult,
) -> Tally:
    """Walk the failed deliveries: judged always, replayed unless a dry run, and only by
    the one run that holds the replay lock (another run's replays are left to it)."""
    since = at - timedelta(hours=lookback_hours)
    send = not dry_run and shape.can("replay")
    if not send:
        if dry_run:
            result.replay_note = "dry run: nothing was sent"
        return walk(sources, shape, since, at, at, send=False)
    with lock_if_free(REPLAY_LOCK) as held:
        if not held:
            result.replay_note = "another run is replaying webhooks: nothing sent this time"
            get_run_logger().warning(result.replay_note)
            return walk(sources, shape, since, at, at, send=False)
        return walk(sources, shape, since, at, at, send=True)


def _hand_on(deployment: str, provider: str) -> str:
    """Start the POS health sweep, which re-creates a subscription the provider deleted."""
    run_id = start_deployment_run(deployment, f"handed-on:{provider}-subscription-deleted")
    if run_id is None:
        note = f"not handed on: no deployment {deployment} is registered"
        get_run_logger().warning("%s subscription deleted; %s", provider, note)
        return note
    return f"started {deployment} run {run_id}"


def _fill(result: ReconciliationResult, tally: Tally) -> None:
    """The tally's counts into the result."""
    result.failed_events = tally.events
    result.replayable = dict(tally.replayable)
    result.not_replayable = dict(tally.not_replayable)
    signatures: dict[str, dict[str, int]] = {}
    for (provider, verdict), count in tally.signatures.items():
        signatures.setdefault(provider, {})[verdict] = count
    result.signatures = signatures
    result.retries_over = dict(tally.window_ended)
    result.replayed = dict(tally.delivered)
    result.replay_failed = dict(tally.failed)
    result.dead_lettered = dict(tally.dead)
    result.skipped = dict(tally.skipped)


def _publish(result: ReconciliationResult, shape: Shape, tally: Tally, lookback_hours: int) -> None:
    """The run's report: what could not be checked and why, the missing indexes, the
    signature audit, the retry windows, what was (or would be) replayed."""
    lines = [f"# Webhook reconciliation at {result.checked_at.isoformat()}", ""]
    if result.dry_run:
        lines += ["**Dry run**: the replayable events are listed; nothing was sent.", ""]
    if shape.created:
        lines += ["## Indexes created", "", *[f"- `{s}`" for s in shape.created], ""]
    if result.unchecked:
        lines += ["## Not checked", ""]
        lines += [f"- **{check}**: {why}" for check, why in result.unchecked.items()]
        lines.append("")
    missing = [i for i in shape.indexes if not i.present]
    if missing:
        lines += [
            "## Missing indexes",
            "",
            f"`{shape.table}` lacks indexes the reconciliation's queries want; without "
            "them each run scans the table. Nothing is created unless the Webhook "
            "Deliveries block's `create_indexes` says so. Create them with:",
            "",
            *[f"- {i.purpose}: `{i.statement}`" for i in missing],
            "",
        ]
    lines += tally_markdown(tally, lookback_hours, result.dry_run, result.replay_note)
    if result.handed_on:
        lines += ["## Deleted subscriptions", ""]
        lines += [
            f"- {provider}: its retries ran out, so it deleted the subscription; {note}"
            for provider, note in result.handed_on.items()
        ]
    create_markdown_artifact(
        key="webhook-reconciliation",
        markdown="\n".join(lines) + "\n",
        description=_summary(result),
    )


def _summary(result: ReconciliationResult) -> str:
    replayable = sum(result.replayable.values())
    if result.dry_run:
        return f"{result.failed_events} failed events; {replayable} would be replayed"
    return (
        f"{result.failed_events} failed events; {sum(result.replayed.values())} replayed, "
        f"{sum(result.dead_lettered.values())} dead-lettered"
    )
