"""Runbook, "Backup & Recovery Procedures": Database — full backup daily at 02:00.

Dump the platform database, check what was stored, write the manifest, replicate to
the other regions, record it in `ops.backup_records`, and show the operator the result.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
)
from blocks.storage.stores import ObjectStore
from flows.alert_steps import AlertTargets, alerting_on_failure
from flows.backup_steps import (
    RUNBOOK_SECTION,
    BackupOf,
    Produced,
    StoredBackup,
    locations_table,
    take_backup,
)
from flows.locks import lock_name
from flows.metric_steps import backup_figures_after
from flows.parameters import BlockName, LockWaitSeconds, StallSeconds
from tasks import human_size
from tasks.postgres import dump_database

KIND = "database"


class BackupResult(BaseModel):
    """What `feedback-ops run database-backup --json` prints as `result`."""

    backup_id: str
    locations: list[str] = Field(description="Primary first, then every replica.")
    size: int
    sha256: str


@flow(name="database-backup", log_prints=False)
def database_backup(
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    lock_wait_timeout_seconds: LockWaitSeconds = 300,
    stall_timeout_seconds: StallSeconds = 600,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> BackupResult:
    """Full backup of the platform's PostgreSQL database (runbook: daily at 02:00).

    Streams `pg_dump --format=custom` into the backup storage, reads the object back to
    check its size, sha256 and server-side encryption, writes its manifest, copies it
    to every replica and checks each copy the same way, and records it in
    `ops.backup_records`. A backup is only called completed after all of that.

    Args:
        database_block: Name of the Postgres Database block of the platform's database
            (the default is the one `feedback-ops up` saves).
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        lock_wait_timeout_seconds: Seconds pg_dump waits for a table lock held by
            another session before the backup fails (1 to 3600).
        stall_timeout_seconds: Seconds pg_dump may go without sending a byte before the
            backup stops it as hung and fails (10 to 3600); before its first byte the
            lock wait comes on top.
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    with (
        backup_figures_after(metrics_block, ops_database_block, KIND),
        alerting_on_failure(
            condition=f"database-backup:{database_block}",
            alert_name="database-backup-failed",
            what=f"Database backup of {database_block}",
            details={"database_block": database_block},
            runbook_section=RUNBOOK_SECTION,
            targets=AlertTargets(ops_database_block, alert_channels_block),
        ),
    ):
        db = load_block(PostgresDatabase, database_block)

        def dump(store: ObjectStore, key: str, previous_size: int | None) -> Produced:
            result = dump_database(
                db, store, key, lock_wait_timeout_seconds, stall_timeout_seconds, previous_size
            )
            return Produced(
                size=result.size,
                sha256=result.sha256,
                started_at=result.started_at,
                finished_at=result.finished_at,
                tools={"pg_dump": result.pg_dump_version, "server": result.server_version},
                content_format="pg_dump-custom",
                contents={"tables": result.row_counts, "database_bytes": result.database_bytes},
            )

        backup = take_backup(
            BackupOf(
                kind=KIND,
                source=db.display_name,
                suffix=".dump",
                lock=lock_name("postgres", f"{db.host}:{db.port}:{db.database}"),
                artifact_key="database-backup",
            ),
            storage=load_block(BackupStorage, storage_block),
            ops_db=load_block(PostgresDatabase, ops_database_block),
            produce=dump,
        )
    _publish_success(backup, db.display_name)
    return BackupResult(
        backup_id=backup.backup_id,
        locations=backup.locations,
        size=backup.produced.size,
        sha256=backup.produced.sha256,
    )


def _publish_success(backup: StoredBackup, source: str) -> None:
    dump = backup.produced
    seconds = max(dump.seconds, 1e-6)
    tables = "\n".join(
        f"| `{name}` | {count} |" for name, count in sorted(dump.contents["tables"].items())
    )
    create_markdown_artifact(
        key="database-backup",
        description=f"Database backup {backup.backup_id}: completed",
        markdown=f"""# Database backup `{backup.backup_id}` — completed

| | |
|---|---|
| Source | `{source}` |
| Size | {human_size(dump.size)} ({dump.size} bytes) |
| Duration | {dump.seconds:.1f} s |
| Throughput | {human_size(dump.size / seconds)}/s |
| sha256 | `{dump.sha256}` |
| Tool | {dump.tools["pg_dump"]}, server {dump.tools["server"]} |

## Locations

{locations_table(backup.copies)}

## Rows per table (same snapshot as the dump)

| table | rows |
|---|---|
{tables}
""",
    )
