"""An operator's approval in the Prefect UI: the run pauses with a form under a text that
says what will be done, and goes on once someone approves or declines it there (or
through the API's `resume_flow_run` with the same input)."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from prefect import pause_flow_run
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
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
        _running_again()
        raise OpsError(f"no approval within {timeout} s: {unless}") from None


def _running_again() -> None:
    """Take the run out of its timed-out pause: Prefect leaves it Paused, and a run that
    ends while Paused is failed as "never resumed", whatever it did after the timeout."""
    run_id = flow_run.get_id()
    if run_id is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(str(run_id)), Running(), force=True)
