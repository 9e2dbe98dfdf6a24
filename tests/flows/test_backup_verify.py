"""backup-verify: read back, restore drill into a scratch database, counts, alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support import s3

from blocks.postgres.restore import scratch_label
from flows.backup_verify import RTO_SECONDS, backup_verify
from flows.database_backup import database_backup
from policy import route


def failure_of(state: Any) -> str:
    assert state.is_failed(), state
    return str(state.result(raise_on_failure=False))


def scratch_databases(admin_url: str, backup_id: str) -> list[str]:
    """The scratch databases left of `backup_id`'s drills; other workers' are not ours."""
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"fo_scratch_{scratch_label(backup_id)}_%",),
        ).fetchall()
    return [r[0] for r in rows]


def verification(url: str, backup_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT verify_status, verified_at IS NOT NULL, restore_seconds > 0, verify_error "
            "FROM ops.backup_records WHERE id = %s",
            (backup_id,),
        ).fetchone()


@pytest.fixture
def backed_up(platform_db: str, tmp_path: Path, save_blocks: Any) -> tuple[dict[str, Any], Any]:
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}/b")
    return params, database_backup(**params)


def test_latest_backup_restores_with_the_manifests_counts(
    backed_up: tuple[dict[str, Any], Any], platform_db: str, pg_admin_url: str, tmp_path: Path
) -> None:
    params, backup = backed_up
    result = backup_verify(**params)

    assert result.backup_id == backup.backup_id
    assert (result.size, result.sha256) == (backup.size, backup.sha256)
    manifest_path = next((tmp_path / "b").rglob("*.manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    assert result.tables == len(manifest["tables"])
    assert result.rows == sum(manifest["tables"].values())
    assert 0 < result.restore_seconds < RTO_SECONDS and result.within_rto
    assert verification(platform_db, backup.backup_id) == ("passed", True, True, None)
    assert scratch_databases(pg_admin_url, backup.backup_id) == []


def test_a_flipped_byte_fails_verification_and_raises_an_alert(
    backed_up: tuple[dict[str, Any], Any], platform_db: str, tmp_path: Path
) -> None:
    params, backup = backed_up
    dump = next((tmp_path / "b").rglob("*.dump"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))

    state = backup_verify(backup_id=backup.backup_id, **params, return_state=True)

    message = failure_of(state)
    assert message.startswith(f"file://{dump} reads back as {backup.size} bytes sha256")
    assert message.endswith(
        f"but its manifest says {backup.size} bytes sha256 {backup.sha256[:12]}…"
    )
    assert verification(platform_db, backup.backup_id) == ("failed", True, None, message)
    with psycopg.connect(platform_db) as conn:
        alerts = conn.execute("SELECT name, severity, dedup_key, status FROM ops.alerts").fetchall()
    queued = route("high", datetime.now(UTC)).queued  # a holiday queues it for Monday
    assert alerts == [
        (
            "backup-verification-failed",
            "high",
            f"backup-verify:{backup.backup_id}",
            "queued" if queued else "open",
        )
    ]


def test_row_counts_that_differ_from_the_manifest_fail(
    backed_up: tuple[dict[str, Any], Any], tmp_path: Path, pg_admin_url: str
) -> None:
    params, backup = backed_up
    manifest_path = next((tmp_path / "b").rglob("*.manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["tables"]["public.feedback"] += 1
    manifest_path.write_text(json.dumps(manifest))

    state = backup_verify(backup_id=backup.backup_id, **params, return_state=True)

    feedback = manifest["tables"]["public.feedback"]
    assert failure_of(state) == (
        f"backup {backup.backup_id} restored with different row counts: "
        f"public.feedback: {feedback - 1} rows restored, manifest says {feedback}"
    )
    assert scratch_databases(pg_admin_url, backup.backup_id) == []


def test_verifies_from_storage_alone_when_the_catalog_is_gone(
    backed_up: tuple[dict[str, Any], Any], platform_db: str
) -> None:
    params, backup = backed_up
    with psycopg.connect(platform_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA ops CASCADE")
    result = backup_verify(backup_id=backup.backup_id, **params)
    assert result.backup_id == backup.backup_id and result.within_rto


def test_unknown_and_malformed_ids_are_one_line_errors(
    backed_up: tuple[dict[str, Any], Any], tmp_path: Path
) -> None:
    params, _backup = backed_up
    state = backup_verify(backup_id="database-20200101T000000Z-abcdef", **params, return_state=True)
    assert failure_of(state) == (
        f"no backup 'database-20200101T000000Z-abcdef' in file://{tmp_path}/b"
    )
    # Refused by the parameter schema (as the UI's form does) before any step.
    state = backup_verify(backup_id="yesterday", **params, return_state=True)
    assert state.is_failed()
    assert "backup_id: String should match pattern" in str(state.message)


def test_verifies_a_backup_stored_in_s3(
    platform_db: str, s3_endpoint: str, s3_bucket: str, save_blocks: Any, pg_admin_url: str
) -> None:
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"s3://{s3_bucket}/platform")
    backup = database_backup(**params)
    result = backup_verify(**params, jobs=4)
    assert (result.backup_id, result.sha256) == (backup.backup_id, backup.sha256)
    client = s3.s3_client(s3_endpoint)
    assert client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 2  # nothing left behind
    assert scratch_databases(pg_admin_url, backup.backup_id) == []
