"""Failed webhook deliveries: what a stored HTTP status means, which failures are
replayed, when each provider stops retrying, the replay backoff, and how loudly a high
failure rate is raised by Swedish period."""

from __future__ import annotations

import datetime as dt

import pytest

from policy import STOCKHOLM
from policy.response import Severity
from policy.webhooks import (
    MAX_REPLAY_ATTEMPTS,
    Failure,
    Signature,
    failure_of,
    failures_severity,
    next_replay_at,
    replayable,
    signature_severity,
    window_ended,
)

AT = dt.datetime(2027, 3, 10, 10, 0, tzinfo=STOCKHOLM)  # a Wednesday, business hours
MINUTE = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("http_status", "failure"),
    [
        (None, Failure.NO_ANSWER),
        (429, Failure.THROTTLED),
        (500, Failure.SERVER_ERROR),
        (503, Failure.SERVER_ERROR),
        (401, Failure.SIGNATURE),
        (403, Failure.SIGNATURE),
        (400, Failure.REFUSED),
        (422, Failure.REFUSED),
    ],
)
def test_failure_of_a_stored_http_status(http_status: int | None, failure: Failure) -> None:
    assert failure_of(http_status) is failure


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        (Signature.PREVIOUS_KEY, True),
        (Signature.CURRENT_KEY, True),
        (Signature.NO_KEY, False),
        (None, False),
    ],
)
def test_a_signature_rejection_is_replayed_only_under_a_known_key(
    signature: Signature | None, expected: bool
) -> None:
    assert replayable(Failure.SIGNATURE, signature) is expected


@pytest.mark.parametrize("signature", [None, *Signature])
def test_a_refused_payload_is_never_replayed(signature: Signature | None) -> None:
    assert replayable(Failure.REFUSED, signature) is False


@pytest.mark.parametrize("failure", [Failure.NO_ANSWER, Failure.SERVER_ERROR, Failure.THROTTLED])
@pytest.mark.parametrize("signature", [None, *Signature])
def test_no_answer_a_server_error_and_throttling_are_always_replayed(
    failure: Failure, signature: Signature | None
) -> None:
    assert replayable(failure, signature) is True


def test_a_possible_forgery_is_critical_and_a_known_key_high() -> None:
    assert signature_severity(Signature.NO_KEY) is Severity.CRITICAL
    assert signature_severity(Signature.PREVIOUS_KEY) is Severity.HIGH
    assert signature_severity(Signature.CURRENT_KEY) is Severity.HIGH


@pytest.mark.parametrize(
    ("provider", "window"),
    [
        ("shopify", dt.timedelta(hours=4)),
        ("zettle", dt.timedelta(hours=71, minutes=40)),
        ("square", dt.timedelta(hours=24)),
    ],
)
def test_the_retry_window_ends_exactly_at_its_edge(provider: str, window: dt.timedelta) -> None:
    first_failed = AT
    assert window_ended(provider, first_failed, first_failed + window - MINUTE) is False
    assert window_ended(provider, first_failed, first_failed + window) is True
    assert window_ended(provider, first_failed, first_failed + window + MINUTE) is True


def test_shopify_stops_retrying_after_four_hours() -> None:
    assert window_ended("shopify", AT, AT + dt.timedelta(hours=3, minutes=59)) is False
    assert window_ended("shopify", AT, AT + dt.timedelta(hours=4)) is True


def test_an_unknown_providers_window_never_ends() -> None:
    assert window_ended("clover", AT, AT + dt.timedelta(days=365)) is False


def test_replays_back_off_15_30_60_120_minutes_then_stop() -> None:
    waits = [next_replay_at(attempts, AT) for attempts in range(1, 5)]
    assert waits == [
        AT + dt.timedelta(minutes=15),
        AT + dt.timedelta(minutes=30),
        AT + dt.timedelta(minutes=60),
        AT + dt.timedelta(minutes=120),
    ]
    assert MAX_REPLAY_ATTEMPTS == 5
    assert next_replay_at(5, AT) is None
    assert next_replay_at(6, AT) is None


@pytest.mark.parametrize(
    ("at", "severity"),
    [
        (dt.datetime(2027, 3, 10, 10, 0, tzinfo=STOCKHOLM), Severity.HIGH),
        (dt.datetime(2027, 3, 10, 12, 0, tzinfo=STOCKHOLM), Severity.HIGH),
        (dt.datetime(2027, 3, 10, 23, 0, tzinfo=STOCKHOLM), Severity.MEDIUM),
        (dt.datetime(2027, 6, 25, 10, 0, tzinfo=STOCKHOLM), Severity.LOW),
        (dt.datetime(2027, 12, 25, 10, 0, tzinfo=STOCKHOLM), Severity.LOW),
    ],
    ids=[
        "wednesday 10:00",
        "wednesday peak",
        "wednesday 23:00",
        "midsommarafton 10:00",
        "juldagen 10:00",
    ],
)
def test_the_failure_rate_alert_is_loudest_while_businesses_are_open(
    at: dt.datetime, severity: Severity
) -> None:
    assert failures_severity(at) is severity


def test_the_period_is_taken_by_the_stockholm_clock() -> None:
    # 09:00 UTC on a March Wednesday is 10:00 CET: business hours.
    assert failures_severity(dt.datetime(2027, 3, 10, 9, 0, tzinfo=dt.UTC)) is Severity.HIGH
    # 22:00 UTC is 23:00 CET: off-hours.
    assert failures_severity(dt.datetime(2027, 3, 10, 22, 0, tzinfo=dt.UTC)) is Severity.MEDIUM
