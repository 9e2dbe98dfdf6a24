"""Alert routing: channels and queueing over the whole severity × period matrix."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from policy import Channel, Period, Severity, route
from policy.routing import CHANNELS

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SMS, PD, SLACK, EMAIL = Channel.SMS, Channel.PAGERDUTY, Channel.SLACK, Channel.EMAIL


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=STOCKHOLM)


# (moment, severity, channels, queued, minutes, first escalation step)
CASES = [
    # Thursday 2027-06-24: peak, business, extended (21:59 vs 22:00), off-hours
    ("2027-06-24T12:00", "critical", (SMS, PD, SLACK), False, 2, "DevOps"),
    ("2027-06-24T09:30", "critical", (SMS, PD, SLACK), False, 5, "DevOps"),
    ("2027-06-24T21:59", "critical", (PD, SLACK), False, 15, "DevOps"),
    ("2027-06-24T22:00", "critical", (PD, SLACK), False, 30, "On-call Engineer"),
    ("2027-06-24T12:00", "high", (SLACK, EMAIL), False, 0, "DevOps"),
    ("2027-06-24T21:59", "high", (SLACK, EMAIL), False, 30, "DevOps"),
    ("2027-06-24T22:00", "high", (SLACK, EMAIL), False, 120, "Document"),
    ("2027-06-24T10:00", "medium", (SLACK, EMAIL), False, 30, "Team Discussion"),
    ("2027-06-24T21:59", "medium", (SLACK, EMAIL), False, 120, "Next Business Day"),
    ("2027-06-24T22:00", "medium", (SLACK, EMAIL), False, 480, "Next Business Day"),
    ("2027-06-24T10:00", "low", (EMAIL,), False, 120, "Ticket Creation"),
    ("2027-06-24T21:59", "low", (EMAIL,), False, 480, "Ticket Creation"),
    ("2027-06-24T22:00", "low", (EMAIL,), True, None, "Ticket Creation"),
    # Midsommarafton 2027-06-25 and Julafton 2027-12-24: only critical is answered
    ("2027-06-25T12:00", "critical", (PD, SLACK), False, 30, "On-call Engineer"),
    ("2027-06-25T12:00", "high", (SLACK, EMAIL), True, None, "Document"),
    ("2027-06-25T12:00", "medium", (SLACK, EMAIL), True, None, "Next Business Day"),
    ("2027-12-24T15:00", "critical", (PD, SLACK), False, 30, "On-call Engineer"),
    ("2027-12-24T15:00", "low", (EMAIL,), True, None, "Ticket Creation"),
    # A weekend afternoon (Saturday 2027-06-19 14:00) is business hours
    ("2027-06-19T14:00", "critical", (SMS, PD, SLACK), False, 5, "DevOps"),
    ("2027-06-19T14:00", "medium", (SLACK, EMAIL), False, 30, "Team Discussion"),
    ("2027-06-19T17:00", "high", (SLACK, EMAIL), False, 120, "Document"),
]


@pytest.mark.parametrize(("moment", "severity", "channels", "queued", "minutes", "first"), CASES)
def test_route(
    moment: str,
    severity: str,
    channels: tuple[Channel, ...],
    queued: bool,
    minutes: int | None,
    first: str,
) -> None:
    decision = route(severity, at(moment))
    assert decision.channels == channels
    assert decision.queued is queued
    assert decision.plan.respond_within_minutes == minutes
    assert decision.plan.escalation[0] == first


def test_every_cell_of_the_matrix_has_channels() -> None:
    for severity in Severity:
        for period in Period:
            assert CHANNELS[severity, period], (severity, period)
    # SMS is for critical alerts in business hours only.
    with_sms = {key for key, chans in CHANNELS.items() if SMS in chans}
    assert with_sms == {(Severity.CRITICAL, Period.PEAK), (Severity.CRITICAL, Period.BUSINESS)}


@pytest.mark.parametrize(
    ("instant", "period", "holiday"),
    [
        # Spring forward 2027-03-28 (Påskdagen): 01:59 CET, then 03:00 CEST.
        ("2027-03-28T00:59:00+00:00", "off_hours", "Påskdagen"),
        ("2027-03-28T01:00:00+00:00", "off_hours", "Påskdagen"),
        # Fall back 2027-10-31: 02:30 happens twice; a Sunday, not a holiday.
        ("2027-10-31T00:30:00+00:00", "off_hours", None),
        ("2027-10-31T01:30:00+00:00", "off_hours", None),
        ("2027-10-31T09:00:00+00:00", "business", None),  # 10:00 CET, weekend business
    ],
)
def test_dst_days(instant: str, period: str, holiday: str | None) -> None:
    decision = route("critical", datetime.fromisoformat(instant))
    assert decision.plan.period == period
    assert (decision.plan.holiday.name_sv if decision.plan.holiday else None) == holiday
    assert decision.plan.respond_by is not None
    # Compare instants: the same tzinfo on both sides would compare wall clocks.
    minutes = decision.plan.respond_within_minutes or 0
    assert decision.plan.respond_by.timestamp() - decision.plan.at.timestamp() == minutes * 60


def test_critical_deadline_counts_elapsed_minutes_across_the_dst_change() -> None:
    # 01:45 CET on the spring-forward day + 30 min = 03:15 CEST.
    decision = route("critical", datetime.fromisoformat("2027-03-28T00:45:00+00:00"))
    assert decision.plan.respond_by == datetime.fromisoformat("2027-03-28T03:15:00+02:00")
