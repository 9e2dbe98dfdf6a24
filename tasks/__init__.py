"""Retriable Prefect tasks, one module per system they act on: `postgres`, `catalog` (the
ops catalog), `redis`, `storage`, `notify` (alert channels), `pos`, `prefect_api`,
`metrics` (the Prometheus Pushgateway).

Every task is made with `step()`, the one place that sets the options every step
shares: retries only for transient failures (a dropped connection, a throttled
request), with backoff; a time limit suited to its kind of work; no result caching
(every step has side effects or reads a changing system). A step past its limit
fails with one line that names it and the limit, and is not retried: the limit is
already far above what the step takes when things work.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from prefect import Task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging import get_logger

from feedback_ops.errors import TimedOut, TransientError

P = ParamSpec("P")
R = TypeVar("R")

# Time limits by kind of step, in seconds.
QUICK = 5 * 60
"""A few queries or requests: catalog records, manifests, listings, one provider read."""
TRANSFER = 6 * 60 * 60
"""Moving a whole backup: dump, snapshot, copy, read-back, restore. The runbook's RTO for
the database is 30 minutes; six hours leaves room for a database many times today's."""
DELIVERY = 2 * 60
"""Telling people: one message on one channel (each provider call has its own timeout)."""
REPLAY = 15 * 60
"""Re-delivering one page of webhooks: `page_size` of them, `replay_concurrency` in
flight, each waiting at most the block's timeout, within one reconciliation's cadence."""

RETRIES = 2
# Seconds between attempts: long enough for a restarted server or a throttle to pass.
RETRY_DELAYS: list[float] = [10, 60]
# An alert should not wait a minute for its second chance: someone must be told now.
ALERT_RETRY_DELAYS: list[float] = [2, 10]
# Nor a step of a sweep that runs every few minutes: the next sweep is the next chance.
SWEEP_RETRY_DELAYS: list[float] = [2, 10]


def is_transient(exc: BaseException | None) -> bool:
    """Whether a failure is worth another attempt."""
    if isinstance(exc, TimedOut):
        return False
    return isinstance(exc, TransientError | ConnectionResetError | TimeoutError)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only transient failures."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return is_transient(exc)


def step(
    name: str,
    *,
    limit: float,
    retries: int = RETRIES,
    retry_delays: list[float] = RETRY_DELAYS,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a task with the shared options.

    Args:
        name: The task's name in the UI, e.g. `dump-database`.
        limit: Seconds the step may take (`QUICK`, `TRANSFER` or `DELIVERY`).
        retries: Further attempts after a transient failure; 0 for a step that must not
            run twice (an insert, a restore into a database it just created).
        retry_delays: Seconds before each further attempt.
    """

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.monotonic()
            try:
                return fn(*args, **kwargs)
            except asyncio.CancelledError:
                # Prefect stops a step at its limit by raising this inside it; any other
                # cancellation is not ours to describe.
                allowed = _limit_now(limit)
                if time.monotonic() - started < allowed * 0.99:
                    raise
                raise TimedOut(f"{name} did not finish within {allowed:g} s") from None
            except TimedOut as exc:
                raise TimedOut(f"{name}: {exc}") from None

        return Task(
            fn=run,
            name=name,
            retries=retries,
            retry_delay_seconds=retry_delays if retries else 0,
            retry_condition_fn=retry_if_transient,
            timeout_seconds=limit,
            cache_policy=NO_CACHE,
        )

    return decorate


def _limit_now(default: float) -> float:
    """The running task's limit, which `with_options(timeout_seconds=…)` may have set."""
    context = TaskRunContext.get()
    if context is not None and context.task.timeout_seconds:
        return float(context.task.timeout_seconds)
    return default


__all__ = [
    "ALERT_RETRY_DELAYS",
    "DELIVERY",
    "QUICK",
    "RETRIES",
    "RETRY_DELAYS",
    "SWEEP_RETRY_DELAYS",
    "TRANSFER",
    "is_transient",
    "retry_if_transient",
    "step",
]


# --- progress of long steps ----------------------------------------------------------
# A progress artifact per step, updated from bytes done a few times a minute however
# often the step reports: one API call every UPDATE_SECONDS at most, from the step's own
# thread; a failed update is logged once and never fails the step.

UPDATE_SECONDS = 10.0


def human_size(size: float) -> str:
    """`1.5 MiB`: a byte count for people."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


class StepProgress:
    """The progress bar of one step: `done` bytes (or keys) against an `expected` total.

    Without an expected total (nothing to estimate it from) the bar stays at 0 and its
    description says how much is done; it reaches 100 when the step finishes.
    """

    def __init__(
        self,
        what: str,
        expected: int | None,
        every: float = UPDATE_SECONDS,
        amount: Callable[[float], str] | None = None,
    ) -> None:
        """`amount` says how much a count is (`human_size` of bytes by default)."""
        self.what, self.expected, self.every = what, expected or None, every
        self._amount = amount or human_size
        self._started = self._last = time.monotonic()
        self._artifact: UUID | None = None
        self._broken = False
        self._call(self._create)

    def _create(self) -> None:
        artifact = create_progress_artifact(progress=0.0, description=f"{self.what}: starting")
        self._artifact = artifact if isinstance(artifact, UUID) else None

    def __call__(self, done: int) -> None:
        """Report `done` so far; the artifact is updated only every `every` seconds."""
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        percent = min(99.0, 100.0 * done / self.expected) if self.expected else 0.0
        of = f" of about {self._amount(self.expected)}" if self.expected else ""
        self._update(percent, f"{self.what}: {self._amount(done)}{of}, {now - self._started:.0f} s")

    def finish(self, done: int) -> None:
        """The step finished: the bar at 100 with what it did."""
        took = time.monotonic() - self._started
        self._update(100.0, f"{self.what}: {self._amount(done)} in {took:.1f} s")

    def _update(self, percent: float, description: str) -> None:
        artifact = self._artifact
        if artifact is not None:
            self._call(
                lambda: update_progress_artifact(
                    artifact, progress=percent, description=description
                )
            )

    def _call(self, action: Callable[[], object]) -> None:
        if self._broken:
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a progress bar never fails the work
            self._broken = True
            get_logger("feedback_ops.progress").warning("progress not shown: %s", exc)
