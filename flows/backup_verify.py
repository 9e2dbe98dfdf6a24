"""Runbook, "Backup & Recovery Procedures": `comprehensive-backup-system.sh verify`.

Every day at 05:00 the newest database backup is read back and checked against its
manifest, restored into a scratch database, counted table by table, and dropped
again. The restore's duration is the measured recovery time, reported against the
runbook's RTO of 30 minutes. A backup that fails verification raises a high alert.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
)
from blocks.postgres.restore import RestoreDrill
from flows.alert_steps import AlertTargets, clear_alert, raise_alert_beside
from flows.metric_steps import drill_figures, push_figures
from flows.parameters import BackupId, BlockName, RestoreJobs
from policy import Severity
from tasks.catalog import record_verification
from tasks.notify import Alert
from tasks.postgres import restore_drill
from tasks.storage import find_backup

RTO_SECONDS = 30 * 60  # runbook, "Scenario 1: Complete Database Loss"
KIND = "database"


class VerifyResult(BaseModel):
    """What `feedback-ops run backup-verify --json` prints as `result`."""

    backup_id: str
    size: int
    sha256: str
    tables: int
    rows: int
    restore_seconds: float
    rto_seconds: int
    within_rto: bool


@flow(name="backup-verify")
def backup_verify(
    backup_id: BackupId = "latest",
    jobs: RestoreJobs = 2,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> VerifyResult:
    """Verify a database backup by restoring it (runbook: `verify [backup_id]`).

    Checks size and sha256 against the manifest, restores into a scratch database with
    `pg_restore --jobs`, compares every table's row count with the manifest, drops the
    scratch database, and records `verified_at` and the restore time in
    `ops.backup_records`. `backup_id` is an id or "latest".

    Args:
        backup_id: The backup to verify: its id (as in the catalog and the manifests) or
            `latest`.
        jobs: Parallel pg_restore jobs for the scratch restore (1 to 16).
        database_block: Name of the Postgres Database block of the platform's database
            (the default is the one `feedback-ops up` saves).
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    logger = get_run_logger()
    server = load_block(PostgresDatabase, database_block)
    store = load_block(BackupStorage, storage_block).primary()
    ops_db = load_block(PostgresDatabase, ops_database_block)
    targets = AlertTargets(ops_database_block, alert_channels_block)
    manifest, keys = find_backup(store, backup_id, None, KIND)
    backup_id = str(manifest["id"])
    condition = f"backup-verify:{backup_id}"
    try:
        result = restore_drill(server, store, keys, manifest, jobs)
    except Exception as exc:
        _tell_people(exc, backup_id, condition, store.url_for(keys.object), ops_db, targets)
        raise
    verified_at = datetime.now(UTC)
    recorded = record_verification(
        ops_db,
        backup_id,
        verified_at=verified_at,
        status="passed",
        restore_seconds=result.seconds,
        error=None,
    )
    if not recorded:
        logger.warning("Backup %s is not in the ops catalog; verified from storage", backup_id)
    clear_alert(condition, targets)
    verdict = VerifyResult(
        backup_id=backup_id,
        size=int(str(manifest["size"])),
        sha256=str(manifest["sha256"]),
        tables=len(result.row_counts),
        rows=sum(result.row_counts.values()),
        restore_seconds=round(result.seconds, 3),
        rto_seconds=RTO_SECONDS,
        within_rto=result.seconds <= RTO_SECONDS,
    )
    _publish(verdict, store.url_for(keys.object), result)
    push_figures(metrics_block, drill_figures(KIND, result.seconds, RTO_SECONDS, verified_at))
    return verdict


def _tell_people(
    exc: Exception,
    backup_id: str,
    condition: str,
    url: str,
    ops_db: PostgresDatabase,
    targets: AlertTargets,
) -> None:
    """Record the failure and raise a high alert; neither may hide the failure itself."""
    logger = get_run_logger()
    try:
        record_verification(
            ops_db,
            backup_id,
            verified_at=datetime.now(UTC),
            status="failed",
            restore_seconds=None,
            error=str(exc),
        )
    except Exception as catalog_exc:
        logger.error("Could not record the failed verification: %s", catalog_exc)
    raise_alert_beside(
        Alert(
            name="backup-verification-failed",
            severity=Severity.HIGH,
            summary=f"Backup {backup_id} failed verification: {exc}",
            details={"backup_id": backup_id, "location": url},
            dedup_key=condition,
            runbook_section="Backup & Recovery Procedures",
        ),
        targets,
    )


def _publish(verdict: VerifyResult, url: str, result: RestoreDrill) -> None:
    rows = "\n".join(f"| `{t}` | {n} |" for t, n in sorted(result.row_counts.items()))
    rto = "within" if verdict.within_rto else "**OVER**"
    create_markdown_artifact(
        key="backup-verify",
        description=f"Backup {verdict.backup_id}: verified",
        markdown=f"""# Backup `{verdict.backup_id}` — verified

| | |
|---|---|
| Object | `{url}` |
| Size, sha256 | {verdict.size} bytes, `{verdict.sha256}` (read back, matches the manifest) |
| Restore drill | {verdict.restore_seconds:.1f} s with pg_restore --jobs — {rto} the RTO of 30 min |
| Tables, rows | {verdict.tables} tables, {verdict.rows} rows, every count as in the manifest |

| table | rows restored |
|---|---|
{rows}
""",
    )
