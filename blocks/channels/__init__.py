"""Alert channels: Slack, email, PagerDuty and SMS, each a block and the client it builds,
and `AlertChannels`, the one block that says where a flow's alerts go.

Each channel module holds its block (address and secrets, as `SecretStr`) and a plain
client that speaks the provider's protocol: `block.channel().send(message)` returns a
`Delivery` or raises a `ChannelError` whose `transient` flag says whether another
attempt could help. `base` holds what they share: the message, the receipt, the error
and the HTTP rules.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

from blocks.channels.base import (
    AlertSender,
    ChannelError,
    Delivery,
    Message,
    TransientChannelError,
)
from blocks.channels.contacts import Contact, EscalationContacts
from blocks.channels.email import EmailAlerts, SmtpEmailChannel
from blocks.channels.pagerduty import (
    EU_EVENTS_URL,
    EVENTS_URL,
    PagerDutyAlerts,
    PagerDutyEventsChannel,
)
from blocks.channels.slack import SlackAlerts, SlackWebhookChannel
from blocks.channels.sms import (
    ELKS_URL,
    TWILIO_API_BASE,
    FortySixElksChannel,
    SmsAlerts,
    TwilioChannel,
)
from feedback_ops.errors import ConfigError
from policy import Channel

# What an operator sets to configure each channel (the settings table fills these).
HOW_TO_CONFIGURE: dict[Channel, str] = {
    Channel.SLACK: "SLACK_WEBHOOK_URL",
    Channel.EMAIL: "SMTP_HOST and ALERT_EMAIL_TO",
    Channel.PAGERDUTY: "PAGERDUTY_ROUTING_KEY",
    Channel.SMS: "SMS_USERNAME, SMS_PASSWORD and SMS_TO",
}


class AlertChannels(Block):
    """Where a flow's alerts go: the four channels and the escalation contacts.

    Each channel is a block of its own, referenced here, so an operator edits the Slack
    webhook once in the UI and every set that uses it follows. A channel left empty is
    not configured: alerts fall back to the others. Flows take the name of this block
    (`alert_channels_block`), so a drill can be pointed at a set of its own.

    Example:
        Send an alert on Slack with the set saved by `feedback-ops up`:
        ```python
        from blocks.channels import AlertChannels
        from policy import Channel

        channels = AlertChannels.load("BLOCK_NAME")
        channels.sender(Channel.SLACK).send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Alert Channels"
    _block_type_slug: ClassVar[str] = "feedback-ops-alert-channels"
    _description: ClassVar[str] = "The alert channels and escalation contacts a flow uses."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.pagerduty.com/docs/events-api-v2/overview/"
    )

    slack: SlackAlerts | None = Field(default=None, description="The Slack channel, if any.")
    email: EmailAlerts | None = Field(default=None, description="Alert email, if any.")
    pagerduty: PagerDutyAlerts | None = Field(
        default=None, description="The PagerDuty integration, if any."
    )
    sms: SmsAlerts | None = Field(default=None, description="The SMS gateway, if any.")
    contacts: EscalationContacts = Field(
        default_factory=EscalationContacts, description="Who each escalation role is."
    )

    def sender(self, channel: Channel) -> AlertSender:
        """The client of one channel.

        Raises:
            ConfigError: the channel is not configured; the message names what to set.
        """
        block = {
            Channel.SLACK: self.slack,
            Channel.EMAIL: self.email,
            Channel.PAGERDUTY: self.pagerduty,
            Channel.SMS: self.sms,
        }[channel]
        if block is None:
            raise ConfigError(f"{channel} is not configured: set {HOW_TO_CONFIGURE[channel]}")
        sender: AlertSender = block.channel()
        return sender

    def configured(self, channel: Channel) -> bool:
        """Whether alerts can go out on `channel`."""
        try:
            self.sender(channel)
        except ConfigError:
            return False
        return True


__all__ = [
    "ELKS_URL",
    "EU_EVENTS_URL",
    "EVENTS_URL",
    "HOW_TO_CONFIGURE",
    "TWILIO_API_BASE",
    "AlertChannels",
    "AlertSender",
    "ChannelError",
    "Contact",
    "Delivery",
    "EmailAlerts",
    "EscalationContacts",
    "FortySixElksChannel",
    "Message",
    "PagerDutyAlerts",
    "PagerDutyEventsChannel",
    "SlackAlerts",
    "SlackWebhookChannel",
    "SmsAlerts",
    "SmtpEmailChannel",
    "TransientChannelError",
    "TwilioChannel",
]
