"""Fixtures for the alert channel tests (the receivers are in tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from blocks.channels import Message

DETECTED = datetime(2026, 11, 27, 10, 30, 15, tzinfo=UTC)  # 11:30:15 in Stockholm


@pytest.fixture
def alert() -> Message:
    """A critical alert from the runbook's DATABASE_CONNECTION_LOST rule."""
    return Message(
        title="Database connection lost",
        body="database_connections == 0 for 2 minutes. Complete service outage.",
        severity="critical",
        dedup_key="DATABASE_CONNECTION_LOST:platform",
        timestamp=DETECTED,
        details={"database": "platform", "connections": 0},
        links=(("Runbook", "https://runbook.example/db#lost"),),
    )
