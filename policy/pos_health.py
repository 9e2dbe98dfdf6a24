"""When a POS endpoint counts as down or up again, and when to fail over or back.

One slow answer must never move a provider's traffic: an endpoint is declared down only
after DOWN_AFTER consecutive failed sweeps, and up again only after UP_AFTER consecutive
good ones. Between the two, a result that agrees with the declared state clears the
streak against it, so a flapping endpoint keeps its state.

A provider fails over when its primary is declared down and its secondary is up. It
fails back once its primary has been declared up for FAILBACK_AFTER, and never in the
weekday peak hours (11-15 Stockholm, holidays included, as a move then would hit the
most businesses at once).

A provider down is critical in business hours (peak included, weekends' 10-16 too),
medium off-hours and in the evening, low on a holiday (runbook: "POS Provider
Connection Issues"). Failing merchant connections escalate when they exceed
MERCHANT_ESCALATION_SHARE of the businesses with connections (runbook: "POS
integration failures affecting > 25% of businesses").
"""

import datetime
from dataclasses import dataclass, replace
from enum import StrEnum

from policy.periods import Period, business_period, clock_period
from policy.response import Severity

__all__ = [
    "DOWN_AFTER",
    "FAILBACK_AFTER",
    "UP_AFTER",
    "Damped",
    "Decision",
    "EndpointState",
    "MERCHANT_ESCALATION_SHARE",
    "Move",
    "ProviderState",
    "decide_move",
    "merchants_escalate",
    "observe",
    "provider_down_severity",
    "provider_state",
]

DOWN_AFTER = 3
UP_AFTER = 3
FAILBACK_AFTER = datetime.timedelta(minutes=30)


class EndpointState(StrEnum):
    """An endpoint's declared state."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class Damped:
    """An endpoint's declared state, since when, and the streak of sweeps against it.

    Attributes:
        state: What the endpoint was last declared.
        since: When it was declared so; None for an endpoint never seen to change
            (up from the start).
        against: Consecutive sweeps, up to now, whose result disagrees with `state`.
    """

    state: EndpointState = EndpointState.UP
    since: datetime.datetime | None = None
    against: int = 0


def observe(previous: Damped, ok: bool, at: datetime.datetime) -> Damped:
    """The endpoint's damped state after one sweep's result (`ok`) at `at`.

    Raises:
        ValueError: If `at` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("observe() needs an aware datetime")
    agrees = ok == (previous.state is EndpointState.UP)
    if agrees:
        return replace(previous, against=0)
    against = previous.against + 1
    needed = UP_AFTER if ok else DOWN_AFTER
    if against < needed:
        return replace(previous, against=against)
    return Damped(EndpointState.UP if ok else EndpointState.DOWN, at, 0)


class Move(StrEnum):
    """What to ask the gateway to do with a provider's traffic."""

    FAILOVER = "failover"
    FAILBACK = "failback"


@dataclass(frozen=True)
class Decision:
    """A move (or none) and why, in words for the alert and the artifact."""

    move: Move | None
    reason: str


def decide_move(
    primary: Damped, secondary: Damped, failed_over: bool, at: datetime.datetime
) -> Decision:
    """Whether to fail the provider over to its secondary, back to its primary, or not.

    Args:
        primary: The primary endpoint's damped state.
        secondary: The secondary endpoint's damped state.
        failed_over: Whether the provider's traffic is on its secondary now.
        at: Now, aware.
    """
    if not failed_over:
        if primary.state is not EndpointState.DOWN:
            return Decision(None, "primary up")
        if secondary.state is not EndpointState.UP:
            return Decision(None, "primary down, but so is the secondary: nothing to fail over to")
        return Decision(
            Move.FAILOVER,
            f"primary_endpoint_down: {DOWN_AFTER} failed sweeps in a row, secondary healthy",
        )
    if primary.state is not EndpointState.UP:
        return Decision(None, "on the secondary; primary still down")
    up_for = at - primary.since if primary.since is not None else FAILBACK_AFTER
    if up_for < FAILBACK_AFTER:
        minutes = int(up_for.total_seconds() // 60)
        return Decision(
            None,
            f"on the secondary; primary up for {minutes} min of the "
            f"{int(FAILBACK_AFTER.total_seconds() // 60)} before failing back",
        )
    if clock_period(at) is Period.PEAK:
        return Decision(None, "on the secondary; primary up, but no failback in peak hours (11-15)")
    minutes = int(up_for.total_seconds() // 60)
    return Decision(Move.FAILBACK, f"failback: primary up for {minutes} min")


MERCHANT_ESCALATION_SHARE = 0.25


def provider_down_severity(at: datetime.datetime) -> Severity:
    """The severity of a POS provider down at `at` (aware), by Swedish period."""
    period = business_period(at)
    if period is Period.HOLIDAY:
        return Severity.LOW
    if period in (Period.PEAK, Period.BUSINESS):
        return Severity.CRITICAL
    return Severity.MEDIUM


def merchants_escalate(failing: int, with_connections: int) -> bool:
    """Whether `failing` businesses of the `with_connections` that have POS connections
    are more than the runbook's 25 %."""
    return with_connections > 0 and failing > MERCHANT_ESCALATION_SHARE * with_connections


class ProviderState(StrEnum):
    """A provider as `feedback-ops pos status` and the sweep's artifact show it."""

    UP = "up"
    DEGRADED = "degraded"
    """Working, but something is amiss: a failing streak not yet counted as down, its
    secondary down, or trouble with its token, subscriptions or merchants."""
    DOWN = "down"
    FAILED_OVER = "failed over"


def provider_state(
    primary: Damped, secondary: Damped | None, failed_over: bool, trouble: bool
) -> ProviderState:
    """The provider's state from its endpoints' damped states (`secondary` None when it
    has none), where its traffic is, and whether any other check found `trouble`."""
    if failed_over:
        return ProviderState.FAILED_OVER
    if primary.state is EndpointState.DOWN:
        return ProviderState.DOWN
    secondary_down = secondary is not None and secondary.state is EndpointState.DOWN
    if primary.against or secondary_down or trouble:
        return ProviderState.DEGRADED
    return ProviderState.UP
