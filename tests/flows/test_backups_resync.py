"""backups-resync: the catalog rebuilt from the manifests alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from flows.backups_resync import backups_resync
from flows.database_backup import database_backup


def records(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, kind, status, locations, size, sha256, manifest IS NOT NULL "
            "FROM ops.backup_records ORDER BY id"
        ).fetchall()


def test_catalog_is_rebuilt_after_the_ops_schema_is_dropped(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    params = save_blocks(
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{tmp_path}/stockholm",
        BACKUP_REPLICA_URLS=f"file://{tmp_path}/gothenburg",
    )
    first = database_backup(**params)
    second = database_backup(**params)
    before = records(platform_db)
    assert [r[0] for r in before] == sorted([first.backup_id, second.backup_id])

    with psycopg.connect(platform_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA ops CASCADE")
    storage = {k: params[k] for k in ("storage_block", "ops_database_block")}
    result = backups_resync(**storage)

    assert (result.manifests, result.inserted, result.refreshed) == (2, 2, 0)
    assert records(platform_db) == before  # locations include the replica copies
    again = backups_resync(**storage)
    assert (again.inserted, again.refreshed) == (0, 2)


def test_a_replica_without_the_copy_is_left_out_and_a_bad_manifest_is_named(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    params = save_blocks(
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{tmp_path}/stockholm",
        BACKUP_REPLICA_URLS=f"file://{tmp_path}/gothenburg",
    )
    backup = database_backup(**params)
    replica_copy = Path(backup.locations[1].removeprefix("file://"))
    replica_copy.unlink()
    broken = tmp_path / "stockholm/database/2020/01/database-20200101T000000Z-abcdef.manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"manifest_format": 99}')

    storage = {k: params[k] for k in ("storage_block", "ops_database_block")}
    state = backups_resync(**storage, return_state=True)

    assert state.is_failed()
    assert str(state.result(raise_on_failure=False)) == (
        f"1 manifest(s) could not be read: file://{broken}: unknown manifest format 99"
    )
    [(_, _, _, locations, *_)] = records(platform_db)
    assert locations == [backup.locations[0]]  # the Gothenburg copy is gone
