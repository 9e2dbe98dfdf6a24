"""Alert channel settings from the environment: what is configured, and clear errors."""

from __future__ import annotations

import pytest

from blocks.channels import AlertChannels, EmailAlerts, PagerDutyAlerts, SlackAlerts, SmsAlerts
from blocks.channels.contacts import EscalationContacts
from feedback_ops.config import blocks_from_env
from feedback_ops.errors import ConfigError
from policy import Channel

SLACK = "https://hooks.slack.com/services/T000/B000/abcdefghijkl"


def test_no_channel_variables_means_no_channel_blocks() -> None:
    names = set(blocks_from_env({}))
    assert names == {
        "platform-postgres",
        "ops-postgres",
        "platform-redis",
        "backup-storage",
        "escalation-contacts",
        "pos-providers",
        "platform-gateway",
        "config-backup-key",
        "webhook-deliveries",
        "alert-channels",
    }


def test_every_channel_from_the_environment() -> None:
    blocks = blocks_from_env(
        {
            "SLACK_WEBHOOK_URL": SLACK,
            "SMTP_HOST": "smtp.ai-feedback.se",
            "SMTP_PORT": "2525",
            "SMTP_USERNAME": "alerts",
            "SMTP_PASSWORD": "smtp-pw-17",
            "SMTP_FROM": "alerts@ai-feedback.se",
            "ALERT_EMAIL_TO": "devops@ai-feedback.se, cto@ai-feedback.se",
            "SMTP_STARTTLS": "true",
            "PAGERDUTY_ROUTING_KEY": "R0UT1NG",
            "SMS_USERNAME": "u123",
            "SMS_PASSWORD": "elks-pw-42",
            "SMS_FROM": "AIFeedback",
            "SMS_TO": "+46701234567",
            "ESCALATION_CONTACTS": '{"CTO": {"phone": "+46700000003"}}',
        }
    )
    slack = blocks["slack-alerts"]
    assert isinstance(slack, SlackAlerts)
    assert slack.webhook_url.get_secret_value() == SLACK
    email = blocks["email-alerts"]
    assert isinstance(email, EmailAlerts)
    assert (email.host, email.port, email.starttls) == ("smtp.ai-feedback.se", 2525, True)
    assert email.recipients == ["devops@ai-feedback.se", "cto@ai-feedback.se"]
    assert isinstance(blocks["pagerduty-alerts"], PagerDutyAlerts)
    sms = blocks["sms-alerts"]
    assert isinstance(sms, SmsAlerts) and sms.provider == "46elks"
    contacts = blocks["escalation-contacts"]
    assert isinstance(contacts, EscalationContacts)
    cto = contacts.for_role("cto")
    assert cto is not None and cto.phone == "+46700000003"
    for block in blocks.values():
        for secret in ("abcdefghijkl", "R0UT1NG", "elks-pw-42", "smtp-pw-17"):
            assert secret not in repr(block)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T/B/x"},
            "SLACK_WEBHOOK_URL (block 'slack-alerts'): slack: the Slack webhook URL must be "
            "an https:// URL with a host name",
        ),
        ({"SMTP_HOST": "smtp.x.se"}, "SMTP_FROM must be set, as SMTP_HOST is"),
        (
            {"SMTP_HOST": "smtp.x.se", "SMTP_FROM": "a@x.se"},
            "ALERT_EMAIL_TO must be set, as SMTP_HOST is",
        ),
        (
            {"SMTP_HOST": "h", "SMTP_PORT": "twenty-five"},
            "SMTP_PORT must be a whole number, got 'twenty-five'",
        ),
        (
            {"SMTP_HOST": "h", "SMTP_STARTTLS": "maybe"},
            "SMTP_STARTTLS must be true or false, got 'maybe'",
        ),
        ({"PAGERDUTY_ROUTING_KEY": ""}, "PAGERDUTY_ROUTING_KEY must be set"),
        ({"SMS_USERNAME": "u"}, "SMS_PASSWORD must be set, as SMS_USERNAME is"),
        (
            {"ESCALATION_CONTACTS": "{bad"},
            "ESCALATION_CONTACTS is not valid JSON: Expecting property name enclosed in "
            "double quotes",
        ),
        (
            {"ESCALATION_CONTACTS": "[]"},
            'ESCALATION_CONTACTS must be a JSON object: {"DevOps": {...}, ...}',
        ),
    ],
)
def test_bad_channel_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        blocks_from_env(env)
    assert str(caught.value) == message


def test_the_alert_channels_block_holds_the_very_channel_blocks_that_are_saved() -> None:
    """The same objects, so that once each channel is saved, the set refers to it."""
    blocks = blocks_from_env({"SLACK_WEBHOOK_URL": SLACK, "PAGERDUTY_ROUTING_KEY": "R0UT1NG"})
    channels = blocks["alert-channels"]
    assert isinstance(channels, AlertChannels)
    assert channels.slack is blocks["slack-alerts"]
    assert channels.pagerduty is blocks["pagerduty-alerts"]
    assert channels.contacts is blocks["escalation-contacts"]
    assert (channels.email, channels.sms) == (None, None)
    assert list(blocks)[-1] == "alert-channels"  # saved after what it refers to
    assert channels.configured(Channel.SLACK) and not channels.configured(Channel.SMS)
    with pytest.raises(ConfigError) as caught:
        channels.sender(Channel.EMAIL)
    assert str(caught.value) == "email is not configured: set SMTP_HOST and ALERT_EMAIL_TO"
