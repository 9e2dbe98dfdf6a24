"""PagerDuty Events API v2: the exact documented events, and PagerDuty's answers."""

from __future__ import annotations

import dataclasses

import pytest
from support.receivers import HttpRecorder, closed_port

from blocks.channels import ChannelError, Delivery, Message, PagerDutyEventsChannel

ROUTING_KEY = "R0UT1NGKEYfeedbackops0000000a1b2"  # 32 characters, like PagerDuty's


def _pagerduty(recorder: HttpRecorder) -> PagerDutyEventsChannel:
    return PagerDutyEventsChannel(ROUTING_KEY, events_url=f"{recorder.url}/v2/enqueue", timeout=5)


def _assert_secret_free(err: ChannelError) -> None:
    for shown in (str(err), repr(err)):
        assert ROUTING_KEY not in shown and ROUTING_KEY[:-4] not in shown
    assert "\n" not in str(err)


def test_trigger_is_the_documented_event(http_recorder: HttpRecorder, alert: Message) -> None:
    delivery = _pagerduty(http_recorder).send(alert, recipients=["ignored@example.se"])

    assert delivery == Delivery("pagerduty", (), 202, "DATABASE_CONNECTION_LOST:platform")
    [request] = http_recorder.requests("/v2/enqueue")
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "DATABASE_CONNECTION_LOST:platform",
        "payload": {
            "summary": "Database connection lost",
            "source": "feedback-ops",
            "severity": "critical",
            "timestamp": "2026-11-27T10:30:15+00:00",
            "custom_details": {
                "body": "database_connections == 0 for 2 minutes. Complete service outage.",
                "database": "platform",
                "connections": 0,
            },
        },
        "links": [{"href": "https://runbook.example/db#lost", "text": "Runbook"}],
        "client": "feedback-ops",
    }


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_follow_ups_carry_only_key_action_and_dedup_key(
    http_recorder: HttpRecorder, alert: Message, action: str
) -> None:
    follow_up = dataclasses.replace(alert, action=action)  # type: ignore[arg-type]

    delivery = _pagerduty(http_recorder).send(follow_up)

    assert delivery.provider_id == "DATABASE_CONNECTION_LOST:platform"
    [request] = http_recorder.requests("/v2/enqueue")
    assert request.json == {
        "routing_key": ROUTING_KEY,
        "event_action": action,
        "dedup_key": "DATABASE_CONNECTION_LOST:platform",
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info")],
)
def test_runbook_severities_map_to_pagerduty_severities(
    http_recorder: HttpRecorder, alert: Message, severity: str, expected: str
) -> None:
    _pagerduty(http_recorder).send(dataclasses.replace(alert, severity=severity))  # type: ignore[arg-type]

    [request] = http_recorder.requests("/v2/enqueue")
    assert request.json["payload"]["severity"] == expected


def test_summary_is_cut_to_1024_characters(http_recorder: HttpRecorder, alert: Message) -> None:
    _pagerduty(http_recorder).send(dataclasses.replace(alert, title="x" * 5000))

    [request] = http_recorder.requests("/v2/enqueue")
    assert len(request.json["payload"]["summary"]) == 1024


def test_invalid_event_400_is_permanent_and_quotes_the_errors(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.fail(
        "/v2/enqueue",
        400,
        {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["'payload.summary' is missing or blank"],
        },
    )

    with pytest.raises(ChannelError) as caught:
        _pagerduty(http_recorder).send(alert)

    err = caught.value
    assert (err.channel, err.transient, err.status) == ("pagerduty", False, 400)
    assert str(err) == (
        "pagerduty: PagerDuty (routing key ...a1b2) answered HTTP 400: invalid event: "
        "Event object is invalid; 'payload.summary' is missing or blank"
    )
    _assert_secret_free(err)


def test_an_error_that_echoes_the_routing_key_is_redacted(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.fail(
        "/v2/enqueue",
        400,
        {"status": "invalid event", "message": f"Unknown routing key {ROUTING_KEY}"},
    )

    with pytest.raises(ChannelError) as caught:
        _pagerduty(http_recorder).send(alert)

    assert "Unknown routing key [redacted]" in str(caught.value)
    _assert_secret_free(caught.value)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(429, {"Retry-After": "2"}, 2.0), (500, {}, None), (503, {}, None)],
)
def test_throttling_and_server_errors_are_transient(
    http_recorder: HttpRecorder,
    alert: Message,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    http_recorder.fail("/v2/enqueue", status, "", headers=headers)

    with pytest.raises(ChannelError) as caught:
        _pagerduty(http_recorder).send(alert)

    assert (caught.value.transient, caught.value.status) == (True, status)
    assert caught.value.retry_after == retry_after
    _assert_secret_free(caught.value)


def test_unreachable_events_api_is_transient(alert: Message) -> None:
    port = closed_port()
    channel = PagerDutyEventsChannel(ROUTING_KEY, f"http://127.0.0.1:{port}/v2/enqueue")

    with pytest.raises(ChannelError) as caught:
        channel.send(alert)

    assert caught.value.transient
    assert "(connection refused)" in str(caught.value)
    _assert_secret_free(caught.value)


def test_repr_shows_only_the_last_four_characters_of_the_key() -> None:
    shown = repr(PagerDutyEventsChannel(ROUTING_KEY))
    assert ROUTING_KEY not in shown and "...a1b2" in shown
