"""Each POS provider's webhook subscriptions, as the provider itself reports them.

- Square: `GET /v2/webhooks/subscriptions?include_disabled=true` with the
  application's personal access token (the subscriptions API takes no merchant's OAuth
  token; the configured access token when no personal one is set) and
  `Square-Version`, paged by `cursor`.
- Shopify: `GET /admin/api/<version>/webhooks.json` (`X-Shopify-Access-Token`), paged
  by the `Link: <…page_info=…>; rel="next"` header.
- Zettle: an access token from `POST oauth.zettle.com/token` (JWT-bearer grant with
  the API key), then `GET pusher.izettle.com/organizations/self/subscriptions`.

429 and 5xx answers, timeouts and dropped connections are transient (the task retries
them); anything else, an expired token say, fails at once with the provider's reason.
A provider that says how long to wait (`Retry-After`, up to a minute) is asked again
after exactly that long, here, before the task's own retries with their fixed delays.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
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
from blocks.pos import JWT_BEARER, PosProviders, reveal
from feedback_ops.errors import OpsError

_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
MAX_PAGES = 100
# A provider that asks for a longer pause is left to the task's retries.
MAX_RETRY_AFTER_SECONDS = 60.0
RETRY_AFTER_ATTEMPTS = 3


def _get(
    client: httpx.Client,
    provider: str,
    what: str,
    url: str,
    timeout: float,
    secrets: list[str],
    **kwargs: Any,
) -> httpx.Response:
    endpoint = endpoint_of(url, what=what, channel=provider)
    return _answer(
        lambda: client.get(url, **kwargs), provider, what, endpoint, timeout, secrets, ok=200
    )


def _answer(
    send: Callable[[], httpx.Response],
    provider: str,
    what: str,
    endpoint: str,
    timeout: float,
    secrets: list[str],
    *,
    ok: int,
) -> httpx.Response:
    """Send until the provider answers `ok`; a transient answer with a `Retry-After` of
    at most a minute is sent again after that long, a few times; any other answer fails.
    """
    for attempt in range(1, RETRY_AFTER_ATTEMPTS + 1):
        try:
            response = send()
        except httpx.TransportError as exc:
            raise transport_error(provider, what, endpoint, exc, timeout) from None
        if response.status_code == ok:
            return response
        error = status_error(provider, what, response, error_text(response), secrets=secrets)
        wait = error.retry_after
        if (
            not error.transient
            or wait is None
            or wait > MAX_RETRY_AFTER_SECONDS
            or attempt == RETRY_AFTER_ATTEMPTS
        ):
            raise error
        time.sleep(wait)
    raise AssertionError("unreachable")


def _json(response: httpx.Response, provider: str, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ChannelError(provider, f"{what} answered with something that is not JSON") from None


def square_subscriptions(providers: PosProviders) -> list[dict[str, Any]]:
    """Square's webhook subscriptions, disabled ones included, every page."""
    token = reveal(providers.square_personal_access_token or providers.square_access_token)
    base = providers.square_api_url.rstrip("/")
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with http_client(providers.timeout_seconds) as client:
        for _ in range(MAX_PAGES):
            response = _get(
                client,
                "square",
                "Square webhook subscriptions",
                f"{base}/v2/webhooks/subscriptions",
                providers.timeout_seconds,
                [token],
                params={"include_disabled": "true", **({"cursor": cursor} if cursor else {})},
                headers={
                    "Authorization": f"Bearer {token}",
                    "Square-Version": providers.square_version,
                },
            )
            body = _json(response, "square", "Square webhook subscriptions")
            found += body.get("subscriptions", [])
            cursor = body.get("cursor")
            if not cursor:
                return found
    raise OpsError(f"square: more than {MAX_PAGES} pages of webhook subscriptions")


def shopify_webhooks(providers: PosProviders) -> list[dict[str, Any]]:
    """Shopify's webhook subscriptions for the shop, every page."""
    token = reveal(providers.shopify_access_token)
    url: str | None = (
        f"{providers.shopify_base()}/admin/api/{providers.shopify_api_version}/webhooks.json"
    )
    found: list[dict[str, Any]] = []
    with http_client(providers.timeout_seconds) as client:
        for _ in range(MAX_PAGES):
            assert url is not None
            response = _get(
                client,
                "shopify",
                "Shopify webhooks",
                url,
                providers.timeout_seconds,
                [token],
                params={"limit": 250} if "page_info=" not in url else None,
                headers={"X-Shopify-Access-Token": token},
            )
            found += _json(response, "shopify", "Shopify webhooks").get("webhooks", [])
            url = _next_page(response.headers.get("link"))
            if url is None:
                return found
    raise OpsError(f"shopify: more than {MAX_PAGES} pages of webhooks")


def _next_page(link: str | None) -> str | None:
    match = _NEXT_LINK.search(link or "")
    return match.group(1) if match else None


def zettle_subscriptions(
    providers: PosProviders, access_token: str | None = None
) -> list[dict[str, Any]]:
    """Zettle's Pusher API subscriptions of the organization the API key belongs to,
    read with `access_token` when one is given, else with a new one."""
    api_key = reveal(providers.zettle_api_key)
    timeout = providers.timeout_seconds
    with http_client(timeout) as client:
        token = access_token or _zettle_grant(client, providers)
        response = _get(
            client,
            "zettle",
            "Zettle Pusher subscriptions",
            f"{providers.zettle_pusher_url.rstrip('/')}/organizations/self/subscriptions",
            timeout,
            [api_key, token],
            headers={"Authorization": f"Bearer {token}"},
        )
    body = _json(response, "zettle", "Zettle Pusher subscriptions")
    if not isinstance(body, list):
        raise ChannelError("zettle", "Zettle Pusher subscriptions answered with no list")
    return body


def _zettle_grant(client: httpx.Client, providers: PosProviders) -> str:
    """A Zettle access token by the JWT-bearer grant with the API key."""
    api_key = reveal(providers.zettle_api_key)
    oauth = providers.zettle_oauth_url.rstrip("/")
    timeout = providers.timeout_seconds
    endpoint = endpoint_of(f"{oauth}/token", what="Zettle OAuth", channel="zettle")
    grant = _answer(
        lambda: client.post(
            f"{oauth}/token",
            data={
                "grant_type": JWT_BEARER,
                "client_id": providers.zettle_client_id or "",
                "assertion": api_key,
            },
        ),
        "zettle",
        "Zettle OAuth",
        endpoint,
        timeout,
        [api_key],
        ok=200,
    )
    return str(_json(grant, "zettle", "Zettle OAuth").get("access_token", ""))


READERS = {
    "square": square_subscriptions,
    "shopify": shopify_webhooks,
    "zettle": zettle_subscriptions,
}


def all_subscriptions(providers: PosProviders) -> Iterator[tuple[str, dict[str, Any]]]:
    """(provider, section) for each provider: its subscriptions, or why there are none.

    Raises:
        ChannelError: a configured provider could not be read (transient or not), so
            the bundle would be incomplete.
    """
    for provider, configured in providers.configured().items():
        if not configured:
            yield provider, {"status": "not configured", "subscriptions": []}
            continue
        yield provider, {"status": "read", "subscriptions": READERS[provider](providers)}
