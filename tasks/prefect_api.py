"""Tasks on the Prefect API itself: the project's blocks and deployments, and a run of
one deployment started by another flow."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tasks import QUICK, step

T = TypeVar("T")
PAGE = 200  # the API's own default and maximum page size


@step("read-prefect-configuration", limit=QUICK)
def read_prefect_configuration() -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """The project's block documents (secrets included, to be sealed) and deployments;
    and the JSON paths of the blocks' declared secret fields."""
    with get_client(sync_client=True) as client:
        documents = every_page(
            lambda offset: client.read_block_documents(
                offset=offset, limit=PAGE, include_secrets=True
            )
        )
        flows = {
            f.id: f.name for f in every_page(lambda o: client.read_flows(offset=o, limit=PAGE))
        }
        deployments = every_page(lambda o: client.read_deployments(offset=o, limit=PAGE))
    blocks: dict[str, Any] = {}
    secret_paths: set[str] = set()
    for doc in sorted(documents, key=lambda d: d.name or ""):
        if doc.is_anonymous or not doc.name:
            continue
        slug = doc.block_type.slug if doc.block_type else None
        blocks[doc.name] = {"type": slug, "data": _plain(doc.data)}
        fields = doc.block_schema.fields if doc.block_schema else {}
        for field_path in fields.get("secret_fields", []):
            secret_paths.add(f"/blocks/{doc.name}/data/{field_path.replace('.', '/')}")
    served = {}
    for dep in sorted(deployments, key=lambda d: (flows.get(d.flow_id, ""), d.name)):
        served[f"{flows.get(dep.flow_id, dep.flow_id)}/{dep.name}"] = {
            "description": dep.description,
            "entrypoint": dep.entrypoint,
            "parameters": dep.parameters,
            "tags": dep.tags,
            "paused": dep.paused,
            "schedules": [s.model_dump(mode="json", include={"schedule", "active", "parameters"})
                          for s in dep.schedules],
        }  # fmt: skip
    return blocks, served, secret_paths


def every_page(read_page: Callable[[int], list[T]]) -> list[T]:
    """Every item of a paged API read, `read_page(offset)` returning one page: the
    server returns at most a page at a time."""
    items: list[T] = []
    while True:
        page = read_page(len(items))
        items += page
        if len(page) < PAGE:
            return items


def _plain(value: Any) -> Any:
    """Block data as JSON values (SecretStr and friends revealed, to be sealed next)."""
    if hasattr(value, "get_secret_value"):
        return _plain(value.get_secret_value())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return json.loads(json.dumps(value, default=str))


@step("start-deployment-run", limit=QUICK)
def start_deployment_run(name: str, tag: str) -> str | None:
    """Start a run of the deployment `name` (`flow/deployment`) now, without waiting for
    it; its id, or None when no such deployment is registered. The run is tagged `tag`,
    so the UI shows why it started. While the standby work pool is active, its twin
    there is started instead (`tasks.work_pools`)."""
    # Imported here: tasks.work_pools reads its pages with `every_page` from this module.
    from tasks.work_pools import active_deployment_name

    try:
        run = run_deployment(active_deployment_name(name), timeout=0, as_subflow=False, tags=[tag])
    except ObjectNotFound:
        return None
    assert isinstance(run, FlowRun)  # called from sync code, it ran to its result
    return str(run.id)
