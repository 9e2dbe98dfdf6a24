"""The newest backups in the backup region's bucket: real backups written with the
project's own storage steps into a primary store (moto's S3 on loopback, or a local
folder), then checked, copied, damaged and repaired in a second bucket."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import s3

from blocks.disaster_recovery import DisasterRecovery
from blocks.storage import BackupStorage
from blocks.storage.manifest import BackupKeys, build_manifest, dump_manifest, new_backup_id
from blocks.storage.stores import ObjectStore
from blocks.storage.verify import expected_encryption
from feedback_ops.errors import ConfigError, OpsError
from tasks.storage import (
    ensure_backups_in_region,
    plan_backups_in_region,
    store_bytes,
    verify_stored_object,
    write_manifest,
)

BACKUP_REGION = "eu-central-1"
NOW = datetime(2027, 3, 28, 1, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Taken:
    """A backup as the flows leave it: verified object and manifest at the primary."""

    keys: BackupKeys
    data: bytes
    manifest: dict[str, Any]


def take(store: ObjectStore, kind: str, at: datetime, size: int = 4096) -> Taken:
    """Write one backup the way `take_backup` does: stream, read back, manifest."""
    data = os.urandom(size)
    backup_id = new_backup_id(kind, at)
    keys = BackupKeys.for_backup(kind, backup_id, at, ".dump" if kind == "database" else ".bin")
    digest = store_bytes.fn(store, keys.object, data)
    verify_stored_object.fn(store, keys.object, digest)
    manifest = build_manifest(
        backup_id=backup_id,
        kind=kind,
        source="test",
        object_name=keys.object.rsplit("/", 1)[1],
        created_at=at,
        finished_at=at + timedelta(seconds=5),
        size=digest.size,
        sha256=digest.sha256,
        encryption=expected_encryption(store),
        tools={"test": "1"},
        content_format="bytes",
    )
    write_manifest.fn(store, keys, manifest)
    return Taken(keys, data, manifest)


@pytest.fixture
def region_bucket(s3_endpoint: str) -> Iterator[str]:
    """An empty bucket in the backup region."""
    client = s3.s3_client(s3_endpoint, region=BACKUP_REGION)
    name = s3.create_bucket(client, s3.new_bucket_name("fo-frankfurt"), BACKUP_REGION)
    yield name
    s3.empty_and_delete_bucket(client, name)


def stores(primary_url: str, endpoint: str, region_bucket: str) -> tuple[ObjectStore, ObjectStore]:
    storage = BackupStorage(url=primary_url, endpoint_url=endpoint, region_name=s3.REGION)
    dr = DisasterRecovery(
        backup_region_url=f"s3://{region_bucket}/platform", backup_region_endpoint_url=endpoint
    )
    return storage.primary(), dr.backup_region_store(storage)


@pytest.fixture
def s3_primary(
    s3_endpoint: str, s3_bucket: str, region_bucket: str
) -> tuple[ObjectStore, ObjectStore, dict[str, Taken]]:
    """Primary in S3 with two database backups, one Redis and one POS configuration
    backup (no application configuration backup), and the backup region's store."""
    primary, target = stores(f"s3://{s3_bucket}/platform", s3_endpoint, region_bucket)
    take(primary, "database", NOW - timedelta(days=1))
    newest = {
        "database": take(primary, "database", NOW),
        "redis": take(primary, "redis", NOW - timedelta(hours=3)),
        "pos-config": take(primary, "pos-config", NOW - timedelta(hours=22), size=300),
    }
    return primary, target, newest


def region_object(endpoint: str, bucket: str, key: str) -> tuple[bytes, str | None]:
    """Bytes and server-side encryption of an object as boto3 reads it."""
    answer = s3.s3_client(endpoint, region=BACKUP_REGION).get_object(
        Bucket=bucket, Key=f"platform/{key}"
    )
    return answer["Body"].read(), answer.get("ServerSideEncryption")


def test_the_plan_lists_the_newest_of_each_kind_and_writes_nothing(
    s3_endpoint: str, region_bucket: str, s3_primary: Any
) -> None:
    primary, target, newest = s3_primary
    plan = plan_backups_in_region.fn(primary, target)

    assert plan.target == f"s3://{region_bucket}/platform"
    assert [(c.kind, c.backup_id) for c in plan.copies] == [
        (kind, taken.manifest["id"]) for kind, taken in newest.items()
    ]
    assert plan.no_backup == ["app-config"]
    database = plan.copies[0]
    assert database.created_at == NOW
    assert (database.size, database.sha256) == (
        len(newest["database"].data),
        hashlib.sha256(newest["database"].data).hexdigest(),
    )
    assert database.target_url == f"s3://{region_bucket}/platform/{newest['database'].keys.object}"
    assert list(target.list_keys()) == []


def test_missing_backups_are_copied_then_found_present(
    s3_endpoint: str, region_bucket: str, s3_primary: Any
) -> None:
    primary, target, newest = s3_primary
    plan = plan_backups_in_region.fn(primary, target)

    first = ensure_backups_in_region.fn(primary, target, plan)

    assert [(b.kind, b.backup_id, b.action, b.verified) for b in first] == [
        (kind, taken.manifest["id"], "copied", True) for kind, taken in newest.items()
    ]
    assert first[0].created_at == NOW
    for taken in newest.values():
        assert region_object(s3_endpoint, region_bucket, taken.keys.object) == (
            taken.data,
            "AES256",
        )
        manifest, _ = region_object(s3_endpoint, region_bucket, taken.keys.manifest)
        assert manifest == dump_manifest(taken.manifest)
    # Only the newest of each kind: the older database backup stays at the primary.
    assert len(list(target.list_keys())) == 2 * len(newest)

    again = ensure_backups_in_region.fn(primary, target, plan_backups_in_region.fn(primary, target))
    assert [(b.action, b.verified) for b in again] == [("present", True)] * len(newest)


def test_a_damaged_copy_is_replaced_and_a_missing_manifest_rewritten(
    s3_endpoint: str, region_bucket: str, s3_primary: Any
) -> None:
    primary, target, newest = s3_primary
    plan = plan_backups_in_region.fn(primary, target)
    ensure_backups_in_region.fn(primary, target, plan)
    client = s3.s3_client(s3_endpoint, region=BACKUP_REGION)
    database, redis = newest["database"], newest["redis"]
    # Same size, other bytes: only the sha256 read back can tell.
    client.put_object(
        Bucket=region_bucket,
        Key=f"platform/{database.keys.object}",
        Body=os.urandom(len(database.data)),
        ServerSideEncryption="AES256",
    )
    client.delete_object(Bucket=region_bucket, Key=f"platform/{redis.keys.manifest}")

    repaired = ensure_backups_in_region.fn(primary, target, plan)

    assert {b.kind: b.action for b in repaired} == {
        "database": "copied",
        "redis": "copied",
        "pos-config": "present",
    }
    assert region_object(s3_endpoint, region_bucket, database.keys.object)[0] == database.data
    manifest, _ = region_object(s3_endpoint, region_bucket, redis.keys.manifest)
    assert manifest == dump_manifest(redis.manifest)


def test_a_copy_without_encryption_is_made_again(
    s3_endpoint: str, region_bucket: str, s3_primary: Any
) -> None:
    primary, target, newest = s3_primary
    plan = plan_backups_in_region.fn(primary, target)
    ensure_backups_in_region.fn(primary, target, plan)
    database = newest["database"]
    s3.s3_client(s3_endpoint, region=BACKUP_REGION).put_object(
        Bucket=region_bucket, Key=f"platform/{database.keys.object}", Body=database.data
    )
    assert ensure_backups_in_region.fn(primary, target, plan)[0].action == "copied"
    assert region_object(s3_endpoint, region_bucket, database.keys.object) == (
        database.data,
        "AES256",
    )


def test_a_damaged_primary_leaves_nothing_in_the_region(
    s3_endpoint: str, s3_bucket: str, region_bucket: str, s3_primary: Any
) -> None:
    primary, target, newest = s3_primary
    plan = plan_backups_in_region.fn(primary, target)
    database = newest["database"]
    s3.s3_client(s3_endpoint).put_object(
        Bucket=s3_bucket,
        Key=f"platform/{database.keys.object}",
        Body=b"x" * len(database.data),
        ServerSideEncryption="AES256",
    )
    with pytest.raises(OpsError) as caught:
        ensure_backups_in_region.fn(primary, target, plan)
    message = str(caught.value)
    assert message.startswith(f"s3://{region_bucket}/platform/{database.keys.object} reads back")
    assert "\n" not in message
    assert list(target.list_keys()) == []


def test_a_local_primary_is_streamed_into_the_region(
    s3_endpoint: str, region_bucket: str, tmp_path: Path
) -> None:
    primary, target = stores(f"file://{tmp_path}/backups", s3_endpoint, region_bucket)
    taken = take(primary, "app-config", NOW, size=2 * 1024 * 1024 + 3)
    plan = plan_backups_in_region.fn(primary, target, kinds=["app-config", "database"])
    assert plan.no_backup == ["database"]

    held = ensure_backups_in_region.fn(primary, target, plan)

    assert [(b.kind, b.action, b.size) for b in held] == [("app-config", "copied", len(taken.data))]
    assert region_object(s3_endpoint, region_bucket, taken.keys.object)[0] == taken.data
    assert ensure_backups_in_region.fn(primary, target, plan)[0].action == "present"


def test_a_plan_for_another_bucket_is_refused(
    s3_endpoint: str, region_bucket: str, s3_primary: Any
) -> None:
    primary, target, _ = s3_primary
    plan = plan_backups_in_region.fn(primary, target)
    _, elsewhere = stores("file:///unused", s3_endpoint, "fo-other-bucket")
    with pytest.raises(ConfigError) as caught:
        ensure_backups_in_region.fn(primary, elsewhere, plan)
    assert str(caught.value) == (
        f"the plan was made for s3://{region_bucket}/platform, not "
        "s3://fo-other-bucket/platform: start a new run"
    )


def test_an_unconfigured_backup_region_is_one_line() -> None:
    storage = BackupStorage(url="file:///var/backups")
    with pytest.raises(ConfigError) as caught:
        DisasterRecovery().backup_region_store(storage)
    assert str(caught.value) == (
        "the backup region eu-central-1 has no bucket: set DR_BACKUP_REGION_URL"
    )
    with pytest.raises(ConfigError, match="DR_BACKUP_REGION_URL names an invalid S3 bucket"):
        DisasterRecovery(backup_region_url="s3://Bad_Bucket/x").backup_region_store(storage)


def test_the_region_keeps_sse_but_not_the_primary_regions_kms_key(s3_endpoint: str) -> None:
    storage = BackupStorage(
        url="s3://fo-primary/platform", sse="aws:kms", kms_key_id="alias/backups-stockholm"
    )
    dr = DisasterRecovery(backup_region_url="s3://fo-frankfurt/platform")
    target = dr.backup_region_store(storage)
    assert expected_encryption(target) == {"server_side": "aws:kms", "kms_key_id": None}
    settings = target.settings  # type: ignore[attr-defined]
    assert (settings.region_name, settings.endpoint_url) == (BACKUP_REGION, None)
