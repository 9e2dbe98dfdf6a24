"""What `feedback-ops deploy` registers for a layout of work pools, before any server
sees it: the primary set, the standby twins, the watcher, and the image of a container
pool on every one of them."""

from __future__ import annotations

from deployments import all_deployments
from deployments.pools import WATCH_DEPLOYMENT, desired_fields, pool_registrations
from tasks.work_pools import PoolLayout


def by_name(layout: PoolLayout, image: str | None = None) -> dict[str, dict[str, object]]:
    return {f"{r.flow_name}/{r.name}": desired_fields(r) for r in pool_registrations(layout, image)}


def active_flags(fields: dict[str, object]) -> set[bool]:
    return {schedule[1] for schedule in fields["schedules"]}  # type: ignore[attr-defined]


def test_the_primary_runs_the_schedules_and_each_deployment_has_a_standby_twin() -> None:
    registered = by_name(PoolLayout("ops-primary", "ops-standby"))
    specs = all_deployments()
    started_by_events = [s for s in specs if s.triggers]
    assert len(registered) == 2 * len(specs) - len(started_by_events) + 1
    for spec in started_by_events:
        # One registration, or each event would start two runs; on the standby pool.
        assert registered[spec.full_name]["work_pool_name"] == "ops-standby"
        assert f"{spec.full_name}-standby" not in registered
    for spec in specs:
        if spec.triggers:
            continue
        primary = registered[spec.full_name]
        twin = registered[f"{spec.full_name}-standby"]
        assert (primary["work_pool_name"], twin["work_pool_name"]) == ("ops-primary", "ops-standby")
        if spec.schedules:
            assert active_flags(primary) == {True} and active_flags(twin) == {False}
        # Apart from the pool and whether the schedules are on, the twin is the same.
        pool_and_schedules = {"work_pool_name": None, "schedules": None}
        assert twin | pool_and_schedules == primary | pool_and_schedules
    watch = registered[f"work-pool-watch/{WATCH_DEPLOYMENT}"]
    assert watch["work_pool_name"] == "ops-standby"  # where a worker is left to run it


def test_after_a_failover_a_redeploy_keeps_the_standby_active() -> None:
    registered = by_name(PoolLayout("ops-primary", "ops-standby", active="standby"))
    backup = registered["database-backup/daily-0200"]
    assert active_flags(backup) == {False}
    assert active_flags(registered["database-backup/daily-0200-standby"]) == {True}


def test_an_image_reaches_every_registration_the_watcher_included() -> None:
    registered = by_name(PoolLayout("ops-primary-k8s", "ops-standby"), "reg.example/fo:1.4")
    assert {str(f["job_variables"]) for f in registered.values()} == {
        "{'image': 'reg.example/fo:1.4'}"
    }


def test_without_a_standby_the_watcher_waits_on_the_primary() -> None:
    registered = by_name(PoolLayout("ops-primary"))
    assert len(registered) == len(all_deployments()) + 1
    assert registered[f"work-pool-watch/{WATCH_DEPLOYMENT}"]["work_pool_name"] == "ops-primary"
