"""Key-metric thresholds and the package's public names."""

import dataclasses

import pytest

import policy
from policy import KEY_METRICS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("response_time_p95_ms", 2000),
        ("error_rate_max", 0.01),
        ("pos_uptime_min", 0.99),
        ("db_query_ms", 500),
        ("cache_hit_rate_min", 0.70),
        ("webhook_success_min", 0.98),
    ],
)
def test_key_metrics_match_the_runbook(name: str, value: float) -> None:
    assert getattr(KEY_METRICS, name) == value


def test_key_metrics_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        KEY_METRICS.db_query_ms = 1000  # type: ignore[misc]


@pytest.mark.parametrize("name", policy.__all__)
def test_every_public_name_is_exported(name: str) -> None:
    assert getattr(policy, name) is not None
