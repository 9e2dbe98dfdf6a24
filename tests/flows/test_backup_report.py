"""backup-report: the newest backups and the runbook's monitoring checks, with alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from support import s3
from support.redis_server import fill, redis_server

from flows.backup_report import backup_report
from flows.config_backup import app_config_backup, pos_config_backup
from flows.database_backup import database_backup
from flows.redis_snapshot import redis_snapshot


def alerts(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT dedup_key, severity, summary FROM ops.alerts WHERE status <> 'resolved' "
            "ORDER BY dedup_key"
        ).fetchall()


def test_all_checks_pass_then_a_missing_replica_and_an_old_backup_are_flagged(
    platform_db: str, s3_endpoint: str, s3_bucket: str, tmp_path: Path, save_blocks: Any
) -> None:
    client = s3.s3_client(s3_endpoint)
    gothenburg = s3.create_bucket(client, s3.new_bucket_name("fo-gbg"))
    params = save_blocks(
        "config-backup-key",
        "pos-providers",
        DATABASE_URL=platform_db,
        BACKUP_URL=f"s3://{s3_bucket}/platform",
        BACKUP_REPLICA_URLS=f"s3://{gothenburg}/platform",
    )
    report_params = {k: params[k] for k in ("storage_block", "ops_database_block")}
    try:
        backup = database_backup(**params)
        with redis_server() as cache:
            fill(cache, 50)
            redis_block = save_blocks(REDIS_URL=cache.url)["redis_block"]
            redis_snapshot(redis_block=redis_block, **report_params)
        prefix = params["storage_block"].removesuffix("backup-storage")
        config_params = params | {"key_block": f"{prefix}config-backup-key"}
        pos_config_backup(**config_params, providers_block=f"{prefix}pos-providers")
        app_config_backup(**config_params)
        created = datetime.fromisoformat(
            json.loads(
                client.get_object(
                    Bucket=s3_bucket,
                    Key=backup.locations[0]
                    .removeprefix(f"s3://{s3_bucket}/")
                    .replace(".dump", ".manifest.json"),
                )["Body"].read()
            )["created_at"]
        )
        fine = backup_report(**report_params, as_of=created + timedelta(hours=1))
        assert fine.failed == [] and fine.backups == 4
        # Per kind: age, replica, encryption at the primary and at the replica; and what
        # a run that died would have left (nothing here).
        assert fine.checks == 4 * 4 + 2
        assert alerts(platform_db) == []

        key = backup.locations[1].removeprefix(f"s3://{gothenburg}/")
        client.delete_object(Bucket=gothenburg, Key=key)
        late = created + timedelta(hours=27)
        flagged = backup_report(**report_params, as_of=late)

        assert sorted(flagged.failed) == sorted(
            [
                "database-age",
                "redis-age",
                "pos-config-age",
                "app-config-age",
                f"replica:s3://{gothenburg}/platform:database",
            ]
        )
        raised = alerts(platform_db)
        assert [(k, s) for k, s, _ in raised] == [
            ("backup-report:app-config-age", "high"),
            ("backup-report:database-age", "critical"),
            ("backup-report:pos-config-age", "high"),
            ("backup-report:redis-age", "high"),
            (f"backup-report:replica:s3://{gothenburg}/platform:database", "high"),
        ]
        assert raised[1][2] == (
            "newest database backup is 27.0 h old: older than 26 h, the RPO is breached"
        )
        assert raised[3][2].endswith("older than 7 h, the RPO is breached")
        assert raised[4][2] == f"s3://{gothenburg}/{key} is missing"
    finally:
        s3.empty_and_delete_bucket(client, gothenburg)


def test_an_unencrypted_object_is_flagged(
    platform_db: str, s3_endpoint: str, s3_bucket: str, save_blocks: Any
) -> None:
    client = s3.s3_client(s3_endpoint)
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"s3://{s3_bucket}")
    backup = database_backup(**params)
    key = backup.locations[0].removeprefix(f"s3://{s3_bucket}/")
    body = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_bucket, Key=key, Body=body)  # rewritten without SSE

    result = backup_report(storage_block=params["storage_block"],
                           ops_database_block=params["ops_database_block"])  # fmt: skip

    assert result.failed == [
        "redis-age",
        "pos-config-age",
        "app-config-age",
        f"encryption:s3://{s3_bucket}:database",
    ]


def test_no_backup_at_all_is_critical(platform_db: str, tmp_path: Path, save_blocks: Any) -> None:
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}/empty")
    result = backup_report(
        storage_block=params["storage_block"], ops_database_block=params["ops_database_block"]
    )
    assert result.failed == ["database-age", "redis-age", "pos-config-age", "app-config-age"]
    assert result.backups == 0
    assert [(k, s, m) for k, s, m in alerts(platform_db)] == [
        ("backup-report:app-config-age", "high", "no app-config backup at all"),
        ("backup-report:database-age", "critical", "no database backup at all"),
        ("backup-report:pos-config-age", "high", "no pos-config backup at all"),
        ("backup-report:redis-age", "high", "no redis backup at all"),
    ]


def test_an_open_multipart_upload_of_a_dead_run_is_named_then_swept(
    platform_db: str, s3_endpoint: str, s3_bucket: str, save_blocks: Any
) -> None:
    """What a writer killed mid-upload leaves in S3: a multipart upload never completed
    nor aborted, with a part in it, and its record still `running`."""
    client = s3.s3_client(s3_endpoint)
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"s3://{s3_bucket}/platform")
    report_params = {k: params[k] for k in ("storage_block", "ops_database_block")}
    database_backup(**params)  # the catalog exists, and one good backup
    dead = "database-20261202T010000Z-dead01"
    key = f"platform/database/2026/12/{dead}.dump"
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    started = datetime.now(UTC) - timedelta(hours=8)
    with psycopg.connect(platform_db) as conn:
        conn.execute(
            "INSERT INTO ops.backup_records (id, kind, status, source, started_at) "
            "VALUES (%s, 'database', 'running', 'elsewhere', %s)",
            (dead, started),
        )

    report = backup_report(**report_params)

    assert {"interrupted-backups", "unfinished-uploads"} <= set(report.failed)
    named = dict((k, summary) for k, _s, summary in alerts(platform_db))
    assert named["backup-report:interrupted-backups"] == (
        f"1 backup(s) still running 7 h after they started, so their runs died; marked "
        f"failed (interrupted): {dead}"
    )
    assert named["backup-report:unfinished-uploads"] == (
        "1 unfinished upload(s) left by runs that died (the next backup of their kind "
        f"removes them): s3://{s3_bucket}/{key}"
    )
    with psycopg.connect(platform_db) as conn:
        row = conn.execute(
            "SELECT status, error FROM ops.backup_records WHERE id = %s", (dead,)
        ).fetchone()
    assert row == (
        "failed",
        "interrupted: its run ended before the backup finished (process killed or lost)",
    )

    # The next database backup removes the upload; the report then passes both checks.
    database_backup(**params)
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert not {"interrupted-backups", "unfinished-uploads"} & set(
        backup_report(**report_params).failed
    )
