"""Email over SMTP: STARTTLS and login really used, headers and body, and SMTP failures."""

from __future__ import annotations

import dataclasses
import time

import pytest
from support.receivers import SmtpReceiver, closed_port, silent_listener

from blocks.channels import ChannelError, Message, SmtpEmailChannel

SENDER = "Feedback Ops <alerts@ai-feedback.se>"
DEVOPS = ("devops@ai-feedback.se",)


def _email(receiver: SmtpReceiver, **overrides: object) -> SmtpEmailChannel:
    settings: dict[str, object] = {
        "host": receiver.host,
        "port": receiver.port,
        "sender": SENDER,
        "recipients": DEVOPS,
        "username": receiver.username,
        "password": receiver.password,
        "ca_file": receiver.ca_file,
        "timeout": 5.0,
    }
    settings.update(overrides)
    return SmtpEmailChannel(**settings)  # type: ignore[arg-type]


def _assert_secret_free(err: ChannelError, receiver: SmtpReceiver) -> None:
    assert receiver.password not in str(err) and receiver.password not in repr(err)
    assert "\n" not in str(err)


def test_alert_goes_over_starttls_after_login_with_headers_and_body(
    smtp_receiver: SmtpReceiver, alert: Message
) -> None:
    delivery = _email(smtp_receiver).send(alert)

    [mail] = smtp_receiver.messages
    assert mail.tls is True and mail.login == "alerts"
    assert (mail.mail_from, mail.rcpt_tos) == ("alerts@ai-feedback.se", DEVOPS)
    message = mail.message
    assert message["Subject"] == "[CRITICAL] Database connection lost"
    assert message["From"] == SENDER
    assert message["To"] == "devops@ai-feedback.se"
    assert message["X-Feedback-Ops-Dedup-Key"] == "DATABASE_CONNECTION_LOST:platform"
    assert message["X-Feedback-Ops-Severity"] == "critical"
    assert message["X-Feedback-Ops-Action"] == "trigger"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Priority"] == "1"
    assert message["Message-ID"].endswith("@ai-feedback.se>")
    assert message["References"].startswith("<alert.") and message["In-Reply-To"] is None
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == (
        "database_connections == 0 for 2 minutes. Complete service outage.\n"
        "\n"
        "Severity:  CRITICAL\n"
        "Status:    triggered\n"
        "Source:    feedback-ops\n"
        "Detected:  2026-11-27 11:30:15 CET (2026-11-27T10:30:15+00:00)\n"
        "Dedup key: DATABASE_CONNECTION_LOST:platform\n"
        "\n"
        "Details:\n"
        "  database: platform\n"
        "  connections: 0\n"
        "\n"
        "Links:\n"
        "  Runbook: https://runbook.example/db#lost\n"
    )
    assert delivery.channel == "email" and delivery.recipients == DEVOPS
    assert delivery.provider_id == message["Message-ID"].strip()


def test_resolve_has_its_subject_and_continues_the_incident_thread(
    smtp_receiver: SmtpReceiver, alert: Message
) -> None:
    channel = _email(smtp_receiver)
    channel.send(alert)
    channel.send(dataclasses.replace(alert, action="resolve", body="Connections restored."))

    trigger, resolved = (m.message for m in smtp_receiver.messages)
    assert resolved["Subject"] == "[RESOLVED] Database connection lost"
    assert resolved["References"] == trigger["References"] == resolved["In-Reply-To"]
    assert resolved["Message-ID"] != trigger["Message-ID"]
    assert "Status:    resolved" in resolved.get_content()


def test_escalation_recipients_replace_the_configured_list(
    smtp_receiver: SmtpReceiver, alert: Message
) -> None:
    lead = ["engineering@ai-feedback.se", "cto@ai-feedback.se"]

    delivery = _email(smtp_receiver).send(alert, recipients=lead)

    [mail] = smtp_receiver.messages
    assert mail.rcpt_tos == tuple(lead) == delivery.recipients
    assert mail.message["To"] == "engineering@ai-feedback.se, cto@ai-feedback.se"


def test_wrong_password_is_a_permanent_login_failure(
    smtp_receiver: SmtpReceiver, alert: Message
) -> None:
    with pytest.raises(ChannelError) as caught:
        _email(smtp_receiver, password="not-" + smtp_receiver.password).send(alert)

    err = caught.value
    assert (err.channel, err.transient, err.status) == ("email", False, 535)
    assert str(err) == (
        f"email: SMTP login rejected for user alerts at {smtp_receiver.host}:"
        f"{smtp_receiver.port} (535 5.7.8 Authentication credentials invalid)"
    )
    _assert_secret_free(err, smtp_receiver)
    assert smtp_receiver.auth_attempts and not any(a.success for a in smtp_receiver.auth_attempts)
    assert smtp_receiver.messages == []


def test_unreachable_server_is_transient(alert: Message) -> None:
    port = closed_port()
    channel = SmtpEmailChannel("127.0.0.1", port, SENDER, DEVOPS, None, None)

    with pytest.raises(ChannelError) as caught:
        channel.send(alert)

    assert caught.value.transient
    assert str(caught.value) == (
        f"email: SMTP server 127.0.0.1:{port} is unreachable (connection refused)"
    )


def test_server_that_never_greets_times_out_transiently(alert: Message) -> None:
    with silent_listener() as port:
        channel = SmtpEmailChannel("127.0.0.1", port, SENDER, DEVOPS, None, None, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ChannelError) as caught:
            channel.send(alert)

    assert time.monotonic() - started < 3
    assert caught.value.transient
    assert "did not answer within 0.3 s" in str(caught.value)


def test_missing_starttls_is_permanent_when_required(alert: Message) -> None:
    with SmtpReceiver(tls=False) as plain:
        channel = SmtpEmailChannel(plain.host, plain.port, SENDER, DEVOPS, "alerts", "pw")
        with pytest.raises(ChannelError) as caught:
            channel.send(alert)
        assert plain.messages == [] and plain.auth_attempts == []

    assert not caught.value.transient
    assert "does not offer STARTTLS, which is required" in str(caught.value)


def test_certificate_from_an_unknown_ca_is_permanent(
    smtp_receiver: SmtpReceiver, alert: Message
) -> None:
    with pytest.raises(ChannelError) as caught:
        _email(smtp_receiver, ca_file=None).send(alert)

    assert not caught.value.transient
    assert "TLS certificate of SMTP server" in str(caught.value)
    assert "is not trusted" in str(caught.value)
    assert smtp_receiver.auth_attempts == []  # the password never left over plain text


def test_refused_recipients_are_named(smtp_receiver: SmtpReceiver, alert: Message) -> None:
    smtp_receiver.reject("gone@ai-feedback.se")

    with pytest.raises(ChannelError) as caught:
        _email(smtp_receiver).send(alert, recipients=["gone@ai-feedback.se"])

    err = caught.value
    assert (err.transient, err.status) == (False, 550)
    assert err.failed_recipients == ("gone@ai-feedback.se",)
    assert str(err) == (
        f"email: SMTP server {smtp_receiver.host}:{smtp_receiver.port} refused every "
        "recipient: gone@ai-feedback.se (550 5.1.1 Recipient address rejected)"
    )


def test_partly_refused_recipients_are_named_after_the_others_got_it(
    smtp_receiver: SmtpReceiver, alert: Message
) -> None:
    smtp_receiver.reject("busy@ai-feedback.se", "450 4.2.1 Mailbox busy, try later")

    with pytest.raises(ChannelError) as caught:
        _email(smtp_receiver).send(alert, recipients=["busy@ai-feedback.se", *DEVOPS])

    err = caught.value
    assert err.transient and err.status == 450
    assert err.failed_recipients == ("busy@ai-feedback.se",)
    assert err.delivery is not None and err.delivery.recipients == DEVOPS
    assert "refused 1 of 2 recipients: busy@ai-feedback.se (450" in str(err)
    [mail] = smtp_receiver.messages
    assert mail.rcpt_tos == DEVOPS


def test_repr_holds_no_password(smtp_receiver: SmtpReceiver) -> None:
    assert smtp_receiver.password not in repr(_email(smtp_receiver))
