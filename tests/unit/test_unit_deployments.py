"""Every deployment loads as `serve()` registers it, and every flow and task is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest
from prefect import Flow, Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import load_flow_from_entrypoint

import flows
import tasks
from deployments import DeploymentSpec, all_deployments, flows_by_name
from deployments.schedules import TIMEZONE

SPECS = all_deployments()


def test_the_daily_backup_is_deployed() -> None:
    names = [spec.full_name for spec in SPECS]

    assert "database-backup/daily-0200" in names
    assert len(names) == len(set(names))
    assert flows_by_name() == {spec.flow_name: spec.flow for spec in SPECS}


def test_the_pos_sweep_runs_every_five_minutes_one_at_a_time_never_queued() -> None:
    [spec] = [s for s in SPECS if s.flow_name == "pos-health-sweep"]
    runner = spec.to_runner()

    assert spec.full_name == "pos-health-sweep/every-5-minutes"
    assert [s.schedule.cron for s in runner.schedules] == ["*/5 * * * *"]
    limit = runner.concurrency_options
    assert runner.concurrency_limit == 1
    assert limit is not None and limit.collision_strategy == "CANCEL_NEW"
    one_at_a_time = {"pos-health-sweep", "webhook-reconciliation", "dr-watchdog"}
    others = [s.to_runner() for s in SPECS if s.flow_name not in one_at_a_time]
    assert all(r.concurrency_limit is None for r in others)


def test_webhook_reconciliation_replays_every_15_minutes_and_runs_by_hand_dry() -> None:
    [spec] = [s for s in SPECS if s.flow_name == "webhook-reconciliation"]
    runner = spec.to_runner()

    assert spec.full_name == "webhook-reconciliation/every-15-minutes"
    [schedule] = runner.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (
        "*/15 * * * *",
        "Europe/Stockholm",
    )
    assert schedule.parameters == {"dry_run": False}
    assert runner.parameters == {}  # a run started by hand keeps the flow's dry_run=True
    assert runner.concurrency_limit == 1
    [manual] = [s for s in SPECS if s.flow_name == "webhook-replay"]
    assert (manual.full_name, manual.schedules) == ("webhook-replay/manual", ())


@pytest.mark.parametrize("spec", SPECS, ids=[s.full_name for s in SPECS])
def test_deployment_becomes_a_runner_deployment(spec: DeploymentSpec) -> None:
    runner = spec.to_runner()

    assert isinstance(runner, RunnerDeployment)
    assert runner.name == spec.name
    assert runner.flow_name == spec.flow_name
    assert runner.paused is False
    assert set(runner.tags) == set(spec.tags)
    assert len(runner.schedules) == len(spec.schedules)
    # Only manual deployments (the UI's Run button) and those events start have no
    # schedule.
    assert spec.schedules or spec.name == "manual" or spec.triggers


@pytest.mark.parametrize("spec", SPECS, ids=[s.full_name for s in SPECS])
def test_entrypoint_imports_and_resolves_to_the_flow(spec: DeploymentSpec) -> None:
    entrypoint = spec.to_runner().entrypoint
    assert entrypoint is not None
    # A module path ("flows.x.func", or "flows.x:func"), never a file path.
    module_name, _, attribute = (
        entrypoint.rpartition(":") if ":" in entrypoint else entrypoint.rpartition(".")
    )
    assert module_name.startswith("flows.")
    assert not module_name.endswith(".py") and "/" not in module_name

    assert getattr(importlib.import_module(module_name), attribute) is spec.flow
    loaded = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
    assert loaded.name == spec.flow_name


@pytest.mark.parametrize("spec", SPECS, ids=[s.full_name for s in SPECS])
def test_every_schedule_is_in_stockholm_and_never_an_interval(spec: DeploymentSpec) -> None:
    for schedule in spec.schedules:
        assert schedule.timezone == TIMEZONE == "Europe/Stockholm"
        assert schedule.interval is None
        assert schedule.cron is not None or schedule.rrule is not None
    for registered in spec.to_runner().schedules:
        assert not isinstance(registered.schedule, IntervalSchedule)
        assert isinstance(registered.schedule, CronSchedule | RRuleSchedule)
        assert registered.schedule.timezone == "Europe/Stockholm"
        assert registered.active


def modules_of(package: ModuleType) -> list[ModuleType]:
    return [package] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    ]


def prefect_objects() -> list[tuple[str, Flow | Task]]:
    found: dict[int, tuple[str, Flow | Task]] = {}
    for package in (flows, tasks):
        for module in modules_of(package):
            for attribute, value in vars(module).items():
                if isinstance(value, Flow | Task):
                    found.setdefault(id(value), (f"{module.__name__}.{attribute}", value))
    for spec in SPECS:
        found.setdefault(id(spec.flow), (spec.full_name, spec.flow))
    return sorted(found.values(), key=lambda item: item[0])


OBJECTS = prefect_objects()


def test_the_walk_finds_the_flows_and_their_tasks() -> None:
    names = {obj.name for _, obj in OBJECTS}

    assert "database-backup" in names
    assert {"dump-database", "verify-stored-object", "write-manifest"} <= names


@pytest.mark.parametrize(("where", "obj"), OBJECTS, ids=[where for where, _ in OBJECTS])
def test_every_flow_and_task_has_a_docstring(where: str, obj: Flow | Task) -> None:
    assert (inspect.getdoc(obj.fn) or "").strip(), f"{where} ({obj.name}) has no docstring"
    assert (obj.description or "").strip(), f"{where} ({obj.name}) has no description"


TASKS = [(where, obj) for where, obj in OBJECTS if isinstance(obj, Task)]


def test_tasks_live_under_tasks_and_flows_only_call_them() -> None:
    assert TASKS
    defined_in = {task.name: task.fn.__module__ for _, task in TASKS}
    assert all(m.startswith("tasks.") for m in defined_in.values()), defined_in
    for module in modules_of(tasks):
        if module is tasks:
            continue
        defined = [v for v in vars(module).values() if isinstance(v, Task)]
        assert defined, f"{module.__name__} holds no task: it belongs under blocks/"


@pytest.mark.parametrize(("where", "task"), TASKS, ids=[where for where, _ in TASKS])
def test_every_task_has_a_limit_and_the_shared_retry_policy(where: str, task: Task) -> None:
    # A step that records in the catalog and then tells people gets both limits.
    limits = {
        tasks.QUICK,
        tasks.TRANSFER,
        tasks.DELIVERY,
        tasks.QUICK + tasks.DELIVERY,
        tasks.REPLAY,
    }
    assert task.timeout_seconds in limits, (where, task.timeout_seconds)
    assert task.retry_condition_fn is tasks.retry_if_transient
    if task.retries:
        assert task.retries == tasks.RETRIES
        assert task.retry_delay_seconds in (
            tasks.RETRY_DELAYS,
            tasks.ALERT_RETRY_DELAYS,
            tasks.SWEEP_RETRY_DELAYS,
        )
    assert task.cache_policy is NO_CACHE


@pytest.mark.parametrize("scenario", ["database-loss", "regional-failover"])
def test_the_watchdog_events_start_their_dr_run_for_real_and_by_name(scenario: str) -> None:
    [spec] = [s for s in SPECS if s.full_name == f"dr-{scenario}/on-watchdog"]
    [trigger] = spec.triggers
    assert trigger.name == f"dr-watchdog starts dr-{scenario}"
    assert trigger.expect == {"feedback-ops.dr.triggered"}
    assert trigger.match.model_dump() == {"prefect.resource.id": f"feedback-ops.dr.{scenario}"}
    assert trigger.parameters == {
        "dry_run": False,
        "triggered_by": "dr-watchdog: {{ event.payload.trigger }}",
    }


def test_dr_runs_by_hand_are_dry_runs() -> None:
    for spec in SPECS:
        if spec.flow_name.startswith("dr-") and spec.name == "manual":
            runner = spec.to_runner()
            assert runner._parameter_openapi_schema.properties["dry_run"]["default"] is True
            assert not spec.parameters
