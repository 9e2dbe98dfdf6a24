"""Each POS provider's own API, asked the cheapest authenticated question: is it up,
how fast, and what it says about limits, versions and the platform's token.

- Square: `GET /v2/locations` and `POST /oauth2/token/status` (the token's
  `expires_at`), Bearer token and `Square-Version`.
- Shopify: `GET /admin/api/{version}/shop.json` with `X-Shopify-Access-Token`, reading
  `X-Shopify-Shop-Api-Call-Limit` (`used/bucket`), `X-Shopify-API-Version` (an answer
  in another version than asked means the asked one is no longer served) and
  `X-Shopify-API-Deprecated-Reason`.
- Zettle: an access token by the JWT-bearer grant, then `GET /users/me` on its OAuth
  host.

A probe never raises for what a provider answers: a 5xx, a 401, HTML instead of JSON or
no answer at all is a `Probe` with `ok=False` and the one-line reason, so one provider's
trouble is a finding of the sweep, not its end. Tokens are never in a reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from blocks.channels.base import (
    ChannelError,
    endpoint_of,
    error_text,
    http_client,
    status_error,
    transport_error,
)
from blocks.pos import JWT_BEARER, PosProviders, provider_time, reveal


@dataclass(frozen=True)
class Probe:
    """What one provider endpoint answered.

    Attributes:
        provider: square, shopify or zettle.
        endpoint: `host:port` asked, safe to print.
        ok: It answered as a healthy API does.
        http_status: The last answer's status, if there was one.
        connect_ms: Time to open the TCP (and TLS) connection, if one was opened.
        total_ms: Time for the whole probe, every request included.
        facts: What the answers told: limits, versions, token expiry.
        error: Why it is not ok, in one line.
    """

    provider: str
    endpoint: str
    ok: bool
    http_status: int | None
    connect_ms: float | None
    total_ms: float
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class _Timed:
    """An httpx client that notes how long its first connection took to open."""

    def __init__(self, timeout: float) -> None:
        self.client = http_client(timeout)
        self.connect_ms: float | None = None
        self._connect_started = 0.0

    def trace(self, event: str, _info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self._connect_started = time.perf_counter()
        elif event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            # TLS, when there is one, counts as part of connecting.
            self.connect_ms = (time.perf_counter() - self._connect_started) * 1000

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, extensions={"trace": self.trace}, **kwargs)


def _probe(
    provider: str, base: str, timeout: float, ask: Callable[[_Timed, str], dict[str, Any]]
) -> Probe:
    """Run `ask` on a fresh connection to `base`; its facts, or the reason it failed.

    `ask` returns the facts, with the last answer's `http_status` and, when the answers
    came but tell of trouble, a `problem` in words. The requests' errors name no secret:
    `status_error` scrubs the providers' texts of them.
    """
    endpoint = endpoint_of(base, what=f"the {provider} API", channel=provider)
    timed = _Timed(timeout)
    started = time.perf_counter()
    status: int | None = None
    try:
        facts = ask(timed, endpoint)
        error = facts.pop("problem", None)
        status = facts.pop("http_status", None)
    except ChannelError as exc:
        error, facts, status = str(exc), {}, exc.status
    except httpx.TransportError as exc:
        error = str(transport_error(provider, f"the {provider} API", endpoint, exc, timeout))
        facts = {}
    finally:
        timed.client.close()
    total = (time.perf_counter() - started) * 1000
    return Probe(provider, endpoint, error is None, status, timed.connect_ms, total, facts, error)


def _json(response: httpx.Response, provider: str, what: str, secrets: list[str]) -> Any:
    if not response.is_success:
        raise status_error(provider, what, response, error_text(response), secrets=secrets)
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise ChannelError(
            provider,
            f"{what} answered with something that is not JSON ({kind})",
            status=response.status_code,
        ) from None


def probe_square(providers: PosProviders, base: str, now: datetime | None = None) -> Probe:
    """Square at `base` (the primary `square_api_url` or a secondary)."""
    token = reveal(providers.square_access_token)
    headers = {"Authorization": f"Bearer {token}", "Square-Version": providers.square_version}
    root = base.rstrip("/")

    def ask(timed: _Timed, endpoint: str) -> dict[str, Any]:
        what = f"Square GET /v2/locations at {endpoint}"
        located = timed.send("GET", f"{root}/v2/locations", headers=headers)
        locations = _json(located, "square", what, [token]).get("locations") or []
        what = f"Square POST /oauth2/token/status at {endpoint}"
        answer = timed.send("POST", f"{root}/oauth2/token/status", headers=headers, json={})
        status = _json(answer, "square", what, [token])
        facts: dict[str, Any] = {"locations": len(locations), "http_status": answer.status_code}
        facts.update(_expiry(status.get("expires_at"), now))
        facts["merchant_id"] = status.get("merchant_id")
        return facts

    return _probe("square", root, providers.timeout_seconds, ask)


def probe_shopify(providers: PosProviders, base: str) -> Probe:
    """Shopify's Admin API at `base` (the shop's own host or a secondary)."""
    token = reveal(providers.shopify_access_token)
    version = providers.shopify_api_version
    root = base.rstrip("/")

    def ask(timed: _Timed, endpoint: str) -> dict[str, Any]:
        what = f"Shopify GET /admin/api/{version}/shop.json at {endpoint}"
        answer = timed.send(
            "GET",
            f"{root}/admin/api/{version}/shop.json",
            headers={"X-Shopify-Access-Token": token},
        )
        shop = _json(answer, "shopify", what, [token]).get("shop") or {}
        answered = answer.headers.get("x-shopify-api-version")
        facts: dict[str, Any] = {
            "http_status": answer.status_code,
            "shop": shop.get("myshopify_domain") or shop.get("domain"),
            "api_version_asked": version,
            "api_version_answered": answered,
            "call_limit": answer.headers.get("x-shopify-shop-api-call-limit"),
            "deprecated_reason": answer.headers.get("x-shopify-api-deprecated-reason"),
        }
        if answered and answered != version:
            facts["problem"] = (
                f"shopify: API version {version} is no longer served (answered in "
                f"{answered}): update SHOPIFY_API_VERSION"
            )
        return facts

    return _probe("shopify", root, providers.timeout_seconds, ask)


def probe_zettle(
    providers: PosProviders, oauth_base: str, access_token: str | None = None
) -> Probe:
    """Zettle's OAuth host at `oauth_base`: `GET /users/me` with `access_token` (the one
    in use), or with a new token by the assertion grant when none is given."""
    key = reveal(providers.zettle_api_key)
    root = oauth_base.rstrip("/")

    def ask(timed: _Timed, endpoint: str) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        access = access_token
        if access is None:
            what = f"Zettle POST /token at {endpoint}"
            form = {
                "grant_type": JWT_BEARER,
                "client_id": providers.zettle_client_id or "",
                "assertion": key,
            }
            granted = _json(timed.send("POST", f"{root}/token", data=form), "zettle", what, [key])
            access = str(granted.get("access_token") or "")
            facts["token_expires_in_seconds"] = granted.get("expires_in")
        what = f"Zettle GET /users/me at {endpoint}"
        answer = timed.send(
            "GET", f"{root}/users/me", headers={"Authorization": f"Bearer {access}"}
        )
        me = _json(answer, "zettle", what, [key, access])
        return facts | {
            "http_status": answer.status_code,
            "organization": me.get("organizationUuid"),
        }

    return _probe("zettle", root, providers.timeout_seconds, ask)


def _expiry(expires_at: Any, now: datetime | None) -> dict[str, Any]:
    """`token_expires_at` and `token_days_left` from Square's `expires_at` (empty when
    the token never expires)."""
    when = provider_time(expires_at)
    if when is None:
        return {"token_expires_at": None, "token_days_left": None}
    left = (when - (now or datetime.now(UTC))).total_seconds() / 86400
    return {"token_expires_at": when.isoformat(), "token_days_left": round(left, 2)}
