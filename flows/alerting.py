"""Runbook, "Escalation Procedures": escalation of unacknowledged alerts, and
acknowledging or resolving an alert from the Prefect UI.

`alert-escalation` runs every minute: it escalates open alerts nobody acknowledged
within their response time, sends queued alerts when their business day starts, and
sends again any alert that reached no one. `alert-acknowledge` is the UI's button:
run it with the alert's dedup key to stop its escalation, or to resolve it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import AwareDatetime, BaseModel

from blocks.names import ALERT_CHANNELS_BLOCK, METRICS_BLOCK, OPS_DATABASE_BLOCK
from flows.metric_steps import push_open_alerts
from flows.parameters import BlockName, Operator
from tasks.notify import close_alert, escalate, find_due, send_due


class EscalationSweep(BaseModel):
    """What one sweep did."""

    escalated: list[str]
    sent: list[str]


@flow(name="alert-escalation")
def alert_escalation(
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    as_of: AwareDatetime | None = None,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> EscalationSweep:
    """Escalate unacknowledged alerts past their response time; send queued alerts
    whose next business day has begun; retry alerts that reached no one. Then push the
    alerts not resolved yet, by severity, to the Pushgateway.

    `as_of` evaluates the deadlines at another moment than now (a drill, or a
    catch-up after an outage); leave it empty in the schedule.

    Args:
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        as_of: Evaluate as if it were this moment (an ISO time with its offset); empty
            means now, as the schedule runs it.
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    logger = get_run_logger()
    now = as_of or datetime.now(UTC)
    due = find_due(ops_database_block, now)
    escalated, sent, lines = [], [], []
    for row in due:
        if row["status"] == "queued" or not row["delivered"]:
            outcomes = send_due(row, now, ops_database_block, alert_channels_block)
            sent.append(row["dedup_key"])
            what = "sent (queued or undelivered)"
        else:
            outcomes = escalate(row, now, ops_database_block, alert_channels_block)
            escalated.append(row["dedup_key"])
            what = "escalated"
        told = ", ".join(f"{o.channel} {'ok' if o.ok else 'FAILED'}" for o in outcomes)
        lines.append(f"| `{row['dedup_key']}` | {row['severity']} | {what} | {told or '-'} |")
    logger.info("Escalated %d alert(s), sent %d", len(escalated), len(sent))
    if lines:
        create_markdown_artifact(
            key="alert-escalation",
            description=f"{len(escalated)} escalated, {len(sent)} sent",
            markdown="| alert | severity | action | channels |\n|---|---|---|---|\n"
            + "\n".join(lines),
        )
    push_open_alerts(metrics_block, ops_database_block)
    return EscalationSweep(escalated=escalated, sent=sent)


class AlertAction(StrEnum):
    """What an operator does to an alert."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class AcknowledgeResult(BaseModel):
    """What `feedback-ops run alert-acknowledge --json` prints as `result`."""

    dedup_key: str
    action: AlertAction
    told: list[str]


@flow(name="alert-acknowledge")
def alert_acknowledge(
    dedup_key: Operator,
    action: AlertAction = AlertAction.ACKNOWLEDGE,
    by: Operator = "operator",
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
) -> AcknowledgeResult:
    """Acknowledge an alert (stops its escalation) or resolve it, from the Prefect UI.

    The dedup key is shown in every alert message and in the `alert` artifact of the
    run that raised it. Resolving also resolves the PagerDuty incident and posts a
    follow-up on Slack.

    Args:
        dedup_key: The alert's dedup key, shown in every alert message and in the
            `alert` artifact of the run that raised it.
        action: `acknowledge` stops the escalation; `resolve` also resolves the
            PagerDuty incident and posts a follow-up on Slack.
        by: Who acknowledges or resolves, as the alert's history and the follow-up name
            them.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
    """
    outcomes = close_alert(
        dedup_key,
        action.value,
        by,
        ops_database_block=ops_database_block,
        alert_channels_block=alert_channels_block,
    )
    told = ", ".join(f"{o.channel} {'ok' if o.ok else 'FAILED: ' + str(o.error)}" for o in outcomes)
    create_markdown_artifact(
        key="alert-acknowledge",
        description=f"{action.value} {dedup_key} by {by}",
        markdown=f"Alert `{dedup_key}`: **{action.value}d** by {by}. Told: {told or 'no one'}.",
    )
    return AcknowledgeResult(
        dedup_key=dedup_key, action=action, told=[str(o.channel) for o in outcomes if o.ok]
    )
