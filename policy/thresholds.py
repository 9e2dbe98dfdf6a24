"""Healthy-platform thresholds from the runbook's "Key Metrics to Monitor"."""

from dataclasses import dataclass

__all__ = ["KEY_METRICS", "KeyMetrics"]


@dataclass(frozen=True)
class KeyMetrics:
    """Limits a healthy platform stays within. Ratios are fractions, not percentages.

    Attributes:
        response_time_p95_ms: Highest acceptable 95th-percentile API response time, in
            milliseconds (runbook: "< 2 seconds").
        error_rate_max: Highest acceptable share of failed requests during Swedish
            business hours (runbook: "< 1%").
        pos_uptime_min: Lowest acceptable POS provider connectivity (runbook: "> 99%").
        db_query_ms: Highest acceptable database query time, in milliseconds
            (runbook: "< 500ms").
        cache_hit_rate_min: Lowest acceptable Redis cache hit rate (runbook: "> 70%").
        webhook_success_min: Lowest acceptable share of webhooks delivered
            (runbook: "> 98%").
    """

    response_time_p95_ms: int
    error_rate_max: float
    pos_uptime_min: float
    db_query_ms: int
    cache_hit_rate_min: float
    webhook_success_min: float


KEY_METRICS = KeyMetrics(
    response_time_p95_ms=2000,
    error_rate_max=0.01,
    pos_uptime_min=0.99,
    db_query_ms=500,
    cache_hit_rate_min=0.70,
    webhook_success_min=0.98,
)
"""The runbook's key-metric thresholds."""
