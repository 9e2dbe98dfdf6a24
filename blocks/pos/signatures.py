"""Webhook signatures as Square, Shopify and Zettle compute them, for the audit of
rejected deliveries and for signing a replay the way the provider would have.

- Square: `x-square-hmacsha256-signature`, base64 HMAC-SHA256 keyed with the
  subscription's signature key over the notification URL followed by the raw body (the
  URL byte for byte as the subscription has it).
- Shopify: `X-Shopify-Hmac-SHA256`, base64 HMAC-SHA256 of the raw body keyed with the
  app's client secret; the event id travels in `X-Shopify-Webhook-Id`.
- Zettle: `X-iZettle-Signature`, hex HMAC-SHA256 of `"<timestamp>.<payload>"` keyed
  with the subscription's signing key, where both are string fields of the Pusher
  message (the payload is the inner JSON as a string).

Signatures are compared in constant time (`hmac.compare_digest`). Nothing here does I/O;
keys are never part of a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from policy.webhooks import Signature

SIGNATURE_HEADERS = {
    "square": "x-square-hmacsha256-signature",
    "shopify": "X-Shopify-Hmac-SHA256",
    "zettle": "X-iZettle-Signature",
}
"""The header each provider sends its signature in."""
REPLAY_HEADER = "X-Feedback-Ops-Replay"
"""Tells the gateway a delivery is a replay, and which attempt."""


class Unverifiable(ValueError):
    """A delivery whose signature cannot be recomputed; the reason in one line."""


def parse_body(body: bytes | None) -> dict[str, Any]:
    """A delivery's JSON object.

    Raises:
        Unverifiable: no body was stored, or it is not a JSON object.
    """
    if body is None:
        raise Unverifiable("no stored body")
    try:
        parsed = json.loads(body)
    except ValueError:
        raise Unverifiable("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise Unverifiable("the body is not a JSON object")
    return parsed


def event_id_in(provider: str, message: dict[str, Any]) -> str | None:
    """The event id a provider puts in its body: Square `event_id`, Zettle `eventId`
    (or the Pusher message's `messageId`); Shopify sends it only as a header."""
    names = {"square": ("event_id",), "zettle": ("eventId", "messageId")}.get(provider, ())
    for name in names:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def signed_bytes(provider: str, body: bytes | None, square_url: str | None) -> bytes:
    """What the provider's HMAC covers for this delivery.

    Raises:
        Unverifiable: an unknown provider, no body, (Square) no notification URL, or
            (Zettle) a body without its string `timestamp` and `payload`.
    """
    if provider == "square":
        parse_body(body)
        assert body is not None
        if not square_url:
            # Signed over another URL, a right signature would look forged.
            raise Unverifiable(
                "no Square notification URL is known (SQUARE_WEBHOOK_NOTIFICATION_URL, "
                "POS_WEBHOOK_URL or GATEWAY_URL)"
            )
        return square_url.encode() + body
    if provider == "shopify":
        parse_body(body)  # Shopify sends JSON: anything else was stored damaged
        assert body is not None
        return body
    if provider == "zettle":
        message = parse_body(body)
        timestamp, payload = message.get("timestamp"), message.get("payload")
        if not isinstance(timestamp, str) or not isinstance(payload, str):
            raise Unverifiable("the Zettle message has no string timestamp and payload")
        return f"{timestamp}.{payload}".encode()
    raise Unverifiable(f"unknown provider {provider!r}")


def sign(provider: str, key: str, signed: bytes) -> str:
    """The signature header's value for `signed` (see `signed_bytes`) under `key`."""
    digest = hmac.new(key.encode(), signed, hashlib.sha256)
    if provider == "zettle":
        return digest.hexdigest()
    return base64.b64encode(digest.digest()).decode()


def matches(provider: str, key: str, signed: bytes, received: str) -> bool:
    """Whether `received` is the signature of `signed` under `key`, in constant time
    (Zettle's hex compared without regard to case, as hex is)."""
    expected = sign(provider, key, signed)
    got = received.strip()
    if provider == "zettle":
        expected, got = expected.lower(), got.lower()
    return hmac.compare_digest(expected.encode(), got.encode("utf-8", "replace"))


def audit(
    provider: str,
    signed: bytes,
    received: str | None,
    current: str | None,
    previous: str | None,
) -> Signature:
    """Which known key, if any, produced the rejected delivery's signature.

    Raises:
        Unverifiable: no signature was stored, or no current key is known.
    """
    if not received:
        raise Unverifiable("no stored signature")
    if not current:
        raise Unverifiable(f"no current {provider} signing key is configured")
    if matches(provider, current, signed, received):
        return Signature.CURRENT_KEY
    if previous and matches(provider, previous, signed, received):
        return Signature.PREVIOUS_KEY
    return Signature.NO_KEY


def replay_headers(
    provider: str,
    key: str,
    signed: bytes,
    *,
    event_id: str,
    attempt: int,
    event_type: str | None = None,
    triggered_at: str | None = None,
    shop_domain: str | None = None,
    api_version: str | None = None,
) -> dict[str, str]:
    """The headers the provider itself would send with this delivery, signed afresh
    with the current `key`, and the replay's mark."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADERS[provider]: sign(provider, key, signed),
        REPLAY_HEADER: str(attempt),
    }
    if provider == "shopify":
        headers["X-Shopify-Webhook-Id"] = event_id
        optional = {
            "X-Shopify-Topic": event_type,
            "X-Shopify-Triggered-At": triggered_at,
            "X-Shopify-Shop-Domain": shop_domain,
            "X-Shopify-API-Version": api_version,
        }
        headers |= {name: value for name, value in optional.items() if value}
    return headers
