"""What the channels share: the message's rules, the error's classification and pickling."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from blocks.channels import ChannelError, Delivery, Message, TransientChannelError
from blocks.channels.base import mask_phone, parse_retry_after
from feedback_ops.errors import OpsError, TransientError
from tasks import is_transient

NOW = datetime(2026, 6, 19, 9, 0, tzinfo=UTC)  # Midsommarafton


def test_message_title_is_one_line_and_details_default_empty() -> None:
    message = Message("POS  provider\n down", "body", "high", "POS_DOWN:square", NOW)

    assert message.title == "POS provider down"
    assert (message.action, message.source, dict(message.details)) == (
        "trigger",
        "feedback-ops",
        {},
    )
    assert message.label == "[HIGH]"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"timestamp": datetime(2026, 6, 19, 9, 0)}, "timezone-aware"),
        ({"severity": "urgent"}, "severity"),
        ({"action": "escalate"}, "action"),
        ({"title": " \n "}, "title"),
        ({"dedup_key": "two\nlines"}, "dedup_key"),
        ({"dedup_key": "k" * 256}, "255"),
    ],
)
def test_message_rejects_what_a_provider_would(changes: dict[str, object], problem: str) -> None:
    fields: dict[str, object] = {
        "title": "t",
        "body": "b",
        "severity": "low",
        "dedup_key": "k",
        "timestamp": NOW,
    }
    fields.update(changes)
    with pytest.raises(ValueError, match=problem):
        Message(**fields)  # type: ignore[arg-type]


def test_transient_errors_are_transient_errors_for_the_retry_policy() -> None:
    transient = ChannelError("slack", "Slack is down", transient=True, status=503)
    permanent = ChannelError("slack", "no_service", status=404)

    assert isinstance(transient, TransientChannelError) and isinstance(transient, TransientError)
    assert is_transient(transient) and not is_transient(permanent)
    assert isinstance(permanent, OpsError) and not isinstance(permanent, TransientError)
    assert (transient.transient, permanent.transient) == (True, False)


def test_errors_survive_pickling_with_their_attributes() -> None:
    delivery = Delivery("sms", ("+46701234567",), 200, "s1")
    err = ChannelError(
        "sms",
        "46elks could not send to 1 of 2 recipients",
        transient=True,
        status=429,
        retry_after=2.0,
        failed_recipients=["+46709876543"],
        delivery=delivery,
    )

    copy = pickle.loads(pickle.dumps(err))

    assert type(copy) is TransientChannelError
    assert str(copy) == "sms: 46elks could not send to 1 of 2 recipients"
    assert (copy.status, copy.retry_after, copy.failed_recipients) == (429, 2.0, ("+46709876543",))
    assert copy.delivery == delivery


def test_messages_are_one_line() -> None:
    assert str(ChannelError("email", "line one\n  line two")) == "email: line one line two"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = parse_retry_after("Fri, 19 Jun 2026 09:00:30 GMT", now=NOW)
    assert later == 30.0


def test_phone_numbers_are_masked_but_for_three_digits() -> None:
    assert mask_phone("+46701234567") == "+********567"
