"""One run at a time per system: Prefect global concurrency limits held by flows.

Backups, restores and failovers of the same system take the same lock. The limit is
created on first use with one slot, and taken with `strict=True`: without it Prefect
lets a run through when the limit is missing, which would protect nothing.
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


def lock_name(system: str, address: str) -> str:
    """`postgres:127.0.0.1:5432:platform`: one limit per system instance."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"{system}:{address}")


def ensure_limit(name: str) -> None:
    """Create the one-slot limit `name` unless it exists (its limit is left as set)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


@contextmanager
def system_lock(name: str, timeout_seconds: float = 3600) -> Iterator[None]:
    """Hold the system's lock for the block's duration, waiting up to `timeout_seconds`."""
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
