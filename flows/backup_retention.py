"""Backup retention, grandfather-father-son (runbook: financial records kept 7 years).

Every day at 06:00: each backup in storage is kept while younger than its class allows
(daily 35 days, Sunday 13 weeks, first-of-month 7 years), and the newest verified and
the newest backup of each kind are kept whatever their age. What expires is deleted at
every replica and then at the primary (manifest last, so a deletion cut short is found
and finished by the next run), then from the catalog. Manual runs are dry runs unless
told otherwise; the artifact lists everything kept and deleted, and why.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import AwareDatetime, BaseModel
from sqlalchemy.exc import SQLAlchemyError

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK
from blocks.storage.manifest import object_key_of
from feedback_ops.errors import OpsError
from flows.parameters import AtLeastOne, BlockName
from policy import BackupInfo, RetentionDecision, RetentionRules, plan_retention
from tasks.catalog import forget_backup, read_verified_ids
from tasks.storage import delete_backup, read_manifests


class RetentionResult(BaseModel):
    """What `feedback-ops run backup-retention --json` prints as `result`."""

    dry_run: bool
    kept: int
    deleted: list[str]


@flow(name="backup-retention")
def backup_retention(
    dry_run: bool = True,
    daily_days: AtLeastOne = 35,
    weekly_weeks: AtLeastOne = 13,
    monthly_years: AtLeastOne = 7,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    as_of: AwareDatetime | None = None,
) -> RetentionResult:
    """Delete backups older than their retention class allows (dry run by default).

    The daily schedule runs with `dry_run=False`; from the UI, look at the dry run's
    artifact first. Which backups were verified is read from `ops.backup_records`:
    without the catalog nothing is deleted.

    Args:
        dry_run: Only report what would be deleted (the default from the UI); the
            schedule runs with false.
        daily_days: Keep daily backups this many days (at least 1; the runbook: 35).
        weekly_weeks: Keep weekly backups this many weeks (at least 1; the runbook: 13).
        monthly_years: Keep monthly backups this many years (at least 1; the runbook:
            7).
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        as_of: Evaluate as if it were this moment (an ISO time with its offset); empty
            means now, as the schedule runs it.
    """
    logger = get_run_logger()
    rules = RetentionRules(daily_days, weekly_weeks, monthly_years)
    now = as_of or datetime.now(UTC)
    storage = load_block(BackupStorage, storage_block)
    primary, replicas = storage.primary(), storage.replicas()
    listing = read_manifests(primary)
    if listing.unreadable:
        raise OpsError(
            f"{len(listing.unreadable)} manifest(s) could not be read, so nothing is deleted: "
            f"{listing.unreadable[0]}"
        )
    found = dict(listing.found)
    ops_db, verified = _verified_ids(ops_database_block)
    infos = {
        key: BackupInfo(
            backup_id=m["id"],
            kind=m["kind"],
            created_at=datetime.fromisoformat(m["created_at"]),
            retention_class=m["retention_class"],
            verified=m["id"] in verified,
        )
        for key, m in found.items()
    }
    decisions = plan_retention(infos.values(), now, rules)
    key_of = {info.backup_id: key for key, info in infos.items()}
    deleted = []
    if not dry_run:
        for decision in decisions:
            if decision.keep:
                continue
            key = key_of[decision.backup.backup_id]
            delete_backup(primary, replicas, key, object_key_of(key, found[key]))
            forget_backup(ops_db, decision.backup.backup_id)
            deleted.append(decision.backup.backup_id)
    else:
        deleted = [d.backup.backup_id for d in decisions if not d.keep]
    _publish(decisions, dry_run)
    kept = sum(d.keep for d in decisions)
    logger.info(
        "%s: kept %d, %s %d", "Dry run" if dry_run else "Retention", kept,
        "would delete" if dry_run else "deleted", len(deleted),
    )  # fmt: skip
    return RetentionResult(dry_run=dry_run, kept=kept, deleted=deleted)


def _verified_ids(ops_database_block: str) -> tuple[PostgresDatabase, set[str]]:
    """The ops catalog and the ids of every verified backup in it."""
    try:
        ops_db = load_block(PostgresDatabase, ops_database_block)
        return ops_db, read_verified_ids(ops_db)
    except (OpsError, SQLAlchemyError, ValueError) as exc:
        # Without knowing what was verified, the newest verified backup cannot be spared.
        raise OpsError(f"cannot read verification results, so nothing is deleted: {exc}") from None


def _publish(decisions: list[RetentionDecision], dry_run: bool) -> None:
    verb = "would delete" if dry_run else "deleted"
    create_table_artifact(
        key="backup-retention",
        description=f"{'Dry run: ' if dry_run else ''}"
        f"{sum(not d.keep for d in decisions)} {verb}, {sum(d.keep for d in decisions)} kept",
        table=[
            {
                "backup": d.backup.backup_id,
                "created": d.backup.created_at.isoformat(),
                "class": d.backup.retention_class,
                "verified": d.backup.verified,
                "decision": "keep" if d.keep else verb,
                "why": d.reason,
            }
            for d in decisions
        ],
    )
