"""Webhook deliveries: how long each POS provider keeps retrying, what a failed delivery
means, when the platform replays it, and how loudly to say so.

Each provider retries a delivery the gateway did not take, for a while of its own
(`RETRY_WINDOWS`): Shopify 8 tries over 4 hours; Zettle 10 × 1 min, 9 × 10 min, then
hourly for 70 hours (about 71 h 40 min), after which it deletes the subscription; Square
72 hours by its delivery-SLA page but 24 hours by a troubleshooting page, so 24 hours is
taken as the end (a replay before Square's own last retry is harmless: the gateway and
the replay both deduplicate on the event id). A delivery past its window is recovered
only by a replay from the platform.

A failure is the platform's own when the gateway did not answer (a timeout), answered
5xx or throttled (429): the event is genuine and is replayed. A signature rejection
(401/403) is audited against the current and the previous signing key: under the
previous key it is a rotation not rolled out (high, configuration), under the current
key a gateway bug (high), under neither a possible forgery (critical, the runbook's
security-incident path); only the first two are replayed. Any other answer (400, 404,
422) says the payload itself was refused: replaying it would be refused again.

Replays back off across runs (REPLAY_BACKOFF doubled per attempt) and stop after
MAX_REPLAY_ATTEMPTS, when the event is dead-lettered. The delivery failure rate over
the last hour raises the runbook's WEBHOOK_DELIVERY_FAILURES above 10 %, with a severity
by Swedish period.
"""

import datetime
from enum import StrEnum

from policy.periods import Period, business_period
from policy.response import Severity
from policy.thresholds import KEY_METRICS

__all__ = [
    "FAILURE_RATE_ALERT",
    "FAILURE_RATE_MIN_ATTEMPTS",
    "MAX_REPLAY_ATTEMPTS",
    "REPLAY_BACKOFF",
    "RETRY_WINDOWS",
    "SUBSCRIPTION_DELETED_AFTER",
    "SUCCESS_SLO",
    "Failure",
    "Signature",
    "failure_of",
    "failures_severity",
    "next_replay_at",
    "replayable",
    "signature_severity",
    "window_ended",
]

RETRY_WINDOWS: dict[str, datetime.timedelta] = {
    "square": datetime.timedelta(hours=24),
    "shopify": datetime.timedelta(hours=4),
    "zettle": datetime.timedelta(hours=71, minutes=40),
}
"""How long after its first failed delivery each provider stops retrying an event."""

SUBSCRIPTION_DELETED_AFTER = {"zettle"}
"""Providers that delete the subscription once their retries run out."""

SUCCESS_SLO = KEY_METRICS.webhook_success_min
"""The runbook's key metric: more than 98 % of webhooks delivered."""
FAILURE_RATE_ALERT = 0.10
"""The runbook's WEBHOOK_DELIVERY_FAILURES: a failure rate over 10 % in the last hour."""
FAILURE_RATE_MIN_ATTEMPTS = 10
"""Attempts a provider needs in the hour before its failure rate can alert: one failed
delivery of one in a quiet night hour is 100 %, and not an incident."""

MAX_REPLAY_ATTEMPTS = 5
REPLAY_BACKOFF = datetime.timedelta(minutes=15)
"""The wait after a first failed replay: one reconciliation run; doubled after each."""


class Failure(StrEnum):
    """Why the gateway did not take a delivery, from the status it answered."""

    NO_ANSWER = "no answer"
    """A timeout or dropped connection: no status stored."""
    SERVER_ERROR = "5xx"
    THROTTLED = "429"
    SIGNATURE = "signature rejected"
    """401 or 403: the gateway did not accept the signature."""
    REFUSED = "refused"
    """Any other 4xx: the payload itself was refused."""


class Signature(StrEnum):
    """What recomputing a rejected delivery's signature showed."""

    PREVIOUS_KEY = "previous key"
    """Signed with the key before the current one: a rotation not rolled out."""
    CURRENT_KEY = "current key"
    """Valid under the current key, yet rejected: a gateway bug."""
    NO_KEY = "no known key"
    """Valid under no key the platform knows: possibly forged."""


def failure_of(http_status: int | None) -> Failure:
    """The kind of failure a stored HTTP status means (None: no answer)."""
    if http_status is None:
        return Failure.NO_ANSWER
    if http_status == 429:
        return Failure.THROTTLED
    if http_status >= 500:
        return Failure.SERVER_ERROR
    if http_status in (401, 403):
        return Failure.SIGNATURE
    return Failure.REFUSED


def replayable(failure: Failure, signature: Signature | None) -> bool:
    """Whether an event that failed so is genuine and worth delivering again."""
    if failure is Failure.SIGNATURE:
        return signature in (Signature.PREVIOUS_KEY, Signature.CURRENT_KEY)
    return failure is not Failure.REFUSED


def signature_severity(signature: Signature) -> Severity:
    """A possible forgery is critical; a rotation not rolled out or a gateway bug high."""
    return Severity.CRITICAL if signature is Signature.NO_KEY else Severity.HIGH


def window_ended(provider: str, first_failed_at: datetime.datetime, at: datetime.datetime) -> bool:
    """Whether the provider has stopped retrying an event that first failed then."""
    window = RETRY_WINDOWS.get(provider)
    return window is not None and at - first_failed_at >= window


def next_replay_at(attempts: int, at: datetime.datetime) -> datetime.datetime | None:
    """When to try again after `attempts` failed replays ending at `at`; None once
    MAX_REPLAY_ATTEMPTS have failed (the event is dead-lettered)."""
    if attempts >= MAX_REPLAY_ATTEMPTS:
        return None
    return at + REPLAY_BACKOFF * (1 << max(0, attempts - 1))


def failures_severity(at: datetime.datetime) -> Severity:
    """WEBHOOK_DELIVERY_FAILURES at `at` (aware): POS data stops syncing, which matters
    most while businesses are open: high then, medium off-hours, low on a holiday."""
    period = business_period(at)
    if period is Period.HOLIDAY:
        return Severity.LOW
    if period in (Period.PEAK, Period.BUSINESS):
        return Severity.HIGH
    return Severity.MEDIUM
