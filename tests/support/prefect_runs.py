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
    return not keyset or _run_input(client, run.id, keyset["schema"]) is not None


def _run_input(client: Any, run_id: Any, key: str) -> str | None:
    """The run input stored under `key`, or None while it is not there yet."""
    try:
        return str(client.read_flow_run_input(run_id, key))
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


def approval_form(run: Any) -> str:
    """The description the paused run shows above its approval form (Prefect stores it
    just after the run is seen paused)."""
    keyset = run.state.state_details.run_input_keyset
    found: list[str] = []

    def stored() -> bool:
        with get_client(sync_client=True) as client:
            value = _run_input(client, run.id, keyset["description"])
        if value is not None:
            found.append(value)
        return value is not None

    wait_until(stored, timeout=30, interval=0.2, what="the approval form's description")
    return str(json.loads(found[-1]))
