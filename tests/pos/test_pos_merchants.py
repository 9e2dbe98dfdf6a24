"""Every merchant's POS connection checked with the merchant's own token, against a real
HTTP server that answers like Square, Shopify and Zettle and throttles like them: the
10,000-connection sweep within the providers' in-flight limits, 429s waited out as each
provider asks, a failure as a one-line finding, and never a token in sight."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from support.net import free_port
from support.pos_fakes import (
    SHOPIFY_PREFIX,
    SQUARE_PREFIX,
    ZETTLE_OAUTH_PREFIX,
    MerchantToken,
    PosFake,
    providers_of,
)
from support.receivers import make_certificates

from blocks.pos import MERCHANT_CONNECTIONS_QUERY, PROVIDERS, PosProviders
from blocks.pos.merchants import (
    AT_RISK_WITHIN,
    MAX_ATTEMPTS,
    Connection,
    MerchantCheck,
    check_all,
    check_connections,
    read_connections,
)
from blocks.postgres import PostgresDatabase
from blocks.postgres.client import engine_for
from feedback_ops.errors import ConfigError

NOW = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)
FAR = "2027-09-01T00:00:00Z"
SOON = "2027-03-13T08:00:00Z"  # 3 days after NOW
GONE = "2027-03-09T08:00:00Z"  # a day before NOW
PATHS = {
    "square": f"{SQUARE_PREFIX}/oauth2/token/status",
    "shopify": f"{SHOPIFY_PREFIX}/admin/api/2024-10/shop.json",
    "zettle": f"{ZETTLE_OAUTH_PREFIX}/users/me",
}


@pytest.fixture(scope="module")
def served() -> Iterator[PosFake]:
    with PosFake() as fake:
        yield fake


@pytest.fixture
def fake(served: PosFake) -> PosFake:
    served.reset()
    return served


def token_of(provider: str, n: int) -> str:
    return f"mt-{provider}-{n:05d}-9c1f4e7a2b6d"


def merchant(
    fake: PosFake,
    provider: str,
    n: int = 1,
    *,
    expires_at: str | None = FAR,
    revoked: bool = False,
    stored_expiry: datetime | None = None,
) -> Connection:
    """A connection whose token the fake knows; Square's expiry is the fake's answer,
    the others' is the one stored with the connection."""
    token = token_of(provider, n)
    fake.merchants[token] = MerchantToken(provider, expires_at, revoked)
    if provider != "square" and stored_expiry is None and expires_at is not None:
        stored_expiry = datetime.fromisoformat(expires_at)
    return Connection(
        connection_id=f"{provider}-{n}",
        business_id=str(1000 + n),
        provider=provider,
        external_location_id=f"LOC-{n:05d}",
        access_token=token,
        shop_domain=f"kafe-{n}.myshopify.com" if provider == "shopify" else None,
        token_expires_at=stored_expiry,
    )


class Sleeps:
    """An injected `sleep` that records each wait and returns at once (or, with `scale`,
    after that share of it)."""

    def __init__(self, scale: float = 0.0) -> None:
        self.waits: list[float] = []
        self.scale = scale

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.scale:
            await asyncio.sleep(seconds * self.scale)


def check(
    providers: PosProviders,
    connections: list[Connection],
    sleeps: Sleeps | None = None,
    jitter: Callable[[], float] = lambda: 0.5,
) -> list[MerchantCheck]:
    return asyncio.run(
        check_connections(providers, connections, now=NOW, sleep=sleeps or Sleeps(), jitter=jitter)
    )


def no_token_in(checks: list[MerchantCheck], connections: list[Connection]) -> None:
    """No connection's token in any check (each check's own, for a long list)."""
    shown = [repr(c) + str(astuple(c)) for c in checks]
    for index, connection in enumerate(connections):
        token = connection.access_token
        assert token not in repr(connection)
        if len(checks) > 100:
            assert token not in shown[index]
        else:
            assert all(token not in text for text in shown)


# --- the sweep -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_ten_thousand_connections_within_the_in_flight_limit(fake: PosFake) -> None:
    """Every connection asked once, never more in flight than the providers allow.

    The fake answers after 1 ms: without any wait it answers each request before the
    next is read, and the in-flight count could not tell a bounded sweep from one that
    is not. The sweep is CPU-bound in one process (client and server), so the wait
    costs nothing measurable.
    """
    providers = providers_of(fake)
    bound = providers.merchant_concurrency
    fake.in_flight_limit = bound
    fake.latency_seconds = dict.fromkeys(PROVIDERS, 0.001)
    connections, expected = [], Counter[tuple[str, str]]()
    for n in range(10_000):
        provider = PROVIDERS[n % 3]
        if n % 50 == 7:
            state, kwargs = "revoked", {"revoked": True}
        elif n % 20 == 3:
            state, kwargs = "at_risk", {"expires_at": SOON}
        elif n % 100 == 11:
            state, kwargs = "expired", {"expires_at": GONE}
        else:
            state, kwargs = "ok", {}
        connections.append(merchant(fake, provider, n, **kwargs))
        expected[(provider, state)] += 1

    started = time.perf_counter()
    checks = asyncio.run(check_connections(providers, connections, now=NOW))
    seconds = time.perf_counter() - started

    assert fake.over_limit == dict.fromkeys(PROVIDERS, 0)
    # At most the bound, and many at once: the sweep did run them side by side.
    assert all(1 < most <= bound for most in fake.max_in_flight.values()), fake.max_in_flight
    asked = Counter(
        r.headers.get("x-shopify-access-token") or r.headers["authorization"].split()[1]
        for r in fake.requests()
    )
    assert asked == Counter(c.access_token for c in connections)  # each exactly once
    for provider, path in PATHS.items():
        assert len(fake.requests(path)) == sum(c.provider == provider for c in connections)

    assert [c.connection_id for c in checks] == [c.connection_id for c in connections]
    seen = Counter[tuple[str, str]]()
    for result in checks:
        state = {
            ("failing", 401): "revoked",
            ("at_risk", 200): "at_risk",
            ("failing", 200): "expired",
            ("ok", 200): "ok",
        }[(result.status, result.http_status or 0)]
        seen[(result.provider, state)] += 1
        assert result.attempts == 1
        if state == "revoked":
            assert (result.reason or "").startswith("token revoked or invalid (401: ")
        elif state == "at_risk":
            assert result.reason == "token expires in 3.0 days (2027-03-13 08:00 UTC)"
        elif state == "expired":
            assert result.reason == "token expired at 2027-03-09 08:00 UTC"
    assert seen == expected
    no_token_in(checks, connections)
    print(f"10,000 connections checked in {seconds:.1f} s")


def test_a_provider_that_allows_fewer_in_flight_throttles_and_is_waited_out(
    fake: PosFake,
) -> None:
    """Four checks per provider sent at once; the fake allows three in flight and
    answers the fourth 429. It waits as told (a hundredth of it, so that the others,
    5 ms each, are done by then) and succeeds."""
    providers = providers_of(fake, merchant_concurrency=4)
    fake.in_flight_limit = 3
    fake.latency_seconds = dict.fromkeys(PROVIDERS, 0.005)
    connections = [merchant(fake, PROVIDERS[n % 3], n) for n in range(12)]
    sleeps = Sleeps(scale=0.01)

    checks = check(providers, connections, sleeps, jitter=lambda: 0.99)

    assert {c.status for c in checks} == {"ok"}
    assert fake.max_in_flight == dict.fromkeys(PROVIDERS, 3)
    assert fake.over_limit == {p: sum(c.attempts - 1 for c in checks if c.provider == p)
                               for p in PROVIDERS}  # fmt: skip
    assert all(count > 0 for count in fake.over_limit.values()), fake.over_limit
    # Shopify's Retry-After (2 s) exactly; Square's and Zettle's backoff with jitter.
    shopify_waits = fake.over_limit["shopify"]
    assert sleeps.waits.count(fake.shopify_retry_after) == shopify_waits
    assert (
        len(sleeps.waits) - shopify_waits == fake.over_limit["square"] + fake.over_limit["zettle"]
    )


def test_check_all_is_the_sync_entry(fake: PosFake) -> None:
    connections = [merchant(fake, provider) for provider in PROVIDERS]
    checks = check_all(providers_of(fake), connections, NOW)
    assert [(c.provider, c.status, c.http_status, c.reason) for c in checks] == [
        (provider, "ok", 200, None) for provider in PROVIDERS
    ]


# --- what each provider is asked ----------------------------------------------------------


def test_each_provider_is_asked_with_the_merchants_own_token(fake: PosFake) -> None:
    square, shopify, zettle = (merchant(fake, p, 5) for p in PROVIDERS)
    (a, b, c) = check(providers_of(fake), [square, shopify, zettle])

    assert a.token_expires_at == datetime(2027, 9, 1, tzinfo=UTC)  # Square's answer
    assert b.token_expires_at == c.token_expires_at == datetime(2027, 9, 1, tzinfo=UTC)
    (asked_square,) = fake.requests(PATHS["square"])
    assert asked_square.method == "POST"
    assert asked_square.headers["authorization"] == f"Bearer {square.access_token}"
    assert asked_square.headers["square-version"] == "2024-10-17"
    (asked_shopify,) = fake.requests(PATHS["shopify"])
    assert asked_shopify.headers["x-shopify-access-token"] == shopify.access_token
    assert "authorization" not in asked_shopify.headers
    (asked_zettle,) = fake.requests(PATHS["zettle"])
    assert asked_zettle.headers["authorization"] == f"Bearer {zettle.access_token}"


def test_square_knows_the_expiry_better_than_the_row(fake: PosFake) -> None:
    """Square says the token expires in 3 days; the row still says September."""
    connection = merchant(
        fake, "square", expires_at=SOON, stored_expiry=datetime(2027, 9, 1, tzinfo=UTC)
    )
    (result,) = check(providers_of(fake), [connection])
    assert (result.status, result.token_expires_at) == (
        "at_risk",
        datetime(2027, 3, 13, 8, 0, tzinfo=UTC),
    )


def test_at_risk_means_within_seven_days(fake: PosFake) -> None:
    def at(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    inside, outside = NOW + AT_RISK_WITHIN, NOW + AT_RISK_WITHIN + timedelta(minutes=1)
    connections = [
        merchant(fake, "square", 1, expires_at=at(inside)),
        merchant(fake, "square", 2, expires_at=at(outside)),
        merchant(fake, "zettle", 3, expires_at=at(inside)),
        merchant(fake, "zettle", 4, expires_at=at(outside)),
    ]
    checks = check(providers_of(fake), connections)
    assert timedelta(days=7) == AT_RISK_WITHIN
    assert [c.status for c in checks] == ["at_risk", "ok", "at_risk", "ok"]


def test_tokens_that_never_expire_are_ok(fake: PosFake) -> None:
    connections = [merchant(fake, p, expires_at=None) for p in PROVIDERS]
    checks = check(providers_of(fake), connections)
    assert [(c.status, c.token_expires_at) for c in checks] == [("ok", None)] * 3


def test_a_revoked_token_of_each_provider_is_failing_with_401(fake: PosFake) -> None:
    connections = [merchant(fake, p, revoked=True) for p in PROVIDERS]
    checks = check(providers_of(fake), connections)
    assert [(c.status, c.http_status, c.attempts) for c in checks] == [("failing", 401, 1)] * 3
    assert [c.reason for c in checks] == [
        "token revoked or invalid (401: This request could not be authorized.)",
        "token revoked or invalid (401: [API] Invalid API key or access token "
        "(unrecognized login or wrong password))",
        "token revoked or invalid (401: Access token is invalid or expired)",
    ]
    no_token_in(checks, connections)


def test_another_providers_token_is_refused(fake: PosFake) -> None:
    square = merchant(fake, "square")
    as_zettle = Connection("x-1", "1", "zettle", "LOC", square.access_token, None, None)
    (result,) = check(providers_of(fake), [as_zettle])
    assert (result.status, result.http_status) == ("failing", 401)


def test_rows_that_cannot_be_checked_fail_without_a_request(fake: PosFake) -> None:
    rows = [
        Connection("c-1", "1", "clover", "LOC", "tok-clover-123456", None, None),
        Connection("c-2", "2", "square", "LOC", "", None, None),
    ]
    checks = check(providers_of(fake), rows)
    assert [(c.status, c.reason, c.attempts, c.http_status) for c in checks] == [
        ("failing", "unknown provider 'clover'", 0, None),
        ("failing", "no access token stored for the connection", 0, None),
    ]
    assert fake.requests() == []


def test_shopify_without_a_proxy_asks_each_shop_on_its_own_host(fake: PosFake) -> None:
    """With no `shopify_api_url`, the base is `https://<shop_domain>`; a row without
    a usable domain is not asked."""
    providers = providers_of(fake, shopify_api_url=None)
    rows = [
        Connection("s-1", "1", "shopify", "LOC", "shpat-123456", None, None),
        Connection("s-2", "2", "shopify", "LOC", "shpat-123456", "kafe/../evil", None),
    ]
    checks = check(providers, rows)
    assert [c.reason for c in checks] == [
        "no shop domain stored for the connection",
        "the stored shop domain is not a host name",
    ]


# --- throttling and failures --------------------------------------------------------------


def test_shopify_429_waits_exactly_its_retry_after(fake: PosFake) -> None:
    fake.fail(PATHS["shopify"], 429, times=1, retry_after=3)
    sleeps = Sleeps()
    (result,) = check(providers_of(fake), [merchant(fake, "shopify")], sleeps)

    assert sleeps.waits == [3.0]
    assert (result.status, result.http_status, result.attempts) == ("ok", 200, 2)


def test_a_retry_after_longer_than_a_minute_is_capped(fake: PosFake) -> None:
    fake.fail(PATHS["shopify"], 429, times=1, retry_after=3600)
    sleeps = Sleeps()
    (result,) = check(providers_of(fake), [merchant(fake, "shopify")], sleeps)
    assert (sleeps.waits, result.status) == ([60.0], "ok")


def test_square_429_backs_off_exponentially_then_fails(fake: PosFake) -> None:
    fake.fail(PATHS["square"], 429, times=None)
    sleeps = Sleeps()
    connection = merchant(fake, "square")
    (result,) = check(providers_of(fake), [connection], sleeps, jitter=lambda: 0.5)

    # Full jitter: jitter() times 0.5 s, 1 s, 2 s, 4 s; no wait after the last attempt.
    assert sleeps.waits == [0.25, 0.5, 1.0, 2.0]
    assert len(fake.requests(PATHS["square"])) == MAX_ATTEMPTS == 5
    assert (result.status, result.http_status, result.attempts) == ("failing", 429, 5)
    assert result.reason == (
        f"Square POST /oauth2/token/status at 127.0.0.1:{fake.port} is rate limiting "
        "requests (HTTP 429: Rate limit exceeded.) (gave up after 5 attempts)"
    )
    no_token_in([result], [connection])


def test_the_jitter_scales_each_backoff(fake: PosFake) -> None:
    fake.fail(PATHS["zettle"], 429, times=None)
    draws = iter([0.0, 0.9, 0.1, 0.99])
    sleeps = Sleeps()
    check(providers_of(fake), [merchant(fake, "zettle")], sleeps, jitter=lambda: next(draws))
    assert sleeps.waits == pytest.approx([0.0, 0.9, 0.2, 3.96])


def test_a_5xx_is_retried_with_backoff(fake: PosFake) -> None:
    fake.fail(PATHS["zettle"], 503, times=2)
    sleeps = Sleeps()
    (result,) = check(providers_of(fake), [merchant(fake, "zettle")], sleeps)
    assert sleeps.waits == [0.25, 0.5]
    assert (result.status, result.attempts) == ("ok", 3)


def test_an_html_page_instead_of_json_is_failing(fake: PosFake) -> None:
    fake.fail(PATHS["shopify"], 200, times=1, html=True)
    (result,) = check(providers_of(fake), [merchant(fake, "shopify")])
    assert (result.status, result.http_status, result.attempts) == ("failing", 200, 1)
    assert result.reason == (
        f"Shopify GET /admin/api/2024-10/shop.json at 127.0.0.1:{fake.port} answered with "
        "something that is not a JSON object (text/html)"
    )


def test_a_proxys_html_502_is_retried_and_named(fake: PosFake) -> None:
    fake.fail(PATHS["square"], 502, times=None, html=True)
    (result,) = check(providers_of(fake), [merchant(fake, "square")])
    assert (result.status, result.http_status, result.attempts) == ("failing", 502, 5)
    assert result.reason == (
        f"Square POST /oauth2/token/status at 127.0.0.1:{fake.port} answered HTTP 502: "
        "an HTML page (gave up after 5 attempts)"
    )


def test_no_answer_within_the_timeout_is_failing(fake: PosFake) -> None:
    fake.latency_seconds["zettle"] = 1.0
    providers = providers_of(fake, timeout_seconds=0.05)
    sleeps = Sleeps()
    (result,) = check(providers, [merchant(fake, "zettle")], sleeps)
    assert (result.status, result.http_status, result.attempts) == ("failing", None, 5)
    assert result.reason == (
        f"Zettle GET /users/me at 127.0.0.1:{fake.port}: no answer within 0.05 s "
        "(gave up after 5 attempts)"
    )
    assert len(sleeps.waits) == 4


def test_a_provider_that_does_not_answer_at_all_is_failing(fake: PosFake) -> None:
    port = free_port()
    providers = providers_of(fake, square_api_url=f"http://127.0.0.1:{port}")
    (result,) = check(providers, [merchant(fake, "square")])
    assert (result.status, result.attempts) == ("failing", 5)
    assert result.reason == (
        f"could not reach Square POST /oauth2/token/status at 127.0.0.1:{port} "
        "(connection refused) (gave up after 5 attempts)"
    )


def test_no_token_in_any_check_field_reason_or_repr(fake: PosFake) -> None:
    fake.fail(PATHS["square"], 429, times=None)
    fake.fail(PATHS["zettle"], 503, times=None, html=True)
    connections = [
        merchant(fake, "square", 1),
        merchant(fake, "shopify", 2, revoked=True),
        merchant(fake, "shopify", 3, expires_at=SOON),
        merchant(fake, "zettle", 4),
        Connection("c-9", "9", "clover", "LOC", "tok-clover-secret-77", None, None),
    ]
    checks = check(providers_of(fake), connections)
    assert {c.status for c in checks} == {"failing", "at_risk"}
    for result in checks:
        assert "\n" not in (result.reason or "")
    no_token_in(checks, connections)
    assert "access_token" not in repr(connections[0])


def test_now_must_be_timezone_aware(fake: PosFake) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_all(providers_of(fake), [], datetime(2027, 3, 10, 8, 0))


# --- reading the connections from the platform database ----------------------------------


def test_read_connections_reads_the_active_rows(platform_db: str) -> None:
    with psycopg.connect(platform_db, autocommit=True) as conn:
        conn.execute(
            """
            UPDATE pos_connections SET config = config || jsonb_build_object(
                'access_token', 'tok-' || provider || '-' || id,
                'shop_domain', CASE WHEN provider = 'shopify'
                                    THEN 'kafe-' || id || '.myshopify.com' END,
                'token_expires_at', CASE WHEN id % 2 = 0 THEN '2027-04-01T10:00:00+02:00' END)
            """
        )
        rows = conn.execute("SELECT id::text, status FROM pos_connections ORDER BY id").fetchall()
    active = {id_ for id_, status in rows if status == "active"}
    assert active and len(active) < len(rows)  # the seed has paused, error, revoked too

    engine = engine_for(PostgresDatabase.from_url(platform_db))
    try:
        connections = read_connections(engine, MERCHANT_CONNECTIONS_QUERY)
    finally:
        engine.dispose()

    assert {c.connection_id for c in connections} == active
    assert len(connections) == len(active)
    for c in connections:
        assert c.access_token == f"tok-{c.provider}-{c.connection_id}"
        assert c.provider in PROVIDERS
        assert c.external_location_id and c.business_id.isdigit()
        if c.provider == "shopify":
            assert c.shop_domain == f"kafe-{c.connection_id}.myshopify.com"
        else:
            assert c.shop_domain is None
        if int(c.connection_id) % 2 == 0:
            assert c.token_expires_at == datetime(2027, 4, 1, 8, 0, tzinfo=UTC)
            assert c.token_expires_at.tzinfo is not None
        else:
            assert c.token_expires_at is None
        assert c.access_token not in repr(c)


def test_a_query_missing_columns_is_a_one_line_error(platform_db: str) -> None:
    engine = engine_for(PostgresDatabase.from_url(platform_db))
    query = (
        "SELECT id::text AS connection_id, business_id::text AS business_id, provider, "
        "external_location_id, config->>'access_token' AS access_token "
        "FROM pos_connections WHERE status = 'active'"
    )
    try:
        with pytest.raises(ConfigError) as raised:
            read_connections(engine, query)
    finally:
        engine.dispose()
    assert str(raised.value) == (
        "pos: the merchant connections query gives no shop_domain, token_expires_at "
        "columns; it must give connection_id, business_id, provider, external_location_id, "
        "access_token, shop_domain, token_expires_at"
    )


# --- what the fake never sends -------------------------------------------------------------
# A TCP server that reads each request and writes what a test scripts, byte for byte: what
# the fake's uvicorn never does (drop a connection, answer in slow pieces, something that
# is not HTTP, far too much), as a provider or a proxy in front of it may. How HTTP is read
# (chunks, gzip, keep-alive) is aiohttp's, and not tested here.

STATUS_JSON = json.dumps({"expires_at": FAR, "merchant_id": "M1"}).encode()


def answer(body: bytes = STATUS_JSON, *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *extra]
    if not any(h.lower().startswith(("transfer-encoding", "content-length")) for h in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """Answers the n-th request on a connection with `script(n)`: bytes to write, or
    bytes and then the connection closed (`(bytes, True)`); with `pause`, in pieces of
    `piece` bytes that far apart."""

    def __init__(
        self,
        script: Callable[[int], bytes | tuple[bytes, bool]],
        *,
        pause: float = 0.0,
        piece: int = 16,
    ) -> None:
        self.script = script
        self.pause = pause
        self.piece = piece
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for n in itertools.count():
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests += 1
                scripted = self.script(n)
                data, close = scripted if isinstance(scripted, tuple) else (scripted, False)
                if self.pause:
                    pieces = [data[i : i + self.piece] for i in range(0, len(data), self.piece)]
                else:
                    pieces = [data[:7], data[7:40], data[40:]]  # in pieces, if it can
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    if self.pause:
                        await asyncio.sleep(self.pause)
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def check_raw(
    server: RawServer, count: int = 1, tls: ssl.SSLContext | None = None
) -> list[MerchantCheck]:
    """`count` Square checks, one at a time, against `server` (over TLS with `tls`)."""

    async def run() -> list[MerchantCheck]:
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
        port = listening.sockets[0].getsockname()[1]
        base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        providers = PosProviders(square_api_url=base, merchant_concurrency=1)
        rows = [
            Connection(f"c-{n}", str(n), "square", "LOC", f"mt-square-{n}-9c1f4e", None, None)
            for n in range(count)
        ]
        try:
            return await check_connections(
                providers, rows, now=NOW, sleep=Sleeps(), jitter=lambda: 0.5
            )
        finally:
            listening.close()
            await listening.wait_closed()

    return asyncio.run(run())


def test_an_idle_connection_the_server_closed_is_reopened() -> None:
    """The server closes after each answer without saying so, as one whose keep-alive
    timeout passed does: a request that meets the closed connection is sent again on a
    new one (as a retried attempt), and every check ends ok."""
    server = RawServer(lambda n: (answer(), True))
    checks = check_raw(server, 3)
    assert [c.status for c in checks] == ["ok"] * 3
    assert all(c.attempts <= 2 for c in checks)
    assert server.connections == server.requests >= 3


def test_an_answer_in_slow_pieces_is_read_whole() -> None:
    """Headers and body in 16-byte pieces 5 ms apart, as a slow link or TLS records
    deliver them: the body is read to its end, not to the first piece."""
    server = RawServer(lambda n: answer(), pause=0.005)
    checks = check_raw(server, 2)
    assert [(c.status, c.token_expires_at) for c in checks] == [
        ("ok", datetime(2027, 9, 1, tzinfo=UTC))
    ] * 2


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_huge_answer_is_cut_off_and_failing_at_once(framing: str) -> None:
    """2 MiB for a token's status: read no further than 1 MiB, whether the length is
    announced (not read at all) or not (chunks until past the limit)."""
    body = b'{"pad": "' + b"x" * (2 << 20) + b'"}'
    if framing == "chunked":
        step = 64 << 10
        chunks = b"".join(
            f"{len(body[i : i + step]):x}\r\n".encode() + body[i : i + step] + b"\r\n"
            for i in range(0, len(body), step)
        )
        data = answer(b"", "Transfer-Encoding: chunked") + chunks + b"0\r\n\r\n"
    else:
        data = answer(body)
    (result,) = check_raw(RawServer(lambda n: data))
    assert (result.status, result.attempts, result.http_status) == ("failing", 1, None)
    assert re.fullmatch(
        r"Square POST /oauth2/token/status at 127\.0\.0\.1:\d+ answered more than 1 MiB",
        result.reason or "",
    ), result.reason


def test_something_that_is_not_http_is_failing_at_once() -> None:
    server = RawServer(lambda n: b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    (result,) = check_raw(server)
    assert (result.status, result.attempts, result.http_status) == ("failing", 1, None)
    assert (result.reason or "").endswith("answered something that is not HTTP/1.1")


def test_a_connection_dropped_before_answering_is_retried_then_failing() -> None:
    server = RawServer(lambda n: (b"", True))
    (result,) = check_raw(server)
    assert (result.status, result.attempts) == ("failing", 5)
    assert (result.reason or "").endswith(
        "dropped the connection before answering (gave up after 5 attempts)"
    )
    assert server.requests == 5


def test_a_token_that_would_break_the_header_is_not_sent(fake: PosFake) -> None:
    rows = [Connection("c-1", "1", "zettle", "LOC", "tok\r\nX-Evil: 1", None, None)]
    (result,) = check(providers_of(fake), rows)
    assert (result.status, result.attempts) == ("failing", 0)
    assert result.reason == "the stored access token has characters a header cannot carry"
    assert fake.requests() == []


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A TLS context for a server on 127.0.0.1, and its CA's certificate file."""
    files = make_certificates(tmp_path_factory.mktemp("pos-tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context, files.ca_file


def test_tls_with_a_trusted_certificate(
    server_tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, ca_file = server_tls
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # what httpx's TLS context trusts
    server = RawServer(lambda n: answer())
    checks = check_raw(server, 3, tls=context)
    assert [(c.status, c.attempts) for c in checks] == [("ok", 1)] * 3
    assert server.connections == 1  # one handshake, kept alive


def test_tls_with_an_untrusted_certificate_is_failing_at_once(
    server_tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    (result,) = check_raw(RawServer(lambda n: answer()), tls=server_tls[0])
    assert (result.status, result.attempts, result.http_status) == ("failing", 1, None)
    assert re.fullmatch(
        r"the TLS certificate of Square POST /oauth2/token/status at 127\.0\.0\.1:\d+ "
        r"is not trusted \(.+\)",
        result.reason or "",
    ), result.reason
