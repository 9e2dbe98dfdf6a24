"""backup-retention against a real local store, a replica and the ops catalog."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from blocks import PostgresDatabase
from blocks.catalog import backups, engine_for, migrate
from blocks.storage.manifest import BackupKeys, build_manifest, dump_manifest, new_backup_id
from blocks.storage.stores import LocalStore, parse_location
from blocks.storage.verify import expected_encryption
from flows.backup_retention import backup_retention

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2027, 1, 1, 6, 0, tzinfo=STOCKHOLM)


def seed_history(
    root: Path, replica: Path, ops_url: str, first: date, days: int, verified: set[date]
) -> dict[date, str]:
    """One small fake dump a day, with manifests, a replica copy and catalog rows."""
    stores = [LocalStore(parse_location(f"file://{p}")) for p in (root, replica)]
    ops = PostgresDatabase.from_url(ops_url)
    engine = engine_for(ops)
    migrate(engine, ops)
    ids = {}
    for i in range(days):
        day = first + timedelta(days=i)
        at = datetime.combine(day, time(2), STOCKHOLM)
        backup_id = new_backup_id("database", at)
        keys = BackupKeys.for_backup("database", backup_id, at, ".dump")
        body = f"dump of {day}".encode()
        manifest = build_manifest(
            backup_id=backup_id, kind="database", source="postgres@db/platform",
            object_name=keys.object.rsplit("/", 1)[1], created_at=at, finished_at=at,
            size=len(body), sha256="0" * 64, encryption=expected_encryption(stores[0]),
            tools={}, content_format="pg_dump-custom",
        )  # fmt: skip
        for store in stores:
            store.put_bytes(keys.object, body)
            store.put_bytes(keys.manifest, dump_manifest(manifest))
        backups.upsert_from_manifest(
            engine,
            {"id": backup_id, "kind": "database", "status": "completed", "source": "db",
             "locations": [], "started_at": at, "manifest": manifest},
        )  # fmt: skip
        if day in verified:
            backups.record_verification(
                engine, backup_id, verified_at=at, status="passed", restore_seconds=1.0, error=None
            )
        ids[day] = backup_id
    engine.dispose()
    return ids


def dumps(root: Path) -> set[str]:
    return {p.name.removesuffix(".dump") for p in root.rglob("*.dump")}


def catalog_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM ops.backup_records")}


def test_dry_run_by_default_then_exactly_the_expired_go_everywhere(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    primary, replica = tmp_path / "sthlm", tmp_path / "gbg"
    # 2026-06-01 … 2026-12-31, verified only up to 2026-06-10.
    verified = {date(2026, 6, 1) + timedelta(days=i) for i in range(10)}
    ids = seed_history(primary, replica, platform_db, date(2026, 6, 1), 214, verified)
    params = save_blocks(
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{primary}",
        BACKUP_REPLICA_URLS=f"file://{replica}",
    )
    blocks = {k: params[k] for k in ("storage_block", "ops_database_block")}
    kept_days = (
        {date(2026, 11, 28) + timedelta(days=i) for i in range(34)}  # daily, 35 days
        | {date(2026, 10, 4) + timedelta(weeks=i) for i in range(8)}  # Sundays, 13 weeks
        | {date(2026, m, 1) for m in range(6, 13)}  # firsts, 7 years
        | {date(2026, 6, 10)}  # the newest verified backup
    )
    expired = {ids[d] for d in ids if d not in kept_days}

    dry = backup_retention(**blocks, as_of=NOW)
    assert dry.dry_run and set(dry.deleted) == expired
    assert dumps(primary) == dumps(replica) == set(ids.values())  # nothing touched

    real = backup_retention(**blocks, as_of=NOW, dry_run=False)
    survivors = {ids[d] for d in kept_days}
    assert set(real.deleted) == expired and real.kept == len(survivors)
    assert dumps(primary) == dumps(replica) == survivors
    assert {p.name.removesuffix(".manifest.json") for p in primary.rglob("*.manifest.json")} == (
        survivors
    )
    assert catalog_ids(platform_db) == survivors


def test_nothing_is_deleted_without_the_catalog(tmp_path: Path, save_blocks: Any) -> None:
    primary = tmp_path / "sthlm"
    LocalStore(parse_location(f"file://{primary}")).put_bytes("database/x.dump", b"x")
    params = save_blocks(
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere", BACKUP_URL=f"file://{primary}"
    )
    state = backup_retention(
        storage_block=params["storage_block"],
        ops_database_block=params["ops_database_block"],
        dry_run=False,
        return_state=True,
    )
    assert state.is_failed()
    assert str(state.result(raise_on_failure=False)) == (
        "cannot read verification results, so nothing is deleted: PostgreSQL at "
        "127.0.0.1:1/nowhere is unreachable: connection refused"
    )
    assert (primary / "database/x.dump").exists()
