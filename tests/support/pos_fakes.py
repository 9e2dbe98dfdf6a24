"""A real HTTP server on loopback that answers like Square, Shopify and Zettle.

`PosFake` is one FastAPI app served by uvicorn in a thread. It speaks the parts of the
providers' APIs that the clients under `blocks/pos/` call, with their real
authentication and error shapes, under one path prefix per provider so that a single
base URL serves all:

- Square (`/square`): `GET /v2/webhooks/subscriptions`, `Authorization: Bearer <token>`
  and `Square-Version`, paged by `cursor` (3 subscriptions over 2 pages). A wrong or
  missing token gets Square's 401 `AUTHENTICATION_ERROR`.
- Shopify (`/shopify`): `GET /admin/api/<version>/webhooks.json` with
  `X-Shopify-Access-Token`, paged by a `Link: <…page_info=…>; rel="next"` header
  (3 webhooks over 2 pages). A wrong or missing token gets Shopify's 401
  `{"errors": "[API] Invalid API key or access token …"}`.
- Zettle: `POST /zettle-oauth/token` (JWT-bearer grant: `client_id` and the API key as
  `assertion`) gives an access token; `GET /zettle-pusher/organizations/self/subscriptions`
  with that token lists 2 Pusher subscriptions, each with its `signingKey`. A wrong
  client id or API key gets OAuth's 400 `invalid_grant`; an unknown access token 401.

The health probes' calls are served too: Square `GET /v2/locations` and `POST
/oauth2/token/status` (`expires_at` from `square_expires_at`), Shopify `GET
/admin/api/<version>/shop.json` with `X-Shopify-Shop-Api-Call-Limit`,
`X-Shopify-API-Version` (a version it no longer serves is answered in the oldest it
does, as Shopify does) and, when set, `X-Shopify-API-Deprecated-Reason`, and Zettle
`GET /zettle-oauth/users/me` with an issued access token.

Every request is recorded (method, path, query, headers, form), and `fail` scripts
503/429 answers in each provider's own error shape, or a proxy's HTML page.

For the merchant sweep, the token status, shop and `/users/me` endpoints also accept
merchants' own tokens (`merchants`, `register_merchants`: a `MerchantToken` per token,
revoked ones answered 401), answer after `latency_seconds[provider]`, and enforce
`in_flight_limit`, each provider's own maximum of requests in flight: one more is
answered 429 in the provider's shape (Shopify with `Retry-After`) and counted in
`over_limit[provider]`; `max_in_flight[provider]` is the most that were.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from blocks.pos import PosProviders
from feedback_ops.config import blocks_from_env
from support.asgi_server import LoopbackService

SQUARE_PREFIX = "/square"
SHOPIFY_PREFIX = "/shopify"
ZETTLE_OAUTH_PREFIX = "/zettle-oauth"
ZETTLE_PUSHER_PREFIX = "/zettle-pusher"

SQUARE_TOKEN = "EAAAl-sq-fake-token-9f3c1d7e2b"
SQUARE_PAT = "EAAAl-sq-fake-personal-access-token-51c0"
"""The application's personal access token: the only one the subscriptions API takes."""
SQUARE_APPLICATION_ID = "sq0idp-feedback-ops-fake"
SQUARE_APPLICATION_SECRET = "sq0csp-fake-application-secret-7d2e"
SQUARE_REFRESH_TOKEN = "EQAAl-sq-fake-refresh-token-3b8f"
SQUARE_REFRESHED_EXPIRES_AT = "2027-05-01T09:00:00Z"
"""When a token the fake's refresh grant issues expires."""
SHOPIFY_SHOP = "feedback-kafe.myshopify.com"
SHOPIFY_TOKEN = "shpat_fake_4b1e0c9d7a2f6e3b8c5d"
ZETTLE_CLIENT_ID = "0d6a3c5e-7b1f-4e8a-9c2d-zettle-client"
ZETTLE_API_KEY = "eyJraWQiOiJmYWtlIn0.zettle-fake-api-key.c2lnbmF0dXJl"

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ZETTLE_TOKEN_SECONDS = 7200

SQUARE_SUBSCRIPTIONS: list[dict[str, Any]] = [
    {
        "id": "wbhk_b35f6b3145074cf9ad513610786c19d5",
        "name": "Feedback – betalningar",
        "enabled": True,
        "event_types": ["payment.created", "payment.updated"],
        "notification_url": "https://hooks.feedback.example/square/payments",
        "api_version": "2024-10-17",
        "created_at": "2024-05-02 09:14:55 +0000 UTC",
        "updated_at": "2024-05-02 09:14:55 +0000 UTC",
    },
    {
        "id": "wbhk_0c1e4d8a5f2b4e6c9a7d3b1f0e8c6a42",
        "name": "Feedback – återbetalningar",
        "enabled": True,
        "event_types": ["refund.created", "refund.updated"],
        "notification_url": "https://hooks.feedback.example/square/refunds",
        "api_version": "2024-10-17",
        "created_at": "2024-06-11 14:02:31 +0000 UTC",
        "updated_at": "2024-09-30 07:45:10 +0000 UTC",
    },
    {
        "id": "wbhk_9e7d5c3b1a0f4e2d8c6b4a2f0e1d3c5b",
        "name": "Feedback – platser (pausad)",
        "enabled": False,
        "event_types": ["location.updated"],
        "notification_url": "https://hooks.feedback.example/square/locations",
        "api_version": "2024-07-17",
        "created_at": "2024-08-20 11:30:00 +0000 UTC",
        "updated_at": "2024-10-01 06:00:00 +0000 UTC",
    },
]

SHOPIFY_WEBHOOKS: list[dict[str, Any]] = [
    {
        "id": 1047895551,
        "address": "https://hooks.feedback.example/shopify/orders-create",
        "topic": "orders/create",
        "created_at": "2024-05-03T10:12:44+02:00",
        "updated_at": "2024-05-03T10:12:44+02:00",
        "format": "json",
        "fields": [],
        "metafield_namespaces": [],
        "api_version": "2024-10",
        "private_metafield_namespaces": [],
    },
    {
        "id": 1047895552,
        "address": "https://hooks.feedback.example/shopify/orders-paid",
        "topic": "orders/paid",
        "created_at": "2024-05-03T10:12:45+02:00",
        "updated_at": "2024-07-15T08:01:02+02:00",
        "format": "json",
        "fields": ["id", "total_price", "currency"],
        "metafield_namespaces": [],
        "api_version": "2024-10",
        "private_metafield_namespaces": [],
    },
    {
        "id": 1047895553,
        "address": "https://hooks.feedback.example/shopify/refunds-create",
        "topic": "refunds/create",
        "created_at": "2024-09-01T16:20:00+02:00",
        "updated_at": "2024-09-01T16:20:00+02:00",
        "format": "json",
        "fields": [],
        "metafield_namespaces": [],
        "api_version": "2024-10",
        "private_metafield_namespaces": [],
    },
]

ZETTLE_SUBSCRIPTIONS: list[dict[str, Any]] = [
    {
        "uuid": "6f0a9f3e-24d2-11ef-9c1b-0242ac120002",
        "transportName": "WEBHOOK",
        "eventNames": ["PurchaseCreated", "PurchaseUpdated"],
        "updated": "2024-06-05T09:41:12.345Z",
        "destination": "https://hooks.feedback.example/zettle/purchases",
        "contactEmail": "drift@feedback.example",
        "status": "ACTIVE",
        "signingKey": "zsk-Vq8R2mN5xL0pK7wT3yB9cF6hJ1dG4sA-purchases",
    },
    {
        "uuid": "7a1b0c4f-24d2-11ef-9c1b-0242ac120002",
        "transportName": "WEBHOOK",
        "eventNames": ["InventoryBalanceChanged"],
        "updated": "2024-08-19T13:07:55.001Z",
        "destination": "https://hooks.feedback.example/zettle/inventory",
        "contactEmail": "drift@feedback.example",
        "status": "ACTIVE",
        "signingKey": "zsk-Hn4T7kP2qW9eR5uY1iO8aS3dF6gJ0lZ-inventory",
    },
]

SQUARE_TOKEN_EXPIRES_AT = "2027-04-09T09:00:00Z"
SQUARE_MERCHANT_ID = "ML2V7M0Q6XRWT"
SQUARE_LOCATIONS = [
    {"id": "L8J9Q1WZ5TBR3", "name": "Kafé Centralen", "status": "ACTIVE", "country": "SE"},
    {"id": "L2M4N6P8R0S1T", "name": "Kafé Södermalm", "status": "ACTIVE", "country": "SE"},
]
SHOPIFY_SERVED_VERSIONS = ("2024-10", "2025-01", "2025-04")
"""The versions the fake serves, oldest first; one older is answered in the oldest."""
ZETTLE_ORGANIZATION = "ab0f5f4e-21d9-11ef-9262-0242ac120002"

SQUARE_PAGE_SIZE = 2
# Shopify would send all three at limit=250; two a page makes the test follow the
# Link header, which is what a shop with more than 250 webhooks needs.
SHOPIFY_PAGE_SIZE = 2

SQUARE_UNAUTHORIZED = {
    "errors": [
        {
            "category": "AUTHENTICATION_ERROR",
            "code": "UNAUTHORIZED",
            "detail": "This request could not be authorized.",
        }
    ]
}
SHOPIFY_UNAUTHORIZED = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
ZETTLE_UNAUTHORIZED = {
    "error": "invalid_token",
    "error_description": "Access token is invalid or expired",
}


@dataclass(frozen=True)
class PosRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Header names lower-cased."""
    form: dict[str, str] | None = None
    """The parsed body of an `application/x-www-form-urlencoded` request."""
    json: Any = None
    """The parsed body of an `application/json` request."""


@dataclass
class ScriptedFailure:
    """`times` more answers of `status` to requests under `path_prefix`."""

    path_prefix: str
    status: int
    remaining: int | None
    retry_after: float | None
    html: bool = False


class PosFake(LoopbackService):
    """Square, Shopify and Zettle on one loopback base URL; a context manager.

    `env()` gives the environment variables that point the project's POS providers
    block at the fake with valid credentials.
    """

    name = "pos-fake"
    # `asgi_app()` is a bound method, which uvicorn's "auto" would take for ASGI 2.
    interface = "asgi3"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[PosRequest] = []
        self._failures: list[ScriptedFailure] = []
        self._zettle_tokens: list[str] = []
        self.square_expires_at: str | None = SQUARE_TOKEN_EXPIRES_AT
        self.shopify_versions = SHOPIFY_SERVED_VERSIONS
        self.shopify_call_limit = "1/40"
        self.shopify_deprecated_reason: str | None = None
        self._reset_merchants()
        self._reset_subscriptions()
        super().__init__()
        self.app = self._build_app()

    # --- lifecycle ---

    def env(self) -> dict[str, str]:
        """The variables that configure all three providers against this fake."""
        return {
            "SQUARE_ACCESS_TOKEN": SQUARE_TOKEN,
            "SQUARE_PERSONAL_ACCESS_TOKEN": SQUARE_PAT,
            "SQUARE_APPLICATION_ID": SQUARE_APPLICATION_ID,
            "SQUARE_APPLICATION_SECRET": SQUARE_APPLICATION_SECRET,
            "SQUARE_REFRESH_TOKEN": SQUARE_REFRESH_TOKEN,
            "SQUARE_API_URL": f"{self.url}{SQUARE_PREFIX}",
            "SHOPIFY_SHOP_DOMAIN": SHOPIFY_SHOP,
            "SHOPIFY_ACCESS_TOKEN": SHOPIFY_TOKEN,
            "SHOPIFY_API_URL": f"{self.url}{SHOPIFY_PREFIX}",
            "ZETTLE_CLIENT_ID": ZETTLE_CLIENT_ID,
            "ZETTLE_API_KEY": ZETTLE_API_KEY,
            "ZETTLE_OAUTH_URL": f"{self.url}{ZETTLE_OAUTH_PREFIX}",
            "ZETTLE_PUSHER_URL": f"{self.url}{ZETTLE_PUSHER_PREFIX}",
        }

    def asgi_app(self) -> Any:
        """The app this fake serves: `app`, with the merchant sweep's endpoints answered
        ahead of it (see `_serve`)."""
        return self._serve

    def reset(self) -> None:
        """Forget requests, scripted failures and issued Zettle access tokens, and
        answer as at the start again."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._zettle_tokens.clear()
            self.square_expires_at = SQUARE_TOKEN_EXPIRES_AT
            self.shopify_versions = SHOPIFY_SERVED_VERSIONS
            self.shopify_call_limit = "1/40"
            self.shopify_deprecated_reason = None
        self._reset_merchants()
        self._reset_subscriptions()

    def reset_requests(self) -> None:
        """Forget the requests received so far, and nothing else."""
        with self._lock:
            self._requests.clear()

    # --- scripting and inspection ---

    def fail(
        self,
        path_prefix: str,
        status: int,
        times: int | None = 1,
        retry_after: float | None = None,
        html: bool = False,
    ) -> None:
        """Answer the next `times` requests under `path_prefix` with `status` (`None`:
        for good), in the provider's error shape, with `Retry-After` when given.

        The failure comes before the credentials are checked, as a provider's load
        balancer or rate limiter answers before its API does.
        """
        with self._lock:
            self._failures.append(ScriptedFailure(path_prefix, status, times, retry_after, html))

    def requests(self, path_prefix: str = "") -> list[PosRequest]:
        """The recorded requests whose path starts with `path_prefix`, oldest first."""
        with self._lock:
            return [r for r in self._requests if r.path.startswith(path_prefix)]

    @property
    def zettle_access_tokens(self) -> list[str]:
        """The access tokens the fake's Zettle OAuth has issued since the last reset."""
        with self._lock:
            return list(self._zettle_tokens)

    # --- serving ---

    async def _begin(self, request: Request) -> tuple[PosRequest, Response | None]:
        """Record the request; a scripted failure's answer if one applies."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        form, parsed = None, None
        kind = headers.get("content-type", "")
        if kind.startswith("application/x-www-form-urlencoded"):
            body = (await request.body()).decode()
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        elif kind.startswith("application/json"):
            try:
                parsed = json.loads(await request.body())
            except ValueError:
                parsed = None
        recorded = PosRequest(
            request.method, request.url.path, dict(request.query_params), headers, form, parsed
        )
        return recorded, self._record(recorded)

    def _record(self, recorded: PosRequest) -> Response | None:
        """Record a request; a scripted failure's answer if one applies."""
        with self._lock:
            self._requests.append(recorded)
            failure = next(
                (
                    f
                    for f in self._failures
                    if recorded.path.startswith(f.path_prefix) and f.remaining != 0
                ),
                None,
            )
            if failure is not None and failure.remaining is not None:
                failure.remaining -= 1
        if failure is None:
            return None
        return _provider_failure(recorded.path, failure)

    def _zettle_refusal(self, recorded: PosRequest) -> Response | None:
        """Zettle's 401 unless the request carries an access token the fake issued."""
        scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer" and token in self.zettle_access_tokens:
            return None
        return JSONResponse(ZETTLE_UNAUTHORIZED, status_code=401)

    # --- merchants: their tokens, latency and a rate limit (see the end of the module) ---

    def _reset_merchants(self) -> None:
        """No merchants, no latency, no limit, nothing counted."""
        self.merchants: dict[str, MerchantToken] = {}
        self.latency_seconds: dict[str, float] = dict.fromkeys(PROVIDERS, 0.0)
        self.in_flight_limit: int | None = None
        self.shopify_retry_after = SHOPIFY_RETRY_AFTER
        self.over_limit: dict[str, int] = dict.fromkeys(PROVIDERS, 0)
        self.max_in_flight: dict[str, int] = dict.fromkeys(PROVIDERS, 0)
        self._in_flight: dict[str, int] = dict.fromkeys(PROVIDERS, 0)

    def register_merchants(self, merchants: Mapping[str, MerchantToken]) -> None:
        """Accept each token of `merchants` (token -> its merchant) from now on."""
        self.merchants.update(merchants)

    def register_merchant(
        self, token: str, provider: str, expires_at: str | None = None, revoked: bool = False
    ) -> None:
        """Accept `token` as a merchant's token of `provider` from now on."""
        self.merchants[token] = MerchantToken(provider, expires_at, revoked)

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app served: the three endpoints of the merchant sweep answered here,
        everything else by the FastAPI `app`.

        FastAPI's routing, middleware and parameter solving are most of what a request
        costs the fake, and a sweep test sends 10,000; these endpoints read nothing but
        the headers. A request is recorded exactly as `_begin` records it.
        """
        route = _METERED.get(scope["method"]) if scope["type"] == "http" else None
        matched = route[0].fullmatch(scope["path"]) if route is not None else None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        kind = headers.get("content-type", "")
        if route is None or matched is None or kind.startswith("application/x-www-form"):
            await self.app(scope, receive, send)
            return
        body, more = b"", scope["method"] == "POST"
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        parsed = None
        if kind.startswith("application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        recorded = PosRequest(scope["method"], scope["path"], query, headers, None, parsed)
        provider = matched.lastgroup or ""
        answer = getattr(self, route[1][provider])
        response = await self._metered(provider, recorded, self._record(recorded), answer)
        await response(scope, receive, send)

    async def _metered_request(
        self, provider: str, request: Request, answer: Callable[[PosRequest], Response]
    ) -> Response:
        """`_metered` for a request FastAPI routed."""
        recorded, failed = await self._begin(request)
        return await self._metered(provider, recorded, failed, answer)

    async def _metered(
        self,
        provider: str,
        recorded: PosRequest,
        failed: Response | None,
        answer: Callable[[PosRequest], Response],
    ) -> Response:
        """Within the provider's in-flight limit, `failed` or `answer` after the
        provider's latency; over the limit, the provider's 429 at once.

        Everything here runs on the server's event loop, one request at a time between
        awaits, so the counters need no lock. The slot is given back before the answer
        is sent: the client cannot see the answer (and send its next request) before the
        fake counts this one as done.
        """
        limit = self.in_flight_limit
        if limit is not None and self._in_flight[provider] >= limit:
            self.over_limit[provider] += 1
            retry = self.shopify_retry_after if provider == "shopify" else None
            return _provider_failure(recorded.path, ScriptedFailure("", 429, None, retry))
        # The counts as they are now: a request still waiting when `reset()` replaces
        # them must not count against the next test's.
        in_flight, most = self._in_flight, self.max_in_flight
        in_flight[provider] += 1
        most[provider] = max(most[provider], in_flight[provider])
        try:
            if latency := self.latency_seconds.get(provider, 0.0):
                await asyncio.sleep(latency)
            return failed if failed is not None else answer(recorded)
        finally:
            in_flight[provider] -= 1

    def _merchant(self, provider: str, token: str) -> MerchantToken | None:
        merchant = self.merchants.get(token)
        return merchant if merchant is not None and merchant.provider == provider else None

    def _square_token_status(self, recorded: PosRequest) -> Response:
        scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
        merchant = self._merchant("square", token) if scheme == "Bearer" else None
        if merchant is not None:
            if merchant.revoked:
                return JSONResponse(SQUARE_UNAUTHORIZED, status_code=401)
            expires_at, merchant_id = merchant.expires_at, merchant.merchant_id
        elif token == SQUARE_TOKEN and scheme == "Bearer":
            expires_at, merchant_id = self.square_expires_at, SQUARE_MERCHANT_ID
        elif token in self.square_refreshed and scheme == "Bearer":
            expires_at, merchant_id = self.square_refreshed[token], SQUARE_MERCHANT_ID
        else:
            return JSONResponse(SQUARE_UNAUTHORIZED, status_code=401)
        return JSONResponse(
            {
                "scopes": ["MERCHANT_PROFILE_READ", "PAYMENTS_READ"],
                "expires_at": expires_at or "",
                "client_id": "sq0idp-feedback-ops-fake",
                "merchant_id": merchant_id or SQUARE_MERCHANT_ID,
            }
        )

    def _shopify_shop(self, recorded: PosRequest) -> Response:
        token = recorded.headers.get("x-shopify-access-token", "")
        merchant = self._merchant("shopify", token)
        if (merchant is None and token != SHOPIFY_TOKEN) or (merchant and merchant.revoked):
            return JSONResponse(SHOPIFY_UNAUTHORIZED, status_code=401)
        version = recorded.path.split("/")[4]  # /shopify/admin/api/<version>/shop.json
        # An unserved version is answered in the oldest one served, as Shopify does.
        served = version if version in self.shopify_versions else self.shopify_versions[0]
        headers = {
            "X-Shopify-API-Version": served,
            "X-Shopify-Shop-Api-Call-Limit": self.shopify_call_limit,
        }
        if self.shopify_deprecated_reason:
            headers["X-Shopify-API-Deprecated-Reason"] = self.shopify_deprecated_reason
        shop = {"id": 548380009, "name": "Feedback Kafé", "myshopify_domain": SHOPIFY_SHOP}
        return JSONResponse({"shop": shop}, headers=headers)

    def _zettle_me(self, recorded: PosRequest) -> Response:
        scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
        merchant = self._merchant("zettle", token) if scheme == "Bearer" else None
        if merchant is None:
            if (refused := self._zettle_refusal(recorded)) is not None:
                return refused
        elif merchant.revoked:
            return JSONResponse(ZETTLE_UNAUTHORIZED, status_code=401)
        return JSONResponse(
            {
                "uuid": "c7e1d2f0-21d9-11ef-9262-0242ac120002",
                "organizationUuid": ZETTLE_ORGANIZATION,
            }
        )

    # --- the platform's tokens and subscriptions, as the health sweep changes them ---
    # Square's refresh grant (`POST /square/oauth2/token`, JSON body) issues a new access
    # token that the platform endpoints accept from then on; Zettle's Pusher API creates
    # subscriptions (`POST /zettle-pusher/organizations/self/subscriptions`) with a signing
    # key of its own; and a test can delete a Zettle subscription, as Zettle does after 72 h
    # of failed deliveries, or disable a Square one.

    def _reset_subscriptions(self) -> None:
        """The subscriptions as at the start; no token refreshed or subscription created."""
        self.square_subscriptions = copy.deepcopy(SQUARE_SUBSCRIPTIONS)
        self.zettle_subscriptions = copy.deepcopy(ZETTLE_SUBSCRIPTIONS)
        self.created_zettle_subscriptions: list[dict[str, Any]] = []
        self.square_refreshed: dict[str, str] = {}
        self.refuse_square_refresh = False

    def _square_platform(self, recorded: PosRequest) -> bool:
        """Whether the request carries the platform's Square token or one refreshed since."""
        scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and (token == SQUARE_TOKEN or token in self.square_refreshed)

    def _square_refresh(self, recorded: PosRequest) -> Response:
        """Square's `ObtainToken` with `grant_type=refresh_token`: the code flow's answer,
        with the same refresh token."""
        body = recorded.json if isinstance(recorded.json, dict) else {}
        valid = (
            body.get("grant_type") == "refresh_token"
            and body.get("client_id") == SQUARE_APPLICATION_ID
            and body.get("client_secret") == SQUARE_APPLICATION_SECRET
            and body.get("refresh_token") == SQUARE_REFRESH_TOKEN
            and not self.refuse_square_refresh
        )
        if not valid:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "category": "AUTHENTICATION_ERROR",
                            "code": "UNAUTHORIZED",
                            "detail": "Invalid refresh token or client credentials.",
                        }
                    ]
                },
                status_code=401,
            )
        token = f"EAAAl-sq-refreshed-{secrets.token_hex(8)}"
        self.square_refreshed[token] = SQUARE_REFRESHED_EXPIRES_AT
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_at": SQUARE_REFRESHED_EXPIRES_AT,
                "merchant_id": SQUARE_MERCHANT_ID,
                "refresh_token": SQUARE_REFRESH_TOKEN,
            }
        )

    def _zettle_create(self, recorded: PosRequest) -> Response:
        """Create a subscription as Zettle's Pusher API does, with a new signing key."""
        body = recorded.json if isinstance(recorded.json, dict) else {}
        required = ("uuid", "transportName", "eventNames", "destination")
        if missing := [name for name in required if not body.get(name)]:
            return JSONResponse(
                {"errorType": "VALIDATION_ERROR", "developerMessage": f"missing {missing}"},
                status_code=400,
            )
        created = {
            "uuid": body["uuid"],
            "transportName": body["transportName"],
            "eventNames": list(body["eventNames"]),
            "updated": "2027-03-10T08:00:00.000Z",
            "destination": body["destination"],
            "contactEmail": body.get("contactEmail", ""),
            "status": "ACTIVE",
            "signingKey": f"zsk-{secrets.token_urlsafe(24)}",
        }
        self.zettle_subscriptions.append(created)
        self.created_zettle_subscriptions.append(created)
        return JSONResponse(created)

    def delete_zettle_subscription(self, uuid: str) -> None:
        """Remove a subscription, as Zettle does after about 72 hours of failed deliveries."""
        self.zettle_subscriptions = [s for s in self.zettle_subscriptions if s["uuid"] != uuid]

    def disable_square_subscription(self, ident: str) -> None:
        """Turn a Square subscription off (`enabled: false`)."""
        for subscription in self.square_subscriptions:
            if subscription["id"] == ident:
                subscription["enabled"] = False

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.get(f"{SQUARE_PREFIX}/v2/webhooks/subscriptions")
        async def square_subscriptions(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if recorded.headers.get("authorization") != f"Bearer {SQUARE_PAT}":
                return JSONResponse(SQUARE_UNAUTHORIZED, status_code=401)
            start = _cursor_offset(recorded.query.get("cursor"))
            if start is None:
                return JSONResponse(
                    {
                        "errors": [
                            {
                                "category": "INVALID_REQUEST_ERROR",
                                "code": "INVALID_CURSOR",
                                "detail": "The cursor is invalid.",
                                "field": "cursor",
                            }
                        ]
                    },
                    status_code=400,
                )
            listed = self.square_subscriptions
            page = listed[start : start + SQUARE_PAGE_SIZE]
            body: dict[str, Any] = {"subscriptions": copy.deepcopy(page)}
            if start + SQUARE_PAGE_SIZE < len(listed):
                body["cursor"] = _cursor_for(start + SQUARE_PAGE_SIZE)
            return JSONResponse(body)

        @app.get(SHOPIFY_PREFIX + "/admin/api/{version}/webhooks.json")
        async def shopify_webhooks(request: Request, version: str) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if recorded.headers.get("x-shopify-access-token") != SHOPIFY_TOKEN:
                return JSONResponse(SHOPIFY_UNAUTHORIZED, status_code=401)
            start = _cursor_offset(recorded.query.get("page_info"))
            if start is None:
                return JSONResponse({"errors": {"page_info": "Invalid value."}}, status_code=400)
            limit_text = recorded.query.get("limit", "50")
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= 250:
                return JSONResponse({"errors": {"limit": "Invalid value."}}, status_code=400)
            limit = int(limit_text)
            size = min(limit, SHOPIFY_PAGE_SIZE)
            page = SHOPIFY_WEBHOOKS[start : start + size]
            here = f"{self.url}{SHOPIFY_PREFIX}/admin/api/{version}/webhooks.json"
            links = []
            if start > 0:
                before = _cursor_for(max(start - size, 0))
                links.append(f'<{here}?limit={limit}&page_info={before}>; rel="previous"')
            if start + size < len(SHOPIFY_WEBHOOKS):
                after = _cursor_for(start + size)
                links.append(f'<{here}?limit={limit}&page_info={after}>; rel="next"')
            headers = {"Link": ", ".join(links)} if links else {}
            return JSONResponse({"webhooks": copy.deepcopy(page)}, headers=headers)

        @app.post(f"{ZETTLE_OAUTH_PREFIX}/token")
        async def zettle_token(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            form = recorded.form or {}
            if form.get("grant_type") != JWT_BEARER:
                return JSONResponse(
                    {
                        "error": "unsupported_grant_type",
                        "error_description": "Unsupported grant type",
                    },
                    status_code=400,
                )
            if form.get("client_id") != ZETTLE_CLIENT_ID or form.get("assertion") != ZETTLE_API_KEY:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Invalid assertion"},
                    status_code=400,
                )
            token = f"zat-{secrets.token_urlsafe(24)}"
            with self._lock:
                self._zettle_tokens.append(token)
            return JSONResponse({"access_token": token, "expires_in": ZETTLE_TOKEN_SECONDS})

        @app.get(f"{ZETTLE_PUSHER_PREFIX}/organizations/self/subscriptions")
        async def zettle_subscriptions(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if (refused := self._zettle_refusal(recorded)) is not None:
                return refused
            return JSONResponse(copy.deepcopy(self.zettle_subscriptions))

        @app.post(f"{ZETTLE_PUSHER_PREFIX}/organizations/self/subscriptions")
        async def zettle_create_subscription(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if (refused := self._zettle_refusal(recorded)) is not None:
                return refused
            return self._zettle_create(recorded)

        @app.post(f"{SQUARE_PREFIX}/oauth2/token")
        async def square_obtain_token(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            return self._square_refresh(recorded)

        @app.get(f"{SQUARE_PREFIX}/v2/locations")
        async def square_locations(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if not self._square_platform(recorded):
                return JSONResponse(SQUARE_UNAUTHORIZED, status_code=401)
            return JSONResponse({"locations": copy.deepcopy(SQUARE_LOCATIONS)})

        @app.post(f"{SQUARE_PREFIX}/oauth2/token/status")
        async def square_token_status(request: Request) -> Response:
            return await self._metered_request("square", request, self._square_token_status)

        @app.get(SHOPIFY_PREFIX + "/admin/api/{version}/shop.json")
        async def shopify_shop(request: Request, version: str) -> Response:
            return await self._metered_request("shopify", request, self._shopify_shop)

        @app.get(f"{ZETTLE_OAUTH_PREFIX}/users/me")
        async def zettle_me(request: Request) -> Response:
            return await self._metered_request("zettle", request, self._zettle_me)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def elsewhere(request: Request, path: str) -> Response:
            await self._begin(request)
            return JSONResponse({"detail": "Not Found"}, status_code=404)

        return app


def _cursor_for(offset: int) -> str:
    # Opaque to the client, as the providers' cursors are.
    return f"c{offset:04d}{secrets.token_hex(4)}"


def _cursor_offset(cursor: str | None) -> int | None:
    """Where a cursor from `_cursor_for` points; 0 without one; None when malformed."""
    if cursor is None:
        return 0
    try:
        return int(cursor[1:5]) if cursor.startswith("c") and len(cursor) == 13 else None
    except ValueError:
        return None


def _provider_failure(path: str, failure: ScriptedFailure) -> Response:
    """A 429 or 5xx answer as the provider that owns `path` sends it (or the HTML page
    a proxy in front of it sends)."""
    status = failure.status
    if failure.html:
        page = f"<html><body><h1>{status}</h1><p>Upstream unavailable</p></body></html>"
        return Response(page, status_code=status, media_type="text/html")
    throttled = status == 429
    body: Any
    if path.startswith(SQUARE_PREFIX):
        body = {
            "errors": [
                {
                    "category": "RATE_LIMIT_ERROR" if throttled else "API_ERROR",
                    "code": "RATE_LIMITED" if throttled else "SERVICE_UNAVAILABLE",
                    "detail": "Rate limit exceeded." if throttled else "Service unavailable.",
                }
            ]
        }
    elif path.startswith(SHOPIFY_PREFIX):
        body = {
            "errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
            "resume uninterrupted service."
            if throttled
            else "Service Unavailable"
        }
    else:
        body = {
            "error": "too_many_requests" if throttled else "service_unavailable",
            "error_description": "Too many requests" if throttled else "Service unavailable",
        }
    headers = {}
    if failure.retry_after is not None:
        headers["Retry-After"] = f"{failure.retry_after:g}"
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


# --- merchants: many tokens, latency and a rate limit --------------------------------------
# The merchant sweep (`blocks/pos/merchants.py`) asks each provider about every merchant's
# own token, many at a time. These make the fake answer for thousands of merchants, as
# slowly as a provider far away does, and throttle like one.

PROVIDERS = ("square", "shopify", "zettle")
# The merchant sweep's endpoints by method: which path is which provider's, and the
# method of `PosFake` that answers it.
_METERED: dict[str, tuple[re.Pattern[str], dict[str, str]]] = {
    "POST": (
        re.compile(f"(?P<square>{re.escape(SQUARE_PREFIX)}/oauth2/token/status)"),
        {"square": "_square_token_status"},
    ),
    "GET": (
        re.compile(
            f"(?P<shopify>{re.escape(SHOPIFY_PREFIX)}/admin/api/[^/]+/shop\\.json)"
            f"|(?P<zettle>{re.escape(ZETTLE_OAUTH_PREFIX)}/users/me)"
        ),
        {"shopify": "_shopify_shop", "zettle": "_zettle_me"},
    ),
}
SHOPIFY_RETRY_AFTER = 2.0
"""Seconds Shopify's REST Admin API asks a throttled client to wait (`Retry-After`)."""


@dataclass(frozen=True)
class MerchantToken:
    """A merchant's access token as the provider knows it.

    The three endpoints of the merchant sweep (Square `POST /oauth2/token/status`,
    Shopify `GET /admin/api/<version>/shop.json`, Zettle `GET /users/me`) accept a
    registered token of their own provider, beside the platform's own token; a revoked
    one gets the provider's 401.

    Attributes:
        provider: square, shopify or zettle.
        expires_at: What Square's token status says in `expires_at` (ISO 8601, e.g.
            `2027-04-09T09:00:00Z`); None: the token never expires.
        revoked: The merchant revoked the platform's access.
        merchant_id: Square's `merchant_id` of the token (default: the fake's one).
    """

    provider: str
    expires_at: str | None = None
    revoked: bool = False
    merchant_id: str | None = None


def providers_of(fake: PosFake, **override: Any) -> PosProviders:
    """The POS providers block the environment of `fake` describes, with `override`."""
    providers = blocks_from_env(fake.env())["pos-providers"]
    assert isinstance(providers, PosProviders)
    return providers.model_copy(update=override)
