"""The delivery health of the platform's webhooks, from the counts PostgreSQL aggregated:
the runbook's "Review recent webhook deliveries" by provider, its KPI "Webhook Delivery
Success > 98%" and its alert WEBHOOK_DELIVERY_FAILURES (failure rate > 10 %, last hour).

A rate is delivered (or failed) over delivered + failed: attempts in any other status
(still being processed) are counted and shown, not judged.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from blocks.pos.deliveries import Count
from policy.webhooks import FAILURE_RATE_ALERT, FAILURE_RATE_MIN_ATTEMPTS, SUCCESS_SLO


class ProviderHealth(BaseModel):
    """One provider's deliveries over the last hour and the last 24 hours."""

    provider: str
    hour_delivered: int = 0
    hour_failed: int = 0
    hour_other: int = 0
    day_delivered: int = 0
    day_failed: int = 0
    day_other: int = 0

    @property
    def hour_failure_rate(self) -> float | None:
        """Failed over judged attempts in the last hour; None without any."""
        judged = self.hour_delivered + self.hour_failed
        return self.hour_failed / judged if judged else None

    @property
    def hour_success_rate(self) -> float | None:
        """Delivered over judged attempts in the last hour; None without any."""
        judged = self.hour_delivered + self.hour_failed
        return self.hour_delivered / judged if judged else None

    @property
    def day_success_rate(self) -> float | None:
        """Delivered over judged attempts in the last 24 hours; None without any."""
        judged = self.day_delivered + self.day_failed
        return self.day_delivered / judged if judged else None

    @property
    def alerting(self) -> bool:
        """WEBHOOK_DELIVERY_FAILURES: over 10 % failed in the last hour, out of at least
        FAILURE_RATE_MIN_ATTEMPTS (one failure in a quiet hour is not an incident)."""
        rate = self.hour_failure_rate
        judged = self.hour_delivered + self.hour_failed
        return (
            rate is not None and judged >= FAILURE_RATE_MIN_ATTEMPTS and rate > FAILURE_RATE_ALERT
        )


def delivery_frame(counts: list[Count]) -> pd.DataFrame:
    """The counts as one row per (provider, status), last hour and last 24 hours."""
    return pd.DataFrame(
        [(c.provider, c.status, c.last_hour, c.last_day) for c in counts],
        columns=["provider", "status", "last_hour", "last_24h"],
    )


def provider_health(
    frame: pd.DataFrame, providers: list[str], delivered: str, failed: str
) -> dict[str, ProviderHealth]:
    """Each provider's health (every one in `providers`, and any other in the table),
    from the per-status counts."""
    found = list(dict.fromkeys([*providers, *frame["provider"].tolist()]))
    health = {p: ProviderHealth(provider=p) for p in found}
    for row in frame.itertuples(index=False):
        one = health[str(row.provider)]
        suffix = (
            "delivered"
            if row.status == delivered
            else "failed"
            if row.status == failed
            else "other"
        )
        setattr(one, f"hour_{suffix}", getattr(one, f"hour_{suffix}") + int(row.last_hour))
        setattr(one, f"day_{suffix}", getattr(one, f"day_{suffix}") + int(row.last_24h))
    return health


def health_table(health: dict[str, ProviderHealth]) -> pd.DataFrame:
    """The artifact's table: one row per provider, rates against the SLO and the alert."""
    rows = [
        {
            "provider": h.provider,
            "last hour delivered": h.hour_delivered,
            "last hour failed": h.hour_failed,
            "last hour other": h.hour_other,
            "last hour failure rate (alert > 10 %)": _percent(h.hour_failure_rate),
            "24 h delivered": h.day_delivered,
            "24 h failed": h.day_failed,
            "24 h other": h.day_other,
            f"24 h success rate (SLO > {SUCCESS_SLO:.0%})": _percent(h.day_success_rate),
            "verdict": _verdict(h),
        }
        for h in health.values()
    ]
    return pd.DataFrame(rows)


def _verdict(health: ProviderHealth) -> str:
    if health.alerting:
        return "WEBHOOK_DELIVERY_FAILURES"
    success = health.day_success_rate
    if success is None:
        return "no deliveries"
    return "meets the SLO" if success > SUCCESS_SLO else "below the SLO"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.2f} %"
