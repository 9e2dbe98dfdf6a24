"""Tasks on the platform's PostgreSQL: the dump, restores and drills, the tables read
into configuration backups, the businesses a POS outage is told to."""

from __future__ import annotations

from typing import Any

from blocks.postgres import PostgresDatabase
from blocks.postgres.businesses import BusinessToTell, businesses_to_tell
from blocks.postgres.client import database_size, table_rows
from blocks.postgres.dump import SILENCE_SECONDS, DumpResult, dump_to_store
from blocks.postgres.integrity import IntegrityReport, check_integrity
from blocks.postgres.restore import (
    RestoreDrill,
    compare_counts,
    count_restored,
    create_target,
    drill,
    drop_database,
    existing_tables,
    restore_file,
)
from blocks.storage.manifest import BackupKeys
from blocks.storage.stores import Digest, ObjectStore
from blocks.storage.verify import local_copy
from feedback_ops.errors import OpsError
from tasks import QUICK, TRANSFER, StepProgress, step


@step("dump-database", limit=TRANSFER)
def dump_database(
    db: PostgresDatabase,
    store: ObjectStore,
    key: str,
    lock_wait_timeout_seconds: int = 300,
    stall_timeout_seconds: float = SILENCE_SECONDS,
    expected_size: int | None = None,
) -> DumpResult:
    """Stream `pg_dump --format=custom` of `db` into `store` under `key`, with sha256,
    size and exact per-table row counts from the same snapshot; its progress shows in
    the UI against `expected_size` (the previous backup's). A pg_dump silent for
    `stall_timeout_seconds` is killed and the step fails at once, not at its limit."""
    progress = StepProgress(f"pg_dump of {db.display_name}", expected_size)
    result = dump_to_store(
        db,
        store,
        key,
        lock_wait_timeout_seconds=lock_wait_timeout_seconds,
        on_progress=progress,
        silence_seconds=stall_timeout_seconds,
    )
    progress.finish(result.size)
    return result


@step("restore-drill", limit=TRANSFER, retries=0)
def restore_drill(
    server: PostgresDatabase,
    store: ObjectStore,
    keys: BackupKeys,
    manifest: dict[str, Any],
    jobs: int,
) -> RestoreDrill:
    """Read the backup back, check it, restore it into a scratch database, count every
    table and compare with the manifest; the scratch database is dropped afterwards."""
    with local_copy(store, keys.object, _digest_of(manifest)) as path:
        progress = _RestoreProgress(f"restore drill of {manifest['id']}", manifest)
        result = drill(server, path, manifest, jobs, TRANSFER, progress.on_tick)
    progress.finish()
    return result


@step("read-target-tables", limit=QUICK)
def read_target_tables(server: PostgresDatabase, name: str) -> dict[str, int] | None:
    """Row counts of the tables in database `name` on `server`; None when it does not
    exist."""
    return existing_tables(server, name)


@step("prepare-target", limit=QUICK, retries=0)
def prepare_target(server: PostgresDatabase, name: str, replace: dict[str, int] | None) -> None:
    """Create the target database, or drop and recreate the approved one, after checking
    it still holds exactly the tables the operator approved replacing."""
    create_target(server, name, replace)


@step("restore-backup", limit=TRANSFER, retries=0)
def restore_backup(
    store: ObjectStore,
    keys: BackupKeys,
    manifest: dict[str, Any],
    target: PostgresDatabase,
    jobs: int,
) -> tuple[float, dict[str, int]]:
    """Check the object against its manifest, pg_restore it, count every table."""
    with local_copy(store, keys.object, _digest_of(manifest)) as path:
        progress = _RestoreProgress(f"restore of {manifest['id']}", manifest)
        seconds = restore_file(path, target, jobs, TRANSFER, progress.on_tick)
    progress.finish()
    counts = count_restored(target)
    problems = compare_counts(manifest.get("tables", {}), counts)
    if problems:
        raise OpsError(f"restored {target.database!r} differs from the manifest: {problems[0]}")
    return seconds, counts


@step("validate-restored-data", limit=TRANSFER)
def validate_restored_data(
    target: PostgresDatabase, expected_counts: dict[str, int]
) -> IntegrityReport:
    """The runbook's "Verify data integrity" after a restore: every table's rows against
    the manifest's counts (`tables`), `SELECT COUNT(*) FROM businesses` above 0, every
    `businesses.org_number` a valid Swedish organisation number, no foreign key pointing
    at a missing row.

    What is wrong comes back in the report's `problems`, not as a failure, so the flow
    can show all of it and decide; the step fails only when it cannot look (a lost
    connection is retried). Its limit is a transfer's: it reads every row of every
    table, as the restore did."""
    return check_integrity(target, expected_counts)


@step("drop-scratch-database", limit=QUICK)
def drop_scratch_database(server: PostgresDatabase, name: str) -> bool:
    """Drop a drill's scratch database (never the server block's own); False when it
    was already gone, so a rerun is harmless."""
    return drop_database(server, name)


@step("read-table-rows", limit=QUICK)
def read_table_rows(db: PostgresDatabase, table: str) -> list[dict[str, Any]] | None:
    """Every row of `schema.table` as JSON objects ordered by its first column; None when
    the table does not exist."""
    return table_rows(db, table)


@step("read-businesses-to-tell", limit=QUICK)
def read_businesses_to_tell(
    db: PostgresDatabase, providers: list[str], email_column: str, variable: str
) -> list[BusinessToTell]:
    """The businesses with an active `pos_connections` row for one of `providers`, each
    with the address in `businesses.<email_column>` (None when it holds no single
    address). A missing column fails at once, naming `variable`, the setting to fix."""
    return businesses_to_tell(db, providers, email_column, variable=variable)


class _RestoreProgress:
    """A restore's progress: the target's size on disk against the source's when it was
    dumped (the manifest's `database_bytes`), read every few seconds."""

    def __init__(self, what: str, manifest: dict[str, Any]) -> None:
        self.bar = StepProgress(what, manifest.get("database_bytes"), every=0)
        self.done = 0

    def on_tick(self, target: PostgresDatabase) -> None:
        self.done = database_size(target)
        self.bar(self.done)

    def finish(self) -> None:
        self.bar.finish(self.done)


def _digest_of(manifest: dict[str, Any]) -> Digest:
    return Digest(int(manifest["size"]), str(manifest["sha256"]))


__all__ = [
    "dump_database",
    "prepare_target",
    "read_businesses_to_tell",
    "read_table_rows",
    "read_target_tables",
    "restore_backup",
    "restore_drill",
    "validate_restored_data",
    "drop_scratch_database",
]
