"""One run at a time per system: Prefect global concurrency limits held by flows.

Backups, restores and failovers of the same system take the same lock. The limit is
created on first use with one slot, and taken with `strict=True`: without it Prefect
lets a run through when the limit is missing, which would protect nothing.

Creating the limit is Prefect's own bookkeeping, like taking the slot, so it is not a
task: a SQLite-backed Prefect server answers the slot request only once it has written
the task run's states, which made every other acquisition wait 2 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from feedback_ops.errors import OpsError

LOCK_WAIT_SECONDS = 3600


def lock_name(system: str, address: str) -> str:
    """`postgres:127.0.0.1:5432:platform`: one limit per system instance."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"{system}:{address}")


def ensure_limit(name: str) -> None:
    """Create the one-slot global concurrency limit `name` unless it exists (an existing
    one keeps the limit it was given)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


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
