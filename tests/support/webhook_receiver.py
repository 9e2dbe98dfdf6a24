"""A real HTTP server on loopback that receives POS webhooks as the platform gateway does.

`WebhookReceiver` is a FastAPI app served by uvicorn, in a thread (a context manager, as
the other fakes) or in a process of its own (`python -m support.webhook_receiver --port
N [--latency SECONDS]`, with `tests` on `PYTHONPATH`, for a benchmark). It serves the
gateway's three webhook endpoints with the providers' real signatures:

- `POST /webhooks/square`: `x-square-hmacsha256-signature`, base64 HMAC-SHA256 keyed
  with the Square signature key over the notification URL (this receiver's own
  `<url>/webhooks/square`) followed by the raw body; the event id is the body's
  `event_id`.
- `POST /webhooks/shopify`: `X-Shopify-Hmac-SHA256`, base64 HMAC-SHA256 of the raw body
  keyed with the Shopify webhook secret; the event id is the `X-Shopify-Webhook-Id`
  header.
- `POST /webhooks/zettle`: `X-iZettle-Signature`, hex HMAC-SHA256 of
  `"<timestamp>.<payload>"` keyed with the Zettle signing key, both string fields of the
  Pusher message; the event id is its `eventId` (else `messageId`).

Each delivery is checked in this order: a scripted failure (`fail`) answers first; then
a body that is not a JSON object, or has no event id, gets 400; then a wrong or missing
signature 401 `{"error": "invalid signature"}`; then an event already accepted from that
provider 200 `{"status": "duplicate"}`, and any other 200 `{"status": "accepted"}`.
Every POST is recorded as a `Received`, whatever it was answered. `GET /webhooks/_stats`
gives the counts, for a receiver in another process.

The signing helpers and body builders below make deliveries the way the providers do;
they are written apart from `blocks.pos.signatures` so that a mistake there is not
repeated here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from support.asgi_server import LoopbackService
from support.net import LOOPBACK

SQUARE_SIGNATURE_KEY = "square-sig-key-current-4f9a2c7e"
SHOPIFY_WEBHOOK_SECRET = "shopify-webhook-secret-current-8b1d3e5a"
ZETTLE_SIGNING_KEY = "zettle-signing-key-current-6c0e9f2b"

PROVIDERS = ("square", "shopify", "zettle")
SQUARE_SIGNATURE_HEADER = "x-square-hmacsha256-signature"
SHOPIFY_SIGNATURE_HEADER = "X-Shopify-Hmac-SHA256"
SHOPIFY_WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
ZETTLE_SIGNATURE_HEADER = "X-iZettle-Signature"
REPLAY_HEADER = "X-Feedback-Ops-Replay"
"""The mark the project's replay puts on a delivery, with the attempt's number."""

# Fixed times, so that two bodies built for the same event are the same bytes.
_CREATED_AT = "2027-03-10T08:00:00Z"
_ZETTLE_TIMESTAMP = "2027-03-10T08:00:00.000Z"


@dataclass(frozen=True)
class Received:
    """One POST as the receiver received it, and the status it answered."""

    provider: str
    event_id: str | None
    """None when the delivery had none the receiver could read."""
    status: int
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    replay_attempt: str | None
    """The `X-Feedback-Ops-Replay` header: which replay attempt this is, if one."""


@dataclass
class _Scripted:
    """The next `remaining` deliveries from `provider` (of `event_id`, if set)."""

    provider: str
    status: int
    remaining: int
    event_id: str | None
    delay_seconds: float


@dataclass(frozen=True)
class _Parsed:
    """What a delivery's body and headers say, before its signature is checked."""

    message: dict[str, Any] | None
    """The body's JSON object; None when it is not one."""
    event_id: str | None
    error: str | None
    """Why the delivery is refused with 400, if it is."""


class WebhookReceiver(LoopbackService):
    """The gateway's webhook endpoints for Square, Shopify and Zettle; a context manager.

    `notification_url(provider)` is where a provider delivers; the Square signature
    covers it, so it is this receiver's own `url` at the time of the request.
    """

    name = "webhook receiver"

    def __init__(
        self,
        *,
        square_signature_key: str = SQUARE_SIGNATURE_KEY,
        shopify_webhook_secret: str = SHOPIFY_WEBHOOK_SECRET,
        zettle_signing_key: str = ZETTLE_SIGNING_KEY,
        latency_seconds: float = 0.0,
    ) -> None:
        self.keys = {
            "square": square_signature_key,
            "shopify": shopify_webhook_secret,
            "zettle": zettle_signing_key,
        }
        self.latency_seconds = latency_seconds
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._accepted: list[Received] = []
        self._duplicates: list[Received] = []
        self._accepted_keys: set[tuple[str, str]] = set()
        self._scripted: list[_Scripted] = []
        self._in_flight = 0
        self._max_in_flight = 0
        super().__init__()
        self.app = self._build_app()

    # --- lifecycle ---

    def asgi_app(self) -> Any:
        """The app this fake serves."""
        return self.app

    def notification_url(self, provider: str) -> str:
        """The URL `provider` delivers its webhooks to."""
        return f"{self.url}/webhooks/{provider}"

    def reset(self) -> None:
        """Forget every delivery, accepted event, scripted failure and the in-flight
        maximum. The keys and the latency stay."""
        with self._lock:
            self._received.clear()
            self._accepted.clear()
            self._duplicates.clear()
            self._accepted_keys.clear()
            self._scripted.clear()
            # Requests still in flight keep their count; only the maximum starts afresh.
            self._max_in_flight = self._in_flight

    # --- scripting ---

    def fail(
        self,
        provider: str,
        status: int,
        times: int = 1,
        *,
        event_id: str | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        """Answer the next `times` deliveries from `provider` (of `event_id` only, if
        given) with `status` and a JSON error, after `delay_seconds`, accepting none.

        A delay longer than the client's timeout makes the client time out. Scripts are
        used in the order they were added.
        """
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; one of {PROVIDERS}")
        with self._lock:
            self._scripted.append(_Scripted(provider, status, times, event_id, delay_seconds))

    # --- what was received ---

    def received(self, provider: str | None = None) -> list[Received]:
        """Every POST (from `provider`, if given), oldest first, whatever its answer."""
        with self._lock:
            return [r for r in self._received if provider in (None, r.provider)]

    def accepted(self, provider: str | None = None) -> list[Received]:
        """The deliveries answered 200 `accepted` (from `provider`, if given), in order."""
        with self._lock:
            return [r for r in self._accepted if provider in (None, r.provider)]

    def accepted_ids(self, provider: str) -> list[str]:
        """The event ids accepted from `provider`, in order."""
        return [r.event_id for r in self.accepted(provider) if r.event_id is not None]

    def duplicates(self, provider: str | None = None) -> list[Received]:
        """The deliveries of an event already accepted (answered 200 `duplicate`)."""
        with self._lock:
            return [r for r in self._duplicates if provider in (None, r.provider)]

    def max_in_flight(self) -> int:
        """The most deliveries that were being answered at once."""
        with self._lock:
            return self._max_in_flight

    def stats(self) -> dict[str, int]:
        """What `GET /webhooks/_stats` answers: the counts of deliveries received,
        accepted and duplicate, and `max_in_flight`."""
        with self._lock:
            return {
                "received": len(self._received),
                "accepted": len(self._accepted),
                "duplicates": len(self._duplicates),
                "max_in_flight": self._max_in_flight,
            }

    # --- serving ---

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.get("/webhooks/_stats")
        async def stats() -> dict[str, int]:
            return self.stats()

        @app.post("/webhooks/{provider}")
        async def deliver(request: Request, provider: str) -> Response:
            if provider not in PROVIDERS:
                return JSONResponse({"error": f"unknown provider {provider}"}, 404)
            return await self._deliver(provider, request)

        return app

    async def _deliver(self, provider: str, request: Request) -> Response:
        """Answer one delivery, counted in flight from its arrival to its answer."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            if self.latency_seconds > 0:
                await asyncio.sleep(self.latency_seconds)
            return await self._answer(provider, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(self, provider: str, headers: dict[str, str], body: bytes) -> Response:
        parsed = _parse(provider, headers, body)

        def record(status: int) -> Received:
            replay = headers.get(REPLAY_HEADER.lower())
            received = Received(provider, parsed.event_id, status, headers, body, replay)
            self._received.append(received)
            return received

        # The scripted failure is taken, and the delivery recorded, before any delay: a
        # client that times out must find its delivery recorded when it looks.
        with self._lock:
            scripted = self._take_script(provider, parsed.event_id)
            if scripted is not None:
                record(scripted.status)
        if scripted is not None:
            if scripted.delay_seconds > 0:
                await asyncio.sleep(scripted.delay_seconds)
            return JSONResponse({"error": f"scripted {scripted.status}"}, scripted.status)
        if parsed.error is not None or parsed.message is None or parsed.event_id is None:
            with self._lock:
                record(400)
            return JSONResponse({"error": parsed.error or "no event id"}, 400)
        if not self._signed(provider, headers, body, parsed.message):
            with self._lock:
                record(401)
            return JSONResponse({"error": "invalid signature"}, 401)
        key = (provider, parsed.event_id)
        # One lock around the look-up and the insert: two deliveries of one event at once
        # must give one accepted and one duplicate.
        with self._lock:
            received = record(200)
            if key in self._accepted_keys:
                self._duplicates.append(received)
                return JSONResponse({"status": "duplicate"})
            self._accepted_keys.add(key)
            self._accepted.append(received)
        return JSONResponse({"status": "accepted"})

    def _take_script(self, provider: str, event_id: str | None) -> _Scripted | None:
        """The first script that applies, one use of it spent. Call with the lock held."""
        for scripted in self._scripted:
            if (
                scripted.provider == provider
                and scripted.remaining > 0
                and scripted.event_id in (None, event_id)
            ):
                scripted.remaining -= 1
                return scripted
        return None

    def _signed(
        self, provider: str, headers: dict[str, str], body: bytes, message: dict[str, Any]
    ) -> bool:
        """Whether the delivery carries its provider's signature under this receiver's key."""
        key = self.keys[provider]
        if provider == "square":
            got = headers.get(SQUARE_SIGNATURE_HEADER.lower(), "")
            expected = square_signature(key, self.notification_url("square"), body)
        elif provider == "shopify":
            got = headers.get(SHOPIFY_SIGNATURE_HEADER.lower(), "")
            expected = shopify_signature(key, body)
        else:
            # Hex is the same number in either case.
            got = headers.get(ZETTLE_SIGNATURE_HEADER.lower(), "").lower()
            expected = zettle_signature(key, message["timestamp"], message["payload"])
        if not got:
            return False
        return hmac.compare_digest(expected.encode(), got.encode("utf-8", "replace"))


def _parse(provider: str, headers: dict[str, str], body: bytes) -> _Parsed:
    """The delivery's JSON object and event id, and why it gets 400 if it does: a body
    that is not a JSON object, no event id (Shopify: no `X-Shopify-Webhook-Id`), or a
    Zettle message without string `timestamp` and `payload`."""
    try:
        message = json.loads(body)
    except ValueError:
        return _Parsed(None, None, "the body is not JSON")
    if not isinstance(message, dict):
        return _Parsed(None, None, "the body is not a JSON object")
    if provider == "shopify":
        webhook_id = headers.get(SHOPIFY_WEBHOOK_ID_HEADER.lower()) or None
        error = None if webhook_id else f"missing {SHOPIFY_WEBHOOK_ID_HEADER}"
        return _Parsed(message, webhook_id, error)
    names = ("eventId", "messageId") if provider == "zettle" else ("event_id",)
    event_id = next(
        (v for v in map(message.get, names) if isinstance(v, str) and v),
        None,
    )
    if event_id is None:
        return _Parsed(message, None, f"no event id in the {provider} delivery")
    if provider == "zettle" and not (
        isinstance(message.get("timestamp"), str) and isinstance(message.get("payload"), str)
    ):
        return _Parsed(message, event_id, "the Zettle message has no string timestamp and payload")
    return _Parsed(message, event_id, None)


# --- signing and bodies, as the providers make them ----------------------------------------


def square_signature(key: str, notification_url: str, body: bytes) -> str:
    """Square's `x-square-hmacsha256-signature` of `body` delivered to `notification_url`."""
    digest = hmac.new(key.encode(), notification_url.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def shopify_signature(key: str, body: bytes) -> str:
    """Shopify's `X-Shopify-Hmac-SHA256` of `body`."""
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def zettle_signature(key: str, timestamp: str, payload: str) -> str:
    """Zettle's `X-iZettle-Signature` of a Pusher message with these `timestamp` and
    `payload` fields (lower-case hex)."""
    return hmac.new(key.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _uuid_for(kind: str, event_id: str) -> str:
    # Derived, not random: the same event always gets the same body.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"feedback-ops-test:{kind}:{event_id}"))


def square_body(
    event_id: str, merchant_id: str = "MLSQ1", event_type: str = "payment.updated"
) -> bytes:
    """A Square webhook event about a payment, as Square sends it (compact JSON)."""
    payment_id = f"pay-{event_id}"
    return _compact(
        {
            "merchant_id": merchant_id,
            "type": event_type,
            "event_id": event_id,
            "created_at": _CREATED_AT,
            "data": {
                "type": "payment",
                "id": payment_id,
                "object": {
                    "payment": {
                        "id": payment_id,
                        "status": "COMPLETED",
                        "amount_money": {"amount": 12900, "currency": "SEK"},
                        "created_at": _CREATED_AT,
                    }
                },
            },
        }
    )


def shopify_body(order_id: int) -> bytes:
    """A Shopify order webhook's body (compact JSON); the event id travels apart, in
    `X-Shopify-Webhook-Id`."""
    return _compact(
        {
            "id": order_id,
            "total_price": "129.00",
            "currency": "SEK",
            "created_at": "2027-03-10T09:00:00+01:00",
        }
    )


def zettle_body(
    event_id: str, organization_uuid: str = "org-1", event_name: str = "PurchaseCreated"
) -> bytes:
    """A Zettle Pusher message (compact JSON) whose `payload` is a purchase as a JSON
    string, as Zettle sends it."""
    payload = _compact({"purchaseUuid": _uuid_for("purchase", event_id), "amount": 12900})
    message_uuid = _uuid_for("message", event_id)
    return _compact(
        {
            "organizationUuid": organization_uuid,
            "messageUuid": message_uuid,
            "eventName": event_name,
            "messageId": hashlib.sha1(message_uuid.encode()).hexdigest(),
            "eventId": event_id,
            "payload": payload.decode(),
            "timestamp": _ZETTLE_TIMESTAMP,
        }
    )


# --- a process of its own ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a `WebhookReceiver` on 127.0.0.1 in the foreground until killed."""
    parser = argparse.ArgumentParser(
        prog="python -m support.webhook_receiver",
        description="Serve the fake gateway webhook endpoints on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(latency_seconds=args.latency)
    # Bound here, as `ThreadedServer` does: the port is known (and the Square URL with it)
    # before the first request, and asyncio sets TCP_NODELAY on an IPPROTO_TCP socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, args.port))
    receiver.port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        receiver.asgi_app(),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        timeout_graceful_shutdown=2,
    )
    print(f"webhook receiver on {receiver.url}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
