"""Tasks on the POS providers' own APIs (Square, Shopify, Zettle) and on the gateway's
view of them: probes, the platform's tokens, webhook subscriptions, merchants'
connections, and moving a provider's traffic between its endpoints.

Probes and reads never raise for what a provider answers: trouble is a finding the
sweep reports (a `Probe` with its reason, a `Finding`). Steps that change something (a
token refresh, a subscription created, a failover) raise, so their failure is an alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from blocks.gateway import PlatformGateway
from blocks.gateway.client import GatewayClient
from blocks.pos import PosProviders
from blocks.pos.merchants import MerchantCheck, check_all, read_connections
from blocks.pos.probes import Probe, probe_shopify, probe_square, probe_zettle
from blocks.pos.subscriptions import Created, create_zettle_subscription
from blocks.pos.tokens import PosTokens, refresh_square, renew_zettle
from blocks.pos.webhooks import READERS, all_subscriptions, zettle_subscriptions
from blocks.postgres import PostgresDatabase
from blocks.postgres.client import engine_for
from blocks.redis import RedisServer
from blocks.redis.client import connected, redis_errors
from feedback_ops.errors import OpsError
from tasks import QUICK, SWEEP_RETRY_DELAYS, step


@dataclass(frozen=True)
class Finding:
    """What one read told: fine or not, why, and what it saw.

    Attributes:
        ok: It answered as it should.
        detail: What it saw, safe to show (no token).
        error: Why not, in one line.
        http_status: The answer's status, if there was one.
        total_ms: How long the read took.
    """

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    http_status: int | None = None
    total_ms: float | None = None


@step("read-pos-webhooks", limit=QUICK)
def read_pos_webhooks(providers: PosProviders) -> dict[str, dict[str, Any]]:
    """Each provider's webhook subscriptions as the provider reports them; a provider
    without credentials is recorded as not configured."""
    return dict(all_subscriptions(providers))


HEALTHY_WORDS = {"healthy", "ok", "up", "operational"}


@step("read-gateway-pos-health", limit=QUICK, retries=0)
def read_gateway_pos_health(gateway: PlatformGateway, provider: str) -> Finding:
    """`GET /pos/health/{provider}`: whether the gateway reaches the provider, and
    which endpoint it uses. A malformed answer is a finding, not a failure."""
    try:
        with GatewayClient(gateway) as client:
            answer = client.pos_health(provider)
    except OpsError as exc:
        return Finding(False, error=str(exc), http_status=getattr(exc, "status", None))
    healthy = answer.get("healthy")
    if not isinstance(healthy, bool):
        status = answer.get("status")
        if not isinstance(status, str):
            return Finding(
                False,
                detail={"fields": sorted(answer)[:10]},
                error=(
                    f"gateway: GET /pos/health/{provider} answered without a healthy or "
                    "status field: not a health answer"
                ),
                http_status=200,
            )
        healthy = status.lower() in HEALTHY_WORDS
    endpoint = answer.get("endpoint") or answer.get("active_endpoint")
    detail = {"endpoint": endpoint if endpoint in ("primary", "secondary") else None}
    for name in ("status", "latency_ms", "error_rate", "last_error"):
        if name in answer:
            detail[name] = answer[name]
    reason = None if healthy else f"gateway: {provider} unhealthy as the gateway sees it"
    return Finding(healthy, detail=detail, error=reason, http_status=200)


@step("read-pos-pool", limit=QUICK, retries=0)
def read_pos_pool(server: RedisServer, provider: str) -> Finding:
    """The gateway's connection pool key for the provider in Redis (`pos_pool:{p}`),
    as the runbook reads it with `redis-cli get`."""
    key = f"pos_pool:{provider}"
    try:
        with redis_errors(server), connected(server) as client:
            raw = client.get(key)
    except OpsError as exc:
        return Finding(False, error=str(exc))
    if raw is None:
        return Finding(False, detail={"key": key}, error=f"redis: no key {key}")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text[:200]
    return Finding(True, detail={"key": key, "value": value})


def endpoint_urls(providers: PosProviders, provider: str) -> dict[str, str | None]:
    """The provider's primary and secondary base URLs (None: no secondary configured)."""
    if provider == "square":
        return {
            "primary": providers.square_api_url,
            "secondary": providers.square_secondary_api_url,
        }
    if provider == "shopify":
        return {
            "primary": providers.shopify_base(),
            "secondary": providers.shopify_secondary_api_url,
        }
    return {
        "primary": providers.zettle_oauth_url,
        "secondary": providers.zettle_secondary_oauth_url,
    }


@step("probe-pos-endpoint", limit=QUICK, retries=0)
def probe_pos_endpoint(
    providers: PosProviders,
    provider: str,
    endpoint: str,
    zettle_token: str | None = None,
    now: datetime | None = None,
) -> Probe | None:
    """The provider's own API on its `primary` or `secondary` endpoint; None when no
    such endpoint is configured. Never retried: one sweep's result is one sample."""
    base = endpoint_urls(providers, provider)[endpoint]
    if not base:
        return None
    if provider == "square":
        return probe_square(providers, base, now)
    if provider == "shopify":
        return probe_shopify(providers, base)
    return probe_zettle(providers, base, zettle_token)


@step("refresh-square-token", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def refresh_square_token(providers: PosProviders, tokens: PosTokens, now: datetime) -> PosTokens:
    """`POST /oauth2/token` with the refresh grant: the tokens with the new one."""
    return refresh_square(providers, tokens, now)


@step("renew-zettle-token", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def renew_zettle_token(providers: PosProviders, tokens: PosTokens, now: datetime) -> PosTokens:
    """A new Zettle access token by the assertion grant: the tokens with it."""
    return renew_zettle(providers, tokens, now)


@step("save-pos-tokens", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def save_pos_tokens(tokens: PosTokens, name: str) -> None:
    """Store renewed tokens and signing keys in their block, for the next sweep, the
    webhook reconciliation and the platform's operators."""
    tokens.save(name, overwrite=True)


@step("read-pos-subscriptions", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def read_pos_subscriptions(
    providers: PosProviders, provider: str, zettle_token: str | None = None
) -> list[dict[str, Any]]:
    """The provider's webhook subscriptions as it reports them (throttling and outages
    are retried; anything else fails the step, and the sweep reports it)."""
    if provider == "zettle":
        return zettle_subscriptions(providers, zettle_token)
    return READERS[provider](providers)


@step("create-zettle-subscription", limit=QUICK, retries=0)
def recreate_zettle_subscription(
    providers: PosProviders, zettle_token: str, events: tuple[str, ...], base: str
) -> Created:
    """Create the Zettle subscription Zettle deleted. Not retried: a retry after a lost
    answer would create a second one; the next sweep sees what is there."""
    return create_zettle_subscription(providers, zettle_token, events, base)


@step("check-merchant-connections", limit=QUICK, retries=0)
def check_merchant_connections(
    providers: PosProviders, platform_db: PostgresDatabase, now: datetime
) -> list[MerchantCheck]:
    """Every active `pos_connections` row checked with its merchant's own token, at
    most `merchant_concurrency` in flight per provider, honouring 429s. Its limit is
    the sweep's cadence: 10,000 connections take about 18 s at 10 in flight."""
    engine = engine_for(platform_db)
    try:
        connections = read_connections(engine, providers.merchant_connections_query)
    finally:
        engine.dispose()
    return check_all(providers, connections, now)


@step("move-pos-traffic", limit=QUICK, retries=0)
def move_pos_traffic(gateway: PlatformGateway, provider: str, reason: str) -> dict[str, Any]:
    """`POST /admin/pos/failover` with the provider and the reason (a reason starting
    with `failback` moves it back). The client retries what is worth retrying; the
    step does not, so one decision is one request."""
    with GatewayClient(gateway) as client:
        return client.pos_failover(provider, reason)


__all__ = [
    "Finding",
    "check_merchant_connections",
    "endpoint_urls",
    "move_pos_traffic",
    "probe_pos_endpoint",
    "read_gateway_pos_health",
    "read_pos_pool",
    "read_pos_subscriptions",
    "read_pos_webhooks",
    "recreate_zettle_subscription",
    "refresh_square_token",
    "renew_zettle_token",
    "save_pos_tokens",
]
