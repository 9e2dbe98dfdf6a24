"""How fast an alert must be answered, and who it escalates to.

Two runbook tables, kept here as plain data:

* Response times (:data:`RESPONSE_MINUTES`). Critical alerts follow the
  "Business Hours Support Schedule": 2 minutes at peak, 5 in business hours, 15 in
  extended hours, 30 off-hours and on holidays. High, medium and low alerts follow
  "Alert Severity by Time", where peak hours count as business hours. On a Swedish
  holiday only critical alerts are answered ("Holiday Operations: Alerts reduced to
  critical only"); the others wait for the next business day.
* Escalation chains (:data:`ESCALATION_CHAINS`) from the "Escalation Matrix": peak
  hours use the Business Hours column and holidays the Off Hours column.

A response time of None means "the next business day": the alert is answered from
09:00 on the next business day (see :func:`policy.periods.next_business_day_start`).
"""

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from policy.calendar import Holiday, holiday_on, local_time
from policy.periods import Period, business_period, clock_period, next_business_day_start

__all__ = [
    "ESCALATION_CHAINS",
    "RESPONSE_MINUTES",
    "ResponsePlan",
    "Severity",
    "response_plan",
]


class Severity(StrEnum):
    """The severity of an alert, most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @classmethod
    def parse(cls, text: str) -> "Severity":
        """Read a severity from text, ignoring case and surrounding blanks.

        Args:
            text: A severity name such as "critical" or "HIGH".

        Returns:
            The matching severity.

        Raises:
            ValueError: If ``text`` names no severity.
        """
        try:
            return cls(text.strip().lower())
        except ValueError:
            expected = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown severity {text!r}: expected one of {expected}") from None


RESPONSE_MINUTES: Mapping[tuple[Severity, Period], int | None] = MappingProxyType(
    {
        (Severity.CRITICAL, Period.PEAK): 2,
        (Severity.CRITICAL, Period.BUSINESS): 5,
        (Severity.CRITICAL, Period.EXTENDED): 15,
        (Severity.CRITICAL, Period.OFF_HOURS): 30,
        (Severity.CRITICAL, Period.HOLIDAY): 30,
        (Severity.HIGH, Period.PEAK): 0,
        (Severity.HIGH, Period.BUSINESS): 0,
        (Severity.HIGH, Period.EXTENDED): 30,
        (Severity.HIGH, Period.OFF_HOURS): 120,
        (Severity.HIGH, Period.HOLIDAY): None,
        (Severity.MEDIUM, Period.PEAK): 30,
        (Severity.MEDIUM, Period.BUSINESS): 30,
        (Severity.MEDIUM, Period.EXTENDED): 120,
        (Severity.MEDIUM, Period.OFF_HOURS): 480,
        (Severity.MEDIUM, Period.HOLIDAY): None,
        (Severity.LOW, Period.PEAK): 120,
        (Severity.LOW, Period.BUSINESS): 120,
        (Severity.LOW, Period.EXTENDED): 480,
        (Severity.LOW, Period.OFF_HOURS): None,
        (Severity.LOW, Period.HOLIDAY): None,
    }
)
"""Minutes within which an alert must be answered, per (severity, period).

0 means immediately; None means from the start of the next business day.
"""

_CRITICAL_BUSINESS = ("DevOps", "Engineering Lead", "CTO")
_CRITICAL_OFF = ("On-call Engineer", "Engineering Lead")
_HIGH_BUSINESS = ("DevOps", "Team Lead")
_HIGH_OFF = ("Document", "Team Lead")
_NEXT_BUSINESS_DAY = ("Next Business Day",)
_TICKET = ("Ticket Creation",)

ESCALATION_CHAINS: Mapping[tuple[Severity, Period], tuple[str, ...]] = MappingProxyType(
    {
        (Severity.CRITICAL, Period.PEAK): _CRITICAL_BUSINESS,
        (Severity.CRITICAL, Period.BUSINESS): _CRITICAL_BUSINESS,
        (Severity.CRITICAL, Period.EXTENDED): ("DevOps", "On-call Engineer"),
        (Severity.CRITICAL, Period.OFF_HOURS): _CRITICAL_OFF,
        (Severity.CRITICAL, Period.HOLIDAY): _CRITICAL_OFF,
        (Severity.HIGH, Period.PEAK): _HIGH_BUSINESS,
        (Severity.HIGH, Period.BUSINESS): _HIGH_BUSINESS,
        (Severity.HIGH, Period.EXTENDED): ("DevOps", "Team Lead (next day)"),
        (Severity.HIGH, Period.OFF_HOURS): _HIGH_OFF,
        (Severity.HIGH, Period.HOLIDAY): _HIGH_OFF,
        (Severity.MEDIUM, Period.PEAK): ("Team Discussion",),
        (Severity.MEDIUM, Period.BUSINESS): ("Team Discussion",),
        (Severity.MEDIUM, Period.EXTENDED): _NEXT_BUSINESS_DAY,
        (Severity.MEDIUM, Period.OFF_HOURS): _NEXT_BUSINESS_DAY,
        (Severity.MEDIUM, Period.HOLIDAY): _NEXT_BUSINESS_DAY,
        (Severity.LOW, Period.PEAK): _TICKET,
        (Severity.LOW, Period.BUSINESS): _TICKET,
        (Severity.LOW, Period.EXTENDED): _TICKET,
        (Severity.LOW, Period.OFF_HOURS): _TICKET,
        (Severity.LOW, Period.HOLIDAY): _TICKET,
    }
)
"""Who an alert escalates to, in order, per (severity, period)."""

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_PERIOD_PHRASES = {
    Period.PEAK: "in peak hours",
    Period.BUSINESS: "in business hours",
    Period.EXTENDED: "in extended hours",
    Period.OFF_HOURS: "in off-hours",
}


@dataclass(frozen=True)
class ResponsePlan:
    """What to do about one alert raised at one moment.

    Attributes:
        severity: The severity of the alert.
        at: When the alert was raised, in Stockholm time.
        period: The clock period of ``at`` (never HOLIDAY; see ``holiday``).
        holiday: The Swedish holiday on the Stockholm date of ``at``, if any. When
            set, the holiday column of the matrices applied, not ``period``'s.
        respond_within_minutes: Minutes to answer in (0 means immediately), or None
            when the alert waits for the next business day.
        next_business_day: Whether the alert waits for the next business day.
        respond_by: The deadline for an answer: ``at`` plus the minutes, or 09:00 of
            the next business day.
        escalation: Who the alert escalates to, in order.
        reason: One sentence explaining the plan to an operator.
    """

    severity: Severity
    at: datetime.datetime
    period: Period
    holiday: Holiday | None
    respond_within_minutes: int | None
    next_business_day: bool
    respond_by: datetime.datetime | None
    escalation: tuple[str, ...]
    reason: str


def _after(at: datetime.datetime, minutes: int) -> datetime.datetime:
    # Aware arithmetic in a zone moves the wall clock, which is wrong across a DST
    # change; elapsed minutes are added in UTC instead.
    elapsed = at.astimezone(datetime.UTC) + datetime.timedelta(minutes=minutes)
    return elapsed.astimezone(at.tzinfo)


def _minutes_phrase(minutes: int) -> str:
    if minutes == 0:
        return "respond immediately"
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"respond within {hours} hour{'' if hours == 1 else 's'}"
    return f"respond within {minutes} minute{'' if minutes == 1 else 's'}"


def response_plan(severity: Severity | str, at: datetime.datetime) -> ResponsePlan:
    """Plan the response to an alert of some severity raised at some moment.

    Args:
        severity: A :class:`Severity` or its name (see :meth:`Severity.parse`).
        at: When the alert was raised, timezone-aware.

    Returns:
        The response time, deadline and escalation chain for the alert, with the
        reason for them.

    Raises:
        ValueError: If ``severity`` names no severity or ``at`` is naive.
    """
    level = severity if isinstance(severity, Severity) else Severity.parse(severity)
    local = local_time(at)
    period = clock_period(local)
    holiday = holiday_on(local.date())
    matrix_period = business_period(local)
    minutes = RESPONSE_MINUTES[level, matrix_period]

    if holiday is None:
        when = f"on a {_WEEKDAYS[local.weekday()]} {_PERIOD_PHRASES[period]}"
    else:
        when = f"on {holiday.name_sv} ({holiday.name_en}), a holiday"
    if minutes is None:
        respond_by = next_business_day_start(local)
        if holiday is not None:
            when += " when only critical alerts are answered"
        outcome = (
            "respond on the next business day, by "
            f"{_WEEKDAYS[respond_by.weekday()]} {respond_by:%Y-%m-%d %H:%M}"
        )
    else:
        respond_by = _after(local, minutes)
        outcome = _minutes_phrase(minutes)

    return ResponsePlan(
        severity=level,
        at=local,
        period=period,
        holiday=holiday,
        respond_within_minutes=minutes,
        next_business_day=minutes is None,
        respond_by=respond_by,
        escalation=ESCALATION_CHAINS[level, matrix_period],
        reason=f"{level} at {local:%H:%M} {when}: {outcome}",
    )
