"""Tasks on the ops catalog: each backup's record from start to end, verification
results, the rebuild from manifests, and what retention removed (`ops.backup_records`);
the POS health sweeps' checks, damped states and moves (`ops.pos_*`); the DR runs'
records (`ops.dr_runs`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from blocks.catalog import backups, dr_runs, engine_for, migrate, opened, pos_health
from blocks.catalog.pos_health import Check, Endpoint, PosHistory
from blocks.postgres import PostgresDatabase
from blocks.storage.manifest import backup_id_of
from blocks.storage.stores import ObjectStore
from policy.pos_health import Damped
from tasks import QUICK, step


@step("open-ops-catalog", limit=QUICK)
def open_catalog(ops_db: PostgresDatabase) -> list[str]:
    """Create or migrate the `ops` schema; returns what had to be created."""
    engine = engine_for(ops_db)
    try:
        return migrate(engine, ops_db)
    finally:
        engine.dispose()


@step("record-backup-start", limit=QUICK, retries=0)
def record_backup_start(
    ops_db: PostgresDatabase,
    *,
    backup_id: str,
    kind: str,
    source: str,
    started_at: datetime,
    flow_run_id: str | None,
) -> int | None:
    """Insert the backup's `running` record, before any data moves; returns the size
    of the source's previous completed backup, to measure this one's progress by."""
    with opened(ops_db) as engine:
        return backups.start_record(
            engine,
            backup_id=backup_id,
            kind=kind,
            source=source,
            started_at=started_at,
            flow_run_id=flow_run_id,
        )


@step("record-backup-end", limit=QUICK)
def record_backup_end(ops_db: PostgresDatabase, backup_id: str, **fields: Any) -> None:
    """Mark the backup's record `completed` or `failed`, with what is known then."""
    with opened(ops_db) as engine:
        backups.finish_record(engine, backup_id, **fields)


@step("record-verification", limit=QUICK)
def record_verification(
    ops_db: PostgresDatabase,
    backup_id: str,
    *,
    verified_at: datetime,
    status: str,
    restore_seconds: float | None,
    error: str | None,
) -> bool:
    """Store a verification's outcome; False when the catalog has no such backup."""
    with opened(ops_db) as engine:
        return backups.record_verification(
            engine,
            backup_id,
            verified_at=verified_at,
            status=status,
            restore_seconds=restore_seconds,
            error=error,
        )


@step("read-newest-backup", limit=QUICK)
def read_newest_backup(ops_db: PostgresDatabase, kind: str) -> dict[str, Any] | None:
    """The record of the completed backup of `kind` that finished last, or None."""
    with opened(ops_db) as engine:
        return backups.newest_completed(engine, kind)


@step("read-newest-verified-backup", limit=QUICK)
def read_newest_verified(ops_db: PostgresDatabase, kind: str) -> dict[str, Any] | None:
    """The record of the newest `kind` backup whose restore drill passed, or None."""
    with opened(ops_db) as engine:
        return backups.newest_verified(engine, kind)


@step("read-last-restore-drill", limit=QUICK)
def read_last_restore_seconds(ops_db: PostgresDatabase, kind: str) -> float | None:
    """Seconds the newest restore drill of a `kind` backup took: what a restore of it
    is expected to take."""
    with opened(ops_db) as engine:
        return backups.last_restore_seconds(engine, kind)


@step("save-dr-run", limit=QUICK)
def save_dr_run(ops_db: PostgresDatabase, row: dict[str, Any]) -> None:
    """Write a DR run's row in `ops.dr_runs` as it stands (idempotent: the row is the
    run's whole record so far; a finished row is never reopened)."""
    with opened(ops_db) as engine:
        dr_runs.save_run(engine, row)


@step("read-running-dr-runs", limit=QUICK)
def read_running_dr_runs(ops_db: PostgresDatabase, scenario: str) -> list[dict[str, Any]]:
    """The scenario's DR runs still recorded as running, oldest first."""
    with opened(ops_db) as engine:
        return dr_runs.running_runs(engine, scenario)


@step("read-verified-backups", limit=QUICK)
def read_verified_ids(ops_db: PostgresDatabase) -> set[str]:
    """Ids of every backup whose verification passed."""
    with opened(ops_db) as engine:
        return backups.verified_ids(engine)


@step("read-verification-results", limit=QUICK)
def read_verify_statuses(ops_db: PostgresDatabase, ids: list[str]) -> dict[str, str | None]:
    """The verification status of each of these backups that the catalog knows."""
    with opened(ops_db) as engine:
        return backups.verify_statuses(engine, ids)


@step("upsert-backup-records", limit=QUICK)
def upsert_backup_records(ops_db: PostgresDatabase, records: list[dict[str, Any]]) -> int:
    """Insert or refresh records rebuilt from manifests, keeping verification results;
    returns how many were new."""
    with opened(ops_db) as engine:
        return sum(backups.upsert_from_manifest(engine, record) for record in records)


@step("forget-backup", limit=QUICK)
def forget_backup(ops_db: PostgresDatabase, backup_id: str) -> None:
    """Remove a deleted backup's record."""
    with opened(ops_db) as engine:
        backups.forget(engine, backup_id)


@step("clear-interrupted-backups", limit=QUICK)
def clear_interrupted_backups(
    ops_db: PostgresDatabase, stores: list[ObjectStore], *, kind: str, source: str
) -> tuple[list[str], list[str]]:
    """Under the source's lock: mark `failed` (interrupted) the records of this kind and
    source still `running`, which only a run that died leaves, then remove the
    unfinished uploads of this kind whose backup is not running. Returns the ids marked
    and the URLs removed. One step, as every backup runs it first."""
    with opened(ops_db) as engine:
        closed = backups.close_interrupted(engine, kind=kind, source=source, now=datetime.now(UTC))
        running = {row["id"] for row in backups.running(engine)}
    removed = []
    for store in stores:
        for upload in store.unfinished(f"{kind}/"):
            backup_id = backup_id_of(upload.key)
            if backup_id is not None and backup_id not in running:
                store.discard(upload)
                removed.append(store.url_for(upload.key) + " (unfinished)")
    return closed, removed


@step("read-running-backups", limit=QUICK)
def read_running_backups(ops_db: PostgresDatabase) -> list[dict[str, Any]]:
    """Every backup record still `running`, oldest first."""
    with opened(ops_db) as engine:
        return backups.running(engine)


@step("close-stale-backups", limit=QUICK)
def close_stale_backups(
    ops_db: PostgresDatabase, *, longest: timedelta, now: datetime
) -> list[str]:
    """Mark `failed` (interrupted) the records `running` for longer than any backup can
    run; returns their ids."""
    with opened(ops_db) as engine:
        return backups.close_stale(engine, started_before=now - longest, now=now)


# --- POS health ------------------------------------------------------------------------


@step("record-pos-checks", limit=QUICK, retries=0)
def record_pos_checks(ops_db: PostgresDatabase, sweep_id: str, checks: list[Check]) -> int:
    """Append one sweep's checks to `ops.pos_health_checks`. Not retried: a retry after
    a lost answer would store them twice, and skew the uptime."""
    with opened(ops_db) as engine:
        return pos_health.record_checks(engine, sweep_id, checks)


@step("advance-pos-states", limit=QUICK)
def advance_pos_states(
    ops_db: PostgresDatabase, results: dict[Endpoint, bool], at: datetime
) -> dict[Endpoint, Damped]:
    """Apply one sweep's endpoint results to their damped states (a sweep already
    applied is ignored, so a retry is harmless)."""
    with opened(ops_db) as engine:
        return pos_health.advance_states(engine, results, at)


@step("read-pos-history", limit=QUICK)
def read_pos_history(ops_db: PostgresDatabase, at: datetime) -> PosHistory:
    """Each provider's last move, and its uptime over 1, 7 and 30 days before `at`."""
    with opened(ops_db) as engine:
        return pos_health.history(engine, at)


@step("read-pos-last-healthy", limit=QUICK)
def read_pos_last_healthy(
    ops_db: PostgresDatabase, providers: list[str], before: datetime
) -> dict[str, datetime | None]:
    """Each provider's newest good `service` check at or before `before` (None: none
    kept): where an outage's lost webhooks begin."""
    with opened(ops_db) as engine:
        return pos_health.last_healthy(engine, providers, before)


@step("record-pos-move", limit=QUICK, retries=0)
def record_pos_move(ops_db: PostgresDatabase, **move: Any) -> None:
    """Note a failover or failback the gateway accepted in `ops.pos_failovers`."""
    with opened(ops_db) as engine:
        pos_health.record_move(engine, **move)
