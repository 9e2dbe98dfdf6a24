"""The options every step shares: which failures are retried."""

from __future__ import annotations

import pytest

from feedback_ops.errors import ConfigError, OpsError, TimedOut, TransientError
from tasks import is_transient


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (TransientError("S3 is unavailable"), True),
        (ConnectionResetError(), True),
        (TimeoutError("a socket read"), True),
        (TimedOut("pg_restore did not finish within 2 s"), False),
        (OpsError("wrong password"), False),
        (ConfigError("BACKUP_URL must be set"), False),
        (ValueError("a bug"), False),
        (None, False),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, bool) else str(v),
)
def test_only_transient_failures_are_retried(failure: BaseException | None, retried: bool) -> None:
    assert is_transient(failure) is retried
