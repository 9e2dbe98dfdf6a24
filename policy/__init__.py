"""Operations policy of the AI Feedback Platform: plain Python, no Prefect, no I/O.

The Swedish holiday calendar, business periods, response and escalation matrices,
maintenance windows, key-metric thresholds and the damping of POS endpoint states
(`policy.pos_health`) of the production operations runbook.
Every time-based function takes a timezone-aware datetime; nothing reads the clock.
"""

from policy.calendar import STOCKHOLM, Holiday, holiday_on, local_time, swedish_holidays
from policy.maintenance import MaintenanceWindow, maintenance_windows, window_at
from policy.periods import (
    Period,
    business_period,
    clock_period,
    is_business_day,
    next_business_day_start,
)
from policy.response import (
    ESCALATION_CHAINS,
    RESPONSE_MINUTES,
    ResponsePlan,
    Severity,
    response_plan,
)
from policy.retention import BackupInfo, RetentionDecision, RetentionRules, plan_retention
from policy.routing import CHANNELS, FALLBACK_ORDER, Channel, Route, route
from policy.thresholds import KEY_METRICS, KeyMetrics

__all__ = [
    "BackupInfo",
    "RetentionDecision",
    "RetentionRules",
    "plan_retention",
    "CHANNELS",
    "FALLBACK_ORDER",
    "Channel",
    "Route",
    "route",
    "ESCALATION_CHAINS",
    "KEY_METRICS",
    "RESPONSE_MINUTES",
    "STOCKHOLM",
    "Holiday",
    "KeyMetrics",
    "MaintenanceWindow",
    "Period",
    "ResponsePlan",
    "Severity",
    "business_period",
    "clock_period",
    "holiday_on",
    "is_business_day",
    "local_time",
    "maintenance_windows",
    "next_business_day_start",
    "response_plan",
    "swedish_holidays",
    "window_at",
]
