"""Runbook, "Backup & Recovery Procedures": Database — full backup daily at 02:00.

Dump the platform database, check what was stored, write the manifest, replicate to
the other regions, record it in `ops.backup_records`, and show the operator the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks import BackupStorage, PostgresDatabase, load_block
from feedback_ops.config import BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK, PLATFORM_DATABASE_BLOCK
from feedback_ops.errors import OpsError
from policy import Severity
from tasks.locks import lock_name, system_lock
from tasks.manifest import BackupKeys, build_manifest, new_backup_id
from tasks.notify import Alert, raise_alert_beside, resolve_alert
from tasks.object_store import Digest, ObjectStore
from tasks.pg_dump import DumpResult
from tasks.postgres import dump_database, open_catalog, record_backup_end, record_backup_start
from tasks.storage import (
    VerifiedCopy,
    expected_encryption,
    replicate_backup,
    verify_stored_object,
    write_manifest,
)

KIND = "database"
RUNBOOK_SECTION = "Backup & Recovery Procedures"


class BackupResult(BaseModel):
    """What `feedback-ops run database-backup --json` prints as `result`."""

    backup_id: str
    locations: list[str] = Field(description="Primary first, then every replica.")
    size: int
    sha256: str


@flow(name="database-backup", log_prints=False)
def database_backup(
    database_block: str = PLATFORM_DATABASE_BLOCK,
    storage_block: str = BACKUP_STORAGE_BLOCK,
    ops_database_block: str = OPS_DATABASE_BLOCK,
    lock_wait_timeout_seconds: int = 300,
) -> BackupResult:
    """Full backup of the platform's PostgreSQL database (runbook: daily at 02:00).

    Streams `pg_dump --format=custom` into the backup storage, reads the object back to
    check its size, sha256 and server-side encryption, writes its manifest, copies it
    to every replica and checks each copy the same way, and records it in
    `ops.backup_records`. A backup is only called completed after all of that.
    """
    condition = f"database-backup:{database_block}"
    try:
        result = _back_up(
            database_block, storage_block, ops_database_block, lock_wait_timeout_seconds
        )
    except Exception as exc:
        _tell_people(condition, database_block, ops_database_block, exc)
        raise
    resolve_alert(condition, ops_database_block=ops_database_block)
    return result


def _tell_people(
    condition: str, database_block: str, ops_database_block: str, exc: Exception
) -> None:
    """A failed backup is a high-severity alert; a failure to alert must not hide it."""
    alert = Alert(
        name="database-backup-failed",
        severity=Severity.HIGH,
        summary=f"Database backup of {database_block} failed: {exc}",
        details={"database_block": database_block, "reason": str(exc)},
        dedup_key=condition,
        runbook_section=RUNBOOK_SECTION,
    )
    raise_alert_beside(alert, ops_database_block)


def _back_up(
    database_block: str,
    storage_block: str,
    ops_database_block: str,
    lock_wait_timeout_seconds: int,
) -> BackupResult:
    """The runbook's backup, start to finish."""
    logger = get_run_logger()
    db = load_block(PostgresDatabase, database_block)
    storage = load_block(BackupStorage, storage_block)
    ops_db = load_block(PostgresDatabase, ops_database_block)
    primary, replicas = storage.primary(), storage.replicas()
    for store in (primary, *replicas):
        store.check_access()

    with system_lock(lock_name("postgres", f"{db.host}:{db.port}:{db.database}")):
        open_catalog(ops_db)
        started = datetime.now(UTC)
        backup_id = new_backup_id(KIND, started)
        keys = BackupKeys.for_backup(KIND, backup_id, started, ".dump")
        record_backup_start(
            ops_db,
            backup_id=backup_id,
            kind=KIND,
            source=db.display_name,
            started_at=started,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
        logger.info("Backing up %s to %s as %s", db.display_name, primary.location, backup_id)
        try:
            dump, manifest, copies = _store_and_replicate(
                db, primary, replicas, keys, backup_id, started, lock_wait_timeout_seconds
            )
        except Exception as exc:
            record_backup_end(
                ops_db, backup_id, status="failed", finished_at=datetime.now(UTC), error=str(exc)
            )
            _publish_failure(backup_id, db.display_name, str(exc))
            raise
        locations = [copy.url for copy in copies]
        record_backup_end(
            ops_db,
            backup_id,
            status="completed",
            finished_at=datetime.now(UTC),
            locations=locations,
            size=dump.size,
            sha256=dump.sha256,
            manifest=manifest,
        )
    _publish_success(backup_id, db.display_name, dump, copies)
    return BackupResult(
        backup_id=backup_id, locations=locations, size=dump.size, sha256=dump.sha256
    )


def _store_and_replicate(
    db: PostgresDatabase,
    primary: ObjectStore,
    replicas: list[ObjectStore],
    keys: BackupKeys,
    backup_id: str,
    started: datetime,
    lock_wait_timeout_seconds: int,
) -> tuple[DumpResult, dict[str, Any], list[VerifiedCopy]]:
    """The runbook's steps for one backup; returns the dump, manifest and checked copies."""
    try:
        dump = dump_database(db, primary, keys.object, lock_wait_timeout_seconds)
        digest = Digest(dump.size, dump.sha256)
        primary_copy = verify_stored_object(primary, keys.object, digest)
        manifest = build_manifest(
            backup_id=backup_id,
            kind=KIND,
            source=db.display_name,
            object_name=keys.object.rsplit("/", 1)[1],
            created_at=started,
            finished_at=dump.finished_at,
            size=dump.size,
            sha256=dump.sha256,
            encryption=expected_encryption(primary),
            tools={"pg_dump": dump.pg_dump_version, "server": dump.server_version},
            content_format="pg_dump-custom",
            tables=dump.row_counts,
        )
        write_manifest(primary, keys, manifest)
    except BaseException:
        # Nothing unverified may stay where a restore would find it.
        primary.delete(keys.manifest)
        primary.delete(keys.object)
        raise
    futures = [
        replicate_backup.submit(primary, replica, keys, digest, manifest) for replica in replicas
    ]
    copies = [primary_copy]
    failures = []
    for replica, future in zip(replicas, futures, strict=True):
        try:
            copies.append(future.result())
        except Exception as exc:
            failures.append(f"{replica.location}: {exc}")
    if failures:
        raise OpsError(
            f"backup {backup_id} is stored and verified at {primary_copy.url}, but replication "
            f"failed: {'; '.join(failures)}"
        )
    return dump, manifest, copies


def _human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def _publish_success(
    backup_id: str, source: str, dump: DumpResult, copies: list[VerifiedCopy]
) -> None:
    seconds = max(dump.seconds, 1e-6)
    rows = "\n".join(
        f"| {'primary' if i == 0 else 'replica'} | `{c.url}` | {c.size} | "
        f"{c.encryption or 'none (local)'} | verified |"
        for i, c in enumerate(copies)
    )
    tables = "\n".join(f"| `{name}` | {count} |" for name, count in sorted(dump.row_counts.items()))
    create_markdown_artifact(
        key="database-backup",
        description=f"Database backup {backup_id}: completed",
        markdown=f"""# Database backup `{backup_id}` — completed

| | |
|---|---|
| Source | `{source}` |
| Size | {_human_size(dump.size)} ({dump.size} bytes) |
| Duration | {dump.seconds:.1f} s |
| Throughput | {_human_size(dump.size / seconds)}/s |
| sha256 | `{dump.sha256}` |
| Tool | {dump.pg_dump_version}, server {dump.server_version} |

## Locations

| role | location | bytes | server-side encryption | check |
|---|---|---|---|---|
{rows}

## Rows per table (same snapshot as the dump)

| table | rows |
|---|---|
{tables}
""",
    )


def _publish_failure(backup_id: str, source: str, reason: str) -> None:
    create_markdown_artifact(
        key="database-backup",
        description=f"Database backup {backup_id}: failed",
        markdown=f"# Database backup `{backup_id}` — failed\n\nSource `{source}`.\n\n"
        f"**Reason:** {reason}",
    )
