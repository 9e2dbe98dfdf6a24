"""A real HTTP server on loopback that answers like Square, Shopify and Zettle.

`PosFake` is one FastAPI app served by uvicorn in a thread. It speaks the parts of the
providers' APIs that `tasks/pos_webhooks.py` reads, with their real authentication and
error shapes, under one path prefix per provider so that a single base URL serves all:

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
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from support.asgi_server import LoopbackService

SQUARE_PREFIX = "/square"
SHOPIFY_PREFIX = "/shopify"
ZETTLE_OAUTH_PREFIX = "/zettle-oauth"
ZETTLE_PUSHER_PREFIX = "/zettle-pusher"

SQUARE_TOKEN = "EAAAl-sq-fake-token-9f3c1d7e2b"
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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[PosRequest] = []
        self._failures: list[ScriptedFailure] = []
        self._zettle_tokens: list[str] = []
        self.square_expires_at: str | None = SQUARE_TOKEN_EXPIRES_AT
        self.shopify_versions = SHOPIFY_SERVED_VERSIONS
        self.shopify_call_limit = "1/40"
        self.shopify_deprecated_reason: str | None = None
        super().__init__()
        self.app = self._build_app()

    # --- lifecycle ---

    def env(self) -> dict[str, str]:
        """The variables that configure all three providers against this fake."""
        return {
            "SQUARE_ACCESS_TOKEN": SQUARE_TOKEN,
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
        """The app this fake serves."""
        return self.app

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
        form = None
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = (await request.body()).decode()
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        recorded = PosRequest(
            request.method, request.url.path, dict(request.query_params), headers, form
        )
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
            return recorded, None
        return recorded, _provider_failure(recorded.path, failure)

    def _zettle_refusal(self, recorded: PosRequest) -> Response | None:
        """Zettle's 401 unless the request carries an access token the fake issued."""
        scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer" and token in self.zettle_access_tokens:
            return None
        return JSONResponse(
            {"error": "invalid_token", "error_description": "Access token is invalid or expired"},
            status_code=401,
        )

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.get(f"{SQUARE_PREFIX}/v2/webhooks/subscriptions")
        async def square_subscriptions(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if recorded.headers.get("authorization") != f"Bearer {SQUARE_TOKEN}":
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
            page = SQUARE_SUBSCRIPTIONS[start : start + SQUARE_PAGE_SIZE]
            body: dict[str, Any] = {"subscriptions": copy.deepcopy(page)}
            if start + SQUARE_PAGE_SIZE < len(SQUARE_SUBSCRIPTIONS):
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
            return JSONResponse(copy.deepcopy(ZETTLE_SUBSCRIPTIONS))

        @app.get(f"{SQUARE_PREFIX}/v2/locations")
        async def square_locations(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if recorded.headers.get("authorization") != f"Bearer {SQUARE_TOKEN}":
                return JSONResponse(SQUARE_UNAUTHORIZED, status_code=401)
            return JSONResponse({"locations": copy.deepcopy(SQUARE_LOCATIONS)})

        @app.post(f"{SQUARE_PREFIX}/oauth2/token/status")
        async def square_token_status(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if recorded.headers.get("authorization") != f"Bearer {SQUARE_TOKEN}":
                return JSONResponse(SQUARE_UNAUTHORIZED, status_code=401)
            return JSONResponse(
                {
                    "scopes": ["MERCHANT_PROFILE_READ", "PAYMENTS_READ"],
                    "expires_at": self.square_expires_at or "",
                    "client_id": "sq0idp-feedback-ops-fake",
                    "merchant_id": SQUARE_MERCHANT_ID,
                }
            )

        @app.get(SHOPIFY_PREFIX + "/admin/api/{version}/shop.json")
        async def shopify_shop(request: Request, version: str) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if recorded.headers.get("x-shopify-access-token") != SHOPIFY_TOKEN:
                return JSONResponse(SHOPIFY_UNAUTHORIZED, status_code=401)
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

        @app.get(f"{ZETTLE_OAUTH_PREFIX}/users/me")
        async def zettle_me(request: Request) -> Response:
            recorded, failed = await self._begin(request)
            if failed is not None:
                return failed
            if (refused := self._zettle_refusal(recorded)) is not None:
                return refused
            return JSONResponse(
                {
                    "uuid": "c7e1d2f0-21d9-11ef-9262-0242ac120002",
                    "organizationUuid": ZETTLE_ORGANIZATION,
                }
            )

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
