"""Runbook, "POS Provider Connection Issues", step 4: "Trigger manual failover if needed".

An operator starts `pos-failover` from the UI with the provider, the reason and the
direction. The run shows the provider's current health (the gateway's view, each
endpoint's damped state and newest check) and waits for approval in the UI; only an
approved run calls `POST {GATEWAY_URL}/admin/pos/failover`. The move is recorded in
`ops.pos_failovers`, which the sweep reads, and raised as an alert like the sweep's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks import PlatformGateway, PostgresDatabase, load_block
from blocks.catalog.pos_health import PosHistory
from blocks.names import ALERT_CHANNELS_BLOCK, GATEWAY_BLOCK, OPS_DATABASE_BLOCK
from flows.alert_steps import AlertTargets
from flows.approvals import Approval, wait_for_approval
from flows.locks import system_lock
from flows.parameters import ApprovalSeconds, BlockName, Direction, Provider, Reason
from flows.pos_alerts import PosAlerts
from flows.pos_health_sweep import SWEEP_LOCK
from policy.periods import Period, clock_period
from policy.pos_health import Move
from tasks.catalog import read_pos_history, record_pos_move
from tasks.pos import Finding, move_pos_traffic, read_gateway_pos_health

MOVE_LOCK_WAIT_SECONDS = 300
"""A sweep takes well under a minute; the move waits for one that is running."""


class FailoverApproval(Approval):
    """The approval form the paused run shows in the UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Tick to let the gateway move the traffic."
    )


class FailoverResult(BaseModel):
    """What `feedback-ops run pos-failover --json` prints as `result`."""

    provider: str
    direction: str
    outcome: Literal["moved", "declined"]
    decided_by: str
    gateway_answer: dict[str, Any] = {}


@flow(name="pos-failover")
def pos_failover(
    provider: Provider,
    reason: Reason,
    direction: Direction = "failover",
    approval_timeout_seconds: ApprovalSeconds = 1800,
    gateway_block: BlockName = GATEWAY_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
) -> FailoverResult:
    """Move a POS provider's traffic to its secondary endpoint or back, after approval
    (runbook: "Trigger manual failover if needed").

    Args:
        provider: The POS provider whose traffic moves: square, shopify or zettle.
        reason: Why, in one line, e.g. primary_endpoint_down; sent to the gateway and
            kept with the move.
        direction: `failover` moves the traffic to the secondary endpoint, `failback`
            back to the primary.
        approval_timeout_seconds: How long the run waits for approval in the UI before
            it stops without changing anything.
        gateway_block: Name of the Platform Gateway block: the gateway's URL and the
            admin token the failover takes.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (the endpoints' states, the record of moves, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts the move is reported to.
    """
    logger = get_run_logger()
    gateway = load_block(PlatformGateway, gateway_block)
    ops_db = load_block(PostgresDatabase, ops_database_block)
    now = datetime.now(UTC)
    view = read_gateway_pos_health(gateway, provider)
    history = read_pos_history(ops_db, now)
    move = Move(direction)
    plan = _plan(provider, move, reason, view, history, now)
    answer = wait_for_approval(
        FailoverApproval,
        plan,
        approval_timeout_seconds,
        f"the gateway was not asked to {direction} {provider}",
    )
    decided_by = answer.decided_by
    if not answer.approve:
        logger.info("%s of %s declined by %s; nothing changed", direction, provider, decided_by)
        return FailoverResult(
            provider=provider, direction=direction, outcome="declined", decided_by=decided_by
        )
    # The gateway tells the two apart by the reason (see GatewayClient.pos_failover).
    said = (
        reason if move is Move.FAILOVER or reason.startswith("failback") else f"failback: {reason}"
    )
    seen: dict[str, Any] = view.detail | {"ok": view.ok, "error": view.error}
    # Under the sweep's lock: a sweep running now would decide on what it saw before.
    with system_lock(SWEEP_LOCK, timeout_seconds=MOVE_LOCK_WAIT_SECONDS):
        gateway_answer = move_pos_traffic(gateway, provider, said)
        record_pos_move(
            ops_db,
            provider=provider,
            direction=direction,
            reason=said,
            requested_by=decided_by,
            at=datetime.now(UTC),
            flow_run_id=flow_run.get_id(),
            checks={"gateway": seen},
            gateway_answer=gateway_answer,
        )
    alerts = PosAlerts(datetime.now(UTC), AlertTargets(ops_database_block, alert_channels_block))
    alerts.moved(provider, move, f"{said} (manual, approved by {decided_by})", {"gateway": seen})
    return FailoverResult(
        provider=provider,
        direction=direction,
        outcome="moved",
        decided_by=decided_by,
        gateway_answer=gateway_answer,
    )


def _plan(
    provider: str, move: Move, reason: str, view: Finding, history: PosHistory, now: datetime
) -> str:
    """The approval form's text: what will be done, and how the provider is now."""
    lines = [
        f"## {move.value.capitalize()} of **{provider}**",
        "",
        f"Approving sends `POST /admin/pos/failover` with provider `{provider}` and reason "
        f"`{reason}`; the traffic moves to the "
        f"{'secondary' if move is Move.FAILOVER else 'primary'} endpoint.",
        "",
        "| check | now |",
        "|---|---|",
        f"| gateway | {'healthy' if view.ok else view.error} "
        f"(endpoint in use: {view.detail.get('endpoint') or 'not said'}) |",
    ]
    for endpoint in ("primary", "secondary"):
        state = history.states.get((provider, endpoint))
        last = history.last.get((provider, endpoint))
        seen = "never checked"
        if last is not None:
            seen = "ok" if last["ok"] else str(last["error"])
            seen += f" at {last['checked_at']:%Y-%m-%d %H:%M} UTC"
        declared = state.state.value if state is not None else "unknown"
        lines.append(f"| {endpoint} | declared {declared}; last check {seen} |")
    if history.failed_over(provider):
        lines.append("| traffic | on the secondary since the last failover |")
    uptime = history.uptime.get(provider, {})
    day = uptime.get("1d")
    if day is not None:
        lines.append(f"| uptime, last day | {day * 100:.2f} % (SLO 99 %) |")
    if move is Move.FAILBACK and clock_period(now) is Period.PEAK:
        lines += ["", "**Peak hours (11-15)**: the sweep never fails back now; you may."]
    return "\n".join(lines)
