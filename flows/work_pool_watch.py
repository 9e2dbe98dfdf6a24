"""Runbook, "Failover Procedures", for the work pools: the primary pool has no worker.

Prefect emits `prefect.work-pool.not-ready` when the last worker of a pool stops
polling, and `prefect.work-pool.ready` when one is back. `feedback-ops deploy` creates
an automation that turns either event of the primary pool into a run of this flow, on
the standby pool (the primary has nobody to run it). The flow alerts, critical in
Swedish business hours, naming the command that moves the scheduled work, or moves it
itself when the `work-pool-failover` block allows; it resolves the alert when the pool
is ready again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from prefect import flow, get_run_logger
from pydantic import AwareDatetime, BaseModel

from blocks import WorkPoolFailover, load_block
from blocks.names import ALERT_CHANNELS_BLOCK, OPS_DATABASE_BLOCK, WORK_POOL_FAILOVER_BLOCK
from feedback_ops.errors import OpsError
from flows.alert_steps import AlertTargets, clear_alert, raise_alert
from flows.parameters import BlockName
from policy.work_pools import pool_down_severity
from tasks.notify import Alert
from tasks.work_pools import fail_over_work_pools, read_work_pool_layout

NOT_READY: Final = "prefect.work-pool.not-ready"
READY: Final = "prefect.work-pool.ready"
SECTION = "Failover Procedures"

PoolEvent = Literal["prefect.work-pool.not-ready", "prefect.work-pool.ready"]


class PoolWatchResult(BaseModel):
    """What one run of `work-pool-watch` found and did."""

    pool: str
    event: str
    action: str
    """alerted, failed-over, resolved, or ignored (with the reason in `note`)."""
    note: str = ""


@flow(name="work-pool-watch")
def work_pool_watch(
    pool: str,
    event: PoolEvent = NOT_READY,
    occurred: AwareDatetime | None = None,
    failover_block: BlockName = WORK_POOL_FAILOVER_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
) -> PoolWatchResult:
    """Alert when the primary work pool has no ready worker, and resolve the alert when
    it has one again; with the failover policy on, move the schedules to the standby.

    Args:
        pool: The work pool the event is about (the automation fills it in).
        event: `prefect.work-pool.not-ready` or `prefect.work-pool.ready`.
        occurred: When the event happened; empty means now. Decides the severity.
        failover_block: Name of the Work Pool Failover block (POOL_AUTO_FAILOVER).
        ops_database_block: Name of the Postgres Database block of the ops catalog.
        alert_channels_block: Name of the Alert Channels block.
    """
    logger = get_run_logger()
    at = occurred or datetime.now(UTC)
    targets = AlertTargets(ops_database_block, alert_channels_block)
    key = f"work-pool-not-ready:{pool}"
    layout = read_work_pool_layout()
    if layout is None or pool != layout.primary:
        note = "not the primary pool of `feedback-ops deploy`; nothing to do"
        logger.info("Work pool %s: %s", pool, note)
        return PoolWatchResult(pool=pool, event=event, action="ignored", note=note)
    if event == READY:
        clear_alert(key, targets)
        logger.info("Work pool %s is ready again; its alert is resolved", pool)
        note = ""
        if layout.active == "standby":
            note = "the standby is still active: `feedback-ops pool-failover --to primary`"
        return PoolWatchResult(pool=pool, event=event, action="resolved", note=note)
    if layout.active == "standby":
        note = f"the standby pool {layout.standby} is active already"
        logger.info("Work pool %s is not ready; %s", pool, note)
        return PoolWatchResult(pool=pool, event=event, action="ignored", note=note)

    standby = layout.standby or "a standby pool"
    command = "feedback-ops pool-failover --to standby"
    details: dict[str, object] = {"pool": pool, "standby_pool": layout.standby, "event": event}
    action = "alerted"
    if layout.standby is None:
        summary = (
            f"Work pool {pool} has no ready worker: scheduled runs wait until one starts "
            f"(`prefect worker start --pool {pool}`); no standby pool is registered"
        )
    elif _auto_failover(failover_block):
        try:
            report = fail_over_work_pools("standby")
        except OpsError as exc:
            summary = (
                f"Work pool {pool} has no ready worker, and moving its work to {standby} "
                f"failed: {exc}"
            )
            details["failover_error"] = str(exc)
        else:
            action = "failed-over"
            summary = (
                f"Work pool {pool} has no ready worker: scheduled work moved to {standby} "
                f"by itself (POOL_AUTO_FAILOVER), {len(report.moved_runs)} waiting run(s) "
                "with it; back with `feedback-ops pool-failover --to primary` once it is ready"
            )
            details["moved_runs"] = report.moved_runs
    else:
        summary = (
            f"Work pool {pool} has no ready worker: scheduled runs wait. Move them to "
            f"{standby} with `{command}`"
        )
        details["command"] = command
    raise_alert(
        Alert(
            name="work-pool-not-ready",
            severity=pool_down_severity(at),
            summary=summary,
            details=details,
            dedup_key=key,
            runbook_section=SECTION,
        ),
        at,
        targets,
    )
    logger.warning(summary)
    return PoolWatchResult(pool=pool, event=event, action=action)


def _auto_failover(block_name: str) -> bool:
    """Whether the policy lets the watcher swap; no saved block means it does not
    (the block is saved once POOL_AUTO_FAILOVER is set)."""
    try:
        return load_block(WorkPoolFailover, block_name).auto_failover
    except ValueError:
        return False
