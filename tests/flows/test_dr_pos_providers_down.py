"""dr-pos-providers-down: the sweep that confirms the scenario (or refuses it), the plan,
the approval, the failovers at the gateway's fake, the page in the ops catalog, one
email per affected business at a real SMTP server, and the RTO and RPO against the
test's own clock.

Square, Shopify and Zettle are served on loopback (a primary and a secondary
`PosFake`), the platform's `businesses` and `pos_connections` and the ops catalog are
real PostgreSQL, Redis is real, and the flows run on the session's Prefect server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prefect import tags
from prefect.flow_runs import resume_flow_run
from psycopg.types.json import Jsonb
from support.gateway_fake import GatewayFake
from support.platform_schema import POS_SWEEP_TABLES_SQL
from support.pos_fakes import (
    SHOPIFY_PREFIX,
    SQUARE_PREFIX,
    ZETTLE_OAUTH_PREFIX,
    PosFake,
)
from support.prefect_runs import approval_form, paused_run
from support.receivers import SmtpReceiver
from support.redis_server import RedisProcess, redis_server

from flows.dr_pos_providers_down import dr_pos_providers_down
from flows.dr_steps import SCHEDULED_DRILL
from flows.pos_health_sweep import SweepResult, pos_health_sweep

PROVIDERS = ("square", "shopify", "zettle")
PROBES = {
    "square": f"{SQUARE_PREFIX}/v2/locations",
    "shopify": f"{SHOPIFY_PREFIX}/admin/api/2024-10/shop.json",
    "zettle": f"{ZETTLE_OAUTH_PREFIX}/users/me",
}
"""What the sweep asks each primary whether it is up: a provider is down when these
fail (its other calls, retried at length, would only slow the tests)."""
REASON = "all_pos_providers_down"
DEVOPS = "devops@ai-feedback.se"
EMAIL_COLUMN = "contact_email"
"""Not the default `email`: the column comes from DR_BUSINESS_EMAIL_COLUMN."""

# (business id, email, [(provider, connection status)]): who has what.
BUSINESSES: list[tuple[int, str | None, list[tuple[str, str]]]] = [
    (1, "kafe1@example.se", [("square", "active")]),
    (2, "bageri2@example.se", [("shopify", "active"), ("zettle", "active")]),
    (3, "frisor3@example.se", [("zettle", "paused")]),
    (4, "glass4@example.se", [("square", "revoked")]),
    (5, "vinbar5@example.se", [("square", "active")]),
    (6, None, [("shopify", "active")]),
]
REFUSED = "vinbar5@example.se"


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
    for fake in _fakes:
        fake.reset()
    return _fakes


@pytest.fixture
def pos(fakes: tuple[PosFake, PosFake, GatewayFake]) -> PosFake:
    return fakes[0]


@pytest.fixture
def gateway(fakes: tuple[PosFake, PosFake, GatewayFake]) -> GatewayFake:
    return fakes[2]


@pytest.fixture
def platform(db_factory: Callable[[], str], pos: PosFake) -> str:
    """The platform's businesses (their address in `contact_email`) and POS connections;
    each merchant's token known to the provider."""
    url = db_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POS_SWEEP_TABLES_SQL)
        conn.execute(f"ALTER TABLE businesses ADD COLUMN {EMAIL_COLUMN} text")
        for business, email, connections in BUSINESSES:
            conn.execute(
                "INSERT INTO businesses VALUES (%s, %s, %s)", (business, f"Kafé {business}", email)
            )
            for provider, status in connections:
                token = f"merchant-{business}-{provider}"
                conn.execute(
                    "INSERT INTO pos_connections (business_id, provider, external_location_id, "
                    "status, config) VALUES (%s, %s, %s, %s, %s)",
                    (
                        business,
                        provider,
                        f"LOC-{business}-{provider}",
                        status,
                        Jsonb({"access_token": token, "shop_domain": "kafe.myshopify.com"}),
                    ),
                )
                pos.register_merchant(token, provider)
    return url


@pytest.fixture
def setup(
    save_blocks: Any,
    fakes: tuple[PosFake, PosFake, GatewayFake],
    _redis: RedisProcess,
    platform: str,
    db_factory: Callable[[], str],
    smtp_receiver: SmtpReceiver,
) -> dict[str, Any]:
    """The flow's parameters, pointing at this test's blocks: the fakes, the databases,
    alert email at the SMTP receiver."""
    primary, secondary, gateway = fakes
    ops_url = db_factory()
    env = {
        **primary.env(),
        **gateway.env(),
        "SQUARE_SECONDARY_API_URL": f"{secondary.url}{SQUARE_PREFIX}",
        "SHOPIFY_SECONDARY_API_URL": f"{secondary.url}{SHOPIFY_PREFIX}",
        "ZETTLE_SECONDARY_OAUTH_URL": f"{secondary.url}{ZETTLE_OAUTH_PREFIX}",
        "POS_WEBHOOK_URL": "https://hooks.feedback.example",
        "REDIS_URL": _redis.url,
        "DATABASE_URL": platform,
        "OPS_DATABASE_URL": ops_url,
        "SMTP_HOST": smtp_receiver.host,
        "SMTP_PORT": str(smtp_receiver.port),
        "SMTP_USERNAME": smtp_receiver.username,
        "SMTP_PASSWORD": smtp_receiver.password,
        "SMTP_CA_FILE": smtp_receiver.ca_file,
        "SMTP_FROM": "AI Feedback <noreply@ai-feedback.se>",
        "ALERT_EMAIL_TO": DEVOPS,
        "DR_BUSINESS_EMAIL_COLUMN": EMAIL_COLUMN,
    }
    saved = save_blocks(
        "platform-postgres",
        "pos-providers",
        "platform-gateway",
        "alert-channels",
        "disaster-recovery",
        **env,
    )
    prefix = saved["ops_database_block"].removesuffix("-ops-postgres")
    params = {
        "providers_block": f"{prefix}-pos-providers",
        "tokens_block": f"{prefix}-pos-tokens",
        "gateway_block": f"{prefix}-platform-gateway",
        "redis_block": f"{prefix}-platform-redis",
        "database_block": f"{prefix}-platform-postgres",
        "ops_database_block": f"{prefix}-ops-postgres",
        "alert_channels_block": f"{prefix}-alert-channels",
        "dr_block": f"{prefix}-disaster-recovery",
    }
    return {"params": params, "ops_url": ops_url, "env": env, "save_blocks": save_blocks}


class DownOnThePrimary(dict[str, Any]):
    """The gateway's `GET /pos/health/{provider}` answers: unhealthy while the provider's
    traffic is on its primary, healthy once the gateway moved it to the secondary."""

    def __init__(self, gateway: GatewayFake) -> None:
        super().__init__(dict.fromkeys(PROVIDERS))
        self.gateway = gateway

    def __getitem__(self, provider: str) -> dict[str, Any]:
        on_secondary = self.gateway.active_endpoint[provider] == "secondary"
        return {"provider": provider, "healthy": on_secondary}


def all_down(pos: PosFake, gateway: GatewayFake) -> None:
    for path in PROBES.values():
        pos.fail(path, 503, times=None, retry_after=0)
    gateway.pos_health = DownOnThePrimary(gateway)


def sweep(params: dict[str, Any], at: datetime) -> SweepResult:
    sweep_params = {k: v for k, v in params.items() if k != "dr_block"}
    state = pos_health_sweep(**sweep_params, as_of=at, return_state=True)
    assert state.is_completed(), state.message
    result: SweepResult = state.result()
    return result


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, args).fetchall())


def dr_row(ops_url: str) -> dict[str, Any]:
    with psycopg.connect(ops_url, row_factory=psycopg.rows.dict_row) as conn:
        found = conn.execute("SELECT * FROM ops.dr_runs ORDER BY started_at DESC").fetchall()
    assert len(found) == 1, found
    return dict(found[0])


def business_mail(smtp: SmtpReceiver) -> list[Any]:
    """The messages to businesses (the page and the sweep's alerts go to DevOps)."""
    return [m for m in smtp.messages if DEVOPS not in m.rcpt_tos]


def failovers(gateway: GatewayFake) -> list[Any]:
    return [r.body for r in gateway.requests("/admin/pos/failover")]


# --- the scenario, approved ------------------------------------------------------------------


def test_all_three_down_approved_fails_over_pages_and_tells_each_business_once(
    setup: dict[str, Any], pos: PosFake, gateway: GatewayFake, smtp_receiver: SmtpReceiver
) -> None:
    """One address the mail server refuses is counted and listed; the recovery itself
    is done, so the run completes."""
    params, ops_url = setup["params"], setup["ops_url"]
    now = datetime.now(UTC).replace(microsecond=0)
    healthy_at, incident = now - timedelta(minutes=6), now - timedelta(minutes=4)
    sweep(params, healthy_at)  # every provider seen healthy, two minutes before it began
    all_down(pos, gateway)
    smtp_receiver.reset()
    smtp_receiver.reject(REFUSED)

    outcome: dict[str, Any] = {}
    tag = f"test-{uuid.uuid4().hex[:8]}"

    def run() -> None:
        with tags(tag):
            outcome["state"] = dr_pos_providers_down(
                **params, dry_run=False, incident_started_at=incident, return_state=True
            )

    worker = threading.Thread(target=run)
    worker.start()
    paused = paused_run(tag)
    form = approval_form(paused)
    for provider in PROVIDERS:
        assert (
            f'POST {gateway.url}/admin/pos/failover {{"provider": "{provider}", '
            f'"reason": "{REASON}"}}'
        ) in form
    assert "pos-health-sweep `pos-" in form and "run now" in form
    assert f"4 with an active connection to square, shopify, zettle; 3 with an email " \
        f"address in businesses.{EMAIL_COLUMN}" in form  # fmt: skip
    assert "to 3 businesses, one message each" in form
    assert gateway.requests("/admin") == [] and business_mail(smtp_receiver) == []
    resume_flow_run(paused.id, run_input={"approve": True, "approved_by": "Anna Lind"})
    worker.join(timeout=120)
    assert not worker.is_alive(), "the DR run did not end"
    after = datetime.now(UTC)

    state = outcome["state"]
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.outcome, result.decided_by) == ("completed", "Anna Lind")
    assert result.details["providers"] == list(PROVIDERS)
    assert (
        result.details["businesses_told"],
        result.details["businesses_failed"],
        result.details["businesses_without_email"],
    ) == (2, 1, 1)
    assert result.details["not_told"] == ["5", "6"]

    # Each provider failed over once, with the runbook's body, and moved.
    assert failovers(gateway) == [{"provider": p, "reason": REASON} for p in PROVIDERS]
    assert gateway.active_endpoint == dict.fromkeys(PROVIDERS, "secondary")
    moves = rows(ops_url, "SELECT provider, requested_by FROM ops.pos_failovers ORDER BY id")
    assert moves == [(p, "dr-pos-providers-down: Anna Lind (approved)") for p in PROVIDERS]

    # Paged: a critical alert in the catalog, that reached DevOps.
    assert rows(
        ops_url,
        "SELECT severity, runbook_section, details->'pos_provider_support' IS NOT NULL "
        "FROM ops.alerts WHERE name = 'all-pos-providers-down'",
    ) == [("critical", "Disaster Recovery", True)]

    # Exactly the businesses with an active connection and an address, each alone.
    mail = business_mail(smtp_receiver)
    assert sorted(m.rcpt_tos for m in mail) == [("bageri2@example.se",), ("kafe1@example.se",)]
    for message in mail:
        assert message.message["To"] == message.rcpt_tos[0]
        assert "POS connection disruption" in message.message["Subject"]
        assert "Auto-Submitted" in message.message
    bageri = next(m for m in mail if m.rcpt_tos == ("bageri2@example.se",))
    text = bageri.message.get_content()
    assert "Shopify och Zettle" in text and "Shopify and Zettle" in text

    row = dr_row(ops_url)
    assert (row["status"], row["mode"], row["approved_by"]) == (
        "completed",
        "real",
        "Anna Lind (approved)",
    )
    assert [(s["step"], s["outcome"]) for s in row["steps"]] == [
        ("fail over square", "done"),
        ("fail over shopify", "done"),
        ("fail over zettle", "done"),
        ("page per the escalation matrix", "done"),
        ("validate service", "done"),
        ("tell the affected businesses", "done"),
    ]
    # The RTO runs from the incident to the validation, which happened within this test.
    assert incident + timedelta(minutes=4) <= row["service_validated_at"] <= after
    assert row["rto_seconds"] == pytest.approx(
        (row["service_validated_at"] - incident).total_seconds()
    )
    # The RPO runs back to the last moment all three were seen healthy: the first sweep.
    assert row["recovery_point"] == healthy_at
    assert row["rpo_seconds"] == pytest.approx(120)
    assert (result.rto_met, result.rpo_met) == (True, True)
    assert (row["rto_target_seconds"], row["rpo_target_seconds"]) == (600, 300)


# --- not this scenario -------------------------------------------------------------------


def test_only_one_provider_down_stops_and_names_pos_failover(
    setup: dict[str, Any], pos: PosFake, gateway: GatewayFake, smtp_receiver: SmtpReceiver
) -> None:
    pos.fail(PROBES["square"], 503, times=None, retry_after=0)
    gateway.pos_health["square"] = {"provider": "square", "healthy": False}

    # Returning at all shows it never waited for an approval.
    state = dr_pos_providers_down(**setup["params"], dry_run=False, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert result.outcome == (
        "not all providers are down: square is affected; shopify, zettle are up — use "
        "pos-failover for each affected provider"
    )
    assert result.details["providers"] == ["square"] and result.details["businesses_told"] == 0
    assert gateway.requests("/admin") == [] and business_mail(smtp_receiver) == []
    row = dr_row(setup["ops_url"])
    assert (row["status"], row["mode"], row["error"]) == ("cancelled", "real", result.outcome)
    assert row["approved_at"] is None and row["steps"] == []


# --- a dry run --------------------------------------------------------------------------------


def test_a_dry_run_lists_every_call_and_touches_nothing(
    setup: dict[str, Any], pos: PosFake, gateway: GatewayFake, smtp_receiver: SmtpReceiver
) -> None:
    params, ops_url = setup["params"], setup["ops_url"]
    all_down(pos, gateway)
    swept = sweep(params, datetime.now(UTC) - timedelta(minutes=1))
    checks = rows(ops_url, "SELECT count(*) FROM ops.pos_health_checks")
    pos.reset_requests()
    smtp_receiver.reset()
    asked = len(gateway.requests())

    state = dr_pos_providers_down(**params, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert (result.outcome, result.mode) == ("dry run: nothing was changed", "dry-run")
    assert result.details["businesses_to_tell"] == 3 and result.details["businesses_told"] == 0
    # No sweep of its own, no change: only the gateway's view of each provider was read.
    assert pos.requests() == []
    assert rows(ops_url, "SELECT count(*) FROM ops.pos_health_checks") == checks
    assert [r.path for r in gateway.requests()[asked:]] == [f"/pos/health/{p}" for p in PROVIDERS]
    assert smtp_receiver.messages == []
    assert rows(ops_url, "SELECT count(*) FROM ops.pos_failovers") == [(0,)]
    row = dr_row(ops_url)
    assert (row["mode"], row["status"]) == ("dry-run", "planned")
    facts = dict(row["plan"]["facts"])
    assert facts["confirmed by"].startswith(
        f"the newest sweep in the ops catalog, `{swept.sweep_id}` at "
    )
    assert facts["confirmed by"].endswith("a dry run runs no sweep of its own")
    calls = [step["call"] for step in row["plan"]["steps"]]
    assert calls[:3] == [
        f'POST {gateway.url}/admin/pos/failover {{"provider": "{p}", "reason": "{REASON}"}}'
        for p in PROVIDERS
    ]
    assert calls[3].startswith(
        "critical alert all-pos-providers-down (runbook: Disaster Recovery) to "
    )
    assert calls[4] == (
        "; ".join(f"GET {gateway.url}/pos/health/{p}" for p in PROVIDERS)
        + ": each healthy on its secondary endpoint"
    )
    smtp = setup["env"]
    assert calls[5] == (
        f"email through the alert channel's SMTP server {smtp['SMTP_HOST']}:"
        f"{smtp['SMTP_PORT']} to 3 businesses, one message each to its own address"
    )
    assert all(step["skipped"] is None for step in row["plan"]["steps"])


# --- a drill ------------------------------------------------------------------------------------


def test_a_drill_on_a_calm_day_rehearses_every_provider_at_the_drill_gateway(
    setup: dict[str, Any], gateway: GatewayFake, smtp_receiver: SmtpReceiver
) -> None:
    """Every provider is up: a real run would stop, a drill goes on, at the drill
    gateway, paging and emailing no one."""
    with GatewayFake() as drill_gateway:
        saved = setup["save_blocks"](
            "disaster-recovery",
            DR_DRILL_GATEWAY_URL=drill_gateway.url,
            DR_BUSINESS_EMAIL_COLUMN=EMAIL_COLUMN,
        )
        dr_block = saved["ops_database_block"].replace("-ops-postgres", "-disaster-recovery")
        state = dr_pos_providers_down(
            **(setup["params"] | {"dr_block": dr_block}),
            dry_run=False,
            drill=True,
            triggered_by=SCHEDULED_DRILL,  # not asked: a drill touches scratch targets only
            return_state=True,
        )
        assert state.is_completed(), state.message
        assert [r.body for r in drill_gateway.requests("/admin/pos/failover")] == [
            {"provider": p, "reason": REASON} for p in PROVIDERS
        ]
    result = state.result()
    assert (result.outcome, result.mode) == ("completed", "drill")
    assert result.details["businesses_to_tell"] == 3 and result.details["businesses_told"] == 0
    assert gateway.requests("/admin") == [], "a drill never calls the platform's gateway"
    assert business_mail(smtp_receiver) == []
    ops_url = setup["ops_url"]
    assert rows(ops_url, "SELECT count(*) FROM ops.alerts WHERE name = 'all-pos-providers-down'") \
        == [(0,)]  # fmt: skip
    assert rows(ops_url, "SELECT count(*) FROM ops.pos_failovers") == [(0,)]
    row = dr_row(ops_url)
    assert (row["mode"], row["status"]) == ("drill", "completed")
    assert [(s["step"], s["outcome"]) for s in row["steps"]][3:] == [
        ("page per the escalation matrix", "skipped"),
        ("validate service", "done"),
        ("tell the affected businesses", "skipped"),
    ]
    assert row["steps"][-1]["error"] == "a drill emails no business: it would have told 3"


# --- bad configuration ---------------------------------------------------------------------


def test_a_missing_email_column_is_one_line_before_anything_changes(
    setup: dict[str, Any], pos: PosFake, gateway: GatewayFake
) -> None:
    saved = setup["save_blocks"]("disaster-recovery", DR_BUSINESS_EMAIL_COLUMN="email")
    dr_block = saved["ops_database_block"].replace("-ops-postgres", "-disaster-recovery")

    state = dr_pos_providers_down(
        **(setup["params"] | {"dr_block": dr_block}), dry_run=False, return_state=True
    )

    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message == (
        "DR_BUSINESS_EMAIL_COLUMN is 'email', but the platform's businesses table has no "
        "such column: set it to the column that holds each business's email address"
    )
    assert pos.requests() == [] and gateway.requests() == [], "no sweep, no call"
    assert rows(setup["ops_url"], "SELECT to_regclass('ops.dr_runs') IS NULL OR "
                "(SELECT count(*) = 0 FROM ops.dr_runs)") == [(True,)]  # fmt: skip
