"""Runbook, "Disaster Recovery", Scenario 3: regional infrastructure failure (RTO 60 min,
RPO 15 min), with "Failover Procedures": manual failover and monitoring its progress.

Response plan: activate the backup region (eu-central-1), update DNS to it, sync the
latest backups, verify service restoration. An operator starts
`dr-regional-failover/manual` from the UI; the run checks the target region is the
configured one, reads what DNS serves now and which backups the backup region's
bucket must hold, and shows the plan, the exact Route 53 change among it. Once
approved, before anything touches DNS, it carries out exactly that plan:

1. `POST /admin/disaster-recovery/failover` with `{"type": "regional", "target_region":
   ..., "reason": ...}` (not again when the gateway already reports the region active);
2. the newest backup of each kind present and read back in the backup region's bucket,
   copied there when missing or damaged;
3. scheduled work moved to the standby work pool (`pool-failover --to standby`), when
   `feedback-ops deploy` registered one;
4. Route 53 `ChangeResourceRecordSets`: the platform's record to the backup region;
5. `GET /admin/disaster-recovery/status` polled until healthy: service is validated.

A drill calls the drill gateway (or skips and lists those calls), really copies the
backups (the bucket is the backup region's own), and skips and lists the pool move and
the DNS change, which would move production.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from prefect import flow
from pydantic import AwareDatetime, Field

from blocks import BackupStorage, load_block
from blocks.disaster_recovery import BACKUP_REGION
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    DR_BLOCK,
    GATEWAY_BLOCK,
    OPS_DATABASE_BLOCK,
)
from flows.dr_steps import (
    DR_HOOKS,
    DrBlocks,
    DrOutcome,
    DrPlan,
    DrRecord,
    PlannedStep,
    gateway_call,
    incident_start,
    run_plan,
)
from flows.parameters import ApprovalSeconds, BlockName, Reason
from policy.disaster_recovery import Mode, Scenario, duration, mode_of
from tasks.dns import dns_change, point_dns, read_dns_record
from tasks.gateway import hand_over, read_dr_status, wait_for_dr_status
from tasks.storage import RegionCopy, ensure_backups_in_region, plan_backups_in_region
from tasks.work_pools import PoolLayout, fail_over_work_pools, read_work_pool_layout

Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", max_length=30)]
"""An AWS region name, e.g. eu-central-1."""
PollSeconds = Annotated[float, Field(ge=0.1, le=300)]
"""How often a status is asked for."""


@flow(name="dr-regional-failover", **DR_HOOKS)
def dr_regional_failover(
    reason: Reason = "primary_region_failure",
    target_region: Region = BACKUP_REGION,
    incident_started_at: AwareDatetime | None = None,
    dry_run: bool = True,
    drill: bool = False,
    approval_timeout_seconds: ApprovalSeconds = 1800,
    status_poll_seconds: PollSeconds = 10.0,
    triggered_by: str = "",
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    gateway_block: BlockName = GATEWAY_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    dr_block: BlockName = DR_BLOCK,
) -> DrOutcome:
    """Fail the platform over to the backup region (runbook: Scenario 3) after an
    approval in the UI, measuring the RTO and RPO achieved.

    Args:
        reason: Why, in one line: sent to the gateway with the failover.
        target_region: The region to activate; it must be the configured backup region
            (DR_BACKUP_REGION).
        incident_started_at: When the incident began, with its offset; empty: when this
            run starts. The RTO is measured from it, the RPO back from it.
        dry_run: Show the plan and every call it would make, changing nothing.
        drill: Every step that moves no production traffic for real: the drill gateway
            (DR_DRILL_GATEWAY_URL) or its calls skipped, the backups really copied, the
            pool move and the DNS change skipped and listed.
        approval_timeout_seconds: How long the run waits for approval before it stops,
            having changed nothing.
        status_poll_seconds: How often the gateway's DR status is asked for, until it is
            healthy or DR_STATUS_TIMEOUT_SECONDS pass.
        triggered_by: What started the run when not a person (the watchdog's trigger).
        storage_block: Name of the Backup Storage block: the backups and the credentials
            the backup region's bucket is reached with.
        gateway_block: Name of the Platform Gateway block: the failover and its status.
        ops_database_block: Name of the Postgres Database block of the ops catalog: the
            DR record and alerts.
        alert_channels_block: Name of the Alert Channels block a missed objective is
            reported to.
        dr_block: Name of the Disaster Recovery block: the backup region, its bucket, the
            DNS record, the drill gateway.
    """
    now = datetime.now(UTC)
    incident = incident_start(incident_started_at, now)
    mode = mode_of(dry_run=dry_run, drill=drill)
    blocks = DrBlocks.load(gateway_block, ops_database_block, alert_channels_block, dr_block)
    dr = blocks.dr
    dr.require_region(target_region)
    storage = load_block(BackupStorage, storage_block)
    primary = storage.primary()
    target = dr.backup_region_store(storage)
    gateway = blocks.action_gateway(mode)
    failover_body = {"type": "regional", "target_region": target_region, "reason": reason}
    copies = plan_backups_in_region(primary, target)
    change = dns_change(dr)
    record_now = read_dns_record(dr)
    layout = read_work_pool_layout()
    data = next((c for c in copies.copies if c.kind == "database"), None)

    steps = [
        gateway_call(
            "activate the backup region",
            gateway,
            "POST",
            "/admin/disaster-recovery/failover",
            failover_body,
        ),
        PlannedStep(
            title="backups in the backup region",
            call=f"check, and copy when missing, into {copies.target}: "
            + (", ".join(f"{c.kind} {c.backup_id}" for c in copies.copies) or "no backups"),
        ),
        _pool_step(layout, mode),
        PlannedStep(
            title="point DNS at the backup region",
            call=f"route53 change-resource-record-sets --hosted-zone-id {dr.dns_zone_id} "
            f"UPSERT {dr.dns_record_name} {dr.dns_record_type} {dr.dns_backup_value} "
            f"TTL {dr.dns_ttl_seconds}",
            skipped="a drill never moves the platform's DNS" if mode is Mode.DRILL else None,
        ),
        gateway_call("service restored", gateway, "GET", "/admin/disaster-recovery/status"),
    ]
    plan = DrPlan(
        scenario=Scenario.REGIONAL_FAILOVER,
        mode=mode,
        reason=reason,
        incident_started_at=incident,
        recovery_point=data.created_at if data else None,
        facts=[
            ("regions", f"{dr.primary_region} → {target_region}"),
            ("DNS now", record_now.text if record_now else "no such record"),
            ("DNS after", f"{dr.dns_record_name} {dr.dns_record_type} {dr.dns_backup_value}"),
            ("newest database backup (the RPO this gives)", _newest_text(data, incident)),
            ("kinds with no backup", ", ".join(copies.no_backup) or "none"),
            ("work pools", _layout_text(layout)),
            ("status polled for", f"up to {duration(dr.status_timeout_seconds)}"),
        ],
        steps=steps,
        details={"failover": failover_body, "dns_change": change},
    )

    def act(record: DrRecord) -> list[str]:
        notes: list[str] = []
        if gateway is None:
            record.skipped("activate the backup region", "no drill gateway")
        else:
            with record.step("activate the backup region"):
                status = read_dr_status(gateway)
                if status.get("active_region") == target_region:
                    notes.append(f"{target_region} was already active: not asked again")
                else:
                    hand_over(gateway, plan.details["failover"])
        with record.step("backups in the backup region"):
            held = ensure_backups_in_region(primary, target, copies)
            notes += [f"{b.kind} {b.backup_id}: {b.action}, read back" for b in held]
        if mode is Mode.DRILL or layout is None or layout.standby is None:
            record.skipped("move scheduled work to the standby pool", steps[2].skipped or "")
        else:
            with record.step("move scheduled work to the standby pool"):
                swap = fail_over_work_pools("standby", force=True)
                notes.append(
                    f"scheduled work moved {swap.from_pool} → {swap.to_pool}: "
                    f"{swap.schedules_activated} schedules on, {len(swap.moved_runs)} runs moved"
                )
        if mode is Mode.DRILL:
            record.skipped("point DNS at the backup region", "a drill never moves DNS")
        else:
            with record.step("point DNS at the backup region"):
                moved = point_dns(dr, approved=plan.details["dns_change"])
                notes.append(
                    f"DNS {moved.record}: {moved.before or 'none'} → {moved.after} ({moved.status})"
                )
        if gateway is None:
            record.skipped("service restored", "no drill gateway")
            record.validated()
        else:
            with record.step("service restored"):
                status = wait_for_dr_status(
                    gateway,
                    timeout_seconds=dr.status_timeout_seconds,
                    poll_seconds=status_poll_seconds,
                )
                record.validated()
                notes.append(f"gateway: {status.get('status')} in {status.get('active_region')}")
        return notes

    return run_plan(
        plan,
        blocks,
        triggered_by=triggered_by,
        approval_timeout_seconds=approval_timeout_seconds,
        act=act,
    )


def _pool_step(layout: PoolLayout | None, mode: Mode) -> PlannedStep:
    """The planned move of the schedules, or why there is none."""
    title = "move scheduled work to the standby pool"
    if layout is None:
        return PlannedStep(
            title=title,
            call="feedback-ops pool-failover --to standby",
            skipped="no work pools registered (`feedback-ops up` serves the deployments)",
        )
    if layout.standby is None:
        return PlannedStep(
            title=title,
            call="feedback-ops pool-failover --to standby",
            skipped=f"{layout.primary} has no standby pool registered",
        )
    return PlannedStep(
        title=title,
        call=f"feedback-ops pool-failover --to standby --force ({layout.primary} → "
        f"{layout.standby})",
        skipped="a drill never moves the scheduled work" if mode is Mode.DRILL else None,
    )


def _newest_text(data: RegionCopy | None, incident: datetime) -> str:
    if data is None:
        return "none"
    before = duration(max(0.0, (incident - data.created_at).total_seconds()))
    return f"`{data.backup_id}`, {before} before the incident"


def _layout_text(layout: PoolLayout | None) -> str:
    if layout is None:
        return "none registered (served by `feedback-ops up`)"
    return f"{layout.primary} / {layout.standby or 'no standby'}, {layout.active} active"
