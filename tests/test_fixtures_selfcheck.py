"""Prove that every fixture of tests/conftest.py gives a real, working service."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from support import pg
from support.net import free_port
from support.pgcompare import differences, fingerprint
from support.platform_schema import is_valid_org_number, planned_counts, seed_platform
from support.s3 import REGION, DeniedS3, s3_client
from support.webhook_receiver import (
    SHOPIFY_WEBHOOK_SECRET,
    SQUARE_SIGNATURE_KEY,
    ZETTLE_SIGNING_KEY,
    WebhookReceiver,
    shopify_body,
    shopify_signature,
    square_body,
    square_signature,
    zettle_body,
    zettle_signature,
)

MiB = 1024 * 1024


def test_session_environment() -> None:
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert Path(os.environ["PREFECT_HOME"]).parent.name.startswith("feedback-ops-tests-")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-north-1"


def test_prefect_sees_the_session_environment() -> None:
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    assert str(settings.home) == os.environ["PREFECT_HOME"]
    assert settings.server.analytics_enabled is False
    # A developer's own server is never used; the flow tests' harness may set its own.
    assert "PREFECT_API_URL" not in os.environ


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_platform_db_is_seeded(platform_db: str) -> None:
    assert pg.database_of(platform_db).startswith("fo_test_")
    counts = {table: rows for table, (rows, _) in fingerprint(platform_db).items()}
    assert counts == planned_counts(1.0)
    with psycopg.connect(platform_db) as conn:
        orgs = [row[0] for row in conn.execute("SELECT org_number FROM businesses")]
        nulls, with_zero_byte = conn.execute(
            "SELECT count(*) FILTER (WHERE content IS NULL),"
            " count(*) FILTER (WHERE position('\\x00'::bytea IN content) > 0)"
            " FROM feedback_attachments"
        ).fetchone()  # type: ignore[misc]
        swedish = conn.execute(
            "SELECT count(*) FROM feedback WHERE comment ~ '[åäöÅÄÖ]'"
        ).fetchone()[0]  # type: ignore[index]
    assert all(is_valid_org_number(org) for org in orgs)
    assert nulls > 0 and with_zero_byte > 0 and swedish > 0


def test_seed_platform_returns_row_counts(db_factory: Callable[[], str]) -> None:
    seeded, empty = db_factory(), db_factory()
    counts = seed_platform(seeded, scale=0.1)
    assert counts == planned_counts(0.1)
    assert {table: rows for table, (rows, _) in fingerprint(seeded).items()} == counts
    assert fingerprint(empty) == {}
    # Same seed, same data: a second seeding fingerprints identically.
    seed_platform(empty, scale=0.1)
    assert fingerprint(empty) == fingerprint(seeded)


def test_throwaway_database_is_dropped_even_after_an_error(pg_admin_url: str) -> None:
    with pytest.raises(RuntimeError), pg.throwaway_database(pg_admin_url) as url:
        name = pg.database_of(url)
        raise RuntimeError("boom")
    with psycopg.connect(pg_admin_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None


def test_fingerprint_changes_after_an_update(platform_db: str) -> None:
    before = fingerprint(platform_db)
    assert fingerprint(platform_db) == before
    with psycopg.connect(platform_db) as conn:
        conn.execute("UPDATE feedback SET comment = 'Ändrad' WHERE id = 1")
    after = fingerprint(platform_db)
    assert after != before
    assert differences(before, after) == [
        "public.feedback: same 3000 rows count but different content"
    ]


def test_s3_bucket_put_and_get(s3_endpoint: str, s3_bucket: str) -> None:
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=s3_bucket, Key="hälsning.txt", Body="Hej från Stockholm".encode())
    body = client.get_object(Bucket=s3_bucket, Key="hälsning.txt")["Body"].read()
    assert body.decode() == "Hej från Stockholm"
    assert client.get_bucket_location(Bucket=s3_bucket)["LocationConstraint"] == REGION


def test_s3_multipart_upload_reports_sse(s3_endpoint: str, s3_bucket: str) -> None:
    client = s3_client(s3_endpoint)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_fileobj(
        io.BytesIO(os.urandom(6 * MiB)),
        s3_bucket,
        "backups/db.dump",
        ExtraArgs={"ServerSideEncryption": "AES256"},
        Config=config,
    )
    head = client.head_object(Bucket=s3_bucket, Key="backups/db.dump")
    assert head["ETag"].strip('"').endswith("-2")  # really went through multipart
    assert head["ContentLength"] == 6 * MiB
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_denied_gives_access_denied(s3_denied: DeniedS3) -> None:
    denied = s3_client(
        s3_denied.endpoint_url,
        access_key_id=s3_denied.access_key_id,
        secret_access_key=s3_denied.secret_access_key,
    )
    with pytest.raises(ClientError) as exc_info:
        denied.put_object(Bucket=s3_denied.bucket, Key="backup.dump", Body=b"data")
    error = exc_info.value.response
    assert error["Error"]["Code"] == "AccessDenied"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403

    allowed = s3_client(
        s3_denied.endpoint_url,
        access_key_id=s3_denied.allowed_access_key_id,
        secret_access_key=s3_denied.allowed_secret_access_key,
    )
    allowed.head_object(Bucket=s3_denied.bucket, Key=s3_denied.existing_key)


def test_scram_server_checks_the_password(scram_pg_url: str) -> None:
    wrong = scram_pg_url.replace("correct-horse-battery", "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()
    with psycopg.connect(scram_pg_url, connect_timeout=5) as conn:
        user, db = conn.execute("SELECT current_user, current_database()").fetchone()  # type: ignore[misc]
    assert (user, db) == ("platform", "platform")


def test_full_disk_dir_raises_enospc(full_disk_dir: Path) -> None:
    with pytest.raises(OSError) as exc_info:
        (full_disk_dir / "big.bin").write_bytes(b"\0" * MiB)
    assert exc_info.value.errno == errno.ENOSPC


# --- the webhook receiver (support/webhook_receiver.py) -----------------------------------


@pytest.fixture(scope="module")
def _webhook_server() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def webhook_receiver(_webhook_server: WebhookReceiver) -> WebhookReceiver:
    """A running `WebhookReceiver` (the default keys, no latency) with nothing received."""
    _webhook_server.reset()
    return _webhook_server


@dataclass(frozen=True)
class _Delivery:
    url: str
    body: bytes
    headers: dict[str, str]

    def post(self, **headers: str) -> httpx.Response:
        return httpx.post(self.url, content=self.body, headers=self.headers | headers)


def _signed_delivery(receiver: WebhookReceiver, provider: str, event_id: str) -> _Delivery:
    """A delivery of `event_id` to `receiver`, signed as `provider` signs it."""
    url = receiver.notification_url(provider)
    if provider == "square":
        body = square_body(event_id)
        headers = {
            "x-square-hmacsha256-signature": square_signature(SQUARE_SIGNATURE_KEY, url, body)
        }
    elif provider == "shopify":
        body = shopify_body(int(event_id.rsplit("-", 1)[-1]))
        headers = {
            "X-Shopify-Hmac-SHA256": shopify_signature(SHOPIFY_WEBHOOK_SECRET, body),
            "X-Shopify-Webhook-Id": event_id,
        }
    else:
        body = zettle_body(event_id)
        message = json.loads(body)
        signature = zettle_signature(ZETTLE_SIGNING_KEY, message["timestamp"], message["payload"])
        headers = {"X-iZettle-Signature": signature.upper()}  # hex in either case
    return _Delivery(url, body, headers | {"Content-Type": "application/json"})


@pytest.mark.parametrize("provider", ["square", "shopify", "zettle"])
def test_webhook_receiver_accepts_once_then_counts_duplicates(
    webhook_receiver: WebhookReceiver, provider: str
) -> None:
    delivery = _signed_delivery(webhook_receiver, provider, "evt-1001")
    first, again = delivery.post(), delivery.post()
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert webhook_receiver.accepted_ids(provider) == ["evt-1001"]
    assert [r.event_id for r in webhook_receiver.duplicates()] == ["evt-1001"]
    assert [r.status for r in webhook_receiver.received(provider)] == [200, 200]


def test_webhook_receiver_refuses_bad_signatures_and_bodies(
    webhook_receiver: WebhookReceiver,
) -> None:
    delivery = _signed_delivery(webhook_receiver, "square", "evt-2001")
    forged = delivery.post(**{"x-square-hmacsha256-signature": "Zm9yZ2Vk"})
    assert (forged.status_code, forged.json()) == (401, {"error": "invalid signature"})
    not_json = httpx.post(webhook_receiver.notification_url("shopify"), content=b"<xml/>")
    assert not_json.status_code == 400 and "error" in not_json.json()
    assert webhook_receiver.accepted() == []
    assert [(r.provider, r.status) for r in webhook_receiver.received()] == [
        ("square", 401),
        ("shopify", 400),
    ]


def test_webhook_receiver_scripted_failure_then_accepts(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.fail("square", 503)
    delivery = _signed_delivery(webhook_receiver, "square", "evt-3001")
    assert delivery.post().status_code == 503
    assert delivery.post(**{"X-Feedback-Ops-Replay": "2"}).json() == {"status": "accepted"}
    assert [r.status for r in webhook_receiver.received()] == [503, 200]
    assert webhook_receiver.accepted()[0].replay_attempt == "2"
    stats = httpx.get(f"{webhook_receiver.url}/webhooks/_stats").json()
    assert stats == {"received": 2, "accepted": 1, "duplicates": 0, "max_in_flight": 1}


def test_webhook_receiver_latency_overlaps_deliveries() -> None:
    async def deliver_all(receiver: WebhookReceiver) -> list[int]:
        deliveries = [_signed_delivery(receiver, "zettle", f"evt-{n}") for n in range(4)]
        async with httpx.AsyncClient() as client:
            answers = await asyncio.gather(
                *(client.post(d.url, content=d.body, headers=d.headers) for d in deliveries)
            )
        return [answer.status_code for answer in answers]

    # Long enough that all four are in flight together even on a busy machine.
    with WebhookReceiver(latency_seconds=0.5) as receiver:
        assert asyncio.run(deliver_all(receiver)) == [200] * 4
        assert receiver.max_in_flight() == 4
        assert sorted(receiver.accepted_ids("zettle")) == [f"evt-{n}" for n in range(4)]
