"""Every merchant's POS connection, checked with the merchant's own token: does the
provider still accept it, and for how long.

Each connection costs one request, the cheapest authenticated one its provider has, on
the provider's primary endpoint from the block:

- Square: `POST /oauth2/token/status` (Bearer token, `Square-Version`); its `expires_at`
  is the token's expiry.
- Shopify: `GET /admin/api/{version}/shop.json` with `X-Shopify-Access-Token`, on the
  block's `shopify_api_url` when set (a proxy serving every shop), else on the shop's
  own `https://{shop_domain}`.
- Zettle: `GET /users/me` on the OAuth host (Bearer token); the expiry is the one the
  platform stored with the token.

A 401 means the merchant revoked the platform's access (or the token is wrong): the
connection is `failing`. A token that expires within `AT_RISK_WITHIN` is `at_risk`, one
already expired `failing`. Throttling (429), 5xx, timeouts and dropped connections are
retried, at most `MAX_ATTEMPTS` requests per connection: Shopify's `Retry-After` is
waited exactly (up to `RETRY_AFTER_CAP`); Square and Zettle send none, so the wait is an
exponential backoff with full jitter. Whatever else a provider answers is a `failing`
check with its reason in one line; a check never raises, and no token is ever in a
reason, a log line or a repr.

The three providers are checked at once, each by `merchant_concurrency` workers. A
worker has one request in flight at a time, on the provider's pool of as many keep-alive
connections, and takes the provider's next connection when it is done: at most that many
requests are ever in flight per provider. The client is aiohttp, not the project's
httpx: httpx's anyio layer was measured too slow for the sweep's 600 requests a second
on one core (see the transport's section). A throttled worker waits out its backoff in
its place and sends nothing meanwhile, so the wait never lets another request in, and a
worker per slot (not a task per connection behind a semaphore) keeps 10,000 connections
to a few dozen tasks.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import aiohttp
import httpx
from sqlalchemy import Engine, text

from blocks.channels.base import (
    USER_AGENT,
    endpoint_of,
    error_text,
    is_transient_status,
    one_line,
    scrub,
    status_error,
    transport_error,
)
from blocks.pos import PROVIDERS, PosProviders, provider_time
from feedback_ops.errors import ConfigError

Status = Literal["ok", "at_risk", "failing"]

AT_RISK_WITHIN: Final = timedelta(days=7)
"""A token that expires sooner than this is at risk: the merchant must reconnect soon."""
MAX_ATTEMPTS: Final = 5
"""Requests per connection at most, the first included, before it is failing."""
BACKOFF_BASE: Final = 0.5
"""Seconds of the first backoff's ceiling; each further attempt doubles it."""
BACKOFF_CAP: Final = 8.0
"""The backoff's ceiling never grows past this many seconds."""
RETRY_AFTER_CAP: Final = 60.0
"""A provider's `Retry-After` is honoured up to this many seconds."""

COLUMNS: Final = (
    "connection_id",
    "business_id",
    "provider",
    "external_location_id",
    "access_token",
    "shop_domain",
    "token_expires_at",
)
"""The columns the block's `merchant_connections_query` must give."""

_SHOP_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Connection:
    """One merchant's connection to a POS provider, as the platform stores it.

    Attributes:
        connection_id: The `pos_connections` row's id.
        business_id: The business the connection belongs to.
        provider: square, shopify or zettle.
        external_location_id: The provider's id of the merchant's location.
        access_token: The merchant's token for the provider's API; never shown.
        shop_domain: The Shopify shop (`kafe.myshopify.com`), None for the others.
        token_expires_at: When the token expires as the platform stored it; None when
            it does not expire or the platform does not know.
    """

    connection_id: str
    business_id: str
    provider: str
    external_location_id: str
    access_token: str = field(repr=False)
    shop_domain: str | None
    token_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class MerchantCheck:
    """What one merchant's provider said about the merchant's token.

    Attributes:
        connection_id: The connection checked.
        business_id: Its business.
        provider: square, shopify or zettle (or what the row said, if unknown).
        status: `ok`; `at_risk` (the token expires within `AT_RISK_WITHIN`); `failing`
            (revoked, expired, or the provider could not be asked).
        http_status: The last answer's status, None when there was no answer.
        reason: Why it is not ok, in one line; None when ok.
        token_expires_at: When the token expires (Square's answer, else the row's).
        total_ms: Time for the check, retries and their waits included.
        attempts: Requests sent (0 when the row could not be checked at all).
    """

    connection_id: str
    business_id: str
    provider: str
    status: Status
    http_status: int | None
    reason: str | None
    token_expires_at: datetime | None
    total_ms: float
    attempts: int


def read_connections(engine: Engine, query: str) -> list[Connection]:
    """The merchant connections `query` gives (the block's `merchant_connections_query`).

    Raises:
        ConfigError: the query does not give every column of `COLUMNS`; the message
            names the missing ones.
    """
    with engine.connect() as conn:
        result = conn.execute(text(query))
        given = set(result.keys())
        missing = [name for name in COLUMNS if name not in given]
        if missing:
            result.close()
            raise ConfigError(
                "pos: the merchant connections query gives no "
                f"{', '.join(missing)} column{'s' if len(missing) > 1 else ''}; it must "
                f"give {', '.join(COLUMNS)}"
            )
        return [
            Connection(
                connection_id=str(row["connection_id"]),
                business_id=str(row["business_id"]),
                provider=str(row["provider"] or "").strip().lower(),
                external_location_id=str(row["external_location_id"] or ""),
                access_token=str(row["access_token"] or ""),
                shop_domain=(str(row["shop_domain"]).strip() or None)
                if row["shop_domain"] is not None
                else None,
                token_expires_at=provider_time(row["token_expires_at"]),
            )
            for row in result.mappings()
        ]


def check_all(
    providers: PosProviders, connections: Sequence[Connection], now: datetime
) -> list[MerchantCheck]:
    """`check_connections` for a caller without an event loop (a Prefect task)."""
    return asyncio.run(check_connections(providers, connections, now=now))


async def check_connections(
    providers: PosProviders,
    connections: Sequence[Connection],
    *,
    now: datetime,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> list[MerchantCheck]:
    """Check every connection; the checks in the order of `connections`.

    The providers are checked at the same time, at most `merchant_concurrency`
    requests in flight per provider.

    Args:
        providers: The block: endpoints, API versions, timeout and concurrency.
        connections: The connections to check (`read_connections`).
        now: The moment expiries are measured from; timezone-aware.
        sleep: Waits between attempts (tests pass one that records and returns).
        jitter: A number in [0, 1) that scales each backoff (full jitter).

    Raises:
        ConfigError: a provider's URL in the block is not an http(s) URL.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    results: list[MerchantCheck | None] = [None] * len(connections)
    queued: dict[str, list[int]] = {provider: [] for provider in PROVIDERS}
    for index, connection in enumerate(connections):
        if connection.provider in queued:
            queued[connection.provider].append(index)
        else:
            results[index] = _failing(connection, f"unknown provider {connection.provider!r}")
    askers = {p: _Asker(p, providers) for p, indexes in queued.items() if indexes}
    width = providers.merchant_concurrency
    policy = _Retry(sleep, jitter)
    # One TLS context for every provider: each would load the CA bundle, 20 ms apiece.
    tls = httpx.create_ssl_context()

    async def work(asker: _Asker, session: aiohttp.ClientSession, todo: Iterator[int]) -> None:
        # The workers share `todo`: each takes the next connection when it is free.
        for index in todo:
            results[index] = await asker.check(session, connections[index], now, policy)

    async with AsyncExitStack() as stack, asyncio.TaskGroup() as group:
        for provider, asker in askers.items():
            session = await stack.enter_async_context(
                client_session(width, providers.timeout_seconds, tls)
            )
            todo = iter(queued[provider])
            for _ in range(min(width, len(queued[provider]))):
                group.create_task(work(asker, session, todo))
    return [check for check in results if check is not None]


# --- one connection ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Retry:
    """How long to wait before the next attempt."""

    sleep: Callable[[float], Awaitable[Any]]
    jitter: Callable[[], float]

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait after failed attempt number `attempt` (1 = the first request)."""
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP)
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * float(2 ** (attempt - 1)))
        return ceiling * min(max(self.jitter(), 0.0), 1.0)


class _Unusable(Exception):
    """A connection that cannot be asked about (no token, no shop); the reason."""


class _Asker:
    """One provider's request for a merchant's token, and what its answer means."""

    def __init__(self, provider: str, providers: PosProviders) -> None:
        self.provider = provider
        self.label = provider.capitalize()
        self.timeout = providers.timeout_seconds
        self.method, body = "GET", b""
        headers: dict[str, str] = {}
        base: str | None
        if provider == "square":
            self.path = "/oauth2/token/status"
            self.method, body = "POST", b"{}"
            headers = {"Square-Version": providers.square_version}
            base = providers.square_api_url
        elif provider == "shopify":
            self.path = f"/admin/api/{providers.shopify_api_version}/shop.json"
            # Without a proxy's URL, every shop is asked on its own host.
            base = providers.shopify_api_url or None
        else:
            self.path = "/users/me"
            base = providers.zettle_oauth_url
        if body:
            headers["Content-Type"] = "application/json"
        self.headers = headers
        self.body = body
        self.url: str | None = None
        self.endpoint = ""
        if base is not None:
            what = f"the {self.label} API"
            self.endpoint = endpoint_of(base, what=what, channel=provider)
            self.url = base.rstrip("/") + self.path

    def request_of(self, connection: Connection) -> tuple[str, dict[str, str], str]:
        """Where to ask about `connection`, its headers, and `host:port` to name."""
        token = connection.access_token
        if not token:
            raise _Unusable("no access token stored for the connection")
        if not _HEADER_VALUE.fullmatch(token):
            # A line break would end the header and start another one of its own.
            raise _Unusable("the stored access token has characters a header cannot carry")
        url, endpoint = self.url, self.endpoint
        if url is None:
            domain = (connection.shop_domain or "").strip().lower()
            if not domain:
                raise _Unusable("no shop domain stored for the connection")
            if "." not in domain:
                domain = f"{domain}.myshopify.com"
            if not _SHOP_DOMAIN.fullmatch(domain):
                raise _Unusable("the stored shop domain is not a host name")
            url, endpoint = f"https://{domain}{self.path}", f"{domain}:443"
        if self.provider == "shopify":
            auth = {"X-Shopify-Access-Token": token}
        else:
            auth = {"Authorization": f"Bearer {token}"}
        return url, {**self.headers, **auth}, endpoint

    async def check(
        self,
        session: aiohttp.ClientSession,
        connection: Connection,
        now: datetime,
        retry: _Retry,
    ) -> MerchantCheck:
        """Ask about `connection` until an answer settles it or the attempts run out."""
        started = time.perf_counter()
        try:
            url, headers, endpoint = self.request_of(connection)
        except _Unusable as exc:
            return _failing(connection, str(exc))
        asked = f"{self.label} {self.method} {self.path}"
        what = f"{asked} at {endpoint}"
        status: int | None = None
        reason = ""
        attempt = 0
        settled = False  # by an error no other attempt can mend
        while attempt < MAX_ATTEMPTS and not settled:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await send(session, self.method, url, headers, self.body)
            except httpx.TransportError as exc:
                error = transport_error(self.provider, asked, endpoint, exc, self.timeout)
                status, reason, settled = None, error.reason, not error.transient
            except httpx.DecodingError as exc:
                status, reason, settled = None, f"{what} {exc}", True
            else:
                status = response.status_code
                if not is_transient_status(status):
                    return self.judge(connection, response, what, now, started, attempt)
                error = status_error(
                    self.provider,
                    what,
                    response,
                    error_text(response),
                    secrets=[connection.access_token],
                )
                reason, retry_after = error.reason, error.retry_after
            if attempt < MAX_ATTEMPTS and not settled:
                await retry.sleep(retry.delay(attempt, retry_after))
        if not settled:
            reason = f"{reason} (gave up after {attempt} attempts)"
        return _check(connection, "failing", status, reason, None, started, attempt)

    def judge(
        self,
        connection: Connection,
        response: httpx.Response,
        what: str,
        now: datetime,
        started: float,
        attempts: int,
    ) -> MerchantCheck:
        """The check for an answer that is not worth another attempt."""
        status = response.status_code
        token = connection.access_token
        if status == 401:
            detail = one_line(scrub(error_text(response), [token])) or "no error text"
            reason = f"token revoked or invalid (401: {detail})"
            return _check(connection, "failing", status, reason, None, started, attempts)
        if not response.is_success:
            detail = error_text(response)
            error = status_error(self.provider, what, response, detail, secrets=[token])
            return _check(connection, "failing", status, error.reason, None, started, attempts)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            reason = f"{what} answered with something that is not a JSON object ({kind})"
            return _check(connection, "failing", status, reason, None, started, attempts)
        expires = connection.token_expires_at
        if self.provider == "square":
            # Square knows best; a token without `expires_at` does not expire.
            try:
                expires = provider_time(body.get("expires_at") or None)
            except (TypeError, ValueError):
                reason = f"{what} gave an expires_at that is not a date"
                return _check(connection, "failing", status, reason, None, started, attempts)
        verdict, reason_or_none = _expiry(expires, now)
        return _check(connection, verdict, status, reason_or_none, expires, started, attempts)


def _expiry(expires: datetime | None, now: datetime) -> tuple[Status, str | None]:
    """The status a token's expiry gives, and why when it is not ok."""
    if expires is None:
        return "ok", None
    left = expires - now
    when = expires.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if left <= timedelta(0):
        return "failing", f"token expired at {when}"
    if left <= AT_RISK_WITHIN:
        return "at_risk", f"token expires in {left.total_seconds() / 86400:.1f} days ({when})"
    return "ok", None


def _check(
    connection: Connection,
    status: Status,
    http_status: int | None,
    reason: str | None,
    expires: datetime | None,
    started: float,
    attempts: int,
) -> MerchantCheck:
    return MerchantCheck(
        connection.connection_id,
        connection.business_id,
        connection.provider,
        status,
        http_status,
        one_line(reason, 300) if reason else None,
        expires if expires is not None else connection.token_expires_at,
        (time.perf_counter() - started) * 1000,
        attempts,
    )


def _failing(connection: Connection, reason: str) -> MerchantCheck:
    """A connection that was not asked about at all."""
    return _check(connection, "failing", None, reason, None, time.perf_counter(), 0)


# --- the transport: aiohttp ---------------------------------------------------------------
# httpx's AsyncClient spends about 0.6 ms of CPU a request, and its anyio layer yields to
# the event loop some nine times per request: answers that arrive together are worked
# through in turns, each waiting for all the others, and a sweep at 10 in flight per
# provider took 1.15 times the ideal (1.3 at 20; benchmarks/pos_sweep.py). aiohttp reads
# an answer in one wake-up of its worker. Its answers are handed on as `httpx.Response`
# and its failures as httpx's errors, so the project's HTTP rules (`error_text`,
# `status_error`, `transport_error`) apply unchanged.

_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept": "application/json"}
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")
"""A token as a header value: printable ASCII without spaces or line breaks."""
_ANSWER_LIMIT: Final = 1 << 20
"""An answer larger than this (1 MiB) is not one of the three small JSON objects."""
# Encodings aiohttp has already undone: the body handed on is the decoded one.
_DECODED = {"content-encoding", "content-length", "transfer-encoding"}


def client_session(width: int, timeout: float, tls: ssl.SSLContext) -> aiohttp.ClientSession:
    """One provider's client: `width` keep-alive connections at most, the block's
    timeout for connecting and for each read, no redirects followed."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=width, limit_per_host=width, ssl=tls),
        timeout=aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout),
        headers=_HEADERS,
        skip_auto_headers=("Content-Type",),
        raise_for_status=False,
    )


async def send(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: bytes
) -> httpx.Response:
    """One request; the answer as an `httpx.Response` (its body decoded, at most 1 MiB).

    Raises:
        httpx.TransportError: no connection, no answer in time, or a dropped one.
        httpx.DecodingError: the answer is not HTTP, or larger than 1 MiB.
    """
    try:
        async with session.request(
            method, url, headers=headers, data=body or None, allow_redirects=False
        ) as answer:
            if (answer.content_length or 0) > _ANSWER_LIMIT:
                raise httpx.DecodingError(f"answered more than {_ANSWER_LIMIT >> 20} MiB")
            # `read(n)` gives what has arrived so far: a body in several segments (a TLS
            # record each, say) takes several reads, until its end or past the limit.
            content = b""
            while chunk := await answer.content.read(_ANSWER_LIMIT + 1 - len(content)):
                content += chunk
                if len(content) > _ANSWER_LIMIT:
                    raise httpx.DecodingError(f"answered more than {_ANSWER_LIMIT >> 20} MiB")
            kept = [
                (name, value)
                for name, value in answer.raw_headers
                if name.decode("latin-1").lower() not in _DECODED
            ]
            return httpx.Response(
                answer.status,
                headers=kept,
                content=content,
                request=httpx.Request(method, url),
            )
    except aiohttp.ConnectionTimeoutError:
        raise httpx.ConnectTimeout("no connection in time") from None
    except TimeoutError:  # aiohttp's read timeout (SocketTimeoutError) is one
        raise httpx.ReadTimeout("no answer in time") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise httpx.ConnectError("could not connect") from exc.certificate_error
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError("could not connect") from exc.os_error
    except (aiohttp.ClientConnectionError, OSError) as exc:
        # Closed, reset or lost before the answer was complete.
        raise httpx.RemoteProtocolError("the server closed the connection") from exc
    except aiohttp.ClientError as exc:
        # A status line, header or body aiohttp's parser refuses.
        raise httpx.DecodingError("answered something that is not HTTP/1.1") from exc


__all__ = [
    "AT_RISK_WITHIN",
    "COLUMNS",
    "Connection",
    "MerchantCheck",
    "check_all",
    "check_connections",
    "read_connections",
]
