"""Object stores against a real disk and a real S3 API (moto server on loopback)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from support import s3

from blocks.storage.stores import (
    Digest,
    HashingReader,
    LocalStore,
    S3Settings,
    S3Store,
    open_store,
    parse_location,
)
from blocks.storage.verify import check_stored
from feedback_ops.errors import ConfigError, OpsError

MIB = 1024 * 1024


class FailingSource(io.RawIOBase):
    """A producer that dies after `fail_after` bytes, like a pg_dump that crashes."""

    def __init__(self, fail_after: int) -> None:
        self.left = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise OSError("producer died")
        n = min(len(buffer), self.left)
        buffer[:n] = os.urandom(n)
        self.left -= n
        return n


def s3_store(endpoint: str, bucket: str, prefix: str = "", **settings: str) -> S3Store:
    location = parse_location(f"s3://{bucket}/{prefix}")
    store = open_store(
        location, S3Settings(endpoint_url=endpoint, region_name=s3.REGION, **settings)
    )  # type: ignore[arg-type]
    assert isinstance(store, S3Store)
    return store


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "BACKUP_URL must be file:///path or s3://bucket/prefix, got scheme 'ftp'"),
        (
            "/no/scheme",
            "BACKUP_URL must be file:///path or s3://bucket/prefix, got scheme '(none)'",
        ),
        (
            "file://relative/x",
            "BACKUP_URL must be file:///absolute/path (three slashes), got 'file://relative/x'",
        ),
        ("s3://Bad_Bucket/x", "BACKUP_URL names an invalid S3 bucket: 's3://Bad_Bucket/x'"),
        ("s3://key:secret@bucket/x", "BACKUP_URL names an invalid S3 bucket: 's3://bucket/x'"),
    ],
)
def test_bad_locations_are_refused_with_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_location(url)
    assert str(caught.value) == message


def test_locations_parse() -> None:
    assert str(parse_location("s3://backups/platform/db/")) == "s3://backups/platform/db"
    assert str(parse_location("file:///var/backups/../backups")) == "file:///var/backups"


def test_local_upload_is_atomic_and_hashes_what_it_stores(tmp_path: Path) -> None:
    store = LocalStore(parse_location(f"file://{tmp_path}"))
    data = os.urandom(3 * MIB + 17)
    reader = HashingReader(io.BytesIO(data))
    store.upload_stream("database/2027/03/x.dump", reader)
    assert reader.digest == Digest(len(data), hashlib.sha256(data).hexdigest())
    assert (tmp_path / "database/2027/03/x.dump").read_bytes() == data
    assert list(store.list_keys()) == ["database/2027/03/x.dump"]
    assert check_stored(store, "database/2027/03/x.dump", reader.digest).size == len(data)


def test_local_upload_of_a_failing_producer_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(parse_location(f"file://{tmp_path}"))
    with pytest.raises(OpsError, match="producer died"):
        store.upload_stream(
            "database/x.dump", HashingReader(io.BufferedReader(FailingSource(5 * MIB)))
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_eof_check_aborts_before_the_object_appears(tmp_path: Path) -> None:
    store = LocalStore(parse_location(f"file://{tmp_path}"))

    def producer_failed() -> None:
        raise OpsError("pg_dump exited with 1")

    with pytest.raises(OpsError, match="pg_dump exited with 1"):
        store.upload_stream("x.dump", HashingReader(io.BytesIO(b"partial"), on_eof=producer_failed))
    assert not store.exists("x.dump")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    store = LocalStore(parse_location(f"file://{tmp_path}/store"))
    with pytest.raises(ValueError, match="leaves the store"):
        store.put_bytes("../outside.json", b"{}")


def test_s3_multipart_upload_is_encrypted_and_verified(s3_endpoint: str, s3_bucket: str) -> None:
    store = s3_store(s3_endpoint, s3_bucket, "platform")
    data = os.urandom(40 * MIB)
    reader = HashingReader(io.BytesIO(data))
    store.upload_stream("database/big.dump", reader)
    client = s3.s3_client(s3_endpoint)
    head = client.head_object(Bucket=s3_bucket, Key="platform/database/big.dump")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ETag"].strip('"').endswith("-3")  # three 16 MiB parts
    copy = check_stored(store, "database/big.dump", reader.digest)
    assert (copy.url, copy.encryption) == (f"s3://{s3_bucket}/platform/database/big.dump", "AES256")
    assert list(store.list_keys("database/")) == ["database/big.dump"]


def test_s3_failed_upload_leaves_no_object_and_no_open_multipart(
    s3_endpoint: str, s3_bucket: str
) -> None:
    store = s3_store(s3_endpoint, s3_bucket)
    with pytest.raises(OSError, match="producer died"):
        store.upload_stream("x.dump", HashingReader(io.BufferedReader(FailingSource(40 * MIB))))
    client = s3.s3_client(s3_endpoint)
    assert client.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_corrupted_object_fails_the_read_back(s3_endpoint: str, s3_bucket: str) -> None:
    store = s3_store(s3_endpoint, s3_bucket)
    data = os.urandom(MIB)
    reader = HashingReader(io.BytesIO(data))
    store.upload_stream("x.dump", reader)
    flipped = bytes([data[0] ^ 0xFF]) + data[1:]
    s3.s3_client(s3_endpoint).put_object(
        Bucket=s3_bucket, Key="x.dump", Body=flipped, ServerSideEncryption="AES256"
    )
    with pytest.raises(OpsError) as caught:
        check_stored(store, "x.dump", reader.digest)
    assert str(caught.value).startswith(f"s3://{s3_bucket}/x.dump reads back as {MIB} bytes sha256")


def test_unencrypted_object_fails_the_check(s3_endpoint: str, s3_bucket: str) -> None:
    store = s3_store(s3_endpoint, s3_bucket)
    data = b"dump"
    s3.s3_client(s3_endpoint).put_object(Bucket=s3_bucket, Key="x.dump", Body=data)
    with pytest.raises(OpsError) as caught:
        check_stored(store, "x.dump", Digest(4, hashlib.sha256(data).hexdigest()))
    assert str(caught.value) == (
        f"s3://{s3_bucket}/x.dump is not encrypted as asked: server-side encryption is none, "
        "expected AES256"
    )


def test_kms_encryption_is_asked_for_and_checked(s3_endpoint: str, s3_bucket: str) -> None:
    store = s3_store(s3_endpoint, s3_bucket, sse="aws:kms", kms_key_id="alias/backups")
    reader = HashingReader(io.BytesIO(b"dump"))
    store.upload_stream("x.dump", reader)
    head = s3.s3_client(s3_endpoint).head_object(Bucket=s3_bucket, Key="x.dump")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert check_stored(store, "x.dump", reader.digest).encryption == "aws:kms"


def test_server_side_copy_between_buckets(s3_endpoint: str, s3_bucket: str) -> None:
    client = s3.s3_client(s3_endpoint)
    other = s3.create_bucket(client, s3.new_bucket_name("fo-copy"))
    try:
        primary = s3_store(s3_endpoint, s3_bucket, "a")
        replica = s3_store(s3_endpoint, other, "b")
        reader = HashingReader(io.BytesIO(os.urandom(MIB)))
        primary.upload_stream("x.dump", reader)
        replica.copy_from(primary, "x.dump")
        assert check_stored(replica, "x.dump", reader.digest).encryption == "AES256"
    finally:
        s3.empty_and_delete_bucket(client, other)


def test_local_replica_of_an_s3_primary(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    primary = s3_store(s3_endpoint, s3_bucket)
    reader = HashingReader(io.BytesIO(os.urandom(2 * MIB + 5)))
    primary.upload_stream("x.dump", reader)
    replica = LocalStore(parse_location(f"file://{tmp_path}"))
    replica.copy_from(primary, "x.dump")
    assert check_stored(replica, "x.dump", reader.digest).size == 2 * MIB + 5
