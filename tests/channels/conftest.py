"""Fixtures for the alert channel tests: an HTTP recorder and an SMTP receiver.

Each server starts once per module; the function-scoped fixtures reset it, so a test
sees only its own requests and scripted failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from support.receivers import HttpRecorder, SmtpReceiver

from tasks.channels import Message


@pytest.fixture(scope="module")
def _http_recorder_server() -> Iterator[HttpRecorder]:
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture
def http_recorder(_http_recorder_server: HttpRecorder) -> HttpRecorder:
    """A running `HttpRecorder` with no requests, failures or auth rules yet."""
    _http_recorder_server.reset()
    return _http_recorder_server


@pytest.fixture(scope="module")
def _smtp_server() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_receiver(_smtp_server: SmtpReceiver) -> SmtpReceiver:
    """A running `SmtpReceiver` (STARTTLS required, AUTH alerts/smtp-pa55word), emptied."""
    _smtp_server.reset()
    return _smtp_server


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
