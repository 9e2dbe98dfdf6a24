"""webhook-reconciliation and webhook-replay against a real PostgreSQL table of delivery
attempts seeded with every kind of delivery, the ops catalog, and a webhook receiver on
loopback that checks each provider's signature as the provider documents it. Time is
the run's `as_of`: nothing here waits for a clock."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.flow_runs import resume_flow_run
from support.artifacts import artifact_data
from support.prefect_runs import approval_form, paused_run
from support.webhook_receiver import (
    SHOPIFY_WEBHOOK_SECRET,
    SQUARE_SIGNATURE_KEY,
    ZETTLE_SIGNING_KEY,
    WebhookReceiver,
    shopify_body,
    shopify_signature,
    square_body,
    square_signature,
    zettle_body,
    zettle_signature,
)
from support.webhook_table import create_deliveries_table

from deployments import DeploymentSpec
from flows.pos_health_sweep import pos_health_sweep
from flows.webhook_reconciliation import ReconciliationResult, webhook_reconciliation
from flows.webhook_replay import ReplayResult, webhook_replay
from policy import STOCKHOLM

# A Wednesday in March, in business hours but not at peak.
AT = datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)
SQUARE_PREVIOUS_KEY = "square-sig-key-previous-1a2b3c"
SHOPIFY_PREVIOUS_SECRET = "shopify-secret-previous-4d5e6f"
FORGER_KEY = "not-a-key-the-platform-has"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def _receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(_receiver: WebhookReceiver) -> WebhookReceiver:
    _receiver.reset()
    _receiver.latency_seconds = 0.0
    return _receiver


@pytest.fixture
def deliveries_url(db_factory: Callable[[], str]) -> str:
    """A platform database with an empty `webhook_delivery_attempts`."""
    url = db_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        create_deliveries_table(conn)
    return url


@pytest.fixture
def ops_url(db_factory: Callable[[], str]) -> str:
    return db_factory()


def blocks_for(
    save_blocks: Any, receiver: WebhookReceiver, platform: str, ops: str, **env: str
) -> dict[str, Any]:
    """The blocks' names as the flows take them, saved for this test."""
    saved = save_blocks(
        "platform-postgres",
        "pos-providers",
        "platform-gateway",
        "webhook-deliveries",
        DATABASE_URL=platform,
        OPS_DATABASE_URL=ops,
        POS_WEBHOOK_URL=f"{receiver.url}/webhooks",
        SQUARE_WEBHOOK_SIGNATURE_KEY=SQUARE_SIGNATURE_KEY,
        SQUARE_PREVIOUS_WEBHOOK_SIGNATURE_KEY=SQUARE_PREVIOUS_KEY,
        SHOPIFY_WEBHOOK_SECRET=SHOPIFY_WEBHOOK_SECRET,
        SHOPIFY_PREVIOUS_WEBHOOK_SECRET=SHOPIFY_PREVIOUS_SECRET,
        ZETTLE_WEBHOOK_SIGNING_KEY=ZETTLE_SIGNING_KEY,
        **env,
    )
    prefix = saved["ops_database_block"].removesuffix("-ops-postgres")
    return {
        "deliveries_block": f"{prefix}-webhook-deliveries",
        "providers_block": f"{prefix}-pos-providers",
        "tokens_block": f"{prefix}-pos-tokens",
        "gateway_block": f"{prefix}-platform-gateway",
        "database_block": f"{prefix}-platform-postgres",
        "ops_database_block": f"{prefix}-ops-postgres",
        "alert_channels_block": f"{prefix}-alert-channels",
    }


@pytest.fixture
def params(
    save_blocks: Any, receiver: WebhookReceiver, deliveries_url: str, ops_url: str
) -> dict[str, Any]:
    return blocks_for(save_blocks, receiver, deliveries_url, ops_url)


@dataclass
class Seeder:
    """Adds delivery attempts the way the gateway records them."""

    url: str
    receiver: WebhookReceiver

    def add(
        self,
        provider: str,
        status: str,
        ago: timedelta,
        *,
        http_status: int | None = None,
        body: bytes | None = None,
        signature: str | None = None,
        event_id: str | None = None,
        timestamp: str | None = None,
        event_type: str | None = None,
        at: datetime = AT,
    ) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO webhook_delivery_attempts (provider, status, created_at, "
                "http_status, raw_body, signature, signature_timestamp, event_id, event_type) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (provider, status, at - ago, http_status, body, signature, timestamp,
                 event_id, event_type),
            )  # fmt: skip

    def square(
        self, event_id: str, status: str, ago: timedelta, key: str = SQUARE_SIGNATURE_KEY,
        **kw: Any,
    ) -> None:  # fmt: skip
        body = square_body(event_id)
        url = self.receiver.notification_url("square")
        self.add("square", status, ago, body=body, signature=square_signature(key, url, body),
                 event_id=event_id, event_type="payment.updated", **kw)  # fmt: skip

    def shopify(
        self, event_id: str, status: str, ago: timedelta, key: str = SHOPIFY_WEBHOOK_SECRET,
        **kw: Any,
    ) -> None:  # fmt: skip
        body = shopify_body(abs(hash(event_id)) % 10**9)
        self.add("shopify", status, ago, body=body, signature=shopify_signature(key, body),
                 event_id=event_id, event_type="orders/create",
                 timestamp="2027-03-10T07:00:00Z", **kw)  # fmt: skip

    def zettle(self, event_id: str, status: str, ago: timedelta, **kw: Any) -> None:
        body = zettle_body(event_id)
        message = json.loads(body)
        signature = zettle_signature(ZETTLE_SIGNING_KEY, message["timestamp"], message["payload"])
        self.add("zettle", status, ago, body=body, signature=signature, event_id=event_id,
                 event_type="PurchaseCreated", **kw)  # fmt: skip


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


REPLAYED = {
    "square": {"sq-5xx", "sq-timeout", "sq-previous-key", "sq-dup", "sq-past-window"},
    "shopify": {"shop-gateway-bug", "shop-past-window"},
    "zettle": {"zt-past-window"},
}
"""The genuine failures of `seed_every_kind`: each replayed once."""


def seed_every_kind(seed: Seeder) -> None:
    """Deliveries of every kind. Hand count of the last hour: Square 9 delivered, 10
    failed; Shopify 20 delivered, 2 failed; an unknown provider 1 failed."""
    for n in range(8):
        seed.square(f"sq-ok-{n}", "delivered", minutes(1 + n))
    seed.square("sq-5xx", "failed", minutes(10), http_status=503)
    seed.square("sq-timeout", "failed", minutes(20))
    seed.square("sq-previous-key", "failed", minutes(15), SQUARE_PREVIOUS_KEY, http_status=401)
    seed.square("sq-forged", "failed", minutes(25), FORGER_KEY, http_status=401)
    for ago in (50, 40, 30):  # the provider's own retries of one event
        seed.square("sq-dup", "failed", minutes(ago), http_status=502)
    seed.square("sq-later", "failed", minutes(45), http_status=503)
    seed.square("sq-later", "delivered", minutes(44))  # the provider's retry got through
    seed.add("square", "failed", minutes(35), http_status=503, body=b"<html>not json",
             signature="x", event_id="sq-not-json")  # fmt: skip
    seed.square("sq-refused", "failed", minutes(55), http_status=422)
    seed.square("sq-past-window", "failed", timedelta(hours=25), http_status=500)
    for n in range(20):
        seed.shopify(f"shop-ok-{n}", "delivered", minutes(2 + 2 * n))
    seed.shopify("shop-gateway-bug", "failed", minutes(12), http_status=401)
    seed.add("shopify", "failed", minutes(18), http_status=503, event_id="shop-no-body")
    seed.shopify("shop-past-window", "failed", timedelta(hours=5), http_status=503)
    for n in range(5):
        seed.zettle(f"zt-ok-{n}", "delivered", timedelta(hours=2, minutes=n))
    seed.zettle("zt-past-window", "failed", timedelta(hours=73), http_status=504)
    seed.add("clover", "failed", minutes(30), http_status=503, body=b"{}", event_id="cl-1")


def reconcile(params: dict[str, Any], at: datetime = AT, **kw: Any) -> ReconciliationResult:
    state = webhook_reconciliation(**params, as_of=at, return_state=True, **kw)
    assert state.is_completed(), f"the run did not complete: {state.message}"
    result = state.result()
    assert isinstance(result, ReconciliationResult)
    return result


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, args).fetchall())


def live_alerts(ops_url: str) -> dict[str, str]:
    return dict(
        rows(ops_url, "SELECT dedup_key, severity FROM ops.alerts WHERE status <> 'resolved'")
    )


def accepted(receiver: WebhookReceiver) -> dict[str, list[str]]:
    return {p: sorted(receiver.accepted_ids(p)) for p in ("square", "shopify", "zettle")}


# --- the scheduled reconciliation -----------------------------------------------------------


def test_reconciliation_counts_audits_replays_and_reports(
    params: dict[str, Any], deliveries_url: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    seed_every_kind(Seeder(deliveries_url, receiver))

    state = webhook_reconciliation(**params, as_of=AT, dry_run=False, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert isinstance(result, ReconciliationResult)

    health = result.health
    assert (health["square"].hour_delivered, health["square"].hour_failed) == (9, 10)
    assert (health["square"].day_delivered, health["square"].day_failed) == (9, 10)
    assert (health["shopify"].hour_delivered, health["shopify"].hour_failed) == (20, 2)
    assert (health["shopify"].day_delivered, health["shopify"].day_failed) == (20, 3)
    assert (health["zettle"].day_delivered, health["zettle"].hour_delivered) == (5, 0)
    assert health["clover"].hour_failed == 1
    table = artifact_data(state.state_details.flow_run_id, "webhook-delivery-health")
    square = next(row for row in table if row["provider"] == "square")
    assert square["last hour failure rate (alert > 10 %)"] == "52.63 %"
    assert square["verdict"] == "WEBHOOK_DELIVERY_FAILURES"
    shopify = next(row for row in table if row["provider"] == "shopify")
    assert shopify["24 h success rate (SLO > 98%)"] == "86.96 %"

    assert result.signatures == {
        "square": {"previous key": 1, "no known key": 1},
        "shopify": {"current key": 1},
    }
    assert result.retries_over == {"square": 1, "shopify": 1, "zettle": 1}
    assert result.not_replayable == {
        "not replayable: the body is not JSON": 1,
        "not replayable: no stored body": 1,
        "not replayed: signed with no known key (possible forgery)": 1,
        "not replayed: the gateway refused the payload (HTTP 422)": 1,
        "unknown provider 'clover'": 1,
    }
    # Every genuine failure went to the gateway once and passed its own verification.
    assert accepted(receiver) == {p: sorted(ids) for p, ids in REPLAYED.items()}
    assert receiver.duplicates() == []
    assert len(receiver.received()) == 8
    assert {r.replay_attempt for r in receiver.received()} == {"1"}
    shop = receiver.accepted("shopify")[0]
    assert shop.headers["x-shopify-topic"] == "orders/create"
    assert result.replayed == {"square": 5, "shopify": 2, "zettle": 1}
    stored = rows(ops_url, "SELECT provider, event_id, state, attempts FROM ops.webhook_replays")
    assert sorted(stored) == sorted(
        (p, e, "delivered", 1) for p, ids in REPLAYED.items() for e in ids
    )
    assert len(rows(ops_url, "SELECT 1 FROM ops.webhook_replay_attempts WHERE ok")) == 8

    assert live_alerts(ops_url) == {
        "webhook-delivery-failures:square": "high",
        "webhook-signature-key-rotation:square": "high",
        "webhook-signature-possible-forgery:square": "critical",
        "webhook-signature-gateway-bug:shopify": "high",
    }
    assert result.handed_on == {
        "zettle": "not handed on: no deployment pos-health-sweep/every-5-minutes is registered"
    }
    report = str(artifact_data(state.state_details.flow_run_id, "webhook-reconciliation"))
    assert "sq-forged" in report and "possible forgery" in report
    assert "zt-past-window" in report and "## Deleted subscriptions" in report
    assert "shop-no-body" in report and "no stored body" in report
    for secret in (SQUARE_SIGNATURE_KEY, SQUARE_PREVIOUS_KEY, SHOPIFY_WEBHOOK_SECRET):
        assert secret not in report

    # The next run finds every event delivered by a replay: nothing is sent again.
    receiver.reset()
    again = reconcile(params, AT + minutes(15), dry_run=False)
    assert receiver.received() == []
    assert again.skipped == {"already delivered by a replay": 8}


def test_a_dry_run_lists_what_it_would_replay_and_sends_nothing(
    params: dict[str, Any], deliveries_url: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    seed_every_kind(Seeder(deliveries_url, receiver))

    state = webhook_reconciliation(**params, as_of=AT, return_state=True)  # dry_run by default
    result = state.result()
    assert isinstance(result, ReconciliationResult)

    assert result.dry_run and result.replay_note == "dry run: nothing was sent"
    assert result.replayable == {p: len(ids) for p, ids in REPLAYED.items()}
    assert receiver.received() == []
    assert rows(ops_url, "SELECT * FROM ops.webhook_replays") == []
    report = str(artifact_data(state.state_details.flow_run_id, "webhook-reconciliation"))
    assert "8 events would be replayed" in report
    for event in ("sq-5xx", "sq-previous-key", "shop-gateway-bug", "zt-past-window"):
        assert event in report


def test_overlapping_runs_deliver_each_event_once(
    params: dict[str, Any], deliveries_url: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    seed_every_kind(Seeder(deliveries_url, receiver))
    receiver.latency_seconds = 0.05  # so that the two runs overlap while they send
    results: list[Any] = []

    def run() -> None:
        results.append(webhook_reconciliation(**params, as_of=AT, dry_run=False))

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=120)

    assert len(results) == 2
    assert accepted(receiver) == {p: sorted(ids) for p, ids in REPLAYED.items()}
    assert receiver.duplicates() == []
    attempts = rows(ops_url, "SELECT provider, event_id FROM ops.webhook_replay_attempts")
    assert len(attempts) == len(set(attempts)) == 8


def test_an_event_that_keeps_failing_is_dead_lettered_after_five_replays(
    params: dict[str, Any], deliveries_url: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    seed = Seeder(deliveries_url, receiver)
    seed.square("sq-broken", "failed", minutes(5), http_status=500)
    receiver.fail("square", 500, times=100, event_id="sq-broken")

    # Backoff 15, 30, 60, 120 min between replays; runs in between leave it alone.
    tries = [AT, AT + minutes(15), AT + minutes(45), AT + minutes(105), AT + minutes(225)]
    for at in [AT, AT + minutes(10), *tries[1:], AT + minutes(300)]:
        reconcile(params, at, dry_run=False)

    sent = [r for r in receiver.received("square") if r.event_id == "sq-broken"]
    assert [r.replay_attempt for r in sent] == ["1", "2", "3", "4", "5"]
    attempts = rows(
        ops_url,
        "SELECT attempt, at, http_status FROM ops.webhook_replay_attempts ORDER BY attempt",
    )
    assert [(n, at, code) for n, at, code in attempts] == [
        (n + 1, t, 500) for n, t in enumerate(tries)
    ]
    [(reason, count)] = rows(
        ops_url, "SELECT reason, attempts FROM ops.webhook_dead_letters WHERE event_id = %s",
        "sq-broken",
    )  # fmt: skip
    assert count == 5 and reason.startswith("the gateway answered HTTP 500")
    assert live_alerts(ops_url)["webhook-dead-letters:square"] == "high"


def test_a_deleted_zettle_subscription_is_handed_to_the_pos_sweep(
    params: dict[str, Any], deliveries_url: str, receiver: WebhookReceiver
) -> None:
    Seeder(deliveries_url, receiver).zettle(
        "zt-gone", "failed", timedelta(hours=72), http_status=503
    )
    name = f"t{uuid.uuid4().hex[:8]}"
    DeploymentSpec(pos_health_sweep, name, ()).to_runner().apply()

    result = reconcile(params, pos_sweep_deployment=f"pos-health-sweep/{name}")

    assert result.retries_over == {"zettle": 1}
    note = result.handed_on["zettle"]
    assert note.startswith(f"started pos-health-sweep/{name} run ")
    with get_client(sync_client=True) as client:
        [deployment] = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
        )
        [started] = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
        )
    assert str(started.id) == note.rsplit(" ", 1)[1]
    assert started.deployment_id == deployment.id
    assert "handed-on:zettle-subscription-deleted" in started.tags


def test_missing_columns_leave_checks_unrun_and_the_run_goes_on(
    save_blocks: Any, platform_db: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    # The runbook's own table: provider, status, http_status, payload (jsonb), created_at.
    params = blocks_for(save_blocks, receiver, platform_db, ops_url)

    state = webhook_reconciliation(**params, as_of=AT, dry_run=False, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert isinstance(result, ReconciliationResult)
    why = "public.webhook_delivery_attempts has no column"
    assert result.unchecked == {
        "failed deliveries": f"{why} event_id",
        "signature audit": f"{why} event_id, raw_body, signature",
        "replay": f"{why} event_id, raw_body",
    }
    assert result.health  # the runbook's query still runs
    assert any("(created_at) INCLUDE (provider, status)" in s for s in result.missing_indexes)
    report = str(artifact_data(state.state_details.flow_run_id, "webhook-reconciliation"))
    assert "## Not checked" in report and "## Missing indexes" in report
    assert receiver.received() == []


def test_indexes_are_created_only_when_the_block_says_so(
    save_blocks: Any, deliveries_url: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    def indexes() -> set[str]:
        found = rows(
            deliveries_url,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'webhook_delivery_attempts'",
        )
        return {name for (name,) in found} - {"webhook_delivery_attempts_pkey"}

    plain = blocks_for(save_blocks, receiver, deliveries_url, ops_url)
    assert len(reconcile(plain).missing_indexes) == 3
    assert indexes() == set()

    creating = blocks_for(
        save_blocks, receiver, deliveries_url, ops_url, WEBHOOK_CREATE_INDEXES="true"
    )
    assert reconcile(creating).missing_indexes == []
    assert indexes() == {
        "webhook_delivery_attempts_created_at_idx",
        "webhook_delivery_attempts_failed_idx",
        "webhook_delivery_attempts_event_idx",
    }
    assert reconcile(plain).missing_indexes == []  # found as made


# --- the manual replay -----------------------------------------------------------------------


def test_a_manual_replay_of_more_than_100_waits_for_approval_then_sends_what_it_counted(
    params: dict[str, Any], deliveries_url: str, ops_url: str, receiver: WebhookReceiver
) -> None:
    seed = Seeder(deliveries_url, receiver)
    now = datetime.now(STOCKHOLM)
    for n in range(120):
        seed.square(f"sq-m-{n:03}", "failed", minutes(30), http_status=503, at=now)
    seed.shopify("shop-m", "failed", minutes(30), http_status=503, at=now)
    window = {"since": (now - minutes(60)).replace(tzinfo=None), "provider": "square"}
    outcome: dict[str, Any] = {}
    tag = f"test-{uuid.uuid4().hex[:8]}"

    def run() -> None:
        with tags(tag):
            outcome["state"] = webhook_replay(**params, **window, dry_run=False, return_state=True)

    worker = threading.Thread(target=run)
    worker.start()
    paused = paused_run(tag)
    form = approval_form(paused)
    assert form.startswith("Replay 120 failed webhook events (square 120)")
    assert receiver.received() == [], "nothing is sent before approval"
    seed.square("sq-m-late", "failed", minutes(1), http_status=503, at=now)  # not counted
    resume_flow_run(paused.id, run_input={"approve": True, "approved_by": "Lena"})
    worker.join(timeout=120)

    result = outcome["state"].result()
    assert isinstance(result, ReplayResult)
    assert (result.outcome, result.decided_by, result.replayed) == ("replayed", "Lena", 120)
    assert accepted(receiver) == {
        "square": [f"sq-m-{n:03}" for n in range(120)],
        "shopify": [],
        "zettle": [],
    }
    # The same events again: the guard holds, whoever asks.
    receiver.reset()
    again = webhook_replay(**params, **window, dry_run=False)
    assert receiver.accepted_ids("square") == ["sq-m-late"]
    assert again.skipped == {"already delivered by a replay": 120}


def test_a_manual_replay_filters_by_failure_and_defaults_to_a_dry_run(
    params: dict[str, Any], deliveries_url: str, receiver: WebhookReceiver
) -> None:
    seed = Seeder(deliveries_url, receiver)
    now = datetime.now(STOCKHOLM)
    seed.square("sq-a", "failed", minutes(30), http_status=503, at=now)
    seed.square("sq-b", "failed", minutes(30), at=now)
    since = (now - minutes(60)).replace(tzinfo=None)

    dry = webhook_replay(**params, since=since)
    assert (dry.outcome, dry.would_replay) == ("dry run", 2)
    assert receiver.received() == []

    done = webhook_replay(**params, since=since, failures=["no answer"], dry_run=False)
    assert (done.outcome, done.replayed) == ("replayed", 1)
    assert receiver.accepted_ids("square") == ["sq-b"]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"since": datetime(2026, 11, 10, 12), "until": datetime(2026, 11, 10, 11)},
         "must be before"),
        ({"since": datetime(2099, 1, 1)}, "is in the future"),
        ({"since": datetime(2026, 11, 10), "failures": []}, "failures is empty"),
    ],
)  # fmt: skip
def test_a_manual_replay_refuses_a_bad_window_before_anything(
    params: dict[str, Any], receiver: WebhookReceiver, window: dict[str, Any], message: str
) -> None:
    state = webhook_replay(**params, **window, dry_run=False, return_state=True)
    assert state.is_failed()
    assert message in str(state.message)
    assert "\n" not in str(state.message)
    assert receiver.received() == []
