"""Alert channel blocks: where alerts go (Slack, email, PagerDuty, SMS) and their secrets.

Each block builds the plain client of `tasks.channels` with `channel()`; webhook URLs,
routing keys, passwords and tokens are `SecretStr` fields, shown masked everywhere.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from feedback_ops.errors import ConfigError
from tasks.channels.base import DEFAULT_TIMEOUT
from tasks.channels.email import SmtpEmailChannel
from tasks.channels.pagerduty import EVENTS_URL, PagerDutyEventsChannel
from tasks.channels.slack import SlackWebhookChannel
from tasks.channels.sms import ELKS_URL, TWILIO_API_BASE, FortySixElksChannel, TwilioChannel

_TIMEOUT_DESCRIPTION = "Seconds to wait for the provider to connect and answer."


class SlackAlerts(Block):
    """The Slack alerts channel (#ai-feedback-swedish-alerts) through an incoming webhook.

    Example:
        Post an alert with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels import SlackAlerts

        alerts = SlackAlerts.load("BLOCK_NAME")
        alerts.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Slack Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-slack"
    _description: ClassVar[str] = "Slack incoming webhook for the platform's alert channel."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl("https://api.slack.com/messaging/webhooks")

    webhook_url: SecretStr = Field(
        description="Incoming webhook URL, https://hooks.slack.com/services/...; a secret.",
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=_TIMEOUT_DESCRIPTION)

    def channel(self) -> SlackWebhookChannel:
        """The Slack client for this webhook."""
        return SlackWebhookChannel(self.webhook_url.get_secret_value(), timeout=self.timeout)


class EmailAlerts(Block):
    """Email alerts (devops@ai-feedback.se) through an SMTP server with STARTTLS.

    Example:
        Email an alert with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels import EmailAlerts

        alerts = EmailAlerts.load("BLOCK_NAME")
        alerts.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Email Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-email"
    _description: ClassVar[str] = "SMTP server, sender and recipients of alert emails."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://docs.python.org/3/library/smtplib.html"
    )

    host: str = Field(description="SMTP server host name, as its TLS certificate names it.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587: submission).")
    sender: str = Field(description="From address, e.g. Feedback Ops <alerts@ai-feedback.se>.")
    recipients: list[str] = Field(
        min_length=1, description="Email addresses that receive every alert."
    )
    username: str | None = Field(default=None, description="SMTP login; empty for no AUTH.")
    password: SecretStr | None = Field(default=None, description="SMTP password.")
    starttls: bool = Field(
        default=True, description="Require STARTTLS; off only for a relay on the same host."
    )
    ca_file: str | None = Field(
        default=None, description="PEM file of a private CA to trust instead of the system's."
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=_TIMEOUT_DESCRIPTION)

    def channel(self) -> SmtpEmailChannel:
        """The SMTP client for this server and these recipients."""
        return SmtpEmailChannel(
            host=self.host,
            port=self.port,
            sender=self.sender,
            recipients=self.recipients,
            username=self.username or None,
            password=self.password.get_secret_value() if self.password is not None else None,
            starttls=self.starttls,
            ca_file=self.ca_file or None,
            timeout=self.timeout,
        )


class PagerDutyAlerts(Block):
    """PagerDuty incidents (after-hours critical alerts) through the Events API v2.

    Example:
        Page the on-call engineer with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels import PagerDutyAlerts

        pagerduty = PagerDutyAlerts.load("BLOCK_NAME")
        pagerduty.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops PagerDuty Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-pagerduty"
    _description: ClassVar[str] = "PagerDuty Events API v2 integration that pages on-call."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.pagerduty.com/docs/events-api-v2/trigger-events/"
    )

    routing_key: SecretStr = Field(
        description="Integration key of the service's Events API v2 integration; a secret."
    )
    events_url: str = Field(
        default=EVENTS_URL,
        description="Events API endpoint; https://events.eu.pagerduty.com/v2/enqueue in the EU.",
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=_TIMEOUT_DESCRIPTION)

    def channel(self) -> PagerDutyEventsChannel:
        """The PagerDuty client for this integration."""
        return PagerDutyEventsChannel(
            self.routing_key.get_secret_value(), events_url=self.events_url, timeout=self.timeout
        )


class SmsAlerts(Block):
    """SMS alerts (critical, business hours) through 46elks or Twilio.

    For 46elks the username and password are the API credentials; for Twilio they are
    the account SID and the auth token.

    Example:
        Text the on-call phones with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels import SmsAlerts

        sms = SmsAlerts.load("BLOCK_NAME")
        sms.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops SMS Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-sms"
    _description: ClassVar[str] = "SMS gateway (46elks or Twilio), sender and phone numbers."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl("https://46elks.com/docs/send-sms")

    provider: Literal["46elks", "twilio"] = Field(
        default="46elks", description="SMS gateway: 46elks or twilio."
    )
    username: str = Field(description="46elks API username, or the Twilio account SID.")
    password: SecretStr = Field(description="46elks API password, or the Twilio auth token.")
    sender: str = Field(description="Sender id (up to 11 letters and digits) or E.164 number.")
    recipients: list[str] = Field(
        min_length=1, description="Phone numbers in E.164 form, e.g. +46701234567."
    )
    api_url: str | None = Field(
        default=None,
        description="API endpoint (46elks) or base URL (Twilio); empty for the provider's.",
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=_TIMEOUT_DESCRIPTION)

    def channel(self) -> FortySixElksChannel | TwilioChannel:
        """The SMS client for the chosen provider."""
        password = self.password.get_secret_value()
        if self.provider == "46elks":
            return FortySixElksChannel(
                self.username,
                password,
                self.sender,
                self.recipients,
                api_url=self.api_url or ELKS_URL,
                timeout=self.timeout,
            )
        if self.provider == "twilio":
            return TwilioChannel(
                self.username,
                password,
                self.sender,
                self.recipients,
                api_base=self.api_url or TWILIO_API_BASE,
                timeout=self.timeout,
            )
        raise ConfigError(f"SMS provider must be 46elks or twilio, got {self.provider!r}")


__all__ = ["EmailAlerts", "PagerDutyAlerts", "SlackAlerts", "SmsAlerts"]
