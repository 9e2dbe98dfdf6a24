"""Every deployment on the work pools of a Prefect server: what `feedback-ops deploy`
registers, and the fields by which a registration is compared with what it should be.

The primary pool gets the deployments of `all_deployments()` under their own names, as
`up` serves them; a standby pool gets a twin of each, `<name>-standby`, whose schedules
are inactive until `feedback-ops pool-failover --to standby`. A deployment started by an
event (the DR flows' `on-watchdog`, and `work-pool-watch`, started by an automation on
the primary pool's ready and not-ready events) is registered once, on the standby pool,
where a worker is left to run it.
"""

from __future__ import annotations

import json
from typing import Any

from prefect.client.schemas.objects import VersionInfo
from prefect.client.schemas.responses import DeploymentResponse
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.automations import Posture

from deployments import DeploymentSpec, all_deployments
from flows.work_pool_watch import NOT_READY, READY, work_pool_watch
from tasks.work_pools import PoolLayout, standby_name

WATCH_DEPLOYMENT = "on-pool-event"


def watch_spec(layout: PoolLayout) -> DeploymentSpec:
    """`work-pool-watch/on-pool-event`: run by Prefect on the primary pool's events."""
    trigger = DeploymentEventTrigger(
        name=f"{layout.primary} ready or not",
        description=(
            f"Alerts when work pool {layout.primary} has no ready worker, and resolves "
            "the alert when it has one again."
        ),
        expect={NOT_READY, READY},
        match={
            "prefect.resource.id": "prefect.work-pool.*",
            "prefect.resource.name": layout.primary,
        },
        posture=Posture.Reactive,
        threshold=1,
        # The run's own start stands for the event's time (seconds later): Prefect 3.9
        # cannot render `{{ event.occurred }}` into a parameter ("DateTime is not JSON
        # serializable"), and the action then fails.
        parameters={"pool": "{{ event.resource.name }}", "event": "{{ event.event }}"},
    )
    return DeploymentSpec(
        work_pool_watch,
        WATCH_DEPLOYMENT,
        (),
        tags=("work-pools", "runbook:failover-procedures"),
        triggers=(trigger,),
    )


def pool_registrations(layout: PoolLayout, image: str | None = None) -> list[RunnerDeployment]:
    """Every deployment to register for `layout`, the active side's schedules active."""
    runners = []
    for spec in all_deployments():
        if spec.triggers:
            # Started by an event: one registration (twins would make one automation
            # each, and two runs per event), on the standby pool, outside the region
            # the event may be about.
            runners.append(spec.to_runner(work_pool=layout.standby or layout.primary, image=image))
            continue
        runners.append(
            spec.to_runner(
                work_pool=layout.primary, image=image, schedules_active=layout.active == "primary"
            )
        )
        if layout.standby is not None:
            runners.append(
                spec.to_runner(
                    name=standby_name(spec.name),
                    work_pool=layout.standby,
                    image=image,
                    schedules_active=layout.active == "standby",
                )
            )
    watch_pool = layout.standby or layout.primary
    runners.append(watch_spec(layout).to_runner(work_pool=watch_pool, image=image))
    return runners


def settle_version(runner: RunnerDeployment) -> VersionInfo:
    """Give `runner` the version `apply()` registers, so it compares with what is there,
    and return it for `apply(version_info=...)` (which would infer it again): in a git
    checkout with a remote, Prefect replaces the flow's own version (a hash of its
    file) with the commit, as `serve()` under `make up` does too."""
    return runner._get_deployment_version_info(runner.version_type)


def registration_fields(deployment: DeploymentResponse) -> dict[str, Any]:
    """What the UI shows of a registered deployment and what decides how it runs: its
    schedules, form, defaults, tags, description, concurrency, entrypoint and pool."""
    limit = deployment.global_concurrency_limit
    options = deployment.concurrency_options
    return {
        "description": deployment.description,
        "tags": sorted(deployment.tags),
        "parameters": deployment.parameters,
        "parameter_openapi_schema": deployment.parameter_openapi_schema,
        "enforce_parameter_schema": deployment.enforce_parameter_schema,
        "entrypoint": deployment.entrypoint,
        "version": deployment.version,
        "paused": deployment.paused,
        "schedules": sorted(
            (
                _json(s.schedule.model_dump(mode="json") if s.schedule else None),
                s.active,
                _json(s.parameters),
            )
            for s in deployment.schedules
        ),
        "concurrency_limit": limit.limit if limit else None,
        "collision_strategy": options.collision_strategy.value if options and limit else None,
        "work_pool_name": deployment.work_pool_name,
        "job_variables": deployment.job_variables or {},
    }


def desired_fields(runner: RunnerDeployment) -> dict[str, Any]:
    """`registration_fields` as `runner` would register them."""
    options = runner.concurrency_options
    return {
        "description": runner.description,
        "tags": sorted(runner.tags),
        "parameters": runner.model_dump(mode="json", include={"parameters"})["parameters"],
        "parameter_openapi_schema": runner._parameter_openapi_schema.model_dump(exclude_unset=True),
        "enforce_parameter_schema": runner.enforce_parameter_schema,
        "entrypoint": runner.entrypoint,
        "version": runner.version,
        "paused": bool(runner.paused),
        "schedules": sorted(
            (
                _json(s.schedule.model_dump(mode="json") if s.schedule else None),
                bool(s.active),
                _json(s.parameters),
            )
            for s in runner.schedules or []
        ),
        "concurrency_limit": runner.concurrency_limit,
        "collision_strategy": options.collision_strategy.value
        if options and runner.concurrency_limit
        else None,
        "work_pool_name": runner.work_pool_name,
        "job_variables": runner.job_variables or {},
    }


def automation_fields(automation: Any) -> str:
    """An automation as comparable text: its name, what fires it and what it does, without
    the ids the server gives its parts."""
    dumped = automation.model_dump(
        mode="json", include={"name", "description", "enabled", "trigger", "actions"}
    )
    dumped["trigger"].pop("id", None)
    dumped["trigger"]["expect"] = sorted(dumped["trigger"].get("expect") or [])
    return _json(dumped)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
