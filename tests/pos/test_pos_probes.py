"""The POS providers' own APIs, probed as the health sweep does, against a real HTTP
server that answers like Square, Shopify and Zettle: what each probe asks, what it
reads from the answers, and a failure as a finding in one line, never an exception."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from support.net import free_port
from support.pos_fakes import (
    SHOPIFY_PREFIX,
    SHOPIFY_TOKEN,
    SQUARE_MERCHANT_ID,
    SQUARE_PREFIX,
    SQUARE_TOKEN,
    ZETTLE_API_KEY,
    ZETTLE_OAUTH_PREFIX,
    ZETTLE_ORGANIZATION,
    PosFake,
    providers_of,
)

from blocks.pos.probes import probe_shopify, probe_square, probe_zettle

NOW = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def served() -> Iterator[PosFake]:
    with PosFake() as fake:
        yield fake


@pytest.fixture
def fake(served: PosFake) -> PosFake:
    served.reset()
    return served


def no_secret_in(text: str | None) -> None:
    for secret in (SQUARE_TOKEN, SHOPIFY_TOKEN, ZETTLE_API_KEY):
        assert secret not in (text or "")


def test_square_lists_locations_and_reads_the_tokens_expiry(fake: PosFake) -> None:
    probe = probe_square(providers_of(fake), f"{fake.url}{SQUARE_PREFIX}", now=NOW)

    assert probe.ok, probe.error
    assert (probe.provider, probe.endpoint, probe.http_status) == (
        "square",
        f"127.0.0.1:{fake.port}",
        200,
    )
    assert probe.facts == {
        "locations": 2,
        "token_expires_at": "2027-04-09T09:00:00+00:00",
        "token_days_left": 30.04,
        "merchant_id": SQUARE_MERCHANT_ID,
    }
    assert probe.connect_ms is not None and 0 < probe.connect_ms <= probe.total_ms
    asked = [(r.method, r.path) for r in fake.requests(SQUARE_PREFIX)]
    assert asked == [("GET", "/square/v2/locations"), ("POST", "/square/oauth2/token/status")]
    for request in fake.requests(SQUARE_PREFIX):
        assert request.headers["authorization"] == f"Bearer {SQUARE_TOKEN}"
        assert request.headers["square-version"] == "2024-10-17"


def test_a_square_token_that_never_expires(fake: PosFake) -> None:
    fake.square_expires_at = None
    probe = probe_square(providers_of(fake), f"{fake.url}{SQUARE_PREFIX}", now=NOW)
    assert probe.ok
    assert (probe.facts["token_expires_at"], probe.facts["token_days_left"]) == (None, None)


def test_a_revoked_square_token_is_a_finding(fake: PosFake) -> None:
    revoked = providers_of(fake, square_access_token=SecretStr("EAAA-revoked"))
    probe = probe_square(revoked, f"{fake.url}{SQUARE_PREFIX}", now=NOW)

    assert not probe.ok
    assert probe.http_status == 401
    assert probe.error == (
        f"square: Square GET /v2/locations at 127.0.0.1:{fake.port} answered HTTP 401: "
        "This request could not be authorized."
    )
    assert "EAAA-revoked" not in (probe.error or "")


def test_shopify_reads_limits_and_the_version_that_answered(fake: PosFake) -> None:
    fake.shopify_call_limit = "32/40"
    fake.shopify_deprecated_reason = "https://shopify.dev/api/usage/versioning"
    probe = probe_shopify(providers_of(fake), f"{fake.url}{SHOPIFY_PREFIX}")

    assert probe.ok, probe.error
    assert probe.facts == {
        "shop": "feedback-kafe.myshopify.com",
        "api_version_asked": "2024-10",
        "api_version_answered": "2024-10",
        "call_limit": "32/40",
        "deprecated_reason": "https://shopify.dev/api/usage/versioning",
    }
    (request,) = fake.requests(SHOPIFY_PREFIX)
    assert request.path == "/shopify/admin/api/2024-10/shop.json"
    assert request.headers["x-shopify-access-token"] == SHOPIFY_TOKEN


def test_a_shopify_version_no_longer_served_is_named(fake: PosFake) -> None:
    probe = probe_shopify(
        providers_of(fake, shopify_api_version="2023-10"), f"{fake.url}{SHOPIFY_PREFIX}"
    )
    assert not probe.ok
    assert probe.facts["api_version_answered"] == "2024-10"
    assert probe.error == (
        "shopify: API version 2023-10 is no longer served (answered in 2024-10): "
        "update SHOPIFY_API_VERSION"
    )


def test_zettle_gets_a_token_then_asks_who_it_is(fake: PosFake) -> None:
    probe = probe_zettle(providers_of(fake), f"{fake.url}{ZETTLE_OAUTH_PREFIX}")

    assert probe.ok, probe.error
    assert probe.facts == {
        "organization": ZETTLE_ORGANIZATION,
        "token_expires_in_seconds": 7200,
    }
    token_request, me = fake.requests(ZETTLE_OAUTH_PREFIX)
    assert token_request.form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "client_id": providers_of(fake).zettle_client_id,
        "assertion": ZETTLE_API_KEY,
    }
    assert me.path == "/zettle-oauth/users/me"
    assert me.headers["authorization"] == f"Bearer {fake.zettle_access_tokens[0]}"


@pytest.mark.parametrize(
    ("prefix", "probe", "reason"),
    [
        (SQUARE_PREFIX, probe_square, "Square GET /v2/locations at {at} answered HTTP 503: "),
        (
            SHOPIFY_PREFIX,
            probe_shopify,
            "Shopify GET /admin/api/2024-10/shop.json at {at} answered HTTP 503: ",
        ),
        (ZETTLE_OAUTH_PREFIX, probe_zettle, "Zettle POST /token at {at} answered HTTP 503: "),
    ],
    ids=["square", "shopify", "zettle"],
)
def test_a_5xx_an_html_page_and_a_429_are_findings(
    fake: PosFake, prefix: str, probe: Any, reason: str
) -> None:
    base, at = f"{fake.url}{prefix}", f"127.0.0.1:{fake.port}"
    fake.fail(prefix, 503)
    unavailable = probe(providers_of(fake), base)
    assert not unavailable.ok and unavailable.http_status == 503
    assert reason.format(at=at) in (unavailable.error or "")

    fake.fail(prefix, 502, html=True)
    html = probe(providers_of(fake), base)
    assert not html.ok
    assert (html.error or "").endswith("answered HTTP 502: an HTML page")

    fake.fail(prefix, 429, retry_after=2)
    throttled = probe(providers_of(fake), base)
    assert not throttled.ok and throttled.http_status == 429
    assert "rate limiting requests (HTTP 429" in (throttled.error or "")
    for finding in (unavailable, html, throttled):
        no_secret_in(finding.error)


def test_an_endpoint_nobody_answers_is_a_finding_without_a_connect_time(fake: PosFake) -> None:
    port = free_port()
    probe = probe_square(providers_of(fake), f"http://127.0.0.1:{port}", now=NOW)
    assert not probe.ok
    assert probe.http_status is None and probe.connect_ms is None
    assert probe.error == (
        f"square: could not reach the square API at 127.0.0.1:{port} (connection refused)"
    )
