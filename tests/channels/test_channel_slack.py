"""Slack incoming webhook: the documented payload, and how Slack's answers are classified."""

from __future__ import annotations

import dataclasses
import time

import pytest
from support.receivers import HttpRecorder, closed_port, silent_listener

from blocks.channels import AlertSender, ChannelError, Delivery, Message, SlackWebhookChannel
from feedback_ops.errors import ConfigError, TransientError

TOKEN = "T0FEEDB4CK/B0ALERTS1/xq9SecretWebhookToken"


def _slack(recorder: HttpRecorder, timeout: float = 5.0) -> SlackWebhookChannel:
    return SlackWebhookChannel(f"{recorder.url}/slack/services/{TOKEN}", timeout=timeout)


def _assert_secret_free(err: ChannelError) -> None:
    for shown in (str(err), repr(err), err.reason):
        assert TOKEN not in shown and "xq9Secret" not in shown and "/services/" not in shown
    assert "\n" not in str(err)


def test_trigger_posts_the_documented_block_kit_message(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    channel = _slack(http_recorder)
    assert isinstance(channel, AlertSender)

    delivery = channel.send(alert)

    assert delivery == Delivery("slack", (), 200, None)
    [request] = http_recorder.requests("/slack/")
    assert request.method == "POST"
    assert request.path == f"/slack/services/{TOKEN}"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    epoch = int(alert.timestamp.timestamp())
    assert request.json == {
        "text": "[CRITICAL] Database connection lost",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": ":red_circle: [CRITICAL] Database connection lost",
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "database_connections == 0 for 2 minutes. Complete service outage.",
                },
                "fields": [
                    {"type": "mrkdwn", "text": "*database*\nplatform"},
                    {"type": "mrkdwn", "text": "*connections*\n0"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "*Source:* feedback-ops"},
                    {"type": "mrkdwn", "text": "*Dedup key:* `DATABASE_CONNECTION_LOST:platform`"},
                    {
                        "type": "mrkdwn",
                        "text": f"<!date^{epoch}^{{date_short_pretty}} {{time_secs}}"
                        "|2026-11-27T10:30:15+00:00>",
                    },
                ],
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "<https://runbook.example/db#lost|Runbook>"},
            },
        ],
    }


def test_follow_ups_say_resolved_or_acknowledged(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    channel = _slack(http_recorder)
    channel.send(dataclasses.replace(alert, action="acknowledge"))
    channel.send(dataclasses.replace(alert, action="resolve", body="Connections back at 42."))

    ack, resolved = (r.json for r in http_recorder.requests("/slack/"))
    assert ack["text"] == "Acknowledged: [ACKNOWLEDGED] Database connection lost"
    assert ack["blocks"][0]["text"]["text"].startswith(":eyes: Acknowledged:")
    assert resolved["text"] == "Resolved: [RESOLVED] Database connection lost"
    assert resolved["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved:")
    assert resolved["blocks"][1]["text"]["text"] == "Connections back at 42."


def test_escalation_recipients_and_mention_are_called_out(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    message = dataclasses.replace(alert, mention="@devops-team", body="a < b & c > d")

    delivery = _slack(http_recorder).send(message, recipients=["U024BE7LH", "@here"])

    assert delivery.recipients == ("@devops-team", "<@U024BE7LH>", "<!here>")
    [request] = http_recorder.requests("/slack/")
    tags = "@devops-team <@U024BE7LH> <!here>"
    assert request.json["text"] == f"[CRITICAL] Database connection lost {tags}"
    # Slack mrkdwn needs &, < and > as entities, or "<b & c>" would read as a link.
    assert request.json["blocks"][1]["text"]["text"] == f"{tags}\na &lt; b &amp; c &gt; d"


def test_no_service_404_is_permanent_and_quotes_slack(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.fail("/slack/", 404, "no_service")

    with pytest.raises(ChannelError) as caught:
        _slack(http_recorder).send(alert)

    err = caught.value
    assert str(err) == "slack: the Slack webhook answered HTTP 404: no_service"
    assert (err.channel, err.transient, err.status, err.retry_after) == ("slack", False, 404, None)
    assert not isinstance(err, TransientError)
    _assert_secret_free(err)


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, "invalid_payload"), (403, "action_prohibited"), (410, "channel_is_archived")],
)
def test_other_documented_4xx_are_permanent(
    http_recorder: HttpRecorder, alert: Message, status: int, body: str
) -> None:
    http_recorder.fail("/slack/", status, body)

    with pytest.raises(ChannelError) as caught:
        _slack(http_recorder).send(alert)

    assert (caught.value.transient, caught.value.status) == (False, status)
    assert body in str(caught.value)


def test_429_is_transient_with_retry_after(http_recorder: HttpRecorder, alert: Message) -> None:
    http_recorder.fail("/slack/", 429, "rate_limited", headers={"Retry-After": "2"})

    with pytest.raises(ChannelError) as caught:
        _slack(http_recorder).send(alert)

    err = caught.value
    assert (err.transient, err.status, err.retry_after) == (True, 429, 2.0)
    assert isinstance(err, TransientError)  # so the tasks' shared retry policy retries it
    assert str(err) == (
        "slack: the Slack webhook is rate limiting requests (HTTP 429: rate_limited); "
        "retry after 2 s"
    )
    _assert_secret_free(err)
    # The failure was scripted once: the next attempt goes through.
    assert _slack(http_recorder).send(alert).status_code == 200


def test_500_is_transient(http_recorder: HttpRecorder, alert: Message) -> None:
    http_recorder.fail("/slack/", 500, "rollup_error")

    with pytest.raises(ChannelError) as caught:
        _slack(http_recorder).send(alert)

    assert (caught.value.transient, caught.value.status) == (True, 500)
    _assert_secret_free(caught.value)


def test_connection_refused_is_transient(alert: Message) -> None:
    port = closed_port()
    channel = SlackWebhookChannel(f"http://127.0.0.1:{port}/slack/services/{TOKEN}")

    with pytest.raises(ChannelError) as caught:
        channel.send(alert)

    err = caught.value
    assert err.transient and err.status is None
    assert str(err) == (
        f"slack: could not reach the Slack webhook at 127.0.0.1:{port} (connection refused)"
    )
    _assert_secret_free(err)


def test_dropped_connection_is_transient(http_recorder: HttpRecorder, alert: Message) -> None:
    http_recorder.down("/slack/")

    with pytest.raises(ChannelError) as caught:
        _slack(http_recorder).send(alert)

    assert caught.value.transient
    assert "dropped the connection" in str(caught.value)
    assert len(http_recorder.requests("/slack/")) == 1
    _assert_secret_free(caught.value)


def test_no_answer_within_the_timeout_is_transient(alert: Message) -> None:
    with silent_listener() as port:
        channel = SlackWebhookChannel(
            f"http://127.0.0.1:{port}/slack/services/{TOKEN}", timeout=0.3
        )
        started = time.monotonic()
        with pytest.raises(ChannelError) as caught:
            channel.send(alert)

    assert time.monotonic() - started < 3
    assert caught.value.transient
    assert str(caught.value) == (
        f"slack: the Slack webhook at 127.0.0.1:{port}: no answer within 0.3 s"
    )


def test_the_webhook_url_stays_out_of_repr_and_config_errors() -> None:
    channel = SlackWebhookChannel(f"https://hooks.slack.com/services/{TOKEN}")
    assert TOKEN not in repr(channel) and "hooks.slack.com:443" in repr(channel)

    with pytest.raises(ConfigError) as caught:
        SlackWebhookChannel(f"hooks.slack.com/services/{TOKEN}")
    assert TOKEN not in str(caught.value)
