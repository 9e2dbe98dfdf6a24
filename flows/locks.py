"""One run at a time per system: Prefect global concurrency limits held by flows.

Backups, restores and failovers of the same system take the same lock. The limit is
created on first use with one slot, and taken with `strict=True`: without it Prefect
lets a run through when the limit is missing, which would protect nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.concurrency.sync import concurrency

from feedback_ops.errors import OpsError
from tasks.prefect_api import ensure_limit

LOCK_WAIT_SECONDS = 3600


def lock_name(system: str, address: str) -> str:
    """`postgres:127.0.0.1:5432:platform`: one limit per system instance."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"{system}:{address}")


@contextmanager
def system_lock(name: str, timeout_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the system's lock for the block's duration, waiting up to `timeout_seconds`.

    Raises:
        OpsError: another run held the lock all that time; this one did not start.
    """
    ensure_limit(name)
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True)
            )
        except TimeoutError:
            raise OpsError(
                f"another run still holds {name} after {timeout_seconds:.0f} s; not starting"
            ) from None
        yield
