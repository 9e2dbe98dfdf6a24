"""The alert channel blocks: their slugs, the clients they build, no secrets shown.

Prefect's block standards are checked for every block in tests/blocks.
"""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from support.receivers import HttpRecorder

from blocks.channels import (
    AlertSender,
    EmailAlerts,
    FortySixElksChannel,
    Message,
    PagerDutyAlerts,
    PagerDutyEventsChannel,
    SlackAlerts,
    SlackWebhookChannel,
    SmsAlerts,
    SmtpEmailChannel,
    TwilioChannel,
)

WEBHOOK_TOKEN = "T0FEEDB4CK/B0ALERTS1/blockWebhookSecret"
ROUTING_KEY = "R0UT1NGKEYblockstest000000000c3d4"
SMTP_PASSWORD = "smtp-block-pa55word"
SMS_PASSWORD = "sms-block-api-secret"


def test_slugs() -> None:
    assert [
        b.get_block_type_slug() for b in (SlackAlerts, EmailAlerts, PagerDutyAlerts, SmsAlerts)
    ] == [
        "feedback-ops-slack",
        "feedback-ops-email",
        "feedback-ops-pagerduty",
        "feedback-ops-sms",
    ]


def _blocks() -> list[Block]:
    return [
        SlackAlerts(webhook_url=f"https://hooks.slack.com/services/{WEBHOOK_TOKEN}"),
        EmailAlerts(
            host="smtp.ai-feedback.se",
            sender="alerts@ai-feedback.se",
            recipients=["devops@ai-feedback.se"],
            username="alerts",
            password=SMTP_PASSWORD,
        ),
        PagerDutyAlerts(routing_key=ROUTING_KEY),
        SmsAlerts(
            username="u-api-user",
            password=SMS_PASSWORD,
            sender="FeedbackOps",
            recipients=["+46701234567"],
        ),
    ]


def test_secrets_are_masked_wherever_a_block_or_its_client_is_shown() -> None:
    for block in _blocks():
        client = block.channel()  # type: ignore[attr-defined]
        assert isinstance(client, AlertSender)
        for shown in (repr(block), str(block), block.model_dump_json(), repr(client)):
            for secret in (WEBHOOK_TOKEN, ROUTING_KEY, SMTP_PASSWORD, SMS_PASSWORD):
                assert secret not in shown


def test_blocks_build_the_matching_clients() -> None:
    slack, email, pagerduty, sms = _blocks()
    assert isinstance(slack.channel(), SlackWebhookChannel)  # type: ignore[attr-defined]
    smtp = email.channel()  # type: ignore[attr-defined]
    assert isinstance(smtp, SmtpEmailChannel)
    assert (smtp.server, smtp.starttls, smtp.recipients) == (
        "smtp.ai-feedback.se:587",
        True,
        ("devops@ai-feedback.se",),
    )
    pd = pagerduty.channel()  # type: ignore[attr-defined]
    assert isinstance(pd, PagerDutyEventsChannel)
    assert pd.events_url == "https://events.pagerduty.com/v2/enqueue"
    elks = sms.channel()  # type: ignore[attr-defined]
    assert isinstance(elks, FortySixElksChannel)
    assert elks.api_url == "https://api.46elks.com/a1/sms"
    twilio = SmsAlerts(
        provider="twilio",
        username="AC0123",
        password="token",
        sender="+46766861004",
        recipients=["+46701234567"],
        api_url="https://twilio.internal/",
    ).channel()
    assert isinstance(twilio, TwilioChannel)
    assert twilio.messages_url == "https://twilio.internal/2010-04-01/Accounts/AC0123/Messages.json"


def test_a_block_built_client_delivers(http_recorder: HttpRecorder, alert: Message) -> None:
    block = SlackAlerts(webhook_url=f"{http_recorder.url}/slack/services/{WEBHOOK_TOKEN}")

    assert block.channel().send(alert).status_code == 200
    assert len(http_recorder.requests("/slack/")) == 1


def test_email_and_sms_blocks_need_recipients() -> None:
    with pytest.raises(ValueError, match="recipients"):
        EmailAlerts(host="smtp", sender="a@b.se", recipients=[])
    with pytest.raises(ValueError, match="recipients"):
        SmsAlerts(username="u", password="p", sender="FeedbackOps", recipients=[])
