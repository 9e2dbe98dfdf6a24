"""Runbook, "Backup Monitoring" and `comprehensive-backup-system.sh report`.

Every morning at 08:00: the newest backups of each kind with their status, size, age,
replicas, encryption and verification, and the monitoring checks: a database backup
younger than 26 hours (else the RPO is breached), every replica present with the same
size and sha256, server-side encryption on every S3 object, and what a run that died
left behind (a record still `running`, unfinished uploads). Each failed check raises an
alert of its severity; a check that passes again resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import AwareDatetime, BaseModel
from sqlalchemy.exc import SQLAlchemyError

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import ALERT_CHANNELS_BLOCK, BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK
from blocks.storage.manifest import backup_id_of, object_key_of
from blocks.storage.stores import ObjectStore, S3Store
from feedback_ops.errors import OpsError
from flows.alert_steps import AlertTargets, clear_alert, raise_alert
from flows.parameters import BlockName
from policy import Severity
from tasks import TRANSFER
from tasks.catalog import close_stale_backups, read_running_backups, read_verify_statuses
from tasks.notify import Alert
from tasks.storage import find_unfinished, read_copy, read_info, read_manifests

# Runbook: daily database and configuration backups (26 h leaves two hours for a late
# run) and Redis snapshots every six hours (7 h). Having none at all fails the check
# too. A stale database backup breaches the platform's RPO (critical); a stale cache
# snapshot or configuration bundle is high.
# A backup's longest step may run TRANSFER seconds; one running for longer than that
# and an hour more belongs to a run that died.
LONGEST_BACKUP = timedelta(seconds=TRANSFER) + timedelta(hours=1)

MAX_AGE: dict[str, tuple[timedelta, Severity]] = {
    "database": (timedelta(hours=26), Severity.CRITICAL),
    "redis": (timedelta(hours=7), Severity.HIGH),
    "pos-config": (timedelta(hours=26), Severity.HIGH),
    "app-config": (timedelta(hours=26), Severity.HIGH),
}


@dataclass(frozen=True)
class Check:
    """One monitoring check's outcome."""

    name: str
    ok: bool
    severity: Severity
    detail: str


class ReportResult(BaseModel):
    """What `feedback-ops run backup-report --json` prints as `result`."""

    backups: int
    checks: int
    failed: list[str]


def _verification(ops_database_block: str, ids: list[str]) -> dict[str, Any]:
    """Verification results from the catalog; none when it cannot be read (the report
    is still made from the manifests, and says `not yet`)."""
    try:
        return read_verify_statuses(load_block(PostgresDatabase, ops_database_block), ids)
    except (OpsError, SQLAlchemyError, ValueError):
        return {}


def summary(
    newest: dict[str, tuple[str, dict[str, Any]]],
    verified: dict[str, Any],
    replica_state: dict[str, str],
    now: datetime,
) -> pd.DataFrame:
    """One row per kind: the newest backup, its age, size, replicas and verification."""
    rows = []
    for kind, (_key, manifest) in sorted(newest.items()):
        created = datetime.fromisoformat(manifest["created_at"])
        rows.append(
            {
                "kind": kind,
                "backup_id": manifest["id"],
                "created_at": created,
                "age_hours": (now - created).total_seconds() / 3600,
                "size_mb": manifest["size"] / 1e6,
                "encryption": manifest["encryption"].get("server_side") or "none (local)",
                "replicas": replica_state.get(manifest["id"], "-"),
                "verified": verified.get(manifest["id"]) or "not yet",
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["age_hours"] = frame["age_hours"].round(1)
        frame["size_mb"] = frame["size_mb"].round(1)
    return frame


@flow(name="backup-report")
def backup_report(
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    as_of: AwareDatetime | None = None,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
) -> ReportResult:
    """The daily backup report and the runbook's backup monitoring checks.

    `as_of` evaluates the ages at another moment than now; leave it empty in the schedule.

    Args:
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        as_of: Evaluate as if it were this moment (an ISO time with its offset); empty
            means now, as the schedule runs it.
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
    """
    logger = get_run_logger()
    now = (as_of or datetime.now(UTC)).astimezone(UTC)
    storage = load_block(BackupStorage, storage_block)
    primary, replicas = storage.primary(), storage.replicas()
    listing = read_manifests(primary)
    if listing.unreadable:
        raise OpsError(
            f"{len(listing.unreadable)} manifest(s) could not be read: {listing.unreadable[0]}"
        )
    found = listing.found
    newest: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, manifest in found:
        kind = manifest["kind"]
        if kind not in newest or manifest["created_at"] > newest[kind][1]["created_at"]:
            newest[kind] = (key, manifest)

    checks = _age_checks(newest, now)
    replica_state: dict[str, str] = {}
    for _kind, (key, manifest) in newest.items():
        object_key = object_key_of(key, manifest)
        replica_checks = _replica_checks(manifest, key, object_key, replicas)
        checks += replica_checks
        replica_state[manifest["id"]] = (
            f"{sum(c.ok for c in replica_checks)}/{len(replicas)} ok" if replicas else "none"
        )
        checks += _encryption_checks(manifest, object_key, [primary, *replicas])

    checks += _crash_checks(ops_database_block, [primary, *replicas], now)
    verified = _verification(ops_database_block, [m["id"] for _, m in newest.values()])
    frame = summary(newest, verified, replica_state, now)
    _publish(frame, checks, primary, len(found))
    targets = AlertTargets(ops_database_block, alert_channels_block)
    for check in checks:
        condition = f"backup-report:{check.name}"
        if check.ok:
            clear_alert(condition, targets)
            continue
        logger.error("Check failed: %s: %s", check.name, check.detail)
        try:
            raise_alert(
                Alert(
                    name="backup-check-failed",
                    severity=check.severity,
                    summary=check.detail,
                    details={"check": check.name},
                    dedup_key=condition,
                    runbook_section="Backup Monitoring",
                ),
                now,
                targets,
            )
        except OpsError as exc:
            logger.error("Could not deliver the alert for %s: %s", check.name, exc)
    failed = [c.name for c in checks if not c.ok]
    return ReportResult(backups=len(found), checks=len(checks), failed=failed)


def _crash_checks(ops_database_block: str, stores: list[ObjectStore], now: datetime) -> list[Check]:
    """What a run that died left: a record still `running` for longer than any backup
    can run (marked failed here, as interrupted), and unfinished uploads of backups
    that are not running (the next backup of that kind removes them)."""
    try:
        ops_db = load_block(PostgresDatabase, ops_database_block)
        closed = close_stale_backups(ops_db, longest=LONGEST_BACKUP, now=now)
        running = read_running_backups(ops_db)
    except (OpsError, SQLAlchemyError, ValueError) as exc:
        detail = f"the ops catalog could not be read, so interrupted backups are unknown: {exc}"
        return [Check("interrupted-backups", False, Severity.HIGH, detail)]
    hours = LONGEST_BACKUP.total_seconds() / 3600
    now_running = ", ".join(
        f"{r['id']} (since {r['started_at']:%Y-%m-%d %H:%M %Z})" for r in running
    )
    interrupted = Check(
        "interrupted-backups",
        not closed,
        Severity.HIGH,
        f"{len(closed)} backup(s) still running {hours:.0f} h after they started, so their "
        f"runs died; marked failed (interrupted): {', '.join(closed)}"
        if closed
        else "none" + (f"; running now: {now_running}" if running else ""),
    )
    live = {r["id"] for r in running}
    left = [
        store.url_for(upload.key)
        for store in stores
        for upload in find_unfinished(store)
        if backup_id_of(upload.key) not in live
    ]
    unfinished = Check(
        "unfinished-uploads",
        not left,
        Severity.MEDIUM,
        f"{len(left)} unfinished upload(s) left by runs that died (the next backup of "
        f"their kind removes them): {', '.join(left)}"
        if left
        else "none",
    )
    return [interrupted, unfinished]


def _age_checks(newest: dict[str, tuple[str, dict[str, Any]]], now: datetime) -> list[Check]:
    checks = []
    for kind, (limit, severity) in MAX_AGE.items():
        hours = limit.total_seconds() / 3600
        if kind not in newest:
            checks.append(Check(f"{kind}-age", False, severity, f"no {kind} backup at all"))
            continue
        created = datetime.fromisoformat(newest[kind][1]["created_at"])
        age = now - created
        ok = age <= limit
        detail = f"newest {kind} backup is {age.total_seconds() / 3600:.1f} h old" + (
            "" if ok else f": older than {hours:.0f} h, the RPO is breached"
        )
        checks.append(Check(f"{kind}-age", ok, severity, detail))
    return checks


def _replica_checks(
    manifest: dict[str, Any], manifest_key: str, object_key: str, replicas: list[ObjectStore]
) -> list[Check]:
    checks = []
    for replica in replicas:
        name = f"replica:{replica.location}:{manifest['kind']}"
        held = read_copy(replica, manifest_key, object_key)
        if held is None:
            checks.append(
                Check(name, False, Severity.HIGH, f"{replica.url_for(object_key)} is missing")
            )
            continue
        info, copy = held
        same = info.size == manifest["size"] and copy.get("sha256") == manifest["sha256"]
        detail = f"{replica.url_for(object_key)} " + (
            "matches" if same else "differs from the primary (size or sha256)"
        )
        checks.append(Check(name, same, Severity.HIGH, detail))
    return checks


def _encryption_checks(
    manifest: dict[str, Any], object_key: str, stores: list[ObjectStore]
) -> list[Check]:
    checks = []
    for store in stores:
        if not isinstance(store, S3Store):
            continue
        info = read_info(store, object_key)
        if info is None:
            continue  # reported by the replica check
        ok = info.encryption == store.settings.sse
        detail = f"{store.url_for(object_key)} server-side encryption: {info.encryption or 'none'}"
        checks.append(
            Check(f"encryption:{store.location}:{manifest['kind']}", ok, Severity.HIGH, detail)
        )
    return checks


def _publish(frame: pd.DataFrame, checks: list[Check], primary: ObjectStore, count: int) -> None:
    table = frame.astype({"created_at": str}).to_dict("records") if not frame.empty else []
    create_table_artifact(
        key="backup-report", table=table, description=f"Newest backups in {primary.location}"
    )
    lines = "\n".join(
        f"| {'ok' if c.ok else '**FAILED**'} | {c.name} | {c.severity} | {c.detail} |"
        for c in checks
    )
    failed = sum(not c.ok for c in checks)
    create_markdown_artifact(
        key="backup-monitoring",
        description=f"{len(checks)} checks, {failed} failed",
        markdown=f"# Backup monitoring — {failed} of {len(checks)} checks failed\n\n"
        f"{count} backups in `{primary.location}`.\n\n"
        "| result | check | severity | detail |\n|---|---|---|---|\n" + lines,
    )
