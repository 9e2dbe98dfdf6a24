"""Tasks that tell people: raise an alert (routed by Swedish time, delivered with
fallback), escalate it, send it when its business day comes, acknowledge and resolve it.

Each task takes the names of two blocks: the ops catalog (`ops_database_block`), where
every alert and delivery attempt is stored (`ops.alerts`, `ops.alert_deliveries`), and
the alert channels (`alert_channels_block`: the four channels and the escalation
contacts). When the catalog itself is down an alert is still sent, and the run's log
says it could not be recorded. Flows raise alerts through `flows/alert_steps.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from blocks import PostgresDatabase, load_block
from blocks.catalog import alerts as alert_store
from blocks.catalog import opened
from blocks.channels import AlertChannels, ChannelError, Delivery, Message
from blocks.names import ALERT_CHANNELS_BLOCK, OPS_DATABASE_BLOCK
from feedback_ops.errors import ConfigError, OpsError
from policy import FALLBACK_ORDER, STOCKHOLM, Channel, Route, Severity, route
from policy.periods import business_period
from policy.routing import CHANNELS
from tasks import ALERT_RETRY_DELAYS, DELIVERY, QUICK, step

# The first responder gets at least this long before an "immediate" alert escalates.
MIN_ESCALATION_MINUTES = 5


class Alert(BaseModel):
    """Something a person must know about, raised by a flow."""

    name: str = Field(description="Short machine name, e.g. database-backup-failed.")
    severity: Severity = Field(description="critical, high, medium or low.")
    summary: str = Field(description="One line a person reads first.")
    details: dict[str, Any] = Field(default_factory=dict, description="Facts behind it.")
    dedup_key: str = Field(description="Stable key of the condition; one live alert per key.")
    source_flow_run: str | None = Field(default=None, description="The flow run that raised it.")
    runbook_section: str | None = Field(default=None, description="Link to the runbook section.")

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: object) -> Severity:
        return value if isinstance(value, Severity) else Severity.parse(str(value))

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())


@dataclass
class DeliveryOutcome:
    """One channel's result for one message."""

    channel: Channel
    ok: bool
    recipients: tuple[str, ...] = ()
    provider_id: str | None = None
    status_code: int | None = None
    error: str | None = None


@dataclass
class AlertOutcome:
    """What `raise_alert` did: sent, queued, or counted as a repeat."""

    dedup_key: str
    status: Literal["sent", "queued", "deduplicated", "undelivered"]
    alert_id: int | None
    deliveries: list[DeliveryOutcome] = field(default_factory=list)
    respond_by: datetime | None = None
    recorded: bool = True


def alert_channels(name: str) -> AlertChannels:
    """The alert channels block `name`; with none saved, a set with no channel, so every
    send fails with what to configure and the alert stays stored for the sweep."""
    try:
        return load_block(AlertChannels, name)
    except ValueError:
        return AlertChannels()


def message_for(
    alert: dict[str, Any],
    action: Literal["trigger", "acknowledge", "resolve"],
    at: datetime,
    *,
    title: str | None = None,
    mention: str | None = None,
) -> Message:
    """The channel-neutral message for a stored alert."""
    links: tuple[tuple[str, str], ...] = ()
    details = dict(alert.get("details") or {})
    section = alert.get("runbook_section")
    if section and str(section).startswith(("https://", "http://")):
        links = (("Runbook", str(section)),)
    elif section:
        details["runbook"] = str(section)
    if alert.get("respond_by") and action == "trigger":
        details["respond_by"] = alert["respond_by"].astimezone(STOCKHOLM).isoformat()
    return Message(
        title=title or str(alert["summary"]),
        body=str(alert.get("body") or alert["summary"]),
        severity=alert["severity"],
        dedup_key=str(alert["dedup_key"]),
        action=action,
        source=f"feedback-ops/{alert['name']}",
        details=details,
        links=links,
        timestamp=at,
        mention=mention,
    )


@step("send-alert", limit=DELIVERY, retry_delays=ALERT_RETRY_DELAYS)
def send_on_channel(
    channel: Channel,
    message: Message,
    channels: AlertChannels,
    recipients: Sequence[str] | None = None,
) -> Delivery:
    """Send one message on one channel; throttling and 5xx answers are retried."""
    return channels.sender(channel).send(message, recipients)


def _attempt(
    channel: Channel,
    message: Message,
    channels: AlertChannels,
    recipients: Sequence[str] | None,
) -> DeliveryOutcome:
    try:
        sent = send_on_channel(channel, message, channels, recipients)
    except (ChannelError, OpsError) as exc:
        status = exc.status if isinstance(exc, ChannelError) else None
        return DeliveryOutcome(channel, False, tuple(recipients or ()), None, status, str(exc))
    return DeliveryOutcome(
        channel, True, tuple(sent.recipients), sent.provider_id, sent.status_code
    )


def deliver(
    message: Message,
    channels: Sequence[Channel],
    configured: AlertChannels,
    *,
    recipients: dict[Channel, list[str]] | None = None,
    fallback: bool = True,
) -> list[DeliveryOutcome]:
    """Send on each channel; if none got through, try the others in fallback order.

    A channel that failed while another worked is reported on the working one, so a
    broken pager is noticed by a person and not only in a log.
    """
    recipients = recipients or {}
    outcomes = [_attempt(ch, message, configured, recipients.get(ch)) for ch in channels]
    if fallback and not any(o.ok for o in outcomes):
        for channel in FALLBACK_ORDER:
            if channel in channels:
                continue
            outcome = _attempt(channel, message, configured, None)
            outcomes.append(outcome)
            if outcome.ok:
                break
    failed = [o for o in outcomes if not o.ok]
    working = next((o for o in outcomes if o.ok), None)
    if failed and working is not None and message.action == "trigger":
        note = Message(
            title=f"Delivery problem for: {message.title}",
            body="; ".join(f"{o.channel}: {o.error}" for o in failed),
            severity=message.severity,
            dedup_key=f"{message.dedup_key}:delivery",
            source=message.source,
            timestamp=message.timestamp,
        )
        _attempt(working.channel, note, configured, recipients.get(working.channel))
    return outcomes


@contextmanager
def ops_catalog(ops_database_block: str) -> Iterator[Engine]:
    """The migrated ops catalog of the block `ops_database_block`, closed on leaving."""
    try:
        ops_db = load_block(PostgresDatabase, ops_database_block)
    except ValueError:
        raise ConfigError(f"no ops catalog block {ops_database_block!r}") from None
    with opened(ops_db) as engine:
        yield engine


def _record(
    engine: Engine | None,
    alert_id: int | None,
    action: str,
    outcomes: list[DeliveryOutcome],
    level: int = 0,
) -> None:
    if engine is None or alert_id is None:
        return
    for o in outcomes:
        alert_store.record_delivery(
            engine,
            alert_id=alert_id,
            action=action,
            channel=str(o.channel),
            recipients=list(o.recipients),
            status="sent" if o.ok else "failed",
            escalation_level=level,
            provider_id=o.provider_id,
            http_status=o.status_code,
            error=o.error,
            at=datetime.now(UTC),
        )


def _after(at: datetime, minutes: int) -> datetime:
    """`minutes` of elapsed time after `at` (in UTC: Stockholm wall-clock arithmetic
    would be an hour off across a DST change)."""
    return at.astimezone(UTC) + timedelta(minutes=minutes)


def _first_deadline(plan_minutes: int | None, at: datetime) -> datetime | None:
    if plan_minutes is None:
        return None
    return _after(at, max(plan_minutes, MIN_ESCALATION_MINUTES))


def _current_run_id() -> str | None:
    try:
        return str(flow_run.id) if flow_run.id else None
    except MissingContextError:
        return None


@step("notify", limit=QUICK + DELIVERY, retries=0)
def notify(
    alert: Alert,
    at: datetime | None = None,
    ops_database_block: str = OPS_DATABASE_BLOCK,
    alert_channels_block: str = ALERT_CHANNELS_BLOCK,
) -> AlertOutcome:
    """Store, route and send an alert; a repeat of a live alert is only counted."""
    logger = get_run_logger()
    at = (at or datetime.now(UTC)).astimezone(STOCKHOLM)
    decision = route(alert.severity, at)
    plan = decision.plan
    values = {
        "dedup_key": alert.dedup_key,
        "name": alert.name,
        "severity": str(alert.severity),
        "summary": alert.summary,
        "details": alert.details,
        "runbook_section": alert.runbook_section,
        "source_flow_run": alert.source_flow_run or _current_run_id(),
        "status": "queued" if decision.queued else "open",
        "raised_at": at,
        "last_seen_at": at,
        "occurrences": 1,
        "period": str(plan.period),
        "holiday": plan.holiday.name_sv if plan.holiday else None,
        "respond_within_minutes": plan.respond_within_minutes,
        "respond_by": plan.respond_by,
        "escalation": list(plan.escalation),
        "escalation_level": 0,
        "next_escalation_at": _first_deadline(plan.respond_within_minutes, at),
        "delivered": False,
    }
    with ExitStack() as stack:
        engine: Engine | None = None
        try:
            engine = stack.enter_context(ops_catalog(ops_database_block))
            row, new = alert_store.open_or_count(engine, values)
        except (OpsError, SQLAlchemyError) as exc:
            logger.error("Alert %s is sent without being recorded: %s", alert.dedup_key, exc)
            row, new, engine = values | {"id": None}, True, None
        return _send_new(
            alert, decision, row, new, engine, at, alert_channels(alert_channels_block)
        )


def _send_new(
    alert: Alert,
    decision: Route,
    row: dict[str, Any],
    new: bool,
    engine: Engine | None,
    at: datetime,
    channels: AlertChannels,
) -> AlertOutcome:
    """The part of `notify` after the alert is recorded (or could not be)."""
    logger = get_run_logger()
    plan = decision.plan
    outcome = AlertOutcome(alert.dedup_key, "sent", row["id"], respond_by=plan.respond_by)
    outcome.recorded = engine is not None
    if not new:
        logger.info("Alert %s is already live: counted, not sent again", alert.dedup_key)
        outcome.status = "deduplicated"
        return outcome
    if decision.queued:
        logger.info("Alert %s queued: %s", alert.dedup_key, plan.reason)
        outcome.status = "queued"
        _publish(alert, plan.reason, outcome)
        return outcome
    outcome.deliveries = deliver(message_for(row, "trigger", at), decision.channels, channels)
    _record(engine, row["id"], "trigger", outcome.deliveries)
    delivered = any(o.ok for o in outcome.deliveries)
    if engine is not None and row["id"] is not None:
        alert_store.update_alert(engine, row["id"], delivered=delivered)
    _publish(alert, plan.reason, outcome)
    if not delivered:
        outcome.status = "undelivered"
        reasons = "; ".join(f"{o.channel}: {o.error}" for o in outcome.deliveries)
        raise OpsError(
            f"alert {alert.dedup_key} reached no one ({reasons}); it is kept and the "
            "escalation sweep sends it again"
        )
    return outcome


def _publish(alert: Alert, reason: str, outcome: AlertOutcome) -> None:
    rows = "\n".join(
        f"| {o.channel} | {'sent' if o.ok else 'failed'} | {', '.join(o.recipients) or '-'} | "
        f"{o.error or ''} |"
        for o in outcome.deliveries
    )
    create_markdown_artifact(
        key="alert",
        description=f"Alert {alert.dedup_key}: {outcome.status}",
        markdown=f"""# Alert `{alert.name}` ({alert.severity}) — {outcome.status}

{alert.summary}

**Policy:** {reason}

**Dedup key:** `{alert.dedup_key}`{"" if outcome.recorded else " — NOT recorded: ops catalog down"}

| channel | result | recipients | error |
|---|---|---|---|
{rows or "| - | queued | - | |"}
""",
    )


def channels_now(severity: str, at: datetime) -> tuple[Channel, ...]:
    """The channels for a severity at a moment, ignoring queueing (for queued alerts)."""
    return CHANNELS[Severity.parse(severity), business_period(at)]


def _role_recipients(
    role: str, severity: str, configured: AlertChannels
) -> tuple[list[Channel], dict[Channel, list[str]], str | None]:
    """Channels and recipients that reach one escalation role personally."""
    contact = configured.contacts.for_role(role)
    channels: list[Channel] = []
    recipients: dict[Channel, list[str]] = {}
    if contact is not None and contact.phone and severity in ("critical", "high"):
        channels.append(Channel.SMS)
        recipients[Channel.SMS] = [contact.phone]
    if contact is not None and contact.email:
        channels.append(Channel.EMAIL)
        recipients[Channel.EMAIL] = [contact.email]
    channels.append(Channel.SLACK)
    return channels, recipients, contact.slack if contact is not None else None


@step("escalate-alert", limit=QUICK + DELIVERY, retries=0)
def escalate(
    alert_row: dict[str, Any],
    now: datetime,
    ops_database_block: str = OPS_DATABASE_BLOCK,
    alert_channels_block: str = ALERT_CHANNELS_BLOCK,
) -> list[DeliveryOutcome]:
    """Tell the next role of the escalation chain, and set the next deadline.

    Past the end of the chain the last role is told again at every deadline: an
    unacknowledged alert never goes quiet.
    """
    chain = list(alert_row["escalation"]) or ["DevOps"]
    level = min(alert_row["escalation_level"] + 1, len(chain) - 1)
    role = chain[level]
    configured = alert_channels(alert_channels_block)
    channels, recipients, mention = _role_recipients(role, alert_row["severity"], configured)
    title = f"ESCALATED to {role}: {alert_row['summary']} (not acknowledged)"
    message = message_for(alert_row, "trigger", now, title=title, mention=mention)
    outcomes = deliver(message, channels, configured, recipients=recipients)
    minutes = alert_row["respond_within_minutes"] or MIN_ESCALATION_MINUTES
    with ops_catalog(ops_database_block) as engine:
        _record(engine, alert_row["id"], "escalate", outcomes, level)
        alert_store.update_alert(
            engine,
            alert_row["id"],
            escalation_level=level,
            next_escalation_at=_after(now, max(minutes, MIN_ESCALATION_MINUTES)),
        )
    return outcomes


@step("send-due-alert", limit=QUICK + DELIVERY, retries=0)
def send_due(
    alert_row: dict[str, Any],
    now: datetime,
    ops_database_block: str = OPS_DATABASE_BLOCK,
    alert_channels_block: str = ALERT_CHANNELS_BLOCK,
) -> list[DeliveryOutcome]:
    """Send a queued alert whose business day has come, or one that reached no one."""
    channels = channels_now(alert_row["severity"], now)
    configured = alert_channels(alert_channels_block)
    outcomes = deliver(message_for(alert_row, "trigger", now), channels, configured)
    minutes = alert_row["respond_within_minutes"]
    if alert_row["status"] == "queued":
        plan_minutes = route(alert_row["severity"], now).plan.respond_within_minutes
        minutes = plan_minutes if plan_minutes is not None else minutes
    with ops_catalog(ops_database_block) as engine:
        _record(engine, alert_row["id"], "trigger", outcomes)
        alert_store.update_alert(
            engine,
            alert_row["id"],
            status="open",
            delivered=any(o.ok for o in outcomes),
            next_escalation_at=_first_deadline(minutes, now) or _after(now, 60),
        )
    return outcomes


@step("close-alert", limit=QUICK + DELIVERY, retries=0)
def close_alert(
    dedup_key: str,
    action: Literal["acknowledge", "resolve"],
    by: str,
    now: datetime | None = None,
    ops_database_block: str = OPS_DATABASE_BLOCK,
    alert_channels_block: str = ALERT_CHANNELS_BLOCK,
) -> list[DeliveryOutcome]:
    """Acknowledge (stops escalation) or resolve a live alert, and say so on PagerDuty
    and Slack, the channels that support it.

    Raises:
        OpsError: no live alert has this dedup key.
    """
    now = now or datetime.now(UTC)
    with ops_catalog(ops_database_block) as engine:
        row = alert_store.find_live(engine, dedup_key)
        if row is None:
            raise OpsError(f"no open alert has dedup key {dedup_key!r}")
        if action == "acknowledge" and row["status"] == "acknowledged":
            return []
        stamp = {"acknowledged_at": now, "acknowledged_by": by}
        if action == "resolve":
            stamp = {"resolved_at": now, "resolved_by": by}
        row = alert_store.update_alert(
            engine,
            row["id"],
            status="acknowledged" if action == "acknowledge" else "resolved",
            next_escalation_at=None,
            **stamp,
        )
        message = message_for(row, action, now, title=f"{row['summary']} (by {by})")
        configured = alert_channels(alert_channels_block)
        told = [ch for ch in (Channel.PAGERDUTY, Channel.SLACK) if configured.configured(ch)]
        outcomes = deliver(message, told, configured, fallback=False)
        _record(engine, row["id"], action, outcomes)
    return outcomes


@step("resolve-alert", limit=QUICK + DELIVERY, retries=0)
def resolve_alert(
    dedup_key: str,
    by: str = "feedback-ops",
    ops_database_block: str = OPS_DATABASE_BLOCK,
    alert_channels_block: str = ALERT_CHANNELS_BLOCK,
) -> list[DeliveryOutcome]:
    """Resolve a live alert because its condition cleared; nothing to do when none is
    live, or when the catalog cannot be read (then there is nothing to resolve either)."""
    try:
        with ops_catalog(ops_database_block) as engine:
            live = alert_store.find_live(engine, dedup_key)
    except (OpsError, SQLAlchemyError):
        return []
    if live is None:
        return []
    return close_alert(
        dedup_key,
        "resolve",
        by,
        ops_database_block=ops_database_block,
        alert_channels_block=alert_channels_block,
    )


@step("find-live-alerts", limit=QUICK)
def find_live_alerts(ops_database_block: str, prefix: str) -> set[str]:
    """The dedup keys under `prefix` with a live alert: the only ones a flow that
    clears conditions needs to resolve. None readable: an empty set."""
    try:
        with ops_catalog(ops_database_block) as engine:
            return alert_store.live_keys(engine, prefix)
    except (OpsError, SQLAlchemyError):
        return set()


@step("count-live-alerts", limit=QUICK)
def count_live_alerts(ops_database_block: str) -> dict[str, int]:
    """How many alerts are not resolved yet (open, queued or acknowledged), by severity;
    a severity without any is left out."""
    with ops_catalog(ops_database_block) as engine:
        return alert_store.live_by_severity(engine)


@step("find-due-alerts", limit=QUICK)
def find_due(ops_database_block: str, now: datetime) -> list[dict[str, Any]]:
    """Alerts whose next step is due: escalation of an open, unacknowledged alert,
    sending a queued one, or sending again one that reached no one."""
    with ops_catalog(ops_database_block) as engine:
        return alert_store.due(engine, now)
