"""dr-watchdog against the gateway's fake on loopback, real PostgreSQL (the platform's
database, or a port where nothing listens, and the ops catalog), PagerDuty and Slack
receivers, and the session's Prefect server, whose event stream is read over its
websocket. Time is the run's `as_of`: the minutes before a run are observations written
to the catalog as earlier runs would have (most cases are in the policy's own tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.events import Event, emit_event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter
from pydantic import SecretStr
from support.gateway_fake import GatewayFake
from support.net import wait_until
from support.receivers import HttpRecorder, closed_port

from blocks import PlatformGateway, PostgresDatabase, run_only_blocks
from blocks.catalog import dr_runs, opened
from blocks.catalog.dr_watch import record_observations
from blocks.channels import AlertChannels, PagerDutyAlerts, SlackAlerts, SmsAlerts
from flows.dr_watchdog import DR_TRIGGER_EVENT, WatchdogResult, dr_watchdog, scenario_resource
from policy import STOCKHOLM
from policy.dr_triggers import DATABASE_CHECK, ERROR_RATE_CHECK, PRIMARY_REGION_CHECK, Observation

START = datetime(2027, 3, 10, 10, 3, tzinfo=STOCKHOLM)  # a Wednesday, business hours
MINUTE = timedelta(minutes=1)
ROUTING_KEY = "R0UT1NGKEY0000000000000000000dr1"
SENTINEL = "feedback-ops.dr.test-sentinel"
PARAMS = {
    "gateway_block": "dr-gateway",
    "database_block": "dr-platform",
    "ops_database_block": "dr-ops",
    "alert_channels_block": "dr-alerts",
}


@pytest.fixture(scope="module")
def _gateway() -> Iterator[GatewayFake]:
    with GatewayFake() as fake:
        yield fake


@pytest.fixture
def gateway(_gateway: GatewayFake) -> GatewayFake:
    _gateway.reset()
    return _gateway


@pytest.fixture
def ops_url(db_factory: Any) -> str:
    return str(db_factory())


@pytest.fixture
def blocks(
    gateway: GatewayFake, ops_url: str, http_recorder: HttpRecorder
) -> Iterator[dict[str, Any]]:
    """The watchdog's blocks for this process alone; the database block answers (the
    ops catalog's database stands in for the platform's) until a test swaps it."""
    ops = PostgresDatabase.from_url(ops_url)
    channels = AlertChannels(
        slack=SlackAlerts(webhook_url=SecretStr(f"{http_recorder.url}/slack/T0/B0/dr")),
        pagerduty=PagerDutyAlerts(
            routing_key=SecretStr(ROUTING_KEY), events_url=f"{http_recorder.url}/v2/enqueue"
        ),
        sms=SmsAlerts(
            provider="46elks",
            username="u0123456789",
            password=SecretStr("elks-api-pa55"),
            sender="AIFeedback",
            recipients=["+46701234567"],
            api_url=f"{http_recorder.url}/a1/sms",
        ),
    )
    configured: dict[str, Any] = {
        "dr-gateway": PlatformGateway(url=gateway.url, attempts=3, backoff_seconds=0),
        "dr-platform": ops,
        "dr-ops": ops,
        "dr-alerts": channels,
    }
    with run_only_blocks(configured):
        yield configured


class DrEvents:
    """The session server's DR trigger events, as its websocket streams them out."""

    def __init__(self) -> None:
        self.received: list[Event] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    def __enter__(self) -> DrEvents:
        self._thread.start()
        assert self._ready.wait(15), "could not subscribe to the server's events"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)

    async def _listen(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        only_ours = EventFilter(event=EventNameFilter(name=[DR_TRIGGER_EVENT]))
        async with get_events_subscriber(filter=only_ours) as subscriber:
            self._ready.set()
            stopping = asyncio.ensure_future(self._stop.wait())
            while not self._stop.is_set():
                receiving = asyncio.ensure_future(subscriber.__anext__())
                done, _ = await asyncio.wait(
                    {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving in done:
                    self.received.append(receiving.result())
                else:
                    receiving.cancel()

    def settled(self) -> list[Event]:
        """Every DR event the flow runs so far emitted: a sentinel emitted now, on the
        same connection, arrives after all of them."""
        emit_event(DR_TRIGGER_EVENT, resource={"prefect.resource.id": SENTINEL})
        wait_until(
            lambda: any(e.resource.id == SENTINEL for e in self.received),
            timeout=15,
            what="the sentinel event",
        )
        events = [e for e in self.received if e.resource.id != SENTINEL]
        self.received.clear()
        return events


@pytest.fixture
def dr_events() -> Iterator[DrEvents]:
    with DrEvents() as events:
        yield events


def seed(ops_url: str, observations: list[Observation]) -> None:
    """Observations as the runs of the minutes before would have recorded them."""
    with opened(PostgresDatabase.from_url(ops_url)) as engine:
        record_observations(engine, observations, "earlier-run")


def minutes(check: str, ok: bool, count: int, value: float | None = None) -> list[Observation]:
    return [Observation(check, START + n * MINUTE, ok, value) for n in range(count)]


def watch(at: datetime) -> WatchdogResult:
    state = dr_watchdog(**PARAMS, as_of=at, return_state=True)
    assert state.is_completed(), f"the watchdog did not complete: {state.message}"
    result = state.result()
    assert isinstance(result, WatchdogResult)
    return result


def newest_artifact() -> str:
    """The markdown of the newest `dr-watchdog` artifact."""
    with get_client(sync_client=True) as client:
        [found] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dr-watchdog"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return str(found.data)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


def triggers(ops_url: str) -> list[tuple[Any, ...]]:
    return rows(
        ops_url,
        "SELECT trigger, scenario, fired_at, cleared_at IS NOT NULL, event_id "
        "FROM ops.dr_triggers ORDER BY id",
    )


def pages(http_recorder: HttpRecorder) -> list[tuple[str, str]]:
    """(event_action, dedup_key) of each PagerDuty event sent."""
    return [
        (r.json["event_action"], r.json["dedup_key"]) for r in http_recorder.requests("/v2/enqueue")
    ]


def holds(result: WatchdogResult) -> dict[str, bool]:
    return {r.trigger: r.holds for r in result.triggers}


def test_primary_region_four_minutes_down_waits_over_five_fires_once_and_clears(
    gateway: GatewayFake,
    blocks: dict[str, Any],
    ops_url: str,
    http_recorder: HttpRecorder,
    dr_events: DrEvents,
) -> None:
    seed(ops_url, minutes(PRIMARY_REGION_CHECK, False, 4))  # 10:03-10:06 unavailable
    gateway.fail("GET", "/health", status=503, times=3)  # the next three runs

    below = watch(START + 4 * MINUTE)

    region = below.triggers[0]
    assert (region.trigger, region.holds, region.action) == (
        "primary-region-unavailable",
        False,
        "",
    )
    assert region.why == (
        "primary region unavailable for 4 min 0 s since 10:03:00 (fires after 5 min 0 s)"
    )
    assert region.observed.startswith("gateway: GET /health at ")
    assert "503" in region.observed
    assert len(gateway.requests("/health")) == 1  # one sample, not the block's 3 attempts
    assert triggers(ops_url) == [] and pages(http_recorder) == []

    fired_at = START + 5 * MINUTE + timedelta(seconds=30)
    crossed = watch(fired_at)

    assert crossed.fired == ["primary-region-unavailable"]
    assert holds(crossed) == {
        "primary-region-unavailable": True,
        "database-connection-failures": False,
        "error-rate-high": False,
    }
    [(trigger, scenario, at, cleared, event_id)] = triggers(ops_url)
    assert (trigger, scenario, at, cleared) == (
        "primary-region-unavailable",
        "regional-failover",
        fired_at,
        False,
    )
    assert event_id == crossed.triggers[0].event_id is not None
    table = newest_artifact()
    assert "| check | observed | trigger | holds | why | action |" in table
    assert (
        "| primary-region-unavailable | **yes** | primary region unavailable for 5 min 30 s "
        "since 10:03:00 | fired |"
    ) in table
    assert "| database | ok (" in table
    assert "| error-rate | no /health answer | error-rate-high | no |" in table
    assert pages(http_recorder) == [("trigger", "dr-trigger:primary-region-unavailable")]
    [page] = http_recorder.requests("/v2/enqueue")
    assert page.json["payload"]["severity"] == "critical"
    assert page.json["payload"]["summary"].startswith(
        "Automated failover trigger: primary region unavailable for 5 min 30 s since 10:03:00."
    )
    assert page.json["payload"]["custom_details"]["runbook"] == "Disaster Recovery"
    [slack] = http_recorder.requests("/slack/")
    assert "dr-regional-failover" in str(slack.json)
    [sms] = http_recorder.requests("/a1/sms")
    assert sms.form is not None and sms.form["message"].startswith("[CRITICAL] Automated failover")
    [event] = dr_events.settled()
    assert str(event.id) == event_id
    assert event.event == DR_TRIGGER_EVENT
    assert event.resource.id == scenario_resource("regional-failover")
    assert event.resource.id == "feedback-ops.dr.regional-failover"
    assert event.payload == {
        "trigger": "primary-region-unavailable",
        "scenario": "regional-failover",
        "why": "primary region unavailable for 5 min 30 s since 10:03:00",
        "observed_at": fired_at.isoformat(),
        "since": START.isoformat(),
        "fired_at": fired_at.isoformat(),
    }

    still = watch(fired_at + MINUTE)

    assert still.fired == [] and still.triggers[0].holds
    assert still.triggers[0].action == "live since 2027-03-10 10:08:30"
    assert len(triggers(ops_url)) == 1
    assert pages(http_recorder) == [("trigger", "dr-trigger:primary-region-unavailable")]
    assert dr_events.settled() == []

    back = watch(fired_at + 2 * MINUTE)  # /health answers healthy again

    assert back.cleared == ["primary-region-unavailable"]
    assert back.triggers[0].why == "primary region available at 10:10:30"
    assert [t[3] for t in triggers(ops_url)] == [True]
    assert pages(http_recorder)[-1] == ("resolve", "dr-trigger:primary-region-unavailable")
    assert rows(ops_url, "SELECT dedup_key, status FROM ops.alerts") == [
        ("dr-trigger:primary-region-unavailable", "resolved")
    ]
    assert rows(
        ops_url,
        "SELECT count(*), count(*) FILTER (WHERE NOT ok) FROM ops.dr_observations "
        "WHERE check_name = 'primary-region'",
    ) == [(8, 7)]


def test_database_failures_and_error_rate_fire_their_scenarios_after_their_thresholds(
    gateway: GatewayFake,
    blocks: dict[str, Any],
    ops_url: str,
    http_recorder: HttpRecorder,
    dr_events: DrEvents,
) -> None:
    blocks["dr-platform"] = PostgresDatabase(port=closed_port(), connect_timeout=2)
    gateway.error_rate = 0.6
    seed(
        ops_url,
        minutes(DATABASE_CHECK, False, 2)  # 10:03, 10:04
        + minutes(ERROR_RATE_CHECK, False, 2, 0.6)
        + minutes(PRIMARY_REGION_CHECK, True, 2),
    )

    with run_only_blocks(blocks):
        below = watch(START + 2 * MINUTE)  # 3 failures; 2 min at 60 %
        crossed = watch(START + 3 * MINUTE)  # 4 failures; 3 min at 60 %

    assert holds(below) == dict.fromkeys(holds(below), False)
    assert below.triggers[1].why == (
        "3 consecutive database connection failures since 10:03:00 (fires after more than 3)"
    )
    assert "is unreachable: connection refused" in below.triggers[1].observed
    assert below.triggers[2].observed == "60.0 %"
    assert crossed.fired == ["database-connection-failures", "error-rate-high"]
    assert crossed.triggers[1].why == "4 consecutive database connection failures since 10:03:00"
    assert crossed.triggers[2].why == (
        "error rate above 50 % for 3 min 0 s since 10:03:00 in business hours (now 60 %)"
    )
    assert [(t[0], t[1], t[3]) for t in triggers(ops_url)] == [
        ("database-connection-failures", "database-loss", False),
        ("error-rate-high", "regional-failover", False),
    ]
    assert sorted(pages(http_recorder)) == [
        ("trigger", "dr-trigger:database-connection-failures"),
        ("trigger", "dr-trigger:error-rate-high"),
    ]
    events = dr_events.settled()
    assert sorted((e.resource.id, e.payload["trigger"]) for e in events) == [
        ("feedback-ops.dr.database-loss", "database-connection-failures"),
        ("feedback-ops.dr.regional-failover", "error-rate-high"),
    ]
    assert sorted(str(e.id) for e in events) == sorted(t[4] for t in triggers(ops_url))


def test_a_dr_run_in_maintenance_mode_holds_the_triggers_back(
    gateway: GatewayFake,
    blocks: dict[str, Any],
    ops_url: str,
    http_recorder: HttpRecorder,
    dr_events: DrEvents,
) -> None:
    seed(ops_url, minutes(PRIMARY_REGION_CHECK, False, 8))
    gateway.fail("GET", "/health", status=503, times=1)
    with opened(PostgresDatabase.from_url(ops_url)) as engine:
        dr_runs.maintenance_opened(
            engine,
            flow_run_id="run-db-loss",
            gateway_url=gateway.url,
            reason="database_recovery",
            at=START,
        )

    result = watch(START + 8 * MINUTE)

    region = result.triggers[0]
    assert region.holds and result.fired == []
    assert region.action == (
        "held back: maintenance mode is on by DR run run-db-loss since 2027-03-10 10:03:00 "
        "(database_recovery)"
    )
    assert triggers(ops_url) == [] and pages(http_recorder) == []
    assert dr_events.settled() == []


def test_without_a_gateway_url_the_run_fails_saying_so_and_observes_nothing(
    blocks: dict[str, Any], ops_url: str
) -> None:
    blocks["dr-gateway"] = PlatformGateway()

    with run_only_blocks(blocks):
        state = dr_watchdog(**PARAMS, as_of=START, return_state=True)

    assert state.is_failed()
    assert "GATEWAY_URL is not set" in str(state.result(raise_on_failure=False))
    assert rows(ops_url, "SELECT to_regclass('ops.dr_observations') IS NULL") == [(True,)]
