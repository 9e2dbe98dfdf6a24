"""The one place that declares deployments: which flow, under what name, when."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Schedule
from prefect.types.entrypoint import EntrypointType

from deployments.schedules import at_hours, daily_at, every_minutes, monthly_drill, run_times
from flows.alerting import alert_acknowledge, alert_escalation
from flows.backup_report import backup_report
from flows.backup_retention import backup_retention
from flows.backup_verify import backup_verify
from flows.backups_resync import backups_resync
from flows.config_backup import app_config_backup, pos_config_backup
from flows.database_backup import database_backup
from flows.database_restore import database_restore
from flows.dr_database_loss import dr_database_loss
from flows.dr_pos_providers_down import dr_pos_providers_down
from flows.dr_regional_failover import dr_regional_failover
from flows.dr_steps import SCHEDULED_DRILL, WATCHDOG
from flows.dr_watchdog import DR_TRIGGER_EVENT, dr_watchdog, scenario_resource
from flows.parameters import TITLES
from flows.pos_failover import pos_failover
from flows.pos_health_sweep import pos_health_sweep
from flows.redis_restore import redis_restore
from flows.redis_snapshot import redis_snapshot
from flows.webhook_reconciliation import webhook_reconciliation
from flows.webhook_replay import webhook_replay
from policy import STOCKHOLM
from policy.disaster_recovery import Scenario


@dataclass(frozen=True)
class DeploymentSpec:
    """A flow served under a name, with its schedules and default parameters."""

    flow: Flow[Any, Any]
    name: str
    schedules: tuple[Schedule, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    skip_while_running: bool = False
    """One run at a time; a run due while one is running is cancelled, not queued."""
    triggers: tuple[DeploymentEventTrigger, ...] = ()
    """Events that start a run (Prefect creates an automation for each)."""

    @property
    def flow_name(self) -> str:
        """The flow's public name, e.g. `database-backup`."""
        return self.flow.name

    @property
    def full_name(self) -> str:
        """`flow/deployment`, as `run_deployment` takes it."""
        return f"{self.flow_name}/{self.name}"

    def to_runner(
        self,
        *,
        name: str | None = None,
        work_pool: str | None = None,
        image: str | None = None,
        schedules_active: bool = True,
    ) -> RunnerDeployment:
        """The deployment `serve()` registers, never paused on start, its form's fields
        labelled for operators (`flows.parameters.TITLES`).

        With `work_pool`, the same deployment for that pool's workers (`feedback-ops
        deploy`), under `name` if given, its schedules inactive unless
        `schedules_active`, and run in `image` by a Docker pool's workers.
        """
        schedules = [replace(s, active=s.active and schedules_active) for s in self.schedules]
        deployment = self.flow.to_deployment(
            name=name or self.name,
            schedules=schedules,
            parameters=self.parameters,
            tags=list(self.tags),
            triggers=list(self.triggers),
            work_pool_name=work_pool,
            job_variables={"image": image} if image else None,
            paused=False,
            entrypoint_type=EntrypointType.MODULE_PATH,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            )
            if self.skip_while_running
            else None,
        )
        assert isinstance(deployment, RunnerDeployment)
        for name, prop in deployment._parameter_openapi_schema.properties.items():
            prop["title"] = TITLES.get(name, name)
        return deployment


DR_TAGS = ("dr", "runbook:disaster-recovery")
ON_WATCHDOG = "on-watchdog"


def watchdog_trigger(scenario: Scenario) -> DeploymentEventTrigger:
    """The automation that turns dr-watchdog's event for `scenario` into a run of its DR
    flow: for real (not a dry run), showing its plan and waiting for approval."""
    return DeploymentEventTrigger(
        name=f"{WATCHDOG} starts {scenario.flow_name}",
        description=(
            f"When {WATCHDOG} finds an automated failover trigger of the runbook holding, "
            f"it emits {DR_TRIGGER_EVENT} for {scenario.flow_name}; this starts it."
        ),
        expect={DR_TRIGGER_EVENT},
        match={"prefect.resource.id": scenario_resource(scenario)},
        threshold=1,
        parameters={
            "dry_run": False,
            "triggered_by": WATCHDOG + ": {{ event.payload.trigger }}",
        },
    )


def all_deployments() -> list[DeploymentSpec]:
    """Every deployment, with its schedules."""
    return [
        DeploymentSpec(
            database_backup,
            "daily-0200",
            (daily_at(2, 0),),
            tags=("backup", "runbook:backup-recovery"),
        ),
        DeploymentSpec(
            redis_snapshot,
            "every-6h",
            (at_hours((0, 6, 12, 18)),),
            tags=("backup", "runbook:backup-recovery"),
        ),
        DeploymentSpec(
            pos_config_backup,
            "daily-0300",
            (daily_at(3, 0),),
            tags=("backup", "runbook:backup-recovery"),
        ),
        DeploymentSpec(
            app_config_backup,
            "daily-0400",
            (daily_at(4, 0),),
            tags=("backup", "runbook:backup-recovery"),
        ),
        DeploymentSpec(
            backup_verify,
            "daily-0500",
            (daily_at(5, 0),),
            tags=("backup", "runbook:backup-recovery"),
        ),
        DeploymentSpec(
            backup_retention,
            "daily-0600",
            # Scheduled runs delete; a run started by hand is a dry run unless told.
            (daily_at(6, 0, parameters={"dry_run": False}),),
            tags=("backup", "runbook:backup-recovery"),
        ),
        DeploymentSpec(
            backup_report,
            "daily-0800",
            (daily_at(8, 0),),
            tags=("backup", "runbook:backup-monitoring"),
        ),
        DeploymentSpec(
            alert_escalation,
            "every-minute",
            (every_minutes(1),),
            tags=("alerting", "runbook:escalation"),
        ),
        DeploymentSpec(
            pos_health_sweep,
            "every-5-minutes",
            (every_minutes(5),),
            tags=("pos", "runbook:pos-provider-connection-issues"),
            skip_while_running=True,
        ),
        DeploymentSpec(
            webhook_reconciliation,
            "every-15-minutes",
            # Scheduled runs replay; a run started by hand is a dry run unless told.
            (every_minutes(15, parameters={"dry_run": False}),),
            tags=("pos", "webhooks", "runbook:pos-provider-connection-issues"),
            skip_while_running=True,
        ),
        # Manual: the UI's Run button with the alert's dedup key.
        DeploymentSpec(alert_acknowledge, "manual", (), tags=("alerting",)),
        DeploymentSpec(database_restore, "manual", (), tags=("restore", "runbook:recovery")),
        DeploymentSpec(backups_resync, "manual", (), tags=("backup",)),
        DeploymentSpec(redis_restore, "manual", (), tags=("restore", "runbook:recovery")),
        DeploymentSpec(
            pos_failover, "manual", (), tags=("pos", "runbook:pos-provider-connection-issues")
        ),
        DeploymentSpec(
            webhook_replay,
            "manual",
            (),
            tags=("pos", "webhooks", "runbook:pos-integration-troubleshooting"),
        ),
        # Started by hand from the UI: a dry run unless told otherwise.
        DeploymentSpec(dr_database_loss, "manual", (), tags=DR_TAGS),
        DeploymentSpec(dr_pos_providers_down, "manual", (), tags=DR_TAGS),
        DeploymentSpec(dr_regional_failover, "manual", (), tags=DR_TAGS),
        # Started by dr-watchdog's events: for real, waiting for approval in the UI.
        DeploymentSpec(
            dr_database_loss,
            ON_WATCHDOG,
            (),
            tags=DR_TAGS,
            triggers=(watchdog_trigger(Scenario.DATABASE_LOSS),),
        ),
        DeploymentSpec(
            dr_regional_failover,
            ON_WATCHDOG,
            (),
            tags=DR_TAGS,
            triggers=(watchdog_trigger(Scenario.REGIONAL_FAILOVER),),
        ),
        DeploymentSpec(
            dr_watchdog,
            "every-minute",
            (every_minutes(1),),
            tags=("dr", "runbook:automated-failover-triggers"),
            skip_while_running=True,
        ),
        DeploymentSpec(
            dr_database_loss,
            "monthly-drill",
            (
                monthly_drill(
                    5,
                    first_year=datetime.now(STOCKHOLM).year,
                    parameters={"dry_run": False, "drill": True, "triggered_by": SCHEDULED_DRILL},
                ),
            ),
            tags=(*DR_TAGS, "drill"),
        ),
    ]


def flows_by_name() -> dict[str, Flow[Any, Any]]:
    """Every deployed flow by its public name, for `feedback-ops run`."""
    return {spec.flow_name: spec.flow for spec in all_deployments()}


def upcoming_runs(start: datetime, end: datetime) -> list[dict[str, str]]:
    """Every deployment's runs in [start, end), sorted by time, in Stockholm time."""
    runs = [
        {"flow": spec.flow_name, "deployment": spec.name, "at": at.isoformat()}
        for spec in all_deployments()
        for schedule in spec.schedules
        for at in run_times(schedule, start, end)
    ]
    return sorted(runs, key=lambda run: (datetime.fromisoformat(run["at"]), run["flow"]))
