"""Runbook, "POS Provider Connection Issues": the health checks, every 5 minutes.

For each provider at once: the gateway's view (`GET /pos/health/{provider}` and
`redis-cli get pos_pool:{provider}`), the provider's own API on its primary and
secondary endpoints, the platform's tokens (Square refreshed with fewer than 7 days
left, Zettle renewed before its 2 hours end), the webhook subscriptions (a Zettle one
that Zettle deleted is created again) and every merchant's connection. Then, with
damping (`policy.pos_health`): a provider whose primary is down and secondary up fails
over through the gateway; one whose primary has been up for 30 minutes fails back,
never in peak hours. Every check goes to `ops.pos_health_checks`; the run's artifact
is a table per provider with its uptime against the 99 % SLO.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from pydantic import AwareDatetime, BaseModel, SecretStr

from blocks import PlatformGateway, PosProviders, PostgresDatabase, RedisServer, load_block
from blocks.catalog.pos_health import SERVICE, Check, PosHistory
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    GATEWAY_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
    POS_TOKENS_BLOCK,
    REDIS_BLOCK,
)
from blocks.pos import PROVIDERS, provider_time, reveal
from blocks.pos.merchants import MerchantCheck
from blocks.pos.probes import Probe
from blocks.pos.subscriptions import check_subscriptions, expected_events, webhook_base
from blocks.pos.tokens import (
    PosTokens,
    square_needs_refresh,
    with_tokens,
    zettle_needs_token,
)
from flows.alert_steps import AlertTargets
from flows.locks import lock_if_free
from flows.metric_steps import pos_uptime_figures, push_figures
from flows.parameters import BlockName
from flows.pos_alerts import PosAlerts
from policy.pos_health import (
    Damped,
    EndpointState,
    Move,
    ProviderState,
    decide_move,
    merchants_escalate,
    provider_state,
)
from tasks.catalog import (
    advance_pos_states,
    read_pos_history,
    record_pos_checks,
    record_pos_move,
)
from tasks.pos import (
    Finding,
    check_merchant_connections,
    move_pos_traffic,
    probe_pos_endpoint,
    read_gateway_pos_health,
    read_pos_pool,
    read_pos_subscriptions,
    recreate_zettle_subscription,
    refresh_square_token,
    renew_zettle_token,
    save_pos_tokens,
)

SWEEP_LOCK = "pos-health-sweep"
LATE_AFTER = timedelta(minutes=4)
"""A scheduled sweep starting this late is skipped: the next one is due within a minute."""
MERCHANT_STATES = ("ok", "at_risk", "failing")
LISTED_MERCHANTS = 50
"""Merchants at risk or failing listed by name in the artifact (all are counted)."""


class ProviderReport(BaseModel):
    """One provider's row of the sweep: each check in a word or a reason, and the verdict."""

    provider: str
    configured: bool
    state: str
    gateway: str
    pool: str
    primary: str
    secondary: str
    token: str
    subscriptions: str
    merchants_ok: int = 0
    merchants_at_risk: int = 0
    merchants_failing: int = 0
    decision: str = ""
    moved: str | None = None
    uptime: dict[str, float | None] = {}


class SweepResult(BaseModel):
    """What `feedback-ops run pos-health-sweep --json` prints as `result`."""

    sweep_id: str
    checked_at: datetime
    skipped: str | None = None
    providers: dict[str, ProviderReport] = {}
    merchants_listed: list[dict[str, Any]] = []
    businesses_with_connections: int = 0
    businesses_failing: int = 0
    alerts: list[str] = []


@dataclass
class _Provider:
    """What one sweep learned about one provider, before it is decided on."""

    name: str
    configured: bool
    gateway: Finding
    pool: Finding
    probes: dict[str, Probe | None] = field(default_factory=dict)
    token: str = "not checked"
    token_ok: bool = True
    subscriptions: str = "not checked"
    subscriptions_ok: bool = True
    merchants: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MERCHANT_STATES, 0))
    """Its merchants' connections by status."""
    checks: list[Check] = field(default_factory=list)


@flow(name="pos-health-sweep")
def pos_health_sweep(
    as_of: AwareDatetime | None = None,
    providers_block: BlockName = POS_PROVIDERS_BLOCK,
    tokens_block: BlockName = POS_TOKENS_BLOCK,
    gateway_block: BlockName = GATEWAY_BLOCK,
    redis_block: BlockName = REDIS_BLOCK,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> SweepResult:
    """Check every POS provider as the gateway sees it and as it answers, and fail over
    or back with damping (runbook: "POS Provider Connection Issues").

    Args:
        as_of: The sweep's time, for a drill of the decisions at another moment (peak
            hours, a holiday); empty means now.
        providers_block: Name of the POS Providers block: credentials, primary and
            secondary endpoints, expected webhooks, the merchants' query.
        tokens_block: Name of the POS Tokens block the sweep keeps renewed tokens and
            the Zettle signing key in (created on the first renewal).
        gateway_block: Name of the Platform Gateway block: the gateway's URL and the
            admin token that failovers take.
        redis_block: Name of the Redis block of the platform's Redis, where the gateway
            keeps its connection pools (`pos_pool:<provider>`).
        database_block: Name of the Postgres Database block of the platform's database
            (`pos_connections`).
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (checks, damped states, failovers, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    at = as_of or datetime.now(UTC)
    sweep_id = f"pos-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    if (late := _late()) is not None:
        get_run_logger().warning("Skipped: %s", late)
        return SweepResult(sweep_id=sweep_id, checked_at=at, skipped=late)
    gateway = load_block(PlatformGateway, gateway_block)
    gateway.base_url()  # without the gateway nothing could fail over: say so first
    with lock_if_free(SWEEP_LOCK) as held:
        if not held:
            reason = "another pos-health-sweep is running; this one is skipped, not queued"
            get_run_logger().warning("Skipped: %s", reason)
            return SweepResult(sweep_id=sweep_id, checked_at=at, skipped=reason)
        result = _sweep(
            at,
            sweep_id,
            load_block(PosProviders, providers_block),
            saved_tokens(tokens_block),
            tokens_block,
            gateway,
            load_block(RedisServer, redis_block),
            load_block(PostgresDatabase, database_block),
            load_block(PostgresDatabase, ops_database_block),
            PosAlerts(at, AlertTargets(ops_database_block, alert_channels_block)),
        )
    push_figures(
        metrics_block, pos_uptime_figures({p: r.uptime for p, r in result.providers.items()})
    )
    return result


def _sweep(
    at: datetime,
    sweep_id: str,
    providers: PosProviders,
    tokens: PosTokens,
    tokens_block: str,
    gateway: PlatformGateway,
    redis: RedisServer,
    platform_db: PostgresDatabase,
    ops_db: PostgresDatabase,
    alerts: PosAlerts,
) -> SweepResult:
    configured = providers.configured()
    tokens, renewed = _renew_zettle(providers, tokens, configured["zettle"], at, alerts)
    checking = with_tokens(providers, tokens)
    zettle_token = reveal(tokens.zettle_access_token) or None
    merchants = check_merchant_connections.submit(checking, platform_db, at)
    asked = [_ask(checking, gateway, redis, p, configured[p], zettle_token, at) for p in PROVIDERS]
    seen = {a.name: _answers(a, at) for a in asked}
    if _token_refused(seen["zettle"]) and not renewed:
        # Zettle no longer takes the token in use (revoked, or its key rotated): a new
        # one, and the primary asked again with it, before anything counts as down.
        tokens, renewed = _renew_zettle(providers, tokens, True, at, alerts, force=True)
        zettle_token = reveal(tokens.zettle_access_token) or None
        if renewed:
            again = _ask(checking, gateway, redis, "zettle", True, zettle_token, at)
            seen["zettle"] = _answers(again, at)

    square = seen["square"]
    if configured["square"]:
        tokens, refreshed = _square_token(providers, tokens, square, at, alerts)
        renewed = renewed or refreshed
    base = webhook_base(providers, gateway.base_url())
    for provider in seen.values():
        if provider.configured:
            tokens, created = _subscriptions(checking, tokens, provider, base, alerts)
            renewed = renewed or created
    if renewed:
        save_pos_tokens(tokens, tokens_block)

    history = read_pos_history(ops_db, at)
    merchant_checks = _merchant_results(merchants, seen, at)
    results: dict[tuple[str, str], bool] = {}
    for provider in seen.values():
        for endpoint, probe in provider.probes.items():
            if probe is not None:
                results[(provider.name, endpoint)] = probe.ok
    damped = advance_pos_states(ops_db, results, at)

    reports: dict[str, ProviderReport] = {}
    for provider in seen.values():
        failed_over = _failed_over(provider, history)
        reports[provider.name] = _decide(
            provider, damped, failed_over, history, gateway, ops_db, alerts, at
        )
    record_pos_checks(ops_db, sweep_id, [c for p in seen.values() for c in p.checks])

    listed, with_connections, failing = _merchant_verdict(merchant_checks, alerts)
    result = SweepResult(
        sweep_id=sweep_id,
        checked_at=at,
        providers=reports,
        merchants_listed=listed,
        businesses_with_connections=with_connections,
        businesses_failing=failing,
        alerts=alerts.raised,
    )
    _publish(result)
    return result


def _late() -> str | None:
    """Why a scheduled run is too late to be worth running, if it is."""
    scheduled = flow_run.scheduled_start_time
    if not flow_run.get_id() or scheduled is None:
        return None
    late = datetime.now(UTC) - scheduled
    if late <= LATE_AFTER:
        return None
    return (
        f"started {late.total_seconds() / 60:.0f} min after its scheduled time; the next "
        "sweep is due sooner than this one would end"
    )


def saved_tokens(name: str) -> PosTokens:
    """The renewed tokens; none yet before the first renewal."""
    try:
        return load_block(PosTokens, name)
    except ValueError:
        return PosTokens()


def _renew_zettle(
    providers: PosProviders,
    tokens: PosTokens,
    configured: bool,
    at: datetime,
    alerts: PosAlerts,
    force: bool = False,
) -> tuple[PosTokens, bool]:
    """A new Zettle token when the one in use nears its end (or, `force`, was refused)."""
    if not configured or not (force or zettle_needs_token(tokens, at)):
        return tokens, False
    try:
        renewed = renew_zettle_token(providers, tokens, at)
    except Exception as exc:
        alerts.token_failed("zettle", f"Zettle token could not be renewed: {exc}", expired=False)
        return tokens, False
    alerts.token_fine("zettle")
    return renewed, True


@dataclass
class _Asked:
    """One provider's checks, submitted and not yet answered."""

    name: str
    configured: bool
    gateway: PrefectFuture[Finding]
    pool: PrefectFuture[Finding]
    probes: dict[str, PrefectFuture[Probe | None]]


def _ask(
    providers: PosProviders,
    gateway: PlatformGateway,
    redis: RedisServer,
    provider: str,
    configured: bool,
    zettle_token: str | None,
    at: datetime,
) -> _Asked:
    """Submit the gateway's view and the provider's endpoints: they run at once, with
    every other provider's."""
    probes: dict[str, PrefectFuture[Probe | None]] = {}
    if configured:
        for endpoint in ("primary", "secondary"):
            # Zettle's primary is asked with the token in use; its secondary grants its own,
            # so that its OAuth is probed too.
            token = zettle_token if provider == "zettle" and endpoint == "primary" else None
            probes[endpoint] = probe_pos_endpoint.submit(providers, provider, endpoint, token, at)
    return _Asked(
        provider,
        configured,
        read_gateway_pos_health.submit(gateway, provider),
        read_pos_pool.submit(redis, provider),
        probes,
    )


def _answers(asked: _Asked, at: datetime) -> _Provider:
    """What the provider's submitted checks found, as checks for the catalog."""
    seen = _Provider(asked.name, asked.configured, asked.gateway.result(), asked.pool.result())
    seen.probes = {endpoint: future.result() for endpoint, future in asked.probes.items()}
    seen.checks.append(_finding_check(seen.name, "gateway", seen.gateway, at, pool=seen.pool))
    for endpoint, probe in seen.probes.items():
        if probe is not None:
            seen.checks.append(_probe_check(probe, endpoint, at))
    return seen


def _token_refused(zettle: _Provider) -> bool:
    """Whether Zettle's primary answered 401 to the token in use."""
    primary = zettle.probes.get("primary")
    return primary is not None and primary.http_status == 401


def _square_token(
    providers: PosProviders, tokens: PosTokens, square: _Provider, at: datetime, alerts: PosAlerts
) -> tuple[PosTokens, bool]:
    """Refresh the Square token with fewer than 7 days left; alert when that fails or
    the token has expired."""
    facts = next((p.facts for p in square.probes.values() if p is not None and p.ok), {})
    expires = provider_time(facts.get("token_expires_at")) or tokens.square_expires_at
    primary = square.probes.get("primary")
    rejected = primary is not None and primary.http_status == 401
    if not rejected and not square_needs_refresh(expires, at):
        square.token = "fine" if expires is None else f"{(expires - at).days} days left"
        square.checks.append(Check("square", "token", True, at, detail=_expiry(expires)))
        alerts.token_fine("square")
        return tokens, False
    try:
        refreshed = refresh_square_token(providers, tokens, at)
    except Exception as exc:
        expired = rejected or (expires is not None and expires <= at)
        square.token, square.token_ok = f"refresh failed: {exc}", False
        square.checks.append(
            Check("square", "token", False, at, detail=_expiry(expires), error=str(exc))
        )
        alerts.token_failed("square", f"Square token refresh failed: {exc}", expired=expired)
        return tokens, False
    square.token = f"refreshed; new token until {_day(refreshed.square_expires_at)}"
    square.checks.append(
        Check(
            "square",
            "token",
            True,
            at,
            detail={"refreshed": True, **_expiry(refreshed.square_expires_at)},
        )
    )
    alerts.token_refreshed("square", expires, refreshed.square_expires_at)
    return refreshed, True


def _subscriptions(
    providers: PosProviders,
    tokens: PosTokens,
    provider: _Provider,
    base: str | None,
    alerts: PosAlerts,
) -> tuple[PosTokens, bool]:
    """Check the provider's subscriptions; create a deleted Zettle one again, its
    signing key sealed into the tokens block."""
    name = provider.name
    at = alerts.at
    if base is None:
        provider.subscriptions, provider.subscriptions_ok = (
            "not checked: no webhook URL (set POS_WEBHOOK_URL or GATEWAY_URL)",
            False,
        )
        return tokens, False
    zettle_token = reveal(tokens.zettle_access_token) or None
    try:
        found = read_pos_subscriptions(providers, name, zettle_token)
    except Exception as exc:
        provider.subscriptions, provider.subscriptions_ok = f"not read: {exc}", False
        provider.checks.append(Check(name, "subscriptions", False, at, error=str(exc)))
        return tokens, False
    check = check_subscriptions(name, found, expected_events(providers, name), base)
    detail = {
        "subscriptions": check.subscriptions,
        "missing": list(check.missing),
        "disabled": list(check.disabled),
        "elsewhere": list(check.elsewhere),
    }
    if check.ok:
        provider.subscriptions = f"{check.subscriptions} found, every event covered"
        provider.checks.append(Check(name, "subscriptions", True, at, detail=detail))
        alerts.subscriptions_fine(name)
        return tokens, False
    if name != "zettle" or zettle_token is None:
        reason = check.reason() or ""
        provider.subscriptions, provider.subscriptions_ok = reason, False
        provider.checks.append(Check(name, "subscriptions", False, at, detail=detail, error=reason))
        alerts.subscriptions_wrong(name, reason, detail)
        return tokens, False
    try:
        created = recreate_zettle_subscription(providers, zettle_token, check.missing, base)
    except Exception as exc:
        reason = f"{check.reason()}; re-creating it failed: {exc}"
        provider.subscriptions, provider.subscriptions_ok = reason, False
        provider.checks.append(Check(name, "subscriptions", False, at, detail=detail, error=reason))
        alerts.subscriptions_wrong(name, reason, detail)
        return tokens, False
    detail["recreated"] = created.uuid
    provider.subscriptions = f"re-created {created.uuid} for {', '.join(created.events)}"
    provider.checks.append(Check(name, "subscriptions", True, at, detail=detail))
    alerts.zettle_recreated(created, check.reason() or "")
    return (
        tokens.model_copy(
            update={
                "zettle_signing_key": SecretStr(created.signing_key),
                "zettle_previous_signing_key": tokens.zettle_signing_key,
            }
        ),
        True,
    )


def _merchant_results(
    merchants: PrefectFuture[list[MerchantCheck]], seen: dict[str, _Provider], at: datetime
) -> list[MerchantCheck]:
    """The merchants' checks, and one summary check per provider in the catalog (one
    row per sweep and provider, not 10,000: the failing and at-risk ones are named in
    its detail and the artifact)."""
    try:
        checks = merchants.result()
    except Exception as exc:
        for provider in seen.values():
            provider.checks.append(Check(provider.name, "merchants", False, at, error=str(exc)))
        return []
    for provider in seen.values():
        mine = [c for c in checks if c.provider == provider.name]
        if not mine:
            continue
        counts = {s: sum(c.status == s for c in mine) for s in MERCHANT_STATES}
        provider.merchants = counts
        trouble = [_merchant_row(c) for c in mine if c.status != "ok"][:LISTED_MERCHANTS]
        provider.checks.append(
            Check(
                provider.name,
                "merchants",
                counts["failing"] == 0,
                at,
                total_ms=max(c.total_ms for c in mine),
                detail={**counts, "listed": trouble},
            )
        )
    return checks


def _failed_over(provider: _Provider, history: PosHistory) -> bool:
    """Where the provider's traffic is: as the gateway says, else as the last move left it."""
    endpoint = provider.gateway.detail.get("endpoint")
    if endpoint in ("primary", "secondary"):
        return bool(endpoint == "secondary")
    return history.failed_over(provider.name)


def _decide(
    provider: _Provider,
    damped: dict[tuple[str, str], Damped],
    failed_over: bool,
    history: PosHistory,
    gateway: PlatformGateway,
    ops_db: PostgresDatabase,
    alerts: PosAlerts,
    at: datetime,
) -> ProviderReport:
    """Fail over, fail back or neither; the provider's row of the report."""
    name = provider.name
    counts = provider.merchants
    report = ProviderReport(
        provider=name,
        configured=provider.configured,
        state="not configured",
        gateway=_word(provider.gateway),
        pool=_word(provider.pool),
        primary=_probe_word(provider.probes.get("primary")),
        secondary=_probe_word(provider.probes.get("secondary")),
        token=provider.token,
        subscriptions=provider.subscriptions,
        merchants_ok=counts["ok"],
        merchants_at_risk=counts["at_risk"],
        merchants_failing=counts["failing"],
        uptime=history.uptime.get(name, {}),
    )
    if not provider.configured:
        report.decision = "not configured: set its credentials to check it"
        return report
    primary = damped.get((name, "primary"), Damped())
    has_secondary = provider.probes.get("secondary") is not None
    secondary = damped.get((name, "secondary")) if has_secondary else None
    decision = decide_move(primary, secondary or Damped(EndpointState.DOWN), failed_over, at)
    report.decision = decision.reason
    checks = _evidence(provider, primary, secondary)
    if decision.move is not None:
        reason = decision.reason
        try:
            answer = move_pos_traffic(gateway, name, reason)
        except Exception as exc:
            report.moved = f"{decision.move.value} failed: {exc}"
            alerts.move_failed(name, decision.move, reason, str(exc), checks)
        else:
            failed_over = decision.move is Move.FAILOVER
            report.moved = decision.move.value
            record_pos_move(
                ops_db,
                provider=name,
                direction=decision.move.value,
                reason=reason,
                requested_by="pos-health-sweep",
                at=at,
                flow_run_id=flow_run.get_id(),
                checks=checks,
                gateway_answer=answer,
            )
            alerts.moved(name, decision.move, reason, checks)
    in_use = provider.probes.get("secondary" if failed_over else "primary")
    service_ok = in_use is not None and in_use.ok
    provider.checks.append(
        Check(
            name,
            SERVICE,
            service_ok,
            at,
            detail={"endpoint": "secondary" if failed_over else "primary"},
            error=None if service_ok else (in_use.error if in_use else "no endpoint"),
        )
    )
    trouble = not (provider.token_ok and provider.subscriptions_ok) or counts["failing"] > 0
    state = provider_state(primary, secondary, failed_over, trouble)
    report.state = state.value
    usable = failed_over and secondary is not None and secondary.state is EndpointState.UP
    if state is ProviderState.DOWN or (primary.state is EndpointState.DOWN and not usable):
        alerts.provider_down(name, decision.reason, checks)
    else:
        alerts.provider_fine(name)
    return report


def _merchant_verdict(
    checks: list[MerchantCheck], alerts: PosAlerts
) -> tuple[list[dict[str, Any]], int, int]:
    """The merchants to list, how many businesses have connections, how many of them
    fail; the runbook's escalation when more than 25 % fail."""
    businesses = {c.business_id for c in checks}
    failing = {c.business_id for c in checks if c.status == "failing"}
    listed = [_merchant_row(c) for c in checks if c.status != "ok"]
    listed.sort(key=lambda row: (row["status"] != "failing", row["provider"], row["business_id"]))
    if merchants_escalate(len(failing), len(businesses)):
        alerts.merchants_failing(len(failing), len(businesses), listed[:LISTED_MERCHANTS])
    else:
        alerts.merchants_fine()
    return listed[:LISTED_MERCHANTS], len(businesses), len(failing)


def _evidence(provider: _Provider, primary: Damped, secondary: Damped | None) -> dict[str, Any]:
    """The checks behind a decision, for its alert and the catalog."""
    return {
        "primary": {
            "state": primary.state.value,
            "against": primary.against,
            "this_sweep": _probe_word(provider.probes.get("primary")),
        },
        "secondary": None
        if secondary is None
        else {
            "state": secondary.state.value,
            "against": secondary.against,
            "this_sweep": _probe_word(provider.probes.get("secondary")),
        },
        "gateway": _word(provider.gateway),
    }


def _finding_check(
    provider: str, target: str, finding: Finding, at: datetime, pool: Finding | None = None
) -> Check:
    detail = dict(finding.detail)
    if pool is not None:
        detail["pool"] = pool.detail.get("value") if pool.ok else {"error": pool.error}
    return Check(
        provider,
        target,
        finding.ok,
        at,
        http_status=finding.http_status,
        total_ms=finding.total_ms,
        detail=detail,
        error=finding.error,
    )


def _probe_check(probe: Probe, endpoint: str, at: datetime) -> Check:
    return Check(
        probe.provider,
        endpoint,
        probe.ok,
        at,
        http_status=probe.http_status,
        connect_ms=probe.connect_ms,
        total_ms=probe.total_ms,
        detail={"endpoint": probe.endpoint, **probe.facts},
        error=probe.error,
    )


def _merchant_row(check: MerchantCheck) -> dict[str, Any]:
    return {
        "business_id": check.business_id,
        "connection_id": check.connection_id,
        "provider": check.provider,
        "status": check.status,
        "reason": check.reason,
        "token_expires_at": check.token_expires_at.isoformat() if check.token_expires_at else None,
    }


def _word(finding: Finding) -> str:
    return "ok" if finding.ok else str(finding.error)


def _probe_word(probe: Probe | None) -> str:
    if probe is None:
        return "not configured"
    if not probe.ok:
        return str(probe.error)
    return f"ok ({probe.total_ms:.0f} ms)"


def _expiry(expires: datetime | None) -> dict[str, Any]:
    return {"token_expires_at": expires.isoformat() if expires else None}


def _day(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d}" if when else "it is replaced"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.2f} %"


def _publish(result: SweepResult) -> None:
    """The run's artifacts: a table with one row per provider, and the merchants that
    need a look."""
    table = [
        {
            "provider": r.provider,
            "state": r.state + (f" ({r.moved})" if r.moved else ""),
            "gateway": r.gateway,
            "pool": r.pool,
            "primary": r.primary,
            "secondary": r.secondary,
            "token": r.token,
            "subscriptions": r.subscriptions,
            "merchants ok": r.merchants_ok,
            "merchants at risk": r.merchants_at_risk,
            "merchants failing": r.merchants_failing,
            "uptime 1 d / 7 d / 30 d (SLO 99 %)": " / ".join(
                _percent(r.uptime.get(w)) for w in ("1d", "7d", "30d")
            ),
            "decision": r.decision,
        }
        for r in result.providers.values()
    ]
    create_table_artifact(
        key="pos-health-sweep",
        table=table,
        description=f"POS health at {result.checked_at.isoformat()} ({result.sweep_id})",
    )
    rows = "\n".join(
        f"| {m['provider']} | {m['business_id']} | {m['connection_id']} | {m['status']} | "
        f"{str(m['reason'] or '').replace('|', '/')} |"
        for m in result.merchants_listed
    )
    listing = (
        "| provider | business | connection | status | why |\n|---|---|---|---|---|\n" + rows
        if rows
        else "No merchant connection is at risk or failing."
    )
    create_markdown_artifact(
        key="pos-health-merchants",
        description=f"{result.businesses_failing} of {result.businesses_with_connections} "
        "businesses failing",
        markdown=f"""# Merchant connections

{result.businesses_failing} of {result.businesses_with_connections} businesses with POS
connections have a failing one (the runbook escalates above 25 %). At risk: the token
expires within 7 days. First {LISTED_MERCHANTS} listed:

{listing}
""",
    )
