"""Runs that wait for an operator: find the paused one by its tag, read its form."""

from __future__ import annotations

import json
import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError

from support.net import wait_until


def paused_run(tag: str, timeout: float = 60) -> Any:
    """The flow run tagged `tag` once it waits for approval (or other input) and can be
    resumed: Prefect stores the input's schema just after the run shows Paused, and
    refuses a resume with input until then."""
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        while time.monotonic() - started < timeout:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[tag]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                )
            )
            if runs and _input_schema_stored(client, runs[0]):
                return runs[0]
            time.sleep(0.2)  # polling the API for a run another thread is starting
    raise AssertionError(f"no paused run tagged {tag} appeared")


def _input_schema_stored(client: Any, run: Any) -> bool:
    keyset = run.state.state_details.run_input_keyset
    if not keyset:
        return True
    try:
        client.read_flow_run_input(run.id, keyset["schema"])
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return False
        raise
    return True


def approval_form(run: Any) -> str:
    """The description the paused run shows above its approval form (Prefect stores it
    just after the run is seen paused)."""
    keyset = run.state.state_details.run_input_keyset
    found: list[str] = []

    def stored() -> bool:
        with get_client(sync_client=True) as client:
            try:
                found.append(client.read_flow_run_input(run.id, keyset["description"]))
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 404:
                    return False
                raise
        return True

    wait_until(stored, timeout=30, interval=0.2, what="the approval form's description")
    return str(json.loads(found[-1]))
