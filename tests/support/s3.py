"""S3 on loopback: moto's server, in a thread (open) or in a subprocess (IAM enforced).

moto reads ``INITIAL_NO_AUTH_ACTION_COUNT`` once, at import, into a process-wide setting;
every S3/IAM action counts against it and, once it is used up, every request is
authenticated (SigV4 against IAM access keys) and authorized (IAM policies). So a server
that denies must run in a process of its own, or it would deny the open server too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3

from support.net import LOOPBACK, free_port, wait_until

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.literals import BucketLocationConstraintType
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

REGION = "eu-north-1"
TEST_ACCESS_KEY_ID = "testing"
TEST_SECRET_ACCESS_KEY = "testing"


def s3_client(
    endpoint_url: str,
    *,
    access_key_id: str = TEST_ACCESS_KEY_ID,
    secret_access_key: str = TEST_SECRET_ACCESS_KEY,
    region: str = REGION,
) -> S3Client:
    """A boto3 S3 client for ``endpoint_url`` with explicit credentials."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )


def new_bucket_name(prefix: str = "fo-test") -> str:
    """A unique, valid bucket name."""
    return f"{prefix}-{secrets.token_hex(6)}"


def create_bucket(client: S3Client, name: str, region: str = REGION) -> str:
    """Create bucket ``name`` in ``region``; return its name."""
    location = cast("BucketLocationConstraintType", region)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": location})
    return name


def empty_and_delete_bucket(client: S3Client, name: str) -> None:
    """Delete every object (and unfinished multipart upload) of ``name``, then the bucket.

    A bucket that is already gone is fine.
    """
    with contextlib.suppress(client.exceptions.NoSuchBucket):
        _empty_and_delete(client, name)


def _empty_and_delete(client: S3Client, name: str) -> None:
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=name):
        doomed: list[ObjectIdentifierTypeDef] = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if doomed:
            client.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=name)


@contextlib.contextmanager
def threaded_moto() -> Iterator[str]:
    """Run moto's server in a thread on a free loopback port; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # One access-log line per request would drown the output of a failing test.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()  # returns once the socket is bound and listening
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass(frozen=True)
class DeniedS3:
    """An S3 endpoint where ``access_key_id`` is denied every action on ``bucket``.

    The ``allowed_*`` key may do anything in S3 (to prepare or inspect the bucket);
    ``existing_key`` is an object already in the bucket.
    """

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    allowed_access_key_id: str
    allowed_secret_access_key: str
    existing_key: str = "existing/backup.dump.manifest.json"


def _policy(effect: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Action": "s3:*", "Resource": "*"}],
        }
    )


def _post(url: str, body: bytes) -> bytes:
    # moto reads the raw body; a form content type would make werkzeug consume it.
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return bytes(response.read())


def _answers(endpoint_url: str) -> bool:
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/data.json", timeout=1) as response:
        return int(response.status) == 200


@contextlib.contextmanager
def moto_subprocess(env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m moto.server`` on a free loopback port; yield its endpoint URL."""
    log_dir = Path(tempfile.mkdtemp(prefix="fo-moto-"))
    log_path = log_dir / "moto.log"
    port = free_port()
    endpoint_url = f"http://{LOOPBACK}:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"moto server exited with {proc.returncode}:\n{tail}")
            return _answers(endpoint_url)

        wait_until(ready, timeout=30, what=f"moto server on {endpoint_url}")
        yield endpoint_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log_path.unlink(missing_ok=True)
        log_dir.rmdir()


@contextlib.contextmanager
def denied_s3() -> Iterator[DeniedS3]:
    """A moto server of its own with IAM enforced, a bucket, and a key that is denied on it.

    Setup runs while moto still lets requests through unauthenticated
    (INITIAL_NO_AUTH_ACTION_COUNT=inf): two IAM users with inline policies (explicit Deny
    ``s3:*`` / Allow ``s3:*``) and access keys, a bucket, one object. Then
    ``POST /moto-api/reset-auth`` with ``0`` turns enforcement on for every later request.
    """
    with moto_subprocess({"INITIAL_NO_AUTH_ACTION_COUNT": "inf"}) as endpoint_url:
        iam: Any = boto3.client(
            "iam",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=TEST_ACCESS_KEY_ID,
            aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
        )
        keys = {}
        for user, effect in (("backup-denied", "Deny"), ("backup-admin", "Allow")):
            iam.create_user(UserName=user)
            iam.put_user_policy(
                UserName=user, PolicyName=f"s3-{effect}", PolicyDocument=_policy(effect)
            )
            keys[effect] = iam.create_access_key(UserName=user)["AccessKey"]

        bucket = new_bucket_name("fo-denied")
        setup = s3_client(endpoint_url)
        create_bucket(setup, bucket)
        info = DeniedS3(
            endpoint_url=endpoint_url,
            bucket=bucket,
            access_key_id=keys["Deny"]["AccessKeyId"],
            secret_access_key=keys["Deny"]["SecretAccessKey"],
            allowed_access_key_id=keys["Allow"]["AccessKeyId"],
            allowed_secret_access_key=keys["Allow"]["SecretAccessKey"],
        )
        setup.put_object(Bucket=bucket, Key=info.existing_key, Body=b'{"id": "existing"}')

        answer = json.loads(_post(f"{endpoint_url}/moto-api/reset-auth", b"0"))
        if answer.get("status") != "ok":
            raise RuntimeError(f"moto did not enable IAM enforcement: {answer}")
        # Enforcement is on: the allowed key must still work (proves keys and policies).
        allowed = s3_client(
            endpoint_url,
            access_key_id=info.allowed_access_key_id,
            secret_access_key=info.allowed_secret_access_key,
        )
        allowed.head_object(Bucket=bucket, Key=info.existing_key)
        yield info
