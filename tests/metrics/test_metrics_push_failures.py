"""A push that fails never fails the flow, and never shows the Pushgateway's credentials:
a closed port, a Pushgateway that asks for basic auth (the credentials of the URL get
through; none, and it refuses), and no metrics block at all (nothing is pushed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from support.net import free_port, wait_until
from support.pushgateway import Pushgateway, pushgateway

from flows.alerting import alert_escalation

pytestmark = pytest.mark.xdist_group("metrics-push-failures")

USER, PASSWORD = "ops-metrics", "pa55-w0rd-never-logged"


@pytest.fixture(scope="module")
def guarded() -> Iterator[Pushgateway]:
    """A Pushgateway that takes only requests with basic auth USER:PASSWORD."""
    with pushgateway(USER, PASSWORD) as running:
        yield running


@pytest.fixture
def ops_db(db_factory: Callable[[], str]) -> str:
    """An empty database for this test's ops catalog."""
    return db_factory()


def escalate_with_metrics(save_blocks_as: Any, ops_url: str, pushgateway_url: str) -> Any:
    """One alert-escalation run (the cheapest flow that pushes) with PUSHGATEWAY_URL set
    as given; returns its final state."""
    env = {"DATABASE_URL": ops_url}
    if pushgateway_url:
        env["PUSHGATEWAY_URL"] = pushgateway_url
    saved = save_blocks_as(env, "ops-postgres", "alert-channels")
    metrics = f"{saved['ops-postgres']}-metrics"
    if pushgateway_url:
        metrics = save_blocks_as(env, "metrics-pushgateway")["metrics-pushgateway"]
    return alert_escalation(
        ops_database_block=saved["ops-postgres"],
        alert_channels_block=saved["alert-channels"],
        metrics_block=metrics,
        return_state=True,
    )


def run_logs(state: Any, expect: str | None = None) -> list[tuple[str, str]]:
    """The run's log lines as the Prefect API holds them: (level name, message); waits
    for one containing `expect`, as the logs reach the API in batches."""
    found: list[tuple[str, str]] = []

    def read() -> bool:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
            )
        found[:] = [(_level(log.level), log.message) for log in logs]
        return expect is None or any(expect in message for _, message in found)

    wait_until(read, timeout=10, what=f"a log line with {expect!r}")
    return found


def _level(number: int) -> str:
    return {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR"}.get(number, str(number))


def test_a_closed_port_is_one_warning_without_the_credentials_and_the_run_completes(
    save_blocks_as: Any, ops_db: str
) -> None:
    port = free_port()
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"

    state = escalate_with_metrics(save_blocks_as, ops_db, url)

    assert state.is_completed(), state.message
    logs = run_logs(state, expect="Metrics not pushed")
    warnings = [message for level, message in logs if level == "WARNING"]
    assert warnings == [
        f"Metrics not pushed: the Pushgateway at 127.0.0.1:{port} did not take the metrics "
        "of alert-escalation: connection refused"
    ]
    for _, message in logs:
        assert PASSWORD not in message and USER not in message


def test_the_credentials_of_the_url_reach_a_pushgateway_that_asks_for_them(
    save_blocks_as: Any, ops_db: str, guarded: Pushgateway
) -> None:
    guarded.wipe()

    state = escalate_with_metrics(save_blocks_as, ops_db, guarded.url_with_credentials)

    assert state.is_completed(), state.message
    samples = [s for s in guarded.samples() if s.name == "feedback_ops_open_alerts"]
    assert {s.labels["severity"]: s.value for s in samples} == {
        "critical": 0,
        "high": 0,
        "medium": 0,
        "low": 0,
    }
    assert {s.labels["job"] for s in samples} == {"alert-escalation"}
    logs = run_logs(state, expect="Pushed 4 figure(s)")
    assert (
        "INFO",
        f"Pushed 4 figure(s) to the Pushgateway at 127.0.0.1:{guarded.port} as job "
        "alert-escalation, deployment none",
    ) in logs
    assert all(PASSWORD not in message for _, message in logs)


def test_without_the_credentials_the_refusal_is_a_warning(
    save_blocks_as: Any, ops_db: str, guarded: Pushgateway
) -> None:
    guarded.wipe()

    state = escalate_with_metrics(save_blocks_as, ops_db, guarded.url)

    assert state.is_completed(), state.message
    warnings = [
        m for level, m in run_logs(state, expect="Metrics not pushed") if level == "WARNING"
    ]
    assert warnings == [
        f"Metrics not pushed: the Pushgateway at 127.0.0.1:{guarded.port} did not take the "
        "metrics of alert-escalation: HTTP 401 Unauthorized"
    ]
    assert guarded.samples() == []


def test_no_metrics_block_pushes_nothing_and_says_nothing(save_blocks_as: Any, ops_db: str) -> None:
    state = escalate_with_metrics(save_blocks_as, ops_db, "")

    assert state.is_completed(), state.message
    logs = run_logs(state, expect="Escalated 0 alert(s)")
    assert [message for _, message in logs if "etrics" in message] == []
