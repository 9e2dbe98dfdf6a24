"""What a run shows in the UI's Artifacts tab, read through Prefect's client."""

from __future__ import annotations

import json
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId


def progress_bars(run_id: Any) -> list[Any]:
    """The progress artifacts of flow run `run_id`."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(type={"any_": ["progress"]}),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
        )
    return list(found)


def artifact_data(run_id: Any, key: str) -> Any:
    """The data of flow run `run_id`'s artifact `key`: a table's rows, a markdown text."""
    with get_client(sync_client=True) as client:
        [found] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": [key]}),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
        )
    data = found.data
    if isinstance(data, str) and data.startswith(("[", "{")):
        return json.loads(data)
    return data
