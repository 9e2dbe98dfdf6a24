"""Runbook, "Disaster Recovery", Scenario 1: complete database loss (RTO 30 min, RPO 1 h).

Response plan: activate maintenance mode, determine the extent of the data loss,
restore the latest backup, verify data integrity, disable maintenance mode. An
operator starts `dr-database-loss/manual` from the UI; the run assesses the primary,
chooses the backup (the newest whose restore drill passed, unless told), and shows the
plan with the RPO that backup gives and how long its restore is expected to take. Once
approved it carries out exactly that plan:

1. maintenance mode on (`POST /admin/maintenance`);
2. restore through the `database-restore` flow into a new database;
3. validate the restored data: row counts against the manifest, `SELECT COUNT(*) FROM
   businesses`, every organisation number's check digit, no orphaned foreign keys;
4. `GET /health`, then hand over (`POST /admin/disaster-recovery/failover` with
   `{"type": "database", ...}`) so the gateway serves from the restored database;
5. maintenance mode off, and `GET /health` again: service is validated.

A drill restores into a scratch database (dropped at the end) and calls the drill
gateway, or skips and lists those calls; its RTO is real. Run again after a failure,
it continues: a restored database that already matches the manifest is not restored
twice.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import AwareDatetime

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    DR_BLOCK,
    GATEWAY_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
)
from blocks.postgres.restore import compare_counts
from feedback_ops.errors import OpsError
from flows.database_restore import database_restore, default_target_name
from flows.dr_steps import (
    DR_HOOKS,
    DrBlocks,
    DrOutcome,
    DrPlan,
    DrRecord,
    PlannedStep,
    gateway_call,
    incident_start,
    maintenance_mode,
    run_plan,
)
from flows.parameters import ApprovalSeconds, BlockName, DatabaseName, DrBackupId, Reason
from policy.disaster_recovery import Mode, Scenario, duration, mode_of
from tasks.catalog import read_last_restore_seconds, read_newest_verified
from tasks.gateway import check_platform_health, hand_over
from tasks.postgres import drop_scratch_database, read_target_tables, validate_restored_data
from tasks.storage import find_backup

ESTIMATED_DURATION = "30min"
"""What the maintenance page says: the runbook's own estimate, the RTO."""


@flow(name="dr-database-loss", **DR_HOOKS)
def dr_database_loss(
    reason: Reason = "database_recovery",
    backup_id: DrBackupId = "verified",
    target_database: DatabaseName = "",
    incident_started_at: AwareDatetime | None = None,
    dry_run: bool = True,
    drill: bool = False,
    approval_timeout_seconds: ApprovalSeconds = 1800,
    triggered_by: str = "",
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    gateway_block: BlockName = GATEWAY_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    dr_block: BlockName = DR_BLOCK,
) -> DrOutcome:
    """Recover from the loss of the platform's database (runbook: Scenario 1) after an
    approval in the UI, measuring the RTO and RPO achieved.

    Args:
        reason: Why, in one line: sent with maintenance mode and the hand-over.
        backup_id: `verified` (the newest backup whose restore drill passed), `latest`,
            or a backup's id.
        target_database: The new database to restore into; empty: named for the backup
            (`restore_<backup>`, or `drill_<backup>_<run>` in a drill).
        incident_started_at: When the incident began, with its offset; empty: when this
            run starts. The RTO is measured from it, the RPO back from it.
        dry_run: Show the plan and every call it would make, changing nothing.
        drill: Every step for real against scratch targets: a new database (dropped at
            the end) and the drill gateway (DR_DRILL_GATEWAY_URL), or those calls
            skipped and listed.
        approval_timeout_seconds: How long the run waits for approval before it stops,
            having changed nothing.
        triggered_by: What started the run when not a person (the watchdog's trigger).
        database_block: Name of the Postgres Database block of the platform's database:
            the server the backup is restored on.
        storage_block: Name of the Backup Storage block the backups are read from.
        gateway_block: Name of the Platform Gateway block: maintenance mode, health and
            the hand-over.
        ops_database_block: Name of the Postgres Database block of the ops catalog: the
            verified backups, the DR record, maintenance notes, alerts.
        alert_channels_block: Name of the Alert Channels block a missed objective or
            maintenance mode left on is reported to.
        dr_block: Name of the Disaster Recovery block: the drill gateway, auto-proceed.
    """
    now = datetime.now(UTC)
    incident = incident_start(incident_started_at, now)
    mode = mode_of(dry_run=dry_run, drill=drill)
    blocks = DrBlocks.load(gateway_block, ops_database_block, alert_channels_block, dr_block)
    server = load_block(PostgresDatabase, database_block)
    store = load_block(BackupStorage, storage_block).primary()
    manifest = _chosen_manifest(blocks, store, backup_id)
    chosen = str(manifest["id"])
    expected_tables: dict[str, int] = manifest.get("tables", {})
    name = target_database or _target_name(chosen, mode)
    if name == server.database:
        raise OpsError(
            f"refusing to restore into {server.display_name}: it is the platform's own "
            "database; restore into a new database and hand over"
        )
    plan = _plan(
        reason=reason,
        mode=mode,
        incident=incident,
        manifest=manifest,
        target=name,
        server=server,
        blocks=blocks,
        expected_tables=expected_tables,
    )

    def act(record: DrRecord) -> list[str]:
        gateway = blocks.action_gateway(mode)
        target = server.with_database(name)
        notes: list[str] = []
        with maintenance_mode(record, gateway, reason, ESTIMATED_DURATION):
            with record.step("restore"):
                if compare_counts(expected_tables, read_target_tables(server, name) or {}):
                    database_restore(
                        backup_id=chosen,
                        target_database=name,
                        database_block=database_block,
                        storage_block=storage_block,
                    )
                else:
                    notes.append(f"{name} already held the backup's rows: not restored again")
            with record.step("validate data integrity"):
                report = validate_restored_data(target, expected_tables)
                if not report.ok:
                    raise OpsError(
                        f"the restored database {name} failed validation: "
                        + "; ".join(report.problems[:3])
                    )
                notes.append(
                    f"{name}: {sum(report.row_counts.values())} rows as in the manifest, "
                    f"{report.businesses} businesses, {report.org_numbers_checked} "
                    f"organisation numbers valid, {report.foreign_keys_checked} foreign keys "
                    "without orphans"
                )
            if gateway is None:
                record.skipped("check the gateway's health", "no drill gateway")
                record.skipped("hand over to the restored database", "no drill gateway")
                record.validated()  # a drill with no gateway: the validated data is service
            else:
                with record.step("check the gateway's health"):
                    check_platform_health(gateway, maintenance=True)
                with record.step("hand over to the restored database"):
                    hand_over(gateway, plan.details["hand_over"])
        if gateway is not None:
            with record.step("validate service"):
                check_platform_health(gateway, maintenance=False)
                record.validated()
        if mode is Mode.DRILL:
            with record.step("drop the drill's database"):
                drop_scratch_database(server, name)
        return notes

    return run_plan(
        plan,
        blocks,
        triggered_by=triggered_by,
        approval_timeout_seconds=approval_timeout_seconds,
        act=act,
    )


def _chosen_manifest(blocks: DrBlocks, store: Any, backup_id: str) -> dict[str, Any]:
    """The manifest of the backup to restore: `verified` is the newest whose restore
    drill passed, by the ops catalog; `latest` and ids are looked up in storage.

    Raises:
        OpsError: there is no such backup, or none verified.
    """
    if backup_id == "verified":
        record = read_newest_verified(blocks.ops_db, "database")
        if record is None:
            raise OpsError(
                "no verified database backup in the ops catalog (backup-verify has not "
                "passed one); give backup_id=latest or a backup's id"
            )
        backup_id = str(record["id"])
    manifest, _ = find_backup(store, backup_id, None, "database")
    return manifest


def _target_name(backup_id: str, mode: Mode) -> str:
    """`restore_<backup>`, or in a drill `drill_<backup>_<6 hex of the run>`."""
    name = default_target_name(backup_id)
    if mode is not Mode.DRILL:
        return name
    run = re.sub(r"[^a-z0-9]", "", str(flow_run.get_id() or "manual").lower())[:6]
    return f"drill_{name.removeprefix('restore_')}_{run}"[:63]


def _plan(
    *,
    reason: str,
    mode: Mode,
    incident: datetime,
    manifest: dict[str, Any],
    target: str,
    server: PostgresDatabase,
    blocks: DrBlocks,
    expected_tables: dict[str, int],
) -> DrPlan:
    """Assess the primary and write down every step with its exact call."""
    chosen = str(manifest["id"])
    created = datetime.fromisoformat(str(manifest["created_at"]))
    try:
        now_counts = read_target_tables.with_options(retries=0)(server, server.database)
        primary = (
            "missing: the database does not exist"
            if now_counts is None
            else _distance(now_counts, expected_tables)
        )
    except Exception as exc:  # the primary being gone is what this flow is for
        primary = f"unreachable: {str(exc).splitlines()[0] if str(exc) else repr(exc)}"
    expected = read_last_restore_seconds(blocks.ops_db, "database")
    gateway = blocks.action_gateway(mode)
    hand_over_body = {
        "type": "database",
        "backup_id": chosen,
        "target_database": target,
        "reason": reason,
    }
    steps: list[PlannedStep] = [
        gateway_call(
            "maintenance mode on",
            gateway,
            "POST",
            "/admin/maintenance",
            {"reason": reason, "estimated_duration": ESTIMATED_DURATION},
        ),
        PlannedStep(
            title="restore",
            call=f"database-restore backup_id={chosen} target_database={target} "
            f"(on {server.host}:{server.port})",
        ),
        PlannedStep(
            title="validate data integrity",
            call=f"row counts of {len(expected_tables)} tables against the manifest; "
            "SELECT COUNT(*) FROM businesses; businesses.org_number check digits; "
            "orphaned foreign keys",
        ),
        gateway_call("check the gateway's health", gateway, "GET", "/health"),
        gateway_call(
            "hand over to the restored database",
            gateway,
            "POST",
            "/admin/disaster-recovery/failover",
            hand_over_body,
        ),
        gateway_call("maintenance mode off", gateway, "DELETE", "/admin/maintenance"),
        gateway_call("validate service", gateway, "GET", "/health"),
    ]
    if mode is Mode.DRILL:
        steps.append(PlannedStep(title="drop the drill's database", call=f"DROP DATABASE {target}"))
    age = (incident - created).total_seconds()
    return DrPlan(
        scenario=Scenario.DATABASE_LOSS,
        mode=mode,
        reason=reason,
        incident_started_at=incident,
        recovery_point=created,
        expected_seconds=expected,
        facts=[
            ("primary database", f"{server.display_name}: {primary}"),
            ("backup", f"`{chosen}`, taken {created.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("RPO this restore gives", duration(max(0.0, age))),
            ("restore into", f"`{target}` on {server.host}:{server.port} (a new database)"),
            (
                "expected restore time",
                "no restore drill yet"
                if expected is None
                else f"{duration(expected)} (the last restore drill)",
            ),
            ("rows in the backup", str(sum(expected_tables.values()))),
        ],
        steps=steps,
        details={"backup_id": chosen, "target_database": target, "hand_over": hand_over_body},
    )


def _distance(now: dict[str, int], backup: dict[str, int]) -> str:
    """How far the primary's data is from the backup's row counts."""
    differences = compare_counts(backup, now)
    if not differences:
        return "reachable; every table has the backup's row count"
    rows_now, rows_then = sum(now.values()), sum(backup.values())
    return (
        f"reachable; {len(differences)} tables differ from the backup "
        f"({rows_now} rows now, {rows_then} in the backup), e.g. {differences[0]}"
    )
