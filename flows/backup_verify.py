"""Runbook, "Backup & Recovery Procedures": `comprehensive-backup-system.sh verify`.

Every day at 05:00 the newest database backup is read back and checked against its
manifest, restored into a scratch database, counted table by table, and dropped
again. The restore's duration is the measured recovery time, reported against the
runbook's RTO of 30 minutes. A backup that fails verification raises a high alert.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from blocks import BackupStorage, PostgresDatabase, load_block
from feedback_ops.config import BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK, PLATFORM_DATABASE_BLOCK
from feedback_ops.errors import OpsError
from policy import Severity
from tasks import catalog
from tasks.manifest import BackupKeys, find_manifest
from tasks.notify import Alert, ops_catalog, raise_alert_beside, resolve_alert
from tasks.object_store import Digest, ObjectStore
from tasks.pg_restore import RestoreDrill, drill, local_copy

RTO_SECONDS = 30 * 60  # runbook, "Scenario 1: Complete Database Loss"


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


@task(name="restore-drill", cache_policy=NO_CACHE)
def restore_drill(
    server: PostgresDatabase,
    store: ObjectStore,
    keys: BackupKeys,
    manifest: dict[str, object],
    jobs: int,
) -> RestoreDrill:
    """Read the backup back, check it, restore it into a scratch database and count."""
    expected = Digest(int(str(manifest["size"])), str(manifest["sha256"]))
    with local_copy(store, keys.object, expected) as path:
        return drill(server, path, manifest, jobs)


@flow(name="backup-verify")
def backup_verify(
    backup_id: str = "latest",
    jobs: int = 2,
    database_block: str = PLATFORM_DATABASE_BLOCK,
    storage_block: str = BACKUP_STORAGE_BLOCK,
    ops_database_block: str = OPS_DATABASE_BLOCK,
) -> VerifyResult:
    """Verify a database backup by restoring it (runbook: `verify [backup_id]`).

    Checks size and sha256 against the manifest, restores into a scratch database with
    `pg_restore --jobs`, compares every table's row count with the manifest, drops the
    scratch database, and records `verified_at` and the restore time in
    `ops.backup_records`. `backup_id` is an id or "latest".
    """
    logger = get_run_logger()
    server = load_block(PostgresDatabase, database_block)
    store = load_block(BackupStorage, storage_block).primary()
    if not 1 <= jobs <= 16:
        raise OpsError(f"jobs must be between 1 and 16, got {jobs}")
    manifest, keys = find_manifest(store, backup_id)
    backup_id = str(manifest["id"])
    condition = f"backup-verify:{backup_id}"
    try:
        result = restore_drill(server, store, keys, manifest, jobs)
    except Exception as exc:
        _tell_people(exc, backup_id, condition, store.url_for(keys.object), ops_database_block)
        raise
    recorded = _record(ops_database_block, backup_id, "passed", result.seconds, None)
    if not recorded:
        logger.warning("Backup %s is not in the ops catalog; verified from storage", backup_id)
    resolve_alert(condition, ops_database_block=ops_database_block)
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
    return verdict


def _tell_people(
    exc: Exception, backup_id: str, condition: str, url: str, ops_database_block: str
) -> None:
    """Record the failure and raise a high alert; neither may hide the failure itself."""
    logger = get_run_logger()
    try:
        _record(ops_database_block, backup_id, "failed", None, str(exc))
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
        ops_database_block,
    )


def _record(
    ops_database_block: str, backup_id: str, status: str, seconds: float | None, error: str | None
) -> bool:
    with ops_catalog(ops_database_block) as engine:
        return catalog.record_verification(
            engine,
            backup_id,
            verified_at=datetime.now(UTC),
            status=status,
            restore_seconds=seconds,
            error=error,
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
