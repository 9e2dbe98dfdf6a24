"""Progress of long steps in the Prefect UI: a progress artifact per step, updated from
bytes done a few times a minute, however often the step reports.

Updating is one API call every UPDATE_SECONDS at most, from the step's own thread; a
failed update is logged once and never fails the step (the work matters, the bar not).
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_logger

UPDATE_SECONDS = 10.0


def human_size(size: float) -> str:
    """`1.5 MiB`: a byte count for people."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


class StepProgress:
    """The progress bar of one step: `done` bytes against an `expected` total.

    Without an expected total (nothing to estimate it from) the bar stays at 0 and its
    description says how much is done; it reaches 100 when the step finishes.
    """

    def __init__(self, what: str, expected: int | None, every: float = UPDATE_SECONDS) -> None:
        self.what, self.expected, self.every = what, expected or None, every
        self._started = self._last = time.monotonic()
        self._artifact: UUID | None = None
        self._broken = False
        self._call(lambda: self._create())

    def _create(self) -> None:
        artifact = create_progress_artifact(progress=0.0, description=f"{self.what}: starting")
        self._artifact = artifact if isinstance(artifact, UUID) else None

    def __call__(self, done: int) -> None:
        """Report `done` bytes; the artifact is updated only every `every` seconds."""
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        percent = min(99.0, 100.0 * done / self.expected) if self.expected else 0.0
        of = f" of about {human_size(self.expected)}" if self.expected else ""
        self._update(percent, f"{self.what}: {human_size(done)}{of}, {now - self._started:.0f} s")

    def finish(self, done: int) -> None:
        """The step finished: the bar at 100 with what it did."""
        took = time.monotonic() - self._started
        self._update(100.0, f"{self.what}: {human_size(done)} in {took:.1f} s")

    def _update(self, percent: float, description: str) -> None:
        artifact = self._artifact
        if artifact is not None:
            self._call(
                lambda: update_progress_artifact(
                    artifact, progress=percent, description=description
                )
            )

    def _call(self, action: object) -> None:
        if self._broken:
            return
        try:
            action()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - a progress bar never fails the work
            self._broken = True
            get_logger("feedback_ops.progress").warning("progress not shown: %s", exc)
