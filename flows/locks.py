"""One run at a time per system: Prefect global concurrency limits held by flows.

Backups, restores and failovers of the same system take the same lock. The limit is
created on first use with one slot, and taken with `strict=True`: without it Prefect
lets a run through when the limit is missing, which would protect nothing.

Creating the limit is Prefect's own bookkeeping, like taking the slot, so it is not a
task: a SQLite-backed Prefect server answers the slot request only once it has written
the task run's states, which made every other acquisition wait 2 s.

A run that dies holding a lock (a killed process) frees it when its lease runs out:
the lease lasts LOCK_LEASE_SECONDS and is renewed while the holder lives; the Prefect
server's repossessor service revokes an expired one within 15 s. That needs a
`prefect server start` (as `up` and `run` start it) with leases kept in files, so they
outlive a server restart: see `feedback_ops.cli`. A waiting run says so in its log.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger
from prefect.logging.loggers import get_run_logger

from feedback_ops.errors import OpsError

LOCK_WAIT_SECONDS = 3600
LOCK_LEASE_SECONDS = 90
"""How long a dead holder keeps a lock: renewed every 67 s while the holder lives."""
DEAD_HOLDER_BOUND_SECONDS = 120
"""The README's promise: lease, the repossessor's 15 s loop and a retry of the waiter."""
WAIT_REPORT_SECONDS = 30
FIRST_TRY_SECONDS = 1
FREE_LOCK_PATIENCE = 30


def lock_name(system: str, address: str) -> str:
    """`postgres:127.0.0.1:5432:platform`: one limit per system instance."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"{system}:{address}")


def ensure_limit(name: str) -> GlobalConcurrencyLimitResponse:
    """The global concurrency limit `name`, created with one slot unless it exists (an
    existing one keeps the limit it was given), as the server has it now."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            # Another run may create it between the read and the create: then it is there.
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            return client.read_global_concurrency_limit_by_name(name)


@contextmanager
def system_lock(name: str, timeout_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the system's lock for the block's duration, waiting up to `timeout_seconds`
    and logging every WAIT_REPORT_SECONDS what the run waits for.

    Raises:
        OpsError: another run held the lock all that time; this one did not start.
    """
    ensure_limit(name)
    logger = _logger()
    started = time.monotonic()
    # A free lock is taken at once; a taken one is said so at once, then every
    # WAIT_REPORT_SECONDS.
    patience = FIRST_TRY_SECONDS
    with ExitStack() as stack:
        while True:
            waited = time.monotonic() - started
            try:
                stack.enter_context(
                    concurrency(
                        name,
                        occupy=1,
                        timeout_seconds=max(1.0, min(patience, timeout_seconds - waited)),
                        strict=True,
                        lease_duration=LOCK_LEASE_SECONDS,
                    )
                )
                break
            except TimeoutError:
                waited = time.monotonic() - started
                if waited >= timeout_seconds:
                    raise OpsError(
                        f"another run still holds {name} after {timeout_seconds:.0f} s; "
                        "not starting"
                    ) from None
                logger.info(
                    "waiting for the lock %s, held by another run (one that died frees it "
                    "within %d s): waited %.0f s of %.0f s",
                    name,
                    DEAD_HOLDER_BOUND_SECONDS,
                    waited,
                    timeout_seconds,
                )
                patience = WAIT_REPORT_SECONDS
        if patience != FIRST_TRY_SECONDS:
            logger.info("took the lock %s after %.0f s", name, time.monotonic() - started)
        yield


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # outside a run: a test holding a lock by hand
        return get_logger("feedback_ops.locks")


@contextmanager
def lock_if_free(name: str) -> Iterator[bool]:
    """Hold the lock `name` for the block's duration if it is free (True), or not at all
    (False): for a run that must be skipped, not queued, when another holds it.

    Whether another holds it is read from the limit's taken slots, not from how long
    taking it takes: a busy API server answering in over a second must not make a free
    lock look taken. A run that took it between the look and the take is waited for
    at most FREE_LOCK_PATIENCE seconds."""
    limit = ensure_limit(name)
    if limit.active_slots >= limit.limit:
        yield False
        return
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=FREE_LOCK_PATIENCE,
                    strict=True,
                    lease_duration=LOCK_LEASE_SECONDS,
                )
            )
        except TimeoutError:
            yield False
            return
        yield True
