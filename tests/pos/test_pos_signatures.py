"""Webhook signatures as Square, Shopify and Zettle compute them, checked against the test
receiver's own signers (written apart from the project's), the audit of a rejected
delivery's signature, a replay's headers, and how `judge()` classifies one stored failed
delivery. Pure: no database, no network."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from support.webhook_receiver import (
    SHOPIFY_WEBHOOK_SECRET,
    SQUARE_SIGNATURE_KEY,
    ZETTLE_SIGNING_KEY,
    shopify_body,
    shopify_signature,
    square_body,
    square_signature,
    zettle_body,
    zettle_signature,
)

from blocks.pos.deliveries import ROLES, Keys, Shape, Stored, WebhookDeliveries, judge
from blocks.pos.signatures import (
    Unverifiable,
    audit,
    matches,
    replay_headers,
    sign,
    signed_bytes,
)
from policy import STOCKHOLM
from policy.webhooks import Failure, Signature

SQUARE_URL = "https://api.example.se/webhooks/square"
AT = datetime(2027, 3, 10, 10, 0, tzinfo=STOCKHOLM)  # a Wednesday
SQUARE_PREVIOUS_KEY = "square-sig-key-previous-1a2b3c"
SHOPIFY_PREVIOUS_SECRET = "shopify-secret-previous-4d5e6f"
ZETTLE_PREVIOUS_KEY = "zettle-signing-key-previous-7a8b9c"
FORGER_KEY = "not-a-key-the-platform-has"

CURRENT = {
    "square": SQUARE_SIGNATURE_KEY,
    "shopify": SHOPIFY_WEBHOOK_SECRET,
    "zettle": ZETTLE_SIGNING_KEY,
}
PREVIOUS = {
    "square": SQUARE_PREVIOUS_KEY,
    "shopify": SHOPIFY_PREVIOUS_SECRET,
    "zettle": ZETTLE_PREVIOUS_KEY,
}
KEYS = {provider: Keys(CURRENT[provider], PREVIOUS[provider]) for provider in CURRENT}
SECRETS = (*CURRENT.values(), *PREVIOUS.values())

DELIVERIES = WebhookDeliveries()
SHAPE = Shape(table=DELIVERIES.table, present=frozenset(ROLES), columns=DELIVERIES.columns())


def body_of(provider: str) -> bytes:
    """A delivery's body as the provider builds it."""
    if provider == "square":
        return square_body("sq-evt-1")
    if provider == "shopify":
        return shopify_body(820982911946154508)
    return zettle_body("zt-evt-1")


def receivers_signature(provider: str, key: str, body: bytes) -> str:
    """The signature the test receiver's independent signers give `body` under `key`."""
    if provider == "square":
        return square_signature(key, SQUARE_URL, body)
    if provider == "shopify":
        return shopify_signature(key, body)
    message = json.loads(body)
    return zettle_signature(key, message["timestamp"], message["payload"])


def stored(
    provider: str = "square",
    http_status: int | None = 503,
    *,
    event_id: str | None = "sq-evt-1",
    body: bytes | None = None,
    signature: str | None = None,
    first_failed_at: datetime = AT - timedelta(hours=1),
) -> Stored:
    """A failed delivery as `failed_page` reads it; the body is the provider's own when
    none is given."""
    return Stored(
        id=41,
        provider=provider,
        event_id=event_id,
        http_status=http_status,
        body=body_of(provider) if body is None else body,
        signature=signature,
        timestamp=None,
        event_type=None,
        created_at=AT - timedelta(minutes=10),
        first_failed_at=first_failed_at,
        failures=3,
    )


# --- signing as the providers do ------------------------------------------------------------


@pytest.mark.parametrize("provider", ["square", "shopify", "zettle"])
def test_sign_agrees_with_the_receivers_independent_signer(provider: str) -> None:
    body = body_of(provider)
    signed = signed_bytes(provider, body, SQUARE_URL)
    assert sign(provider, CURRENT[provider], signed) == receivers_signature(
        provider, CURRENT[provider], body
    )


def test_what_each_provider_signs() -> None:
    square = square_body("sq-evt-1")
    assert signed_bytes("square", square, SQUARE_URL) == SQUARE_URL.encode() + square
    shopify = shopify_body(1)
    assert signed_bytes("shopify", shopify, SQUARE_URL) == shopify
    message = json.loads(zettle_body("zt-evt-1"))
    assert signed_bytes("zettle", zettle_body("zt-evt-1"), SQUARE_URL) == (
        f"{message['timestamp']}.{message['payload']}".encode()
    )


@pytest.mark.parametrize("provider", ["square", "shopify", "zettle"])
def test_matches_only_the_right_key_and_the_whole_signature(provider: str) -> None:
    body = body_of(provider)
    signed = signed_bytes(provider, body, SQUARE_URL)
    received = receivers_signature(provider, CURRENT[provider], body)

    assert matches(provider, CURRENT[provider], signed, received) is True
    assert matches(provider, PREVIOUS[provider], signed, received) is False
    assert matches(provider, CURRENT[provider], signed, received[:-4]) is False
    assert matches(provider, CURRENT[provider], signed, "") is False


def test_zettles_hex_signature_matches_in_upper_case() -> None:
    body = zettle_body("zt-evt-1")
    signed = signed_bytes("zettle", body, SQUARE_URL)
    received = receivers_signature("zettle", ZETTLE_SIGNING_KEY, body)
    assert received == received.lower()
    assert matches("zettle", ZETTLE_SIGNING_KEY, signed, received.upper()) is True


# --- the audit of a rejected signature ------------------------------------------------------


@pytest.mark.parametrize("provider", ["square", "shopify", "zettle"])
def test_audit_names_the_key_that_signed(provider: str) -> None:
    body = body_of(provider)
    signed = signed_bytes(provider, body, SQUARE_URL)
    current, previous = CURRENT[provider], PREVIOUS[provider]

    def audited(key: str) -> Signature:
        return audit(provider, signed, receivers_signature(provider, key, body), current, previous)

    assert audited(current) is Signature.CURRENT_KEY
    assert audited(previous) is Signature.PREVIOUS_KEY
    assert audited(FORGER_KEY) is Signature.NO_KEY


def test_audit_without_a_previous_key_finds_no_key_for_the_old_signature() -> None:
    body = square_body("sq-evt-1")
    signed = signed_bytes("square", body, SQUARE_URL)
    old = square_signature(SQUARE_PREVIOUS_KEY, SQUARE_URL, body)
    assert audit("square", signed, old, SQUARE_SIGNATURE_KEY, None) is Signature.NO_KEY


@pytest.mark.parametrize("received", [None, ""], ids=["none", "empty"])
def test_audit_without_a_stored_signature_is_unverifiable(received: str | None) -> None:
    signed = signed_bytes("square", square_body("sq-evt-1"), SQUARE_URL)
    with pytest.raises(Unverifiable, match="^no stored signature$"):
        audit("square", signed, received, SQUARE_SIGNATURE_KEY, SQUARE_PREVIOUS_KEY)


def test_audit_without_a_current_key_is_unverifiable() -> None:
    body = shopify_body(1)
    received = shopify_signature(SHOPIFY_PREVIOUS_SECRET, body)
    with pytest.raises(Unverifiable, match="^no current shopify signing key is configured$"):
        audit("shopify", body, received, None, SHOPIFY_PREVIOUS_SECRET)


# --- deliveries that cannot be verified ------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "body", "message"),
    [
        ("square", b"<xml>not json</xml>", "the body is not JSON"),
        ("square", b'["a", "list"]', "the body is not a JSON object"),
        ("square", None, "no stored body"),
        ("shopify", None, "no stored body"),
        ("zettle", None, "no stored body"),
        (
            "zettle",
            json.dumps({"eventId": "zt-1", "payload": {"amount": 1}, "timestamp": "t"}).encode(),
            "the Zettle message has no string timestamp and payload",
        ),
        (
            "zettle",
            json.dumps({"eventId": "zt-1", "payload": "{}"}).encode(),
            "the Zettle message has no string timestamp and payload",
        ),
        ("clover", b"{}", "unknown provider 'clover'"),
    ],
    ids=[
        "square not json",
        "square not an object",
        "square no body",
        "shopify no body",
        "zettle no body",
        "zettle payload not a string",
        "zettle no timestamp",
        "unknown provider",
    ],
)
def test_signed_bytes_says_why_a_delivery_is_unverifiable(
    provider: str, body: bytes | None, message: str
) -> None:
    with pytest.raises(Unverifiable) as raised:
        signed_bytes(provider, body, SQUARE_URL)
    assert str(raised.value) == message


def test_a_square_delivery_is_not_checked_against_an_unknown_url() -> None:
    # Signed over another URL, a right signature would look forged.
    with pytest.raises(Unverifiable, match="^no Square notification URL is known"):
        signed_bytes("square", square_body("sq-1"), None)


# --- a replay's headers ----------------------------------------------------------------------


def test_a_shopify_replay_carries_the_id_topic_signature_and_attempt() -> None:
    body = shopify_body(820982911946154508)
    headers = replay_headers(
        "shopify",
        SHOPIFY_WEBHOOK_SECRET,
        signed_bytes("shopify", body, SQUARE_URL),
        event_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        attempt=2,
        event_type="orders/create",
    )
    assert headers == {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-SHA256": shopify_signature(SHOPIFY_WEBHOOK_SECRET, body),
        "X-Feedback-Ops-Replay": "2",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Topic": "orders/create",
    }


def test_square_and_zettle_replays_carry_their_signature_header_and_attempt() -> None:
    square = square_body("sq-evt-1")
    assert replay_headers(
        "square",
        SQUARE_SIGNATURE_KEY,
        signed_bytes("square", square, SQUARE_URL),
        event_id="sq-evt-1",
        attempt=1,
    ) == {
        "Content-Type": "application/json",
        "x-square-hmacsha256-signature": square_signature(SQUARE_SIGNATURE_KEY, SQUARE_URL, square),
        "X-Feedback-Ops-Replay": "1",
    }
    zettle = zettle_body("zt-evt-1")
    assert replay_headers(
        "zettle",
        ZETTLE_SIGNING_KEY,
        signed_bytes("zettle", zettle, SQUARE_URL),
        event_id="zt-evt-1",
        attempt=5,
    ) == {
        "Content-Type": "application/json",
        "X-iZettle-Signature": receivers_signature("zettle", ZETTLE_SIGNING_KEY, zettle),
        "X-Feedback-Ops-Replay": "5",
    }


@pytest.mark.parametrize("provider", ["square", "shopify", "zettle"])
def test_no_replay_header_carries_the_key(provider: str) -> None:
    headers = replay_headers(
        provider,
        CURRENT[provider],
        signed_bytes(provider, body_of(provider), SQUARE_URL),
        event_id="evt-1",
        attempt=1,
        event_type="orders/create",
        triggered_at="2027-03-10T09:00:00Z",
        shop_domain="kaffebaren.myshopify.com",
        api_version="2025-01",
    )
    for value in headers.values():
        assert CURRENT[provider] not in value


# --- judging one failed delivery -------------------------------------------------------------


def test_a_503_is_replayed() -> None:
    judged = judge(stored("square", 503), KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.signature, judged.replay) == (
        Failure.SERVER_ERROR,
        None,
        True,
    )
    assert judged.reason == "the gateway answered HTTP 503"
    assert judged.event_id == "sq-evt-1"
    assert judged.signed == SQUARE_URL.encode() + square_body("sq-evt-1")
    assert judged.window_ended is False


def test_no_answer_is_replayed() -> None:
    judged = judge(stored("square", None), KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.replay) == (Failure.NO_ANSWER, True)
    assert judged.reason == "the gateway did not answer"


def test_a_401_signed_with_the_previous_key_is_a_rotation_and_replayed() -> None:
    body = square_body("sq-evt-1")
    row = stored(
        "square", 401, body=body, signature=square_signature(SQUARE_PREVIOUS_KEY, SQUARE_URL, body)
    )
    judged = judge(row, KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.signature, judged.replay) == (
        Failure.SIGNATURE,
        Signature.PREVIOUS_KEY,
        True,
    )
    assert judged.reason == "signed with the previous key: a rotation not rolled out"


def test_a_403_signed_with_the_current_key_is_a_gateway_bug_and_replayed() -> None:
    body = shopify_body(7)
    row = stored(
        "shopify",
        403,
        event_id="shop-evt-7",
        body=body,
        signature=shopify_signature(SHOPIFY_WEBHOOK_SECRET, body),
    )
    judged = judge(row, KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.signature, judged.replay) == (Signature.CURRENT_KEY, True)
    assert judged.reason == "signed with the current key yet rejected: a gateway bug"


def test_a_forged_401_is_not_replayed() -> None:
    body = zettle_body("zt-evt-1")
    row = stored(
        "zettle",
        401,
        event_id="zt-evt-1",
        body=body,
        signature=receivers_signature("zettle", FORGER_KEY, body),
    )
    judged = judge(row, KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.signature, judged.replay) == (
        Failure.SIGNATURE,
        Signature.NO_KEY,
        False,
    )
    assert judged.reason == "not replayed: signed with no known key (possible forgery)"


def test_a_refused_payload_is_not_replayed() -> None:
    judged = judge(stored("square", 422), KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.replay) == (Failure.REFUSED, False)
    assert judged.reason == "not replayed: the gateway refused the payload (HTTP 422)"


def test_an_unknown_provider_is_not_judged() -> None:
    judged = judge(stored("clover", 503, body=b"{}"), KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.replay) == (None, False)
    assert judged.reason == "unknown provider 'clover'"


def test_a_delivery_without_a_stored_body_is_not_replayable() -> None:
    row = replace(stored("square", 503), body=None)
    judged = judge(row, KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.failure, judged.replay) == (Failure.SERVER_ERROR, False)
    assert judged.reason == "not replayable: no stored body"


@pytest.mark.parametrize("provider", ["square", "zettle"])
def test_a_body_that_is_not_json_is_not_replayable(provider: str) -> None:
    row = stored(provider, 503, body=b"not json at all")
    judged = judge(row, KEYS, SQUARE_URL, AT, SHAPE)
    assert judged.replay is False
    assert judged.reason == "not replayable: the body is not JSON"


def test_zettles_event_id_is_read_from_the_body_when_none_was_stored() -> None:
    judged = judge(stored("zettle", 500, event_id=None), KEYS, SQUARE_URL, AT, SHAPE)
    assert judged.event_id == "zt-evt-1"
    assert judged.stored.event_id is None
    assert (judged.replay, judged.reason) == (True, "the gateway answered HTTP 500")


def test_a_shopify_delivery_without_a_stored_event_id_is_not_replayable() -> None:
    judged = judge(stored("shopify", 500, event_id=None), KEYS, SQUARE_URL, AT, SHAPE)
    assert judged.replay is False
    assert judged.reason == "not replayable: no event id stored or in the body"


def test_a_401_is_unchecked_when_the_table_has_no_signature_column() -> None:
    shape = Shape(
        table=DELIVERIES.table,
        present=frozenset(ROLES) - {"signature"},
        columns=DELIVERIES.columns(),
    )
    body = square_body("sq-evt-1")
    row = stored(
        "square", 401, body=body, signature=square_signature(SQUARE_SIGNATURE_KEY, SQUARE_URL, body)
    )
    judged = judge(row, KEYS, SQUARE_URL, AT, shape)
    assert judged.reason.startswith("unchecked:")
    assert judged.reason == ("unchecked: public.webhook_delivery_attempts has no column signature")
    assert (judged.signature, judged.replay) == (None, False)
    # A failure that needs no audit is still replayed on that table.
    assert judge(stored("square", 503), KEYS, SQUARE_URL, AT, shape).replay is True


def test_a_table_without_a_body_column_replays_nothing() -> None:
    shape = Shape(
        table=DELIVERIES.table,
        present=frozenset(ROLES) - {"body"},
        columns=DELIVERIES.columns(),
    )
    judged = judge(stored("square", 503), KEYS, SQUARE_URL, AT, shape)
    assert judged.replay is False
    assert (
        judged.reason == "not replayable: public.webhook_delivery_attempts has no column raw_body"
    )


def test_a_shopify_delivery_five_hours_old_is_past_shopifys_retries() -> None:
    row = stored("shopify", 503, event_id="shop-evt-1", first_failed_at=AT - timedelta(hours=5))
    judged = judge(row, KEYS, SQUARE_URL, AT, SHAPE)
    assert (judged.window_ended, judged.replay) == (True, True)
    # The same age is well within Square's 24 hours.
    square = judge(
        stored("square", 503, first_failed_at=AT - timedelta(hours=5)), KEYS, SQUARE_URL, AT, SHAPE
    )
    assert square.window_ended is False


def test_no_current_key_for_the_provider_replays_nothing() -> None:
    keys = {**KEYS, "square": Keys(None, SQUARE_PREVIOUS_KEY)}
    judged = judge(stored("square", 503), keys, SQUARE_URL, AT, SHAPE)
    assert judged.replay is False
    assert judged.reason == "not replayable: no current square signing key"

    body = square_body("sq-evt-1")
    rejected = stored(
        "square", 401, body=body, signature=square_signature(SQUARE_PREVIOUS_KEY, SQUARE_URL, body)
    )
    audited = judge(rejected, keys, SQUARE_URL, AT, SHAPE)
    assert (audited.signature, audited.replay) == (None, False)
    assert audited.reason == "unchecked: no current square signing key is configured"


def test_a_judged_delivery_shows_no_key_body_or_signature() -> None:
    body = square_body("sq-evt-1")
    signature = square_signature(SQUARE_PREVIOUS_KEY, SQUARE_URL, body)
    judged = judge(
        stored("square", 401, body=body, signature=signature), KEYS, SQUARE_URL, AT, SHAPE
    )
    shown = repr(judged) + repr(KEYS)
    for secret in (*SECRETS, signature, body.decode()):
        assert secret not in shown
