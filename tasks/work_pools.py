"""The work pools on the Prefect server: which set of deployments is active, and the
swap that moves scheduled work between the primary pool and the standby pool.

`feedback-ops deploy` registers every deployment on the primary pool and, with a
standby pool, a twin named `<name>-standby` there, its schedules inactive. It records
the layout (the pools' names and which side is active) in a Prefect variable, so the
UI's Variables page shows it and every later `deploy` keeps the side that is active.
The swap (`feedback-ops pool-failover`, or the `work-pool-watch` flow when the policy
allows) is idempotent: run again after a failure half-way, it finishes the job.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, State, StateType, WorkPoolStatus
from prefect.client.schemas.responses import DeploymentResponse, OrchestrationResult, SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Scheduled

from feedback_ops.errors import OpsError
from tasks import QUICK, step
from tasks.prefect_api import PAGE, every_page

LAYOUT_VARIABLE = "feedback-ops-work-pools"
STANDBY_SUFFIX = "-standby"
MOVED = "Moved"
"""The state name of a run the swap took off the old side; its twin runs on the new."""
SUPERSEDED = "Superseded"
"""The state name of a scheduled run the swap did not move: an older run of a backlog,
or a time the new side's schedule has a run for."""
STRAY_RUN_SECONDS = 5.0
"""How long the swap waits before it looks at the old side again for runs a scheduler
pass in flight inserted there."""

Side = Literal["primary", "standby"]
SIDES: tuple[Side, ...] = ("primary", "standby")


@dataclass(frozen=True)
class PoolLayout:
    """The work pools the deployments are registered on, and which side runs them."""

    primary: str
    standby: str | None = None
    active: Side = "primary"

    def pool(self, side: Side) -> str:
        """The pool of one side.

        Raises:
            OpsError: `side` is the standby and none is registered.
        """
        if side == "primary":
            return self.primary
        if self.standby is None:
            raise OpsError(
                "no standby work pool is registered on this Prefect server: run "
                f"`feedback-ops deploy --pool {self.primary} --standby-pool ops-standby` first"
            )
        return self.standby

    @property
    def active_pool(self) -> str:
        """The pool whose workers run the scheduled work now."""
        return self.pool(self.active)


def standby_name(name: str) -> str:
    """The standby twin's deployment name of a deployment `name`."""
    return f"{name}{STANDBY_SUFFIX}"


def read_layout(client: SyncPrefectClient) -> PoolLayout | None:
    """The layout `feedback-ops deploy` recorded, or None when nothing was deployed."""
    variable = client.read_variable_by_name(LAYOUT_VARIABLE)
    if variable is None:
        return None
    value = variable.value if isinstance(variable.value, dict) else json.loads(str(variable.value))
    return PoolLayout(
        primary=str(value["primary"]),
        standby=value.get("standby"),
        active=cast("Side", value.get("active", "primary")),
    )


def save_layout(client: SyncPrefectClient, layout: PoolLayout) -> None:
    """Record the layout, creating the variable the first time."""
    value: dict[str, Any] = {
        "primary": layout.primary,
        "standby": layout.standby,
        "active": layout.active,
    }
    if client.read_variable_by_name(LAYOUT_VARIABLE) is None:
        client.create_variable(
            VariableCreate(name=LAYOUT_VARIABLE, value=value, tags=["feedback-ops"])
        )
    else:
        client.update_variable(VariableUpdate(name=LAYOUT_VARIABLE, value=value))


def active_deployment_name(full_name: str) -> str:
    """`flow/deployment` of the twin that runs on the active side: the standby twin's
    name while the standby is active, else `full_name` itself."""
    with get_client(sync_client=True) as client:
        layout = read_layout(client)
    if layout is None or layout.active == "primary":
        return full_name
    return standby_name(full_name)


@dataclass
class SwapReport:
    """What a swap did, for the command's output and the watcher's alert."""

    from_pool: str
    to_pool: str
    deployments: int = 0
    schedules_activated: int = 0
    schedules_deactivated: int = 0
    moved_runs: list[str] = field(default_factory=list)
    """Ids of the new side's runs that took over the old side's waiting runs."""
    already_active: bool = False
    """`to` was the active side before: a repeat, or the end of a swap that stopped."""


def swap_active_pool(to: Side, *, force: bool = False) -> SwapReport:
    """Make `to` the active side: the other side's schedules inactive, this side's
    active, the other side's waiting runs moved here, and this side's next runs created
    at once rather than at the scheduler's next pass.

    Never are both sides active: the old side's schedules are turned off first (the
    server then deletes their future runs), and a waiting run is moved only once the
    old side accepted its cancellation, so a worker that took it meanwhile keeps it.

    Raises:
        OpsError: nothing deployed, no standby, or the target pool has no ready
            worker (unless `force`); nothing is changed then.
    """
    with get_client(sync_client=True) as client:
        layout = read_layout(client)
        if layout is None:
            raise OpsError(
                "no work pools are registered on this Prefect server: run "
                "`feedback-ops deploy --pool ops-primary --standby-pool ops-standby` first"
            )
        old: Side = "standby" if to == "primary" else "primary"
        to_pool, from_pool = layout.pool(to), layout.pool(old)
        if not force:
            _require_ready(client, to_pool)
        save_layout(client, replace(layout, active=to))
        report = SwapReport(
            from_pool=from_pool, to_pool=to_pool, already_active=layout.active == to
        )
        pairs = twin_pairs(client, layout)
        twins: dict[UUID, DeploymentResponse] = {}  # the new side's twin by old side's id
        for primary, standby in pairs:
            old_dep, new_dep = (standby, primary) if to == "primary" else (primary, standby)
            twins[old_dep.id] = new_dep
            for schedule in old_dep.schedules:
                if schedule.active:
                    client.update_deployment_schedule(old_dep.id, schedule.id, active=False)
                    report.schedules_deactivated += 1
            for schedule in new_dep.schedules:
                if not schedule.active:
                    client.update_deployment_schedule(new_dep.id, schedule.id, active=True)
                    report.schedules_activated += 1
        report.deployments = len(pairs)
        for new_dep in twins.values():
            if new_dep.schedules:
                client.request(
                    "POST", "/deployments/{id}/schedule", path_params={"id": new_dep.id}, json={}
                ).raise_for_status()
        report.moved_runs = _move_waiting_runs(client, twins, from_pool, to_pool)
        # A scheduler pass that read the old side's schedules before they were turned
        # off can still insert its runs there: once it is surely over, they are
        # cancelled too (the new side has its own run at each of those times).
        time.sleep(STRAY_RUN_SECONDS)
        report.moved_runs += _move_waiting_runs(client, twins, from_pool, to_pool)
    return report


def _require_ready(client: SyncPrefectClient, pool: str) -> None:
    try:
        status = client.read_work_pool(pool).status
    except ObjectNotFound:
        raise OpsError(f"work pool {pool!r} does not exist on this Prefect server") from None
    if status is not WorkPoolStatus.READY:
        shown = status.value if status else "unknown"
        raise OpsError(
            f"work pool {pool!r} has no ready worker (status {shown}): start one there "
            f"first (`prefect worker start --pool {pool}`), or pass --force to move anyway"
        )


def twin_pairs(
    client: SyncPrefectClient, layout: PoolLayout
) -> list[tuple[DeploymentResponse, DeploymentResponse]]:
    """Each primary deployment with its standby twin, as the server holds them now."""
    if layout.standby is None:
        return []
    deployments = client.read_deployments(
        work_pool_filter=WorkPoolFilter(
            name=WorkPoolFilterName(any_=[layout.primary, layout.standby])
        ),
        limit=200,
    )
    on_standby = {(d.flow_id, d.name): d for d in deployments if d.work_pool_name == layout.standby}
    pairs = []
    for deployment in deployments:
        if deployment.work_pool_name != layout.primary:
            continue
        twin = on_standby.get((deployment.flow_id, standby_name(deployment.name)))
        if twin is not None:
            pairs.append((deployment, twin))
    return sorted(pairs, key=lambda pair: pair[0].name)


def _move_waiting_runs(
    client: SyncPrefectClient,
    twins: dict[UUID, DeploymentResponse],
    from_pool: str,
    to_pool: str,
) -> list[str]:
    """Move the old side's runs that wait for a worker to the new side's twins.

    Of a schedule's backlog (every-minute sweeps pile up while no worker polls) only
    the newest run moves; the older ones are cancelled as `Superseded`, as the newest
    does their work, and so is a scheduled run whose time the new side's schedule has
    a run for (moving it would run that time twice). Runs started by hand move each.
    A run is first set Cancelled (named `Moved`); only when the server accepts that is
    its twin created, with an idempotency key made of the old run's id, so a second
    swap after a failure half-way creates each twin once.
    """
    if not twins:
        return []
    on_old_side = DeploymentFilter(id=DeploymentFilterId(any_=list(twins)))

    def runs_in(state: FlowRunFilterState) -> list[FlowRun]:
        return every_page(
            lambda offset: client.read_flow_runs(
                deployment_filter=on_old_side,
                flow_run_filter=FlowRunFilter(state=state),
                offset=offset,
                limit=PAGE,
            )
        )

    scheduled = FlowRunFilterStateType(any_=[StateType.SCHEDULED])
    waiting = [
        run
        for run in runs_in(FlowRunFilterState(type=scheduled))
        # Held by the deployment's own concurrency limit, not by a missing worker.
        if run.state is None or run.state.name != "AwaitingConcurrencySlot"
    ]
    moved_before = runs_in(FlowRunFilterState(name=FlowRunFilterStateName(any_=[MOVED])))
    newest: dict[UUID | None, FlowRun] = {}
    for run in waiting:
        if run.auto_scheduled and (
            run.deployment_id not in newest or _start(run) > _start(newest[run.deployment_id])
        ):
            newest[run.deployment_id] = run
    moving = []
    for run in waiting:
        why = None
        if run.auto_scheduled and newest[run.deployment_id] is not run:
            why = f"A newer run of its schedule moved to {to_pool}"
        elif run.auto_scheduled and _twin_runs_then(client, twins, run):
            why = f"Its schedule has a run at this time on {to_pool}"
        superseded = why is not None
        state: State[Any] = (
            Cancelled(name=SUPERSEDED, message=why)
            if why is not None
            else Cancelled(name=MOVED, message=f"Moved to work pool {to_pool} (from {from_pool})")
        )
        result: OrchestrationResult[Any] = client.set_flow_run_state(run.id, state)
        if result.status is SetStateStatus.ACCEPT and not superseded:
            moving.append(run)
        # Not accepted: a worker took it meanwhile, and it runs where it is.
    moved: list[str] = []
    # Runs a swap cancelled before it stopped short are twinned too; their keys make
    # that a no-op for those that have their twin already.
    for run in [*moved_before, *moving]:
        assert run.deployment_id is not None
        twin = client.create_flow_run_from_deployment(
            twins[run.deployment_id].id,
            parameters=run.parameters,
            state=Scheduled(scheduled_time=run.expected_start_time),
            tags=[*run.tags, f"moved-from:{from_pool}"],
            idempotency_key=f"pool-failover {run.id}",
        )
        if run in moving:
            moved.append(str(twin.id))
    return moved


def _twin_runs_then(
    client: SyncPrefectClient, twins: dict[UUID, DeploymentResponse], run: FlowRun
) -> bool:
    """Whether the new side's twin has a run of its own at `run`'s time, not cancelled:
    its schedule made one, so moving `run` too would run that time twice."""
    assert run.deployment_id is not None
    at = FlowRunFilterExpectedStartTime(
        after_=run.expected_start_time, before_=run.expected_start_time
    )
    return bool(
        client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[twins[run.deployment_id].id])
            ),
            flow_run_filter=FlowRunFilter(
                expected_start_time=at,
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(not_any_=[StateType.CANCELLED])
                ),
            ),
            limit=1,
        )
    )


def _start(run: FlowRun) -> datetime:
    return run.expected_start_time or datetime.min.replace(tzinfo=UTC)


@step("fail-over-work-pools", limit=QUICK)
def fail_over_work_pools(to: Side, force: bool = False) -> SwapReport:
    """Make `to` the active side of the work pools (see `swap_active_pool`); `force`
    even when no worker is ready there yet (a regional failover, whose old side is
    gone)."""
    return swap_active_pool(to, force=force)


@step("read-work-pool-layout", limit=QUICK)
def read_work_pool_layout() -> PoolLayout | None:
    """The layout `feedback-ops deploy` recorded on this Prefect server, if any."""
    with get_client(sync_client=True) as client:
        return read_layout(client)
