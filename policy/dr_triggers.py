"""The runbook's automated failover triggers ("Disaster Recovery", "Failover Procedures"),
judged on what `dr-watchdog` observed each minute.

=============================  =================================================  ==================
trigger                        holds when                                         scenario
=============================  =================================================  ==================
primary-region-unavailable     the gateway's `/health` has not answered healthy   regional-failover
                               since a failed observation more than 5 min ago
database-connection-failures   more than 3 connection attempts in a row failed    database-loss
error-rate-high                the error rate has been above 50 % for more than   regional-failover
                               2 min, all of it in Swedish business hours
=============================  =================================================  ==================

A streak is the newest observations of a check that all show the trouble; one good
observation ends it, and the next failure starts a new one. A duration is measured from
the streak's first observation to now: an observation taken 4 minutes after the first
failure proves 4 minutes, not 5. The watchdog runs every minute, so observations of a
check further apart than MAX_GAP mean it did not run in between: nothing shows that the
trouble lasted across the gap, and a duration starts again after it. A trigger holds
only on current evidence: its check's newest observation is at most MAX_GAP old.

Business hours are the runbook's "Business Hours (Europe/Stockholm timezone)": weekdays
09-18, weekends 10-16 (periods PEAK and BUSINESS of `policy.periods`), never on a
Swedish holiday; an error rate observed outside them does not count towards the two
minutes, so the trigger never holds outside business hours.

Nothing here reads the clock or does I/O: `judge` takes the observations and now.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.calendar import local_time
from policy.disaster_recovery import Scenario
from policy.periods import Period, business_period

__all__ = [
    "CHECKS",
    "DATABASE_CHECK",
    "DATABASE_CONNECTION_FAILURES",
    "DATABASE_FAILURES_OVER",
    "ERROR_RATE_CHECK",
    "ERROR_RATE_FOR",
    "ERROR_RATE_HIGH",
    "ERROR_RATE_OVER",
    "LOOKBACK",
    "MAX_GAP",
    "PRIMARY_REGION_CHECK",
    "PRIMARY_REGION_UNAVAILABLE",
    "PRIMARY_UNAVAILABLE_FOR",
    "TRIGGERS",
    "Finding",
    "Observation",
    "Scenario",
    "Trigger",
    "in_business_hours",
    "judge",
]


PRIMARY_REGION_CHECK = "primary-region"
"""`GET /health` of the gateway in the primary region: fine when it answers healthy."""
DATABASE_CHECK = "database"
"""One connection to the platform's database and `SELECT 1`."""
ERROR_RATE_CHECK = "error-rate"
"""The gateway's error rate, as its `/health` reports it (`value`, a fraction 0..1)."""
CHECKS = (PRIMARY_REGION_CHECK, DATABASE_CHECK, ERROR_RATE_CHECK)

PRIMARY_UNAVAILABLE_FOR = datetime.timedelta(minutes=5)
"""Runbook: "Primary region unavailable > 5 minutes"."""
DATABASE_FAILURES_OVER = 3
"""Runbook: "Database connection failures > 3 consecutive": the 4th in a row fires."""
ERROR_RATE_OVER = 0.5
"""Runbook: "Error rate > 50% ...": a fraction, as the gateway reports it."""
ERROR_RATE_FOR = datetime.timedelta(minutes=2)
"""Runbook: "... for > 2 minutes during business hours"."""

MAX_GAP = datetime.timedelta(minutes=3)
"""Observations of a check further apart than this (the watchdog runs every minute) do
not show that a state lasted between them."""
LOOKBACK = datetime.timedelta(minutes=15)
"""How far back `judge` looks: enough for every trigger, with room for missed runs."""

_BUSINESS_HOURS = (Period.PEAK, Period.BUSINESS)


@dataclass(frozen=True)
class Trigger:
    """One automated failover trigger of the runbook.

    Attributes:
        name: Its stable name: the dedup key's and the catalog's.
        check: The check whose observations it is judged on.
        scenario: The DR scenario it starts.
        rule: The runbook's words.
    """

    name: str
    check: str
    scenario: Scenario
    rule: str


PRIMARY_REGION_UNAVAILABLE = Trigger(
    "primary-region-unavailable",
    PRIMARY_REGION_CHECK,
    Scenario.REGIONAL_FAILOVER,
    "Primary region unavailable > 5 minutes",
)
DATABASE_CONNECTION_FAILURES = Trigger(
    "database-connection-failures",
    DATABASE_CHECK,
    Scenario.DATABASE_LOSS,
    "Database connection failures > 3 consecutive",
)
ERROR_RATE_HIGH = Trigger(
    "error-rate-high",
    ERROR_RATE_CHECK,
    # The error rate is the gateway's whole answer, not one POS provider's (those have
    # the POS health sweep and pos-providers-down) nor the database's (it has its own
    # trigger, database-loss). Half the platform's requests failing for minutes with
    # the region still answering is the region failing, and the runbook lists this
    # trigger under "Failover Procedures", whose one automated action is the regional
    # failover (`"type": "regional"`).
    Scenario.REGIONAL_FAILOVER,
    "Error rate > 50% for > 2 minutes during business hours",
)
TRIGGERS = (PRIMARY_REGION_UNAVAILABLE, DATABASE_CONNECTION_FAILURES, ERROR_RATE_HIGH)
"""Every trigger, in the order the watchdog reports them."""


@dataclass(frozen=True)
class Observation:
    """What one check saw at one moment.

    Attributes:
        check: PRIMARY_REGION_CHECK, DATABASE_CHECK or ERROR_RATE_CHECK.
        observed_at: When, aware.
        ok: The check passed: healthy, connected, or an error rate measured and at most
            ERROR_RATE_OVER.
        value: The error rate (a fraction) for ERROR_RATE_CHECK; None when the gateway
            did not report one. Unused by the other checks.
        detail: What was seen, for people (status, reason); the rules do not read it.
    """

    check: str
    observed_at: datetime.datetime
    ok: bool
    value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Finding:
    """Whether one trigger holds now, and why, in one line.

    Attributes:
        trigger: The trigger's name.
        scenario: The scenario it starts.
        holds: It holds now.
        why: One line for the alert, the event and the artifact, e.g. "primary region
            unavailable for 5 min 12 s since 10:03:00".
        since: The first observation of the streak it is judged on, if there is one.
        observed_at: The check's newest observation, if there is one.
    """

    trigger: str
    scenario: Scenario
    holds: bool
    why: str
    since: datetime.datetime | None = None
    observed_at: datetime.datetime | None = None


def in_business_hours(at: datetime.datetime) -> bool:
    """Whether `at` (aware) is in the runbook's business hours: weekdays 09-18,
    weekends 10-16 Stockholm time, not on a Swedish holiday."""
    return business_period(at) in _BUSINESS_HOURS


def judge(observations: Iterable[Observation], now: datetime.datetime) -> list[Finding]:
    """Judge every trigger on the observations of the last LOOKBACK before `now`.

    Args:
        observations: Observations of any checks, in any order; those outside
            (now - LOOKBACK, now] are ignored.
        now: The moment judged, aware.

    Returns:
        One finding per trigger, in the order of TRIGGERS.

    Raises:
        ValueError: If `now` or an observation's time is naive.
    """
    local_time(now)  # refuses a naive `now`
    by_check: dict[str, list[Observation]] = {check: [] for check in CHECKS}
    for seen in observations:
        local_time(seen.observed_at)
        if seen.check in by_check and now - LOOKBACK < seen.observed_at <= now:
            by_check[seen.check].append(seen)
    for seen_of_check in by_check.values():
        seen_of_check.sort(key=lambda seen: seen.observed_at)
    return [
        _primary_region(by_check[PRIMARY_REGION_CHECK], now),
        _database(by_check[DATABASE_CHECK], now),
        _error_rate(by_check[ERROR_RATE_CHECK], now),
    ]


def _primary_region(seen: Sequence[Observation], now: datetime.datetime) -> Finding:
    trigger = PRIMARY_REGION_UNAVAILABLE
    stale = _stale(trigger, seen, now, "the primary region")
    if stale is not None:
        return stale
    newest = seen[-1]
    if newest.ok:
        return _finding(trigger, False, f"primary region available at {_clock(newest)}", newest)
    start = _streak_start(seen, lambda s: not s.ok)
    lasted = now - start.observed_at
    holds = lasted > PRIMARY_UNAVAILABLE_FOR
    why = f"primary region unavailable for {_duration(lasted)} since {_clock(start)}"
    if not holds:
        why += f" (fires after {_duration(PRIMARY_UNAVAILABLE_FOR)})"
    return _finding(trigger, holds, why, newest, start)


def _database(seen: Sequence[Observation], now: datetime.datetime) -> Finding:
    trigger = DATABASE_CONNECTION_FAILURES
    stale = _stale(trigger, seen, now, "the database")
    if stale is not None:
        return stale
    newest = seen[-1]
    if newest.ok:
        return _finding(trigger, False, f"database connection fine at {_clock(newest)}", newest)
    # Consecutive attempts count however far apart they are (within LOOKBACK).
    failed = 0
    for observation in reversed(seen):
        if observation.ok:
            break
        failed += 1
    start = seen[len(seen) - failed]
    holds = failed > DATABASE_FAILURES_OVER
    failures = "failure" if failed == 1 else "failures"
    why = f"{failed} consecutive database connection {failures} since {_clock(start)}"
    if not holds:
        why += f" (fires after more than {DATABASE_FAILURES_OVER})"
    return _finding(trigger, holds, why, newest, start)


def _error_rate(seen: Sequence[Observation], now: datetime.datetime) -> Finding:
    trigger = ERROR_RATE_HIGH
    stale = _stale(trigger, seen, now, "the error rate")
    if stale is not None:
        return stale
    newest = seen[-1]
    at = _clock(newest)
    if newest.value is None:
        return _finding(trigger, False, f"no error rate reported at {at}", newest)
    rate = _percent(newest.value)
    if newest.value <= ERROR_RATE_OVER:
        return _finding(trigger, False, f"error rate {rate} at {at}", newest)
    if not in_business_hours(newest.observed_at):
        period = business_period(newest.observed_at).value.replace("_", " ")
        why = f"error rate {rate} at {at}, outside business hours ({period}): does not fire"
        return _finding(trigger, False, why, newest)
    start = _streak_start(seen, _high_in_business_hours)
    lasted = now - start.observed_at
    holds = lasted > ERROR_RATE_FOR
    why = (
        f"error rate above {_percent(ERROR_RATE_OVER)} for {_duration(lasted)} since "
        f"{_clock(start)} in business hours (now {rate})"
    )
    if not holds:
        why += f" (fires after {_duration(ERROR_RATE_FOR)})"
    return _finding(trigger, holds, why, newest, start)


def _high_in_business_hours(seen: Observation) -> bool:
    return (
        seen.value is not None
        and seen.value > ERROR_RATE_OVER
        and in_business_hours(seen.observed_at)
    )


def _stale(
    trigger: Trigger, seen: Sequence[Observation], now: datetime.datetime, what: str
) -> Finding | None:
    """The finding when there is no current evidence to judge on, else None."""
    if not seen:
        minutes = int(LOOKBACK.total_seconds() // 60)
        return _finding(trigger, False, f"no observation of {what} in the last {minutes} min")
    newest = seen[-1]
    if now - newest.observed_at > MAX_GAP:
        return _finding(trigger, False, f"no observation of {what} since {_clock(newest)}", newest)
    return None


def _streak_start(seen: Sequence[Observation], bad: Callable[[Observation], bool]) -> Observation:
    """The first observation of the newest run of `bad` ones, without a gap over
    MAX_GAP between them; the newest observation must be bad."""
    start = seen[-1]
    for observation in reversed(seen[:-1]):
        if not bad(observation) or start.observed_at - observation.observed_at > MAX_GAP:
            break
        start = observation
    return start


def _finding(
    trigger: Trigger,
    holds: bool,
    why: str,
    newest: Observation | None = None,
    start: Observation | None = None,
) -> Finding:
    return Finding(
        trigger=trigger.name,
        scenario=trigger.scenario,
        holds=holds,
        why=why,
        since=start.observed_at if start is not None else None,
        observed_at=newest.observed_at if newest is not None else None,
    )


def _clock(seen: Observation) -> str:
    """The observation's Stockholm wall-clock time, `10:03:00`."""
    return f"{local_time(seen.observed_at):%H:%M:%S}"


def _duration(span: datetime.timedelta) -> str:
    """`5 min 12 s`; `40 s` under a minute."""
    seconds = max(0, int(span.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.0f} %"
