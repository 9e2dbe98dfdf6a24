"""Which channels an alert goes out on, by severity and Swedish business period.

The runbook's "Alert Channels": Slack for everything, email to devops@, SMS for
critical alerts in business hours, PagerDuty for critical incidents (it pages the
on-call phone after hours). The response time and escalation chain come from
:func:`policy.response.response_plan`; this module adds the channels and says when
an alert is held back for the next business day instead of sent now.

=========  ========================  ====================  =====================
severity   peak and business hours   extended hours        off-hours, holidays
=========  ========================  ====================  =====================
critical   SMS, PagerDuty, Slack     PagerDuty, Slack      PagerDuty, Slack
high       Slack, email              Slack, email          Slack, email *
medium     Slack, email              Slack, email          Slack, email *
low        email                     email                 email *
=========  ========================  ====================  =====================

\\* on a holiday, and for low alerts off-hours, the alert is queued and sent at 09:00
on the next business day (the response matrix says "next business day"). Channels
are listed in the order they are tried; a channel that fails falls back along
:data:`FALLBACK_ORDER`.
"""

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from policy.periods import Period, business_period
from policy.response import ResponsePlan, Severity, response_plan

__all__ = ["CHANNELS", "FALLBACK_ORDER", "Channel", "Route", "route"]


class Channel(StrEnum):
    """A way to reach a person."""

    SMS = "sms"
    PAGERDUTY = "pagerduty"
    SLACK = "slack"
    EMAIL = "email"


_CRITICAL_BUSINESS = (Channel.SMS, Channel.PAGERDUTY, Channel.SLACK)
_CRITICAL_AFTER_HOURS = (Channel.PAGERDUTY, Channel.SLACK)
_TEAM = (Channel.SLACK, Channel.EMAIL)
_TICKET = (Channel.EMAIL,)

CHANNELS: Mapping[tuple[Severity, Period], tuple[Channel, ...]] = MappingProxyType(
    {
        **{(Severity.CRITICAL, p): _CRITICAL_BUSINESS for p in (Period.PEAK, Period.BUSINESS)},
        **{
            (Severity.CRITICAL, p): _CRITICAL_AFTER_HOURS
            for p in (Period.EXTENDED, Period.OFF_HOURS, Period.HOLIDAY)
        },
        **{(s, p): _TEAM for s in (Severity.HIGH, Severity.MEDIUM) for p in Period},
        **{(Severity.LOW, p): _TICKET for p in Period},
    }
)
"""Channels per (severity, business period), in the order they are tried."""

FALLBACK_ORDER: tuple[Channel, ...] = (
    Channel.PAGERDUTY,
    Channel.SMS,
    Channel.SLACK,
    Channel.EMAIL,
)
"""When every planned channel failed, the others are tried in this order."""


@dataclass(frozen=True)
class Route:
    """The response plan of an alert plus how it is delivered.

    Attributes:
        plan: Response time, deadline, escalation chain and the reason for them.
        channels: The channels to send on, in order.
        queued: True when the alert waits for the next business day: it is stored
            now and sent at ``plan.respond_by``.
    """

    plan: ResponsePlan
    channels: tuple[Channel, ...]
    queued: bool


def route(severity: Severity | str, at: datetime.datetime) -> Route:
    """Decide how an alert raised at ``at`` reaches people.

    Args:
        severity: A :class:`Severity` or its name.
        at: When the alert fires, timezone-aware.

    Returns:
        The route: plan, channels, and whether it is queued.

    Raises:
        ValueError: If ``severity`` names no severity or ``at`` is naive.
    """
    plan = response_plan(severity, at)
    channels = CHANNELS[plan.severity, business_period(plan.at)]
    return Route(plan=plan, channels=channels, queued=plan.next_business_day)
