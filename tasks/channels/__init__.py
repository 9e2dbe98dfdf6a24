"""Alert channels: Slack, email, PagerDuty and SMS, each speaking its provider's protocol.

Plain clients, no Prefect: a task builds one from its block (`blocks.channels`) and
calls `send(message)`. Every channel returns a `Delivery` or raises a `ChannelError`
whose `transient` flag says whether another attempt could help.
"""

from tasks.channels.base import (
    Channel,
    ChannelError,
    Delivery,
    Message,
    TransientChannelError,
)
from tasks.channels.email import SmtpEmailChannel
from tasks.channels.pagerduty import EU_EVENTS_URL, EVENTS_URL, PagerDutyEventsChannel
from tasks.channels.slack import SlackWebhookChannel
from tasks.channels.sms import ELKS_URL, TWILIO_API_BASE, FortySixElksChannel, TwilioChannel

__all__ = [
    "ELKS_URL",
    "EU_EVENTS_URL",
    "EVENTS_URL",
    "TWILIO_API_BASE",
    "Channel",
    "ChannelError",
    "Delivery",
    "FortySixElksChannel",
    "Message",
    "PagerDutyEventsChannel",
    "SlackWebhookChannel",
    "SmtpEmailChannel",
    "TransientChannelError",
    "TwilioChannel",
]
