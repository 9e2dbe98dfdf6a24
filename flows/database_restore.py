"""Runbook, "Recovery Procedures": `comprehensive-backup-system.sh restore [backup_id]`.

Restores a chosen database backup: by id, the newest ("latest"), or the newest taken
before a Stockholm time. By default into a new database named for the backup, so
nothing is overwritten and the operator switches over when satisfied. Restoring into
a database that has tables needs `overwrite=True` and an approval in the Prefect UI,
which shows exactly which tables and rows will be replaced. It needs nothing but the
storage: the manifests say what each backup is.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import AwareDatetime, BaseModel

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import BACKUP_STORAGE_BLOCK, PLATFORM_DATABASE_BLOCK
from feedback_ops.errors import OpsError
from flows.locks import lock_name, system_lock
from flows.parameters import BackupId, BlockName, DatabaseName, RestoreJobs
from policy import STOCKHOLM
from tasks.postgres import prepare_target, read_target_tables, restore_backup
from tasks.storage import find_backup

APPROVAL_TIMEOUT_SECONDS = 3600


class RestoreResult(BaseModel):
    """What `feedback-ops run database-restore --json` prints as `result`."""

    backup_id: str
    target: str
    replaced_tables: int
    seconds: float
    tables: int
    rows: int
    row_counts: dict[str, int]


class ApproveOverwrite(RunInput):
    """The approval form: the operator confirms the replacement by typing the name."""

    approve: bool = False
    type_database_name_to_confirm: str = ""


def default_target_name(backup_id: str) -> str:
    """`restore_20270328t010000z_3fa2c1`: a new database named for the backup."""
    return "restore_" + re.sub(r"[^a-z0-9]+", "_", backup_id.lower().removeprefix("database-"))


@flow(name="database-restore")
def database_restore(
    backup_id: BackupId = "latest",
    before: AwareDatetime | None = None,
    target_database: DatabaseName = "",
    overwrite: bool = False,
    jobs: RestoreJobs = 4,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
) -> RestoreResult:
    """Restore a database backup (runbook: `restore [backup_id]`), by default into a new
    database named for the backup.

    `backup_id` is an id or "latest"; `before` picks the newest backup
    taken before it. `target_database` names the database on the platform's server to
    restore into; one that has tables is replaced only with `overwrite=True` and an
    approval given in the UI. The platform's own database is never a target.

    Args:
        backup_id: The backup to restore: its id or `latest`.
        before: Instead of `backup_id`: the newest backup taken before this time, with
            its offset (`2026-12-01T02:00+01:00`).
        target_database: The database on the platform's server to restore into; empty
            means a new database named for the backup. Never the platform's own
            database.
        overwrite: Replace a target database that has tables; the run then asks for an
            approval in the UI, typing the database's name.
        jobs: Parallel pg_restore jobs (1 to 16).
        database_block: Name of the Postgres Database block of the platform's database
            (the default is the one `feedback-ops up` saves).
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
    """
    logger = get_run_logger()
    server = load_block(PostgresDatabase, database_block)
    store = load_block(BackupStorage, storage_block).primary()
    manifest, keys = find_backup(store, backup_id, before, "database")
    chosen = str(manifest["id"])
    name = target_database or default_target_name(chosen)
    if name == server.database:
        raise OpsError(
            f"refusing to restore into {server.display_name}: it is the source database "
            "itself; restore into a new database and switch over"
        )
    present = read_target_tables(server, name)
    replace: dict[str, int] | None = None
    if present:
        if not overwrite:
            raise OpsError(
                f"database {name!r} already has {len(present)} tables; pass overwrite=True "
                "to replace it (an approval is asked in the UI)"
            )
        replace = _approved(name, present, chosen)
    elif present is not None:
        replace = {}  # exists but empty: recreate it without asking
    target = server.with_database(name)
    with system_lock(lock_name("postgres", f"{server.host}:{server.port}:{name}")):
        prepare_target(server, name, replace)
        seconds, counts = restore_backup(store, keys, manifest, target, jobs)
    logger.info("Restored %s into %s in %.1f s", chosen, target.display_name, seconds)
    result = RestoreResult(
        backup_id=chosen,
        target=target.display_name,
        replaced_tables=len(replace or {}),
        seconds=round(seconds, 3),
        tables=len(counts),
        rows=sum(counts.values()),
        row_counts=counts,
    )
    _publish(result, manifest)
    return result


def _approved(name: str, present: dict[str, int], backup_id: str) -> dict[str, int]:
    """Pause for the operator's approval; returns the exact tables approved replacing."""
    listing = "\n".join(f"| `{t}` | {n} |" for t, n in sorted(present.items()))
    form = ApproveOverwrite.with_initial_data(
        description=f"""# Replace database `{name}`?

Restoring backup `{backup_id}` will **drop database `{name}`** and everything in it:

| table | rows now |
|---|---|
{listing}

Tick *approve* and type `{name}` to confirm.""",
    )
    answer = pause_flow_run(wait_for_input=form, timeout=APPROVAL_TIMEOUT_SECONDS)
    if not answer.approve or answer.type_database_name_to_confirm != name:
        raise OpsError(f"the replacement of {name!r} was not approved; nothing was changed")
    return present


def _publish(result: RestoreResult, manifest: dict[str, Any]) -> None:
    rows = "\n".join(f"| `{t}` | {n} |" for t, n in sorted(result.row_counts.items()))
    created = datetime.fromisoformat(manifest["created_at"]).astimezone(STOCKHOLM)
    create_markdown_artifact(
        key="database-restore",
        description=f"Restored {result.backup_id} into {result.target}",
        markdown=f"""# Restored `{result.backup_id}` into `{result.target}`

Backup taken {created:%Y-%m-%d %H:%M %Z}; restore took {result.seconds:.1f} s
({result.tables} tables, {result.rows} rows, every count as in the manifest).

To switch over, point `DATABASE_URL` (and the platform's API gateway) at the restored
database, or rename it during a maintenance window:
`ALTER DATABASE <old> RENAME TO <old>_broken; ALTER DATABASE <restored> RENAME TO <old>;`

| table | rows |
|---|---|
{rows}
""",
    )
