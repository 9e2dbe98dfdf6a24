"""The database-backup flow against real PostgreSQL, a real local disk and S3 (moto)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from support import pg, s3
from support.artifacts import progress_bars
from support.net import wait_until
from support.pgcompare import fingerprint

from blocks import PostgresDatabase
from blocks.catalog import backups, engine_for
from blocks.postgres.dump import PG_DUMP_APPLICATION_NAME
from blocks.storage.stores import LocalStore, parse_location
from flows.database_backup import database_backup
from policy import route
from tasks.postgres import dump_database

PG_RESTORE = "pg_restore"


def restore_into(dump: Path, target_url: str) -> None:
    """Restore a custom-format dump with the real pg_restore."""
    subprocess.run(
        [PG_RESTORE, "--no-owner", "--exit-on-error", "--dbname", target_url, str(dump)],
        check=True,
        capture_output=True,
    )


def catalog_row(url: str, backup_id: str) -> dict[str, Any] | None:
    ops = PostgresDatabase.from_url(url)
    engine = engine_for(ops)
    try:
        return backups.read_record(engine, backup_id)
    finally:
        engine.dispose()


def catalog_rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT id, status, error FROM ops.backup_records ORDER BY started_at")
        return [dict(zip(("id", "status", "error"), row, strict=True)) for row in cur]


def failure_of(state: Any) -> str:
    assert state.is_failed(), state
    exc = state.result(raise_on_failure=False)
    return str(exc)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_backup_restores_to_identical_database(
    platform_db: str, db_factory: Any, tmp_path: Path, save_blocks: Any
) -> None:
    store = tmp_path / "backups"
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{store}")

    result = database_backup(**params)

    dump = store / result.locations[0].removeprefix(f"file://{store}/")
    assert result.locations == [f"file://{dump}"]
    data = dump.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    # Nothing but the dump and its manifest: no temporary file left behind.
    assert files_under(store) == sorted(
        [
            dump.relative_to(store).as_posix(),
            dump.relative_to(store).as_posix().replace(".dump", ".manifest.json"),
        ]
    )

    manifest = json.loads(dump.with_name(dump.name.replace(".dump", ".manifest.json")).read_text())
    source = fingerprint(platform_db)
    assert manifest["id"] == result.backup_id
    assert manifest["kind"] == "database"
    assert manifest["size"] == result.size and manifest["sha256"] == result.sha256
    assert manifest["object"] == dump.name
    assert manifest["format"] == "pg_dump-custom"
    assert manifest["retention_class"] in ("daily", "weekly", "monthly")
    assert manifest["tools"]["pg_dump"].startswith("pg_dump (PostgreSQL)")
    assert {k: v[0] for k, v in source.items()} == {
        k: v for k, v in manifest["tables"].items() if k.startswith("public.")
    }

    target = db_factory()
    restore_into(dump, target)
    assert fingerprint(target) == source

    row = catalog_row(platform_db, result.backup_id)
    assert row is not None
    assert row["status"] == "completed"
    assert row["kind"] == "database"
    assert row["locations"] == result.locations
    assert row["size"] == result.size and row["sha256"] == result.sha256
    assert row["finished_at"] > row["started_at"] and row["duration_seconds"] > 0
    assert row["error"] is None
    assert row["manifest"] == manifest


def test_s3_backup_is_encrypted_replicated_and_restorable(
    platform_db: str,
    db_factory: Any,
    s3_endpoint: str,
    s3_bucket: str,
    tmp_path: Path,
    save_blocks: Any,
) -> None:
    client = s3.s3_client(s3_endpoint)
    replica_bucket = s3.create_bucket(client, s3.new_bucket_name("fo-gbg"))
    local_replica = tmp_path / "replica"
    params = save_blocks(
        DATABASE_URL=platform_db,
        BACKUP_URL=f"s3://{s3_bucket}/platform",
        BACKUP_REPLICA_URLS=f"s3://{replica_bucket}/platform, file://{local_replica}",
        BACKUP_SSE="AES256",
    )
    try:
        result = database_backup(**params)

        key = result.locations[0].removeprefix(f"s3://{s3_bucket}/")
        assert key.startswith("platform/database/") and key.endswith(".dump")
        assert result.locations[1] == f"s3://{replica_bucket}/{key}"
        assert result.locations[2].startswith(f"file://{local_replica}/database/")
        manifest_key = key.replace(".dump", ".manifest.json")
        for bucket in (s3_bucket, replica_bucket):
            head = client.head_object(Bucket=bucket, Key=key)
            assert head["ServerSideEncryption"] == "AES256"
            assert head["ContentLength"] == result.size
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == result.sha256
            manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
            assert manifest["sha256"] == result.sha256
            assert manifest["encryption"] == {"server_side": "AES256", "kms_key_id": None}
        assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []

        dump = tmp_path / "restored.dump"
        dump.write_bytes(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
        target = db_factory()
        restore_into(dump, target)
        assert fingerprint(target) == fingerprint(platform_db)
        local_copy = Path(result.locations[2].removeprefix("file://"))
        assert hashlib.sha256(local_copy.read_bytes()).hexdigest() == result.sha256
    finally:
        s3.empty_and_delete_bucket(client, replica_bucket)


def test_large_dump_goes_up_in_multipart_parts(
    pg_admin_url: str, db_factory: Any, s3_endpoint: str, s3_bucket: str, save_blocks: Any
) -> None:
    """A dump bigger than one 16 MiB part is uploaded in parts, encrypted, read back."""
    url = db_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        # Random bytes do not compress: the dump is about as big as the table.
        conn.execute(
            "CREATE TABLE blobs AS SELECT g AS id, "
            "decode(string_agg(lpad(to_hex((random()*255)::int), 2, '0'), ''), 'hex') AS b "
            "FROM generate_series(1, 2200) g, generate_series(1, 10000) x GROUP BY g"
        )
    params = save_blocks(DATABASE_URL=url, BACKUP_URL=f"s3://{s3_bucket}")
    result = database_backup(**params)
    assert result.size > 16 * 1024 * 1024
    client = s3.s3_client(s3_endpoint)
    key = result.locations[0].removeprefix(f"s3://{s3_bucket}/")
    head = client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    # An object uploaded in parts has an ETag of the form "<md5>-<number of parts>".
    assert head["ETag"].strip('"').endswith("-2")


def test_secrets_stay_out_of_logs_artifacts_manifest_and_catalog(
    scram_pg_url: str, tmp_path: Path, save_blocks: Any
) -> None:
    password = "correct-horse-battery"
    assert password in scram_pg_url
    store = tmp_path / "backups"
    params = save_blocks(DATABASE_URL=scram_pg_url, BACKUP_URL=f"file://{store}")

    state = database_backup(**params, return_state=True)
    assert state.is_completed(), failure_of(state)
    run_id = state.state_details.flow_run_id

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["database-backup"]))
        )
        run = client.read_flow_run(run_id)
    texts = [log.message for log in logs]
    texts += [json.dumps(a.data) for a in artifacts]
    texts += [json.dumps(run.parameters)]
    texts += [p.read_text(errors="replace") for p in store.rglob("*.json")]
    assert texts and all(password not in text for text in texts)
    # The artifact shows what an operator needs.
    mine = [a for a in artifacts if a.flow_run_id == run_id]
    assert len(mine) == 1
    shown = str(mine[0].data)
    for needle in ("completed", "Size", "Duration", "Throughput", "sha256", "primary"):
        assert needle in shown
    with psycopg.connect(scram_pg_url) as conn:
        stored = conn.execute("SELECT r::text FROM ops.backup_records r").fetchall()
    assert stored and all(password not in row[0] for row in stored)


def test_unreachable_database_fails_with_one_line_reason(tmp_path: Path, save_blocks: Any) -> None:
    from support.net import free_port

    port = free_port()
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/platform"
    params = save_blocks(DATABASE_URL=url, BACKUP_URL=f"file://{tmp_path}/b")
    state = database_backup(**params, return_state=True)
    message = failure_of(state)
    assert message == f"PostgreSQL at 127.0.0.1:{port}/platform is unreachable: connection refused"
    assert "s3cret-pw" not in (state.message or "")
    assert not (tmp_path / "b" / "database").exists()


def test_wrong_password_fails_with_one_line_reason(
    scram_pg_url: str, tmp_path: Path, save_blocks: Any
) -> None:
    wrong = scram_pg_url.replace("correct-horse-battery", "not-the-password")
    params = save_blocks(DATABASE_URL=wrong, BACKUP_URL=f"file://{tmp_path}/b")
    state = database_backup(**params, return_state=True)
    message = failure_of(state)
    db = PostgresDatabase.from_url(wrong)
    assert message == (
        f"PostgreSQL at 127.0.0.1:{db.port}/platform rejected the login of user "
        "'platform': wrong password"
    )
    assert "not-the-password" not in message


def test_missing_bucket_fails_before_dumping(
    platform_db: str, s3_endpoint: str, save_blocks: Any
) -> None:
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL="s3://no-such-bucket-fo/db")
    state = database_backup(**params, return_state=True)
    assert failure_of(state) == (
        "S3 bucket 'no-such-bucket-fo' does not exist (s3://no-such-bucket-fo/db)"
    )
    with psycopg.connect(platform_db) as conn:
        backups = conn.execute("SELECT count(*) FROM ops.backup_records").fetchone()
        alerts = conn.execute(
            "SELECT name, severity, status, delivered, summary FROM ops.alerts"
        ).fetchall()
    assert backups == (0,)  # failed before any backup was started
    # Nobody could be told (no channel is configured here), yet the alert is kept.
    queued = route("high", datetime.now(UTC)).queued  # on a holiday it waits for Monday
    assert alerts == [
        (
            "database-backup-failed",
            "high",
            "queued" if queued else "open",
            False,
            f"Database backup of {params['database_block']} failed: {failure_of(state)}",
        )
    ]


def test_access_denied_fails_with_one_line_reason(
    platform_db: str, s3_denied: s3.DeniedS3, save_blocks: Any
) -> None:
    params = save_blocks(
        DATABASE_URL=platform_db,
        BACKUP_URL=f"s3://{s3_denied.bucket}/db",
        S3_ENDPOINT_URL=s3_denied.endpoint_url,
        AWS_ACCESS_KEY_ID=s3_denied.access_key_id,
        AWS_SECRET_ACCESS_KEY=s3_denied.secret_access_key,
    )
    state = database_backup(**params, return_state=True)
    message = failure_of(state)
    assert message == (
        f"access denied to s3://{s3_denied.bucket}/db: check the credentials and the bucket policy"
    )
    assert s3_denied.secret_access_key not in message


def test_full_disk_leaves_no_partial_file_and_a_failed_record(
    platform_db: str, full_disk_dir: Path, save_blocks: Any
) -> None:
    with psycopg.connect(platform_db, autocommit=True) as conn:
        # Random bytes do not compress: a dump of about 1 MiB, twice the free space.
        conn.execute(
            "CREATE TABLE noise AS SELECT g AS id, decode(md5(random()::text) || "
            "md5(random()::text), 'hex') AS b FROM generate_series(1, 32768) g"
        )
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{full_disk_dir}")
    state = database_backup(**params, return_state=True)
    assert failure_of(state) == (
        f"local backup store {full_disk_dir} is full: no space left on device"
    )
    assert files_under(full_disk_dir) == []
    rows = catalog_rows(platform_db)
    assert [r["status"] for r in rows] == ["failed"]
    assert rows[0]["error"] == failure_of(state)


def test_lock_timeout_fails_cleanly_and_records_failure(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    """A table locked by a migration: pg_dump gives up after the wait, nothing is kept."""
    store = tmp_path / "b"
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{store}")
    with psycopg.connect(platform_db) as blocker:
        blocker.execute("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")
        state = database_backup(**params, lock_wait_timeout_seconds=1, return_state=True)
        blocker.rollback()
    message = failure_of(state)
    assert message.startswith(
        f"PostgreSQL at 127.0.0.1:5432/{platform_db.rsplit('/', 1)[1]}: could not lock a table"
    )
    assert files_under(store) == []
    rows = catalog_rows(platform_db)
    assert [r["status"] for r in rows] == ["failed"] and rows[0]["error"] == message


def test_dropped_connection_is_retried_and_the_backup_completes(
    platform_db: str, pg_admin_url: str, tmp_path: Path
) -> None:
    """The dump's connection is killed once mid-run; the task retries and succeeds."""
    store = LocalStore(parse_location(f"file://{tmp_path}"))
    db = PostgresDatabase.from_url(platform_db)
    dbname = db.database
    killed: list[int] = []

    def pg_dump_backend() -> int | None:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = %s AND wait_event_type = 'Lock'",
                (dbname, PG_DUMP_APPLICATION_NAME),
            ).fetchone()
        return row[0] if row else None

    def kill_first_attempt() -> None:
        wait_until(lambda: pg_dump_backend() is not None, timeout=30)
        pid = pg_dump_backend()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        killed.append(pid)

    @flow
    def dump_once_killed() -> Any:
        fast = dump_database.with_options(retry_delay_seconds=0)
        return fast(db, store, "database/x.dump", 60)

    with psycopg.connect(platform_db) as blocker:
        # pg_dump waits on this lock, so its backend can be found and killed.
        blocker.execute("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")
        results: list[Any] = []
        killer = threading.Thread(target=kill_first_attempt)
        killer.start()
        runner = threading.Thread(target=lambda: results.append(dump_once_killed()))
        runner.start()
        killer.join(timeout=60)
        wait_until(lambda: killed != [], timeout=30)
        blocker.rollback()
    runner.join(timeout=120)
    assert len(killed) == 1
    assert results, "the flow did not finish"
    dump = results[0]
    assert (tmp_path / "database/x.dump").stat().st_size == dump.size
    assert dump.row_counts["public.feedback"] > 0


def test_backup_and_restore_show_their_progress(
    platform_db: str, pg_admin_url: str, tmp_path: Path, save_blocks: Any
) -> None:
    """Each long step leaves a progress artifact in its run: at 100 when it finished,
    with what it did, measured against the previous backup's size and the source's."""

    from flows.database_restore import database_restore

    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}/b")
    database_backup(**params)
    state = database_backup(**params, return_state=True)
    second = state.result()
    restore_params = {k: params[k] for k in ("database_block", "storage_block")}
    try:
        restored = database_restore(
            backup_id=second.backup_id,
            target_database="restore_progress",
            **restore_params,
            return_state=True,
        )
        assert restored.is_completed()
    finally:
        pg.drop_database(pg_admin_url, "restore_progress")

    [dump_bar] = progress_bars(state.state_details.flow_run_id)
    assert dump_bar.data == 100.0
    assert dump_bar.description.startswith("pg_dump of postgres@127.0.0.1:5432/")
    assert " in " in dump_bar.description and "B" in dump_bar.description
    [restore_bar] = progress_bars(restored.state_details.flow_run_id)
    assert restore_bar.data == 100.0
    assert restore_bar.description.startswith(f"restore of {second.backup_id}: ")
