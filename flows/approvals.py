"""An operator's approval in the Prefect UI: the run pauses with a form under a text that
says what will be done, and goes on once someone approves or declines it there (or
through the API's `resume_flow_run` with the same input)."""

from __future__ import annotations

from typing import TypeVar

from prefect import pause_flow_run
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from feedback_ops.errors import OpsError

APPROVAL_POLL_SECONDS = 2
"""How soon an approved run goes on: it asks the API this often whether it was resumed."""


class Approval(RunInput):
    """The approval form the paused run shows in the UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Tick to go ahead as described above."
    )
    approved_by: str = Field(
        default="",
        title="Your name",
        max_length=100,
        description="Who approves or declines, for the record and the alert.",
    )

    @property
    def decided_by(self) -> str:
        """The name given, or "an operator"."""
        return self.approved_by.strip() or "an operator"


A = TypeVar("A", bound=Approval)


def wait_for_approval(form: type[A], plan: str, timeout: int, unless: str) -> A:
    """Pause until an operator answers `form`, shown under `plan`.

    Raises:
        OpsError: no answer within `timeout` seconds; the message ends with `unless`,
            what was therefore not done.
    """
    try:
        return pause_flow_run(
            wait_for_input=form.with_initial_data(description=plan),
            timeout=timeout,
            poll_interval=APPROVAL_POLL_SECONDS,
        )
    except FlowPauseTimeout:
        raise OpsError(f"no approval within {timeout} s: {unless}") from None
