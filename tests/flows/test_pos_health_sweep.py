"""pos-health-sweep and pos-failover against Square, Shopify and Zettle served on
loopback (a primary and a secondary `PosFake`), the gateway's fake, a real Redis, real
PostgreSQL for the platform's `pos_connections` and the ops catalog, and the session's
Prefect test server. Time is the sweep's `as_of`: nothing here waits for a clock."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.flow_engine import run_flow
from prefect.flow_runs import resume_flow_run
from prefect.states import Scheduled
from psycopg.types.json import Jsonb
from support.gateway_fake import ADMIN_TOKEN, GatewayFake
from support.platform_schema import POS_SWEEP_TABLES_SQL
from support.pos_fakes import (
    SHOPIFY_PREFIX,
    SQUARE_APPLICATION_SECRET,
    SQUARE_PREFIX,
    SQUARE_REFRESH_TOKEN,
    SQUARE_TOKEN,
    ZETTLE_API_KEY,
    ZETTLE_OAUTH_PREFIX,
    ZETTLE_SUBSCRIPTIONS,
    PosFake,
)
from support.prefect_runs import approval_form, paused_run
from support.redis_server import RedisProcess, redis_server

from blocks.pos.tokens import PosTokens
from flows.locks import system_lock
from flows.pos_failover import pos_failover
from flows.pos_health_sweep import SWEEP_LOCK, SweepResult, pos_health_sweep
from policy import STOCKHOLM

# A Wednesday in March, in business hours but not at peak.
MORNING = datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)
SWEEP = timedelta(minutes=5)
MIDSOMMARAFTON = datetime(2027, 6, 25, 10, 0, tzinfo=STOCKHOLM)
HOOKS = "https://hooks.feedback.example"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def _fakes() -> Iterator[tuple[PosFake, PosFake, GatewayFake]]:
    with PosFake() as primary, PosFake() as secondary, GatewayFake() as gateway:
        yield primary, secondary, gateway


@pytest.fixture(scope="module")
def _redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


@pytest.fixture
def fakes(_fakes: tuple[PosFake, PosFake, GatewayFake]) -> tuple[PosFake, PosFake, GatewayFake]:
    primary, secondary, gateway = _fakes
    primary.reset()
    secondary.reset()
    gateway.reset()
    return primary, secondary, gateway


@pytest.fixture
def pos(fakes: tuple[PosFake, PosFake, GatewayFake]) -> PosFake:
    return fakes[0]


@pytest.fixture
def secondary(fakes: tuple[PosFake, PosFake, GatewayFake]) -> PosFake:
    return fakes[1]


@pytest.fixture
def gateway(fakes: tuple[PosFake, PosFake, GatewayFake]) -> GatewayFake:
    return fakes[2]


@pytest.fixture
def platform(db_factory: Callable[[], str]) -> str:
    """An empty platform database with `businesses` and `pos_connections`."""
    url = db_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POS_SWEEP_TABLES_SQL)
    return url


@pytest.fixture
def ops_url(db_factory: Callable[[], str]) -> str:
    return db_factory()


@pytest.fixture
def params(
    save_blocks: Any,
    fakes: tuple[PosFake, PosFake, GatewayFake],
    _redis: RedisProcess,
    platform: str,
    ops_url: str,
) -> dict[str, Any]:
    """The sweep's parameters, pointing at this test's blocks."""
    primary, secondary, gateway = fakes
    _redis.client().set("pos_pool:square", '{"active": 4, "idle": 6, "max": 10}')
    env = {
        **primary.env(),
        **gateway.env(),
        "SQUARE_SECONDARY_API_URL": f"{secondary.url}{SQUARE_PREFIX}",
        "SHOPIFY_SECONDARY_API_URL": f"{secondary.url}{SHOPIFY_PREFIX}",
        "ZETTLE_SECONDARY_OAUTH_URL": f"{secondary.url}{ZETTLE_OAUTH_PREFIX}",
        "POS_WEBHOOK_URL": HOOKS,
        "REDIS_URL": _redis.url,
        "DATABASE_URL": platform,
        "OPS_DATABASE_URL": ops_url,
    }
    saved = save_blocks("platform-postgres", "pos-providers", "platform-gateway", **env)
    prefix = saved["ops_database_block"].removesuffix("-ops-postgres")
    return {
        "providers_block": f"{prefix}-pos-providers",
        "tokens_block": f"{prefix}-pos-tokens",
        "gateway_block": f"{prefix}-platform-gateway",
        "redis_block": f"{prefix}-platform-redis",
        "database_block": f"{prefix}-platform-postgres",
        "ops_database_block": f"{prefix}-ops-postgres",
        "alert_channels_block": f"{prefix}-alert-channels",
    }


def sweep(params: dict[str, Any], at: datetime) -> SweepResult:
    state = pos_health_sweep(**params, as_of=at, return_state=True)
    assert state.is_completed(), f"the sweep did not complete: {state.message}"
    result = state.result()
    assert isinstance(result, SweepResult)
    return result


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, args).fetchall())


def alerts(ops_url: str) -> dict[str, str]:
    """Live alerts in the ops catalog: dedup key to severity."""
    return dict(
        rows(ops_url, "SELECT dedup_key, severity FROM ops.alerts WHERE status <> 'resolved'")
    )


def failovers(gateway: GatewayFake) -> list[Any]:
    return [r.body for r in gateway.requests("/admin/pos/failover")]


def tokens_of(params: dict[str, Any]) -> PosTokens:
    return PosTokens.load(params["tokens_block"])


def artifact_table(run_id: Any) -> list[dict[str, Any]]:
    with get_client(sync_client=True) as client:
        [found] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": ["pos-health-sweep"]}),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
        )
    data = found.data
    table: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return table


def add_merchants(url: str, merchants: list[tuple[int, str, str, str | None]]) -> None:
    """(business_id, provider, token, token_expires_at) rows, all active."""
    with psycopg.connect(url, autocommit=True) as conn:
        for business in {m[0] for m in merchants}:
            conn.execute(
                "INSERT INTO businesses VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (business, f"Kafé {business}"),
            )
        for n, (business, provider, token, expires) in enumerate(merchants):
            config: dict[str, Any] = {"access_token": token, "shop_domain": "kafe.myshopify.com"}
            if expires:
                config["token_expires_at"] = expires
            conn.execute(
                "INSERT INTO pos_connections (business_id, provider, external_location_id, "
                "status, config) VALUES (%s, %s, %s, 'active', %s)",
                (business, provider, f"LOC-{n}", Jsonb(config)),
            )


# --- a healthy sweep -----------------------------------------------------------------------


def test_a_healthy_sweep_checks_everything_and_records_it(
    params: dict[str, Any], pos: PosFake, gateway: GatewayFake, ops_url: str, platform: str
) -> None:
    add_merchants(platform, [(1, "square", "sq-merchant-1", None)])
    pos.register_merchant("sq-merchant-1", "square", "2027-05-01T00:00:00Z")

    result = sweep(params, MORNING)

    assert result.skipped is None
    assert {p: r.state for p, r in result.providers.items()} == dict.fromkeys(
        ("square", "shopify", "zettle"), "up"
    )
    square = result.providers["square"]
    assert square.gateway == "ok" and square.pool == "ok"
    assert square.primary.startswith("ok (") and square.secondary.startswith("ok (")
    assert square.merchants_ok == 1 and square.decision == "primary up"
    assert sorted(r.path for r in gateway.requests("/pos/health/")) == [
        "/pos/health/shopify",
        "/pos/health/square",
        "/pos/health/zettle",
    ]
    assert failovers(gateway) == []
    stored = rows(
        ops_url,
        "SELECT provider, target, ok FROM ops.pos_health_checks ORDER BY provider, target",
    )
    targets = {(p, t) for p, t, _ in stored}
    for provider in ("square", "shopify", "zettle"):
        for target in ("gateway", "primary", "secondary", "service", "subscriptions"):
            assert (provider, target) in targets
    assert ("square", "merchants") in targets and ("square", "token") in targets
    assert [(p, t) for p, t, ok in stored if not ok] == [], stored
    pool = rows(
        ops_url,
        "SELECT detail->'pool' FROM ops.pos_health_checks WHERE provider = 'square' "
        "AND target = 'gateway'",
    )
    assert pool == [({"active": 4, "idle": 6, "max": 10},)]
    # Zettle's first sweep got a token and kept it for the next ones.
    assert tokens_of(params).zettle_access_token is not None
    assert alerts(ops_url) == {}


# --- damping, failover and failback --------------------------------------------------------


def test_three_failed_sweeps_fail_over_and_thirty_minutes_up_fail_back_outside_peak(
    params: dict[str, Any], pos: PosFake, gateway: GatewayFake, ops_url: str
) -> None:
    pos.fail(f"{SQUARE_PREFIX}/v2/locations", 503, times=None)
    at = MORNING
    for _ in range(2):
        result = sweep(params, at)
        at += SWEEP
    assert failovers(gateway) == [], "two failed sweeps are not down"
    assert result.providers["square"].state == "degraded"

    result = sweep(params, at)
    [asked] = failovers(gateway)
    assert asked["provider"] == "square" and asked["reason"].startswith("primary_endpoint_down")
    assert gateway.requests("/admin/pos/failover")[0].headers["authorization"] == (
        f"Bearer {ADMIN_TOKEN}"
    )
    assert gateway.active_endpoint["square"] == "secondary"
    assert result.providers["square"].moved == "failover"
    assert result.providers["square"].state == "failed over"
    moves = rows(ops_url, "SELECT provider, direction, requested_by, checks FROM ops.pos_failovers")
    assert [(p, d, by) for p, d, by, _ in moves] == [("square", "failover", "pos-health-sweep")]
    assert moves[0][3]["primary"]["state"] == "down"
    live = alerts(ops_url)
    assert [s for k, s in live.items() if k.startswith("pos-failover:square")] == ["critical"]
    assert "pos-provider-down:square" not in live  # its traffic is on a healthy secondary

    # The primary recovers: up after three good sweeps, then 30 minutes before failing back.
    pos.reset()
    for _ in range(3):
        at += SWEEP
        sweep(params, at)
    up_since = at
    at = up_since + timedelta(minutes=25)
    result = sweep(params, at)
    assert len(failovers(gateway)) == 1
    assert "25 min of the 30" in result.providers["square"].decision

    at = datetime(2027, 3, 10, 11, 30, tzinfo=STOCKHOLM)  # up for an hour, but peak
    result = sweep(params, at)
    assert len(failovers(gateway)) == 1
    assert "peak" in result.providers["square"].decision

    at = datetime(2027, 3, 10, 15, 5, tzinfo=STOCKHOLM)
    result = sweep(params, at)
    back = failovers(gateway)[1]
    assert back["provider"] == "square" and back["reason"].startswith("failback")
    assert gateway.active_endpoint["square"] == "primary"
    assert result.providers["square"].moved == "failback"
    assert result.providers["square"].state == "up"
    assert [d for (d,) in rows(ops_url, "SELECT direction FROM ops.pos_failovers ORDER BY id")] == [
        "failover",
        "failback",
    ]


def test_a_flapping_primary_never_fails_over(
    params: dict[str, Any], pos: PosFake, gateway: GatewayFake
) -> None:
    at = MORNING
    for failing in (True, True, False, True, True, False, True):
        if failing:
            pos.fail(f"{SHOPIFY_PREFIX}/admin", 503, times=1)
        result = sweep(params, at)
        at += SWEEP
    assert failovers(gateway) == []
    assert result.providers["shopify"].state == "degraded"


def test_both_endpoints_down_on_midsommarafton_is_a_low_alert_and_no_failover(
    params: dict[str, Any], pos: PosFake, secondary: PosFake, gateway: GatewayFake, ops_url: str
) -> None:
    # The token grant works; the API behind it does not.
    pos.fail(f"{ZETTLE_OAUTH_PREFIX}/users/me", 502, times=None, html=True)
    secondary.fail(f"{ZETTLE_OAUTH_PREFIX}/users/me", 503, times=None)
    at = MIDSOMMARAFTON
    for _ in range(3):
        result = sweep(params, at)
        at += SWEEP
    assert failovers(gateway) == []
    zettle = result.providers["zettle"]
    assert zettle.state == "down"
    assert "an HTML page" in zettle.primary
    assert "nothing to fail over to" in zettle.decision
    assert alerts(ops_url)["pos-provider-down:zettle"] == "low"


# --- tokens ---------------------------------------------------------------------------------


def test_square_token_is_refreshed_with_under_seven_days_left_and_used_from_then_on(
    params: dict[str, Any], pos: PosFake, ops_url: str, save_blocks: Any
) -> None:
    pos.square_expires_at = "2027-03-15T09:00:00Z"  # five days after MORNING

    result = sweep(params, MORNING)

    [refresh] = [r for r in pos.requests() if r.path == f"{SQUARE_PREFIX}/oauth2/token"]
    body = refresh.json
    assert body["grant_type"] == "refresh_token"
    assert body["refresh_token"] == SQUARE_REFRESH_TOKEN
    assert body["client_secret"] == SQUARE_APPLICATION_SECRET
    tokens = tokens_of(params)
    assert tokens.square_access_token is not None
    new_token = tokens.square_access_token.get_secret_value()
    assert new_token != SQUARE_TOKEN and new_token in pos.square_refreshed
    assert "refreshed" in result.providers["square"].token

    pos.reset_requests()
    sweep(params, MORNING + SWEEP)
    used = {r.headers.get("authorization") for r in pos.requests(f"{SQUARE_PREFIX}/v2/locations")}
    assert used == {f"Bearer {new_token}"}
    assert [r for r in pos.requests() if r.path == f"{SQUARE_PREFIX}/oauth2/token"] == []
    assert alerts(ops_url) == {}


def test_a_failed_square_refresh_is_an_alert_not_a_crashed_sweep(
    params: dict[str, Any], pos: PosFake, ops_url: str
) -> None:
    pos.square_expires_at = "2027-03-12T09:00:00Z"
    pos.refuse_square_refresh = True

    result = sweep(params, MORNING)

    assert result.providers["square"].token.startswith("refresh failed")
    assert SQUARE_REFRESH_TOKEN not in result.providers["square"].token
    assert alerts(ops_url) == {"pos-token:square": "high"}


def test_zettle_token_is_renewed_only_near_its_end(params: dict[str, Any], pos: PosFake) -> None:
    sweep(params, MORNING)
    sweep(params, MORNING + SWEEP)
    assert len(pos.zettle_access_tokens) == 1
    first = tokens_of(params).zettle_access_token

    sweep(params, MORNING + timedelta(hours=1, minutes=50))  # 10 minutes left of 2 hours

    assert len(pos.zettle_access_tokens) == 2
    renewed = tokens_of(params).zettle_access_token
    assert renewed is not None and first is not None
    assert renewed.get_secret_value() == pos.zettle_access_tokens[1] != first.get_secret_value()
    users_me = pos.requests(f"{ZETTLE_OAUTH_PREFIX}/users/me")
    assert users_me[-1].headers["authorization"] == f"Bearer {renewed.get_secret_value()}"


# --- webhook subscriptions -------------------------------------------------------------------


def test_a_deleted_zettle_subscription_is_recreated_with_its_key_stored(
    params: dict[str, Any], pos: PosFake, ops_url: str
) -> None:
    purchases = ZETTLE_SUBSCRIPTIONS[0]["uuid"]
    pos.delete_zettle_subscription(purchases)

    result = sweep(params, MORNING)

    [created] = pos.created_zettle_subscriptions
    assert created["eventNames"] == ["PurchaseCreated", "PurchaseUpdated"]
    assert created["destination"] == f"{HOOKS}/zettle"
    assert created["transportName"] == "WEBHOOK"
    tokens = tokens_of(params)
    assert tokens.zettle_signing_key is not None
    assert tokens.zettle_signing_key.get_secret_value() == created["signingKey"]
    assert "re-created" in result.providers["zettle"].subscriptions
    [key] = [k for k in alerts(ops_url) if k.startswith("pos-subscription-recreated:zettle")]
    assert alerts(ops_url)[key] == "medium"
    assert created["signingKey"] not in str(result.model_dump())

    sweep(params, MORNING + SWEEP)
    assert len(pos.created_zettle_subscriptions) == 1, "the one place re-creates once"


def test_a_disabled_square_subscription_is_reported_not_recreated(
    params: dict[str, Any], pos: PosFake, ops_url: str
) -> None:
    pos.disable_square_subscription("wbhk_0c1e4d8a5f2b4e6c9a7d3b1f0e8c6a42")

    result = sweep(params, MORNING)

    square = result.providers["square"]
    assert "refund.created" in square.subscriptions and "disabled" in square.subscriptions
    assert alerts(ops_url) == {"pos-subscriptions:square": "high"}
    assert square.state == "degraded"


# --- merchants -------------------------------------------------------------------------------


def test_failing_merchants_over_a_quarter_of_businesses_escalate(
    params: dict[str, Any], pos: PosFake, platform: str, ops_url: str
) -> None:
    merchants = [(b, "shopify", f"shpat-merchant-{b}", None) for b in range(1, 9)]
    add_merchants(platform, merchants)
    for business, provider, token, _ in merchants:
        pos.register_merchant(token, provider, revoked=business <= 2)

    result = sweep(params, MORNING)  # 2 of 8: exactly a quarter, not over it
    assert (result.businesses_failing, result.businesses_with_connections) == (2, 8)
    assert "pos-merchant-failures" not in alerts(ops_url)
    assert {m["business_id"] for m in result.merchants_listed} == {"1", "2"}
    assert all("401" in str(m["reason"]) for m in result.merchants_listed)

    pos.register_merchant("shpat-merchant-3", "shopify", revoked=True)
    result = sweep(params, MORNING + SWEEP)
    assert result.businesses_failing == 3
    assert alerts(ops_url)["pos-merchant-failures"] == "high"
    for merchant in merchants:
        assert merchant[2] not in str(result.model_dump())


# --- bad input -------------------------------------------------------------------------------


def test_a_malformed_gateway_answer_is_a_finding(
    params: dict[str, Any], gateway: GatewayFake
) -> None:
    gateway.pos_health["shopify"] = {"provider": "shopify", "uptime": "lots"}

    result = sweep(params, MORNING)

    assert "not a health answer" in result.providers["shopify"].gateway
    assert result.providers["square"].gateway == "ok"


def test_a_missing_gateway_url_is_one_line_naming_it(
    params: dict[str, Any], save_blocks: Any, pos: PosFake
) -> None:
    saved = save_blocks("platform-gateway", GATEWAY_URL="")
    prefix = saved["ops_database_block"].removesuffix("-ops-postgres")
    state = pos_health_sweep(
        **(params | {"gateway_block": f"{prefix}-platform-gateway"}),
        as_of=MORNING,
        return_state=True,
    )
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message.startswith("GATEWAY_URL is not set") and "\n" not in message
    assert pos.requests() == []


def test_a_sweep_while_another_runs_is_skipped(params: dict[str, Any], pos: PosFake) -> None:
    with system_lock(SWEEP_LOCK):
        result = sweep(params, MORNING)
    assert result.skipped is not None and "another pos-health-sweep" in result.skipped
    assert pos.requests() == []


def test_no_secret_reaches_the_artifact_or_the_catalog(
    params: dict[str, Any], pos: PosFake, ops_url: str
) -> None:
    pos.fail(f"{SQUARE_PREFIX}/v2/locations", 401, times=None)
    state = pos_health_sweep(**params, as_of=MORNING, return_state=True)
    table = artifact_table(state.state_details.flow_run_id)
    stored = rows(ops_url, "SELECT detail::text, coalesce(error, '') FROM ops.pos_health_checks")
    text = str(table) + str(stored)
    for secret in (SQUARE_TOKEN, ZETTLE_API_KEY, ADMIN_TOKEN, *pos.zettle_access_tokens):
        assert secret not in text
    assert {row["provider"] for row in table} == {"square", "shopify", "zettle"}


# --- the manual failover -------------------------------------------------------------------


def start_failover(outcome: dict[str, Any], tag: str, **kwargs: Any) -> threading.Thread:
    def run() -> None:
        with tags(tag):
            outcome["state"] = pos_failover(return_state=True, **kwargs)

    worker = threading.Thread(target=run)
    worker.start()
    return worker


def test_manual_failover_shows_the_health_and_waits_for_approval(
    params: dict[str, Any], gateway: GatewayFake, ops_url: str
) -> None:
    sweep(params, MORNING)  # so that the form has checks to show
    manual = {
        "provider": "zettle",
        "reason": "primary_endpoint_down",
        "gateway_block": params["gateway_block"],
        "ops_database_block": params["ops_database_block"],
        "alert_channels_block": params["alert_channels_block"],
    }
    outcome: dict[str, Any] = {}
    tag = f"test-{uuid.uuid4().hex[:8]}"
    worker = start_failover(outcome, tag, **manual)
    paused = paused_run(tag)
    form = approval_form(paused)
    assert "Failover of **zettle**" in form and "primary_endpoint_down" in form
    assert "| primary | declared up; last check ok" in form
    assert failovers(gateway) == [], "nothing is asked before approval"
    resume_flow_run(paused.id, run_input={"approve": True, "approved_by": "Anna Lind"})
    worker.join(timeout=60)

    state = outcome["state"]
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.outcome, result.decided_by) == ("moved", "Anna Lind")
    assert failovers(gateway) == [{"provider": "zettle", "reason": "primary_endpoint_down"}]
    assert gateway.active_endpoint["zettle"] == "secondary"
    assert rows(ops_url, "SELECT provider, direction, requested_by FROM ops.pos_failovers") == [
        ("zettle", "failover", "Anna Lind")
    ]
    assert any(k.startswith("pos-failover:zettle") for k in alerts(ops_url))

    # Declined: nothing changes.
    tag = f"test-{uuid.uuid4().hex[:8]}"
    worker = start_failover(outcome, tag, **(manual | {"direction": "failback"}))
    resume_flow_run(paused_run(tag).id, run_input={"approve": False, "approved_by": "Erik"})
    worker.join(timeout=60)
    assert outcome["state"].result().outcome == "declined"
    assert len(failovers(gateway)) == 1 and gateway.active_endpoint["zettle"] == "secondary"


def test_a_sweep_starting_late_skips_itself(params: dict[str, Any], pos: PosFake) -> None:
    """A run scheduled ten minutes ago, started now (a worker that was down, say), runs
    the way a runner runs a scheduled flow run: it sees how late it is and asks nothing."""
    due = datetime.now(UTC) - timedelta(minutes=10)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(
            pos_health_sweep, parameters=params, state=Scheduled(scheduled_time=due)
        )
    state = run_flow(pos_health_sweep, flow_run=flow_run, parameters=params, return_type="state")

    assert state.is_completed(), state.message
    result = state.result()
    assert result.skipped is not None and "10 min after its scheduled time" in result.skipped
    assert pos.requests() == []
