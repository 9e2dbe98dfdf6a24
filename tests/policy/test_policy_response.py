"""Severities, the response and escalation matrices, and response plans."""

import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Mapping

import pytest

from policy import (
    ESCALATION_CHAINS,
    RESPONSE_MINUTES,
    STOCKHOLM,
    Period,
    Severity,
    response_plan,
)

UTC = dt.UTC
CRITICAL, HIGH, MEDIUM, LOW = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW
PEAK, BUSINESS, EXTENDED, OFF = Period.PEAK, Period.BUSINESS, Period.EXTENDED, Period.OFF_HOURS

CRITICAL_BUSINESS = ("DevOps", "Engineering Lead", "CTO")
CRITICAL_EXTENDED = ("DevOps", "On-call Engineer")
CRITICAL_OFF = ("On-call Engineer", "Engineering Lead")
HIGH_BUSINESS = ("DevOps", "Team Lead")
HIGH_EXTENDED = ("DevOps", "Team Lead (next day)")
HIGH_OFF = ("Document", "Team Lead")
DISCUSSION = ("Team Discussion",)
NEXT_DAY = ("Next Business Day",)
TICKET = ("Ticket Creation",)


def at(text: str) -> dt.datetime:
    """The Stockholm instant of an ISO 'YYYY-MM-DD HH:MM' text."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=STOCKHOLM)


WED_PEAK = at("2027-06-23 12:00")
WED_BUSINESS = at("2027-06-23 09:30")
SAT_AFTERNOON = at("2027-06-19 14:00")
WED_EVENING = at("2027-06-23 19:00")
WED_NIGHT = at("2027-06-23 23:00")
SAT_LATE = at("2027-06-19 17:00")
MIDSOMMAR = at("2027-06-25 12:00")
JULAFTON = at("2027-12-24 10:00")

# severity, moment, clock period, holiday, minutes, respond_by, escalation
MATRIX = [
    (CRITICAL, WED_PEAK, PEAK, None, 2, "2027-06-23T12:02:00+02:00", CRITICAL_BUSINESS),
    (HIGH, WED_PEAK, PEAK, None, 0, "2027-06-23T12:00:00+02:00", HIGH_BUSINESS),
    (MEDIUM, WED_PEAK, PEAK, None, 30, "2027-06-23T12:30:00+02:00", DISCUSSION),
    (LOW, WED_PEAK, PEAK, None, 120, "2027-06-23T14:00:00+02:00", TICKET),
    (CRITICAL, WED_BUSINESS, BUSINESS, None, 5, "2027-06-23T09:35:00+02:00", CRITICAL_BUSINESS),
    (HIGH, WED_BUSINESS, BUSINESS, None, 0, "2027-06-23T09:30:00+02:00", HIGH_BUSINESS),
    (MEDIUM, WED_BUSINESS, BUSINESS, None, 30, "2027-06-23T10:00:00+02:00", DISCUSSION),
    (LOW, WED_BUSINESS, BUSINESS, None, 120, "2027-06-23T11:30:00+02:00", TICKET),
    (CRITICAL, SAT_AFTERNOON, BUSINESS, None, 5, "2027-06-19T14:05:00+02:00", CRITICAL_BUSINESS),
    (HIGH, SAT_AFTERNOON, BUSINESS, None, 0, "2027-06-19T14:00:00+02:00", HIGH_BUSINESS),
    (MEDIUM, SAT_AFTERNOON, BUSINESS, None, 30, "2027-06-19T14:30:00+02:00", DISCUSSION),
    (LOW, SAT_AFTERNOON, BUSINESS, None, 120, "2027-06-19T16:00:00+02:00", TICKET),
    (CRITICAL, WED_EVENING, EXTENDED, None, 15, "2027-06-23T19:15:00+02:00", CRITICAL_EXTENDED),
    (HIGH, WED_EVENING, EXTENDED, None, 30, "2027-06-23T19:30:00+02:00", HIGH_EXTENDED),
    (MEDIUM, WED_EVENING, EXTENDED, None, 120, "2027-06-23T21:00:00+02:00", NEXT_DAY),
    (LOW, WED_EVENING, EXTENDED, None, 480, "2027-06-24T03:00:00+02:00", TICKET),
    (CRITICAL, WED_NIGHT, OFF, None, 30, "2027-06-23T23:30:00+02:00", CRITICAL_OFF),
    (HIGH, WED_NIGHT, OFF, None, 120, "2027-06-24T01:00:00+02:00", HIGH_OFF),
    (MEDIUM, WED_NIGHT, OFF, None, 480, "2027-06-24T07:00:00+02:00", NEXT_DAY),
    (LOW, WED_NIGHT, OFF, None, None, "2027-06-24T09:00:00+02:00", TICKET),
    (CRITICAL, SAT_LATE, OFF, None, 30, "2027-06-19T17:30:00+02:00", CRITICAL_OFF),
    (HIGH, SAT_LATE, OFF, None, 120, "2027-06-19T19:00:00+02:00", HIGH_OFF),
    (MEDIUM, SAT_LATE, OFF, None, 480, "2027-06-20T01:00:00+02:00", NEXT_DAY),
    (LOW, SAT_LATE, OFF, None, None, "2027-06-21T09:00:00+02:00", TICKET),
    (CRITICAL, MIDSOMMAR, PEAK, "Midsommarafton", 30, "2027-06-25T12:30:00+02:00", CRITICAL_OFF),
    (HIGH, MIDSOMMAR, PEAK, "Midsommarafton", None, "2027-06-28T09:00:00+02:00", HIGH_OFF),
    (MEDIUM, MIDSOMMAR, PEAK, "Midsommarafton", None, "2027-06-28T09:00:00+02:00", NEXT_DAY),
    (LOW, MIDSOMMAR, PEAK, "Midsommarafton", None, "2027-06-28T09:00:00+02:00", TICKET),
    (CRITICAL, JULAFTON, BUSINESS, "Julafton", 30, "2027-12-24T10:30:00+01:00", CRITICAL_OFF),
    (HIGH, JULAFTON, BUSINESS, "Julafton", None, "2027-12-27T09:00:00+01:00", HIGH_OFF),
    (MEDIUM, JULAFTON, BUSINESS, "Julafton", None, "2027-12-27T09:00:00+01:00", NEXT_DAY),
    (LOW, JULAFTON, BUSINESS, "Julafton", None, "2027-12-27T09:00:00+01:00", TICKET),
]


@pytest.mark.parametrize(
    ("severity", "moment", "period", "holiday", "minutes", "respond_by", "escalation"),
    MATRIX,
    ids=[f"{row[0]}-{row[1]:%a-%Y-%m-%d-%H:%M}" for row in MATRIX],
)
def test_response_matrix(
    severity: Severity,
    moment: dt.datetime,
    period: Period,
    holiday: str | None,
    minutes: int | None,
    respond_by: str,
    escalation: tuple[str, ...],
) -> None:
    plan = response_plan(severity, moment)
    assert plan.severity is severity
    assert plan.at == moment
    assert plan.period is period
    assert (plan.holiday.name_sv if plan.holiday else None) == holiday
    assert plan.respond_within_minutes == minutes
    assert plan.next_business_day is (minutes is None)
    assert plan.respond_by is not None
    assert plan.respond_by.isoformat() == respond_by
    assert plan.escalation == escalation


def test_the_table_covers_every_severity_and_period() -> None:
    holiday_or_clock = {
        (severity, Period.HOLIDAY if holiday else period)
        for severity, _, period, holiday, *_ in MATRIX
    }
    assert holiday_or_clock == set(itertools.product(Severity, Period))


@pytest.mark.parametrize(
    "matrix", [RESPONSE_MINUTES, ESCALATION_CHAINS], ids=["minutes", "escalation"]
)
def test_the_matrices_have_an_entry_for_every_severity_and_period(
    matrix: Mapping[tuple[Severity, Period], object],
) -> None:
    assert set(matrix) == set(itertools.product(Severity, Period))


def test_the_matrices_are_read_only() -> None:
    with pytest.raises(TypeError):
        RESPONSE_MINUTES[CRITICAL, PEAK] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("severity", "moment", "reason"),
    [
        (
            CRITICAL,
            at("2027-06-18 12:00"),
            "critical at 12:00 on a Friday in peak hours: respond within 2 minutes",
        ),
        (
            HIGH,
            SAT_AFTERNOON,
            "high at 14:00 on a Saturday in business hours: respond immediately",
        ),
        (
            MEDIUM,
            WED_EVENING,
            "medium at 19:00 on a Wednesday in extended hours: respond within 2 hours",
        ),
        (
            LOW,
            WED_NIGHT,
            (
                "low at 23:00 on a Wednesday in off-hours: "
                "respond on the next business day, by Thursday 2027-06-24 09:00"
            ),
        ),
        (
            CRITICAL,
            MIDSOMMAR,
            (
                "critical at 12:00 on Midsommarafton (Midsummer Eve), a holiday: "
                "respond within 30 minutes"
            ),
        ),
        (
            HIGH,
            MIDSOMMAR,
            (
                "high at 12:00 on Midsommarafton (Midsummer Eve), a holiday when only critical "
                "alerts are answered: respond on the next business day, by Monday 2027-06-28 09:00"
            ),
        ),
    ],
)
def test_reason(severity: Severity, moment: dt.datetime, reason: str) -> None:
    assert response_plan(severity, moment).reason == reason


@pytest.mark.parametrize(
    ("instant", "period", "respond_by"),
    [
        # 01:45 CET on Påskdagen; 30 elapsed minutes later the clocks read 03:15 CEST.
        (dt.datetime(2027, 3, 28, 0, 45, tzinfo=UTC), OFF, "2027-03-28T03:15:00+02:00"),
        # 02:45 CEST, first pass of the repeated hour; 30 minutes later it is 02:15 CET.
        (dt.datetime(2027, 10, 31, 0, 45, tzinfo=UTC), OFF, "2027-10-31T02:15:00+01:00"),
        # 02:45 CET, second pass.
        (dt.datetime(2027, 10, 31, 1, 45, tzinfo=UTC), OFF, "2027-10-31T03:15:00+01:00"),
    ],
)
def test_respond_by_counts_elapsed_time_across_daylight_saving_changes(
    instant: dt.datetime, period: Period, respond_by: str
) -> None:
    plan = response_plan(CRITICAL, instant)
    assert plan.period is period
    assert plan.respond_within_minutes == 30
    assert plan.respond_by is not None
    assert plan.respond_by.isoformat() == respond_by
    assert plan.respond_by - instant == dt.timedelta(minutes=30)


def test_the_plan_is_in_stockholm_time() -> None:
    plan = response_plan(HIGH, dt.datetime(2027, 6, 23, 10, 0, tzinfo=UTC))
    assert plan.at.tzinfo is STOCKHOLM
    assert plan.at.isoformat() == "2027-06-23T12:00:00+02:00"
    assert plan.period is PEAK
    assert plan.holiday is None


@pytest.mark.parametrize("text", ["critical", "CRITICAL", " Critical\n"])
def test_response_plan_accepts_a_severity_name(text: str) -> None:
    assert response_plan(text, WED_PEAK) == response_plan(CRITICAL, WED_PEAK)


@pytest.mark.parametrize(
    ("text", "severity"),
    [("critical", CRITICAL), ("HIGH", HIGH), (" Medium ", MEDIUM), ("low", LOW)],
)
def test_parse_severity(text: str, severity: Severity) -> None:
    assert Severity.parse(text) is severity


@pytest.mark.parametrize("text", ["x", "urgent", "", "warning"])
def test_parse_refuses_an_unknown_severity(text: str) -> None:
    message = f"unknown severity {text!r}: expected one of critical, high, medium, low"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Severity.parse(text)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        response_plan(text, WED_PEAK)


def test_severity_values() -> None:
    assert [severity.value for severity in Severity] == ["critical", "high", "medium", "low"]


def test_response_plan_is_frozen() -> None:
    plan = response_plan(LOW, WED_PEAK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.reason = "changed"  # type: ignore[misc]
