"""Which failures a task retries: transient ones only.

A wrong password or a missing bucket fails at once with its reason; a dropped
connection or a throttled S3 request is retried with backoff.
"""

from __future__ import annotations

from typing import Any

from feedback_ops.errors import TransientError

# Seconds between attempts: long enough for a restarted server or a throttle to pass.
RETRY_DELAYS: list[float] = [10, 60]


def is_transient(exc: BaseException | None) -> bool:
    """Whether a failure is worth another attempt."""
    return isinstance(exc, TransientError | ConnectionResetError | TimeoutError)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only transient failures."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return is_transient(exc)
