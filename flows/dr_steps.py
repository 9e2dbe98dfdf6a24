"""What every DR flow does around its own steps: the plan it shows, the approval, the
lock per scenario, maintenance mode that always ends off, and the record of its timings
with the RTO and RPO it achieved.

A DR run is a dry run (the plan and every call it would make, touching nothing), a
drill (every step for real against scratch targets) or a real run. The plan is made
once, before the approval, and what runs afterwards is exactly that plan: the flows
act on the plan's fields, never on a second look at the systems.

Maintenance mode is noted in the ops catalog before it is turned on. The flow turns it
off at the end, or on its way out of a failure; when the run is cancelled from the UI
its process is killed, and Prefect runs `release_maintenance` in the serving process:
it reads from the catalog what this run turned on, turns it off, and can run any number
of times.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import Flow as FlowInfo
from prefect.client.schemas.objects import FlowRun, State
from prefect.exceptions import MissingContextError
from prefect.flows import Flow
from prefect.logging import get_logger
from prefect.runtime import flow_run as current_run
from pydantic import BaseModel, Field

from blocks import DisasterRecovery, PlatformGateway, PostgresDatabase, load_block
from blocks.catalog import dr_runs, opened
from blocks.names import ALERT_CHANNELS_BLOCK, DR_BLOCK, GATEWAY_BLOCK, OPS_DATABASE_BLOCK
from feedback_ops.errors import ConfigError, OpsError
from flows.alert_steps import AlertTargets, raise_alert_beside
from flows.approvals import Approval, wait_for_approval
from flows.locks import lock_if_free
from policy import Severity
from policy.disaster_recovery import TARGETS, Achieved, Mode, Scenario, achieved, duration
from tasks.catalog import read_running_dr_runs, save_dr_run
from tasks.gateway import maintenance_off, maintenance_on, manual_off_command
from tasks.notify import Alert

RUNBOOK_SECTION = "Disaster Recovery"
WATCHDOG = "dr-watchdog"
SCHEDULED_DRILL = "the monthly drill schedule"
"""`triggered_by` of the scheduled drills: they touch scratch targets only, so they go
ahead without waiting for a person at 05:00 on a Sunday."""


class PlannedStep(BaseModel):
    """One step of a DR plan: what it does, and the exact call it makes."""

    title: str
    call: str
    skipped: str | None = None
    """Why a drill or this configuration leaves it out; None when it runs."""


class DrPlan(BaseModel):
    """Everything an approved DR run will do; shown in the approval form and the dry
    run's checklist, and kept in `ops.dr_runs.plan`."""

    scenario: Scenario
    mode: Mode
    reason: str
    incident_started_at: datetime
    facts: list[tuple[str, str]] = Field(default_factory=list)
    """What the assessment found, as (what, value) rows."""
    steps: list[PlannedStep] = Field(default_factory=list)
    recovery_point: datetime | None = None
    expected_seconds: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    """What the flow acts on after the approval (ids, names, bodies): nothing else."""

    @property
    def digest(self) -> str:
        """The first 12 hex digits of the plan's SHA-256: the approval names it, the
        record keeps it."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def markdown(self, heading: str) -> str:
        """The plan as an operator reads it: facts, then the numbered steps as a
        checklist, each with its exact call."""
        targets = TARGETS[self.scenario]
        lines = [
            f"# {heading}",
            "",
            f"**{self.scenario.flow_name}** · {self.mode.value} · reason `{self.reason}` · "
            f"plan `{self.digest}`",
            "",
            f"Incident started {self.incident_started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
            f"UTC. Targets: RTO {duration(targets.rto)}, RPO {duration(targets.rpo)}.",
            "",
            "| what | value |",
            "|---|---|",
            *(f"| {what} | {value} |" for what, value in self.facts),
            "",
            "## Steps",
            "",
        ]
        for number, planned in enumerate(self.steps, 1):
            box = "[ ]" if planned.skipped is None else "[~]"
            # The UI renders no emphasis inside a task list item: plain text reads best.
            lines.append(f"{number}. {box} {planned.title}: `{planned.call}`")
            if planned.skipped is not None:
                lines.append(f"   - skipped: {planned.skipped}")
        return "\n".join(lines)


class DrApproval(Approval):
    """The approval form of a DR run: the plan is shown above it."""

    approve: bool = Field(
        default=False,
        title="Approve",
        description="Tick to carry out exactly the plan above.",
    )


@dataclass(frozen=True)
class Decision:
    """How the approval ended."""

    go: bool
    by: str
    how: Literal["approved", "declined", "timed out", "auto-proceeded", "not asked"]


@dataclass
class DrBlocks:
    """The blocks a DR run works with, loaded once."""

    gateway: PlatformGateway
    ops_db: PostgresDatabase
    dr: DisasterRecovery
    targets: AlertTargets

    @classmethod
    def load(
        cls, gateway_block: str, ops_database_block: str, alert_channels_block: str, dr_block: str
    ) -> DrBlocks:
        """The named blocks; the DR block may be absent (its defaults then apply)."""
        try:
            dr = load_block(DisasterRecovery, dr_block)
        except ValueError:
            dr = DisasterRecovery()
        return cls(
            gateway=load_block(PlatformGateway, gateway_block),
            ops_db=load_block(PostgresDatabase, ops_database_block),
            dr=dr,
            targets=AlertTargets(ops_database_block, alert_channels_block),
        )

    def action_gateway(self, mode: Mode) -> PlatformGateway | None:
        """The gateway the run's admin calls go to: the platform's, or in a drill the
        drill gateway (None: a drill without one skips those calls)."""
        if mode is not Mode.DRILL:
            return self.gateway
        if not self.dr.drill_gateway_url:
            return None
        return self.gateway.model_copy(update={"url": self.dr.drill_gateway_url})


def incident_start(given: datetime | None, now: datetime) -> datetime:
    """The incident's start: as given, or now.

    Raises:
        ConfigError: it lies in the future.
    """
    if given is None:
        return now
    if given.tzinfo is None:
        raise ConfigError("incident_started_at needs a UTC offset, e.g. 2026-12-06T21:40+01:00")
    if given > now:
        raise ConfigError(
            f"incident_started_at {given.isoformat()} is in the future (now "
            f"{now.isoformat(timespec='seconds')}); give when the incident began"
        )
    return given


NO_DRILL_GATEWAY = "a drill without DR_DRILL_GATEWAY_URL never calls the platform's gateway"


def gateway_call(
    title: str,
    gateway: PlatformGateway | None,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> PlannedStep:
    """The planned call to a gateway, skipped in a drill that has no drill gateway."""
    shown = f" {json.dumps(body, ensure_ascii=False)}" if body is not None else ""
    if gateway is None:
        return PlannedStep(
            title=title, call=f"{method} <gateway>{path}{shown}", skipped=NO_DRILL_GATEWAY
        )
    return PlannedStep(title=title, call=f"{method} {gateway.base_url()}{path}{shown}")


class DrRecord:
    """One DR run's row in `ops.dr_runs`: saved when the run starts, after every step,
    and at its end, so the figures are there whatever happens to the run."""

    def __init__(self, plan: DrPlan, blocks: DrBlocks, triggered_by: str) -> None:
        self.plan = plan
        self.blocks = blocks
        self.flow_run_id = str(current_run.get_id() or "")
        self.started_at = datetime.now(UTC)
        self.steps: list[dict[str, Any]] = []
        self.service_validated_at: datetime | None = None
        self.row: dict[str, Any] = {
            "flow_run_id": self.flow_run_id,
            "scenario": plan.scenario.value,
            "mode": plan.mode.value,
            "status": "planned" if plan.mode is Mode.DRY_RUN else "running",
            "triggered_by": triggered_by or "by hand",
            "incident_started_at": plan.incident_started_at,
            "started_at": self.started_at,
            "recovery_point": plan.recovery_point,
            "rto_target_seconds": TARGETS[plan.scenario].rto.total_seconds(),
            "rpo_target_seconds": TARGETS[plan.scenario].rpo.total_seconds(),
            "plan": plan.model_dump(mode="json") | {"digest": plan.digest},
        }
        self.save()

    def save(self, **fields: Any) -> None:
        """Write the row with `fields` changed."""
        self.row.update(fields, steps=self.steps)
        save_dr_run(self.blocks.ops_db, self.row)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Time one step of the plan and record how it ended."""
        started = datetime.now(UTC)
        entry: dict[str, Any] = {"step": title, "started_at": started.isoformat()}
        self.steps.append(entry)
        try:
            yield
        except BaseException as exc:
            entry.update(outcome="failed", error=str(exc).splitlines()[0] if str(exc) else "")
            raise
        else:
            entry["outcome"] = "done"
        finally:
            ended = datetime.now(UTC)
            entry.update(
                finished_at=ended.isoformat(), seconds=round((ended - started).total_seconds(), 3)
            )
            self.save()

    def skipped(self, title: str, why: str) -> None:
        """Record a planned step a drill leaves out."""
        now = datetime.now(UTC).isoformat()
        self.steps.append(
            {
                "step": title,
                "started_at": now,
                "finished_at": now,
                "seconds": 0.0,
                "outcome": "skipped",
                "error": why,
            }  # fmt: skip
        )
        self.save()

    def validated(self) -> None:
        """Service is validated now: the moment the RTO is measured to."""
        self.service_validated_at = datetime.now(UTC)
        self.save(service_validated_at=self.service_validated_at)

    def decided(self, decision: Decision) -> None:
        """Record the approval's outcome."""
        self.save(approved_at=datetime.now(UTC), approved_by=f"{decision.by} ({decision.how})")

    def figures(self) -> Achieved:
        """The RTO and RPO achieved so far."""
        return achieved(
            self.plan.scenario,
            incident_started_at=self.plan.incident_started_at,
            service_validated_at=self.service_validated_at,
            recovery_point=self.plan.recovery_point,
        )

    def finish(self, status: str, error: str | None = None) -> Achieved:
        """Record the end, with the figures; returns them."""
        figures = self.figures()
        self.save(
            status=status,
            finished_at=datetime.now(UTC),
            rto_seconds=figures.rto_seconds,
            rpo_seconds=figures.rpo_seconds,
            error=error,
        )
        return figures


def approve(
    plan: DrPlan, *, timeout_seconds: int, triggered_by: str, dr: DisasterRecovery
) -> Decision:
    """Pause with the plan in the approval form until someone answers.

    A run the watchdog started goes ahead after `dr.auto_proceed_minutes` unanswered
    minutes when that is set; otherwise no answer in `timeout_seconds` is a decline.
    """
    if plan.mode is Mode.DRILL and triggered_by == SCHEDULED_DRILL:
        return Decision(True, SCHEDULED_DRILL, "not asked")
    automatic = bool(triggered_by) and dr.auto_proceed_minutes > 0
    wait = max(1, round(dr.auto_proceed_minutes * 60)) if automatic else timeout_seconds
    text = plan.markdown(f"Approve {plan.scenario.flow_name}?")
    if automatic:
        text += (
            f"\n\nStarted by {triggered_by}: without an answer this run goes ahead in "
            f"{duration(wait)} (DR_AUTO_PROCEED_MINUTES)."
        )
    try:
        answer = wait_for_approval(DrApproval, text, wait, "nothing was changed")
    except OpsError:
        if automatic:
            return Decision(True, f"no answer in {duration(wait)}", "auto-proceeded")
        return Decision(False, f"no answer in {wait} s", "timed out")
    return Decision(answer.approve, answer.decided_by, "approved" if answer.approve else "declined")


@contextmanager
def dr_lock(scenario: Scenario, ops_db: PostgresDatabase) -> Iterator[None]:
    """One run of a scenario at a time (real or drill); a second is refused at once,
    naming the run that holds it, before it changes anything.

    Raises:
        OpsError: another run of the scenario holds the lock.
    """
    with lock_if_free(f"dr:{scenario.value}") as free:
        if not free:
            others = [
                str(row["flow_run_id"])
                for row in read_running_dr_runs(ops_db, scenario.value)
                if row["flow_run_id"] != str(current_run.get_id())
            ]
            holder = f" ({', '.join(others)})" if others else ""
            raise OpsError(
                f"another {scenario.flow_name} run is under way{holder}; this one changed "
                "nothing: wait for it or cancel it"
            )
        yield


@contextmanager
def maintenance_mode(
    record: DrRecord, gateway: PlatformGateway | None, reason: str, estimated_duration: str
) -> Iterator[None]:
    """Maintenance mode on for the block's duration, and off on every way out of it; in
    a drill without a drill gateway both calls are skipped and recorded so.

    A failure to turn it off raises a critical alert naming the manual command.
    """
    if gateway is None:
        record.skipped("maintenance mode on", "no drill gateway")
        yield
        record.skipped("maintenance mode off", "no drill gateway")
        return
    ops_db = record.blocks.ops_db
    with record.step("maintenance mode on"):
        maintenance_on(
            gateway,
            ops_db,
            flow_run_id=record.flow_run_id,
            reason=reason,
            estimated_duration=estimated_duration,
        )
    try:
        yield
    except BaseException:
        turn_off_or_alert(gateway, ops_db, record.blocks.targets, record.flow_run_id)
        raise
    with record.step("maintenance mode off"):
        try:
            maintenance_off(gateway, ops_db)
        except Exception as exc:
            _alert_still_on(gateway.base_url(), record.flow_run_id, exc, record.blocks.targets)
            raise


def turn_off_or_alert(
    gateway: PlatformGateway, ops_db: PostgresDatabase, targets: AlertTargets, run_id: str
) -> bool:
    """Turn maintenance mode off after a failure; a failure to do so is a critical
    alert (never raised: the run's own failure is what it fails with)."""
    try:
        maintenance_off.fn(gateway, ops_db)
    except Exception as exc:
        _alert_still_on(gateway.base_url(), run_id, exc, targets)
        return False
    return True


def _alert_still_on(url: str, run_id: str, exc: BaseException, targets: AlertTargets) -> None:
    raise_alert_beside(
        Alert(
            name="dr-maintenance-still-on",
            severity=Severity.CRITICAL,
            summary=f"Maintenance mode is still ON at {url}: turning it off failed ({exc}). "
            f"Turn it off by hand: {manual_off_command(url)}",
            details={"gateway": url, "flow_run": run_id, "error": str(exc)},
            dedup_key=f"dr-maintenance-still-on:{url}",
            source_flow_run=run_id,
            runbook_section=RUNBOOK_SECTION,
        ),
        targets,
    )


def release_maintenance(flow: Flow[Any, Any] | FlowInfo, flow_run: FlowRun, state: State) -> None:
    """Prefect hook on failure, crash and cancellation: turn off the maintenance mode
    this run turned on, as the ops catalog records it, and close the run's record.

    A cancelled run's hook runs in the serving process after the run's process was
    killed: everything it needs is read from the run's parameters and the catalog, and
    running it twice does nothing the second time.
    """
    logger = _hook_logger()
    params = flow_run.parameters or {}
    run_id = str(flow_run.id)
    try:
        blocks = DrBlocks.load(
            params.get("gateway_block", GATEWAY_BLOCK),
            params.get("ops_database_block", OPS_DATABASE_BLOCK),
            params.get("alert_channels_block", ALERT_CHANNELS_BLOCK),
            params.get("dr_block", DR_BLOCK),
        )
        with opened(blocks.ops_db) as engine:
            left_on = [r for r in dr_runs.open_maintenance(engine) if r["flow_run_id"] == run_id]
            for url in dict.fromkeys(str(r["gateway_url"]) for r in left_on):
                gateway = blocks.gateway.model_copy(update={"url": url})
                if turn_off_or_alert(gateway, blocks.ops_db, blocks.targets, run_id):
                    logger.info("maintenance mode at %s turned off after %s", url, state.name)
            dr_runs.close_run(
                engine,
                run_id,
                status="cancelled" if state.is_cancelled() or state.is_cancelling() else "failed",
                at=datetime.now(UTC),
                error=(state.message or state.name or "ended").splitlines()[0][:500],
            )
    except Exception as exc:  # a hook's failure must be seen, never lost
        logger.error("DR cleanup of flow run %s failed: %s", run_id, exc)


def _hook_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # the serving process, after a cancellation
        return get_logger("feedback_ops.dr")


DR_HOOKS: dict[str, Any] = {
    "on_failure": [release_maintenance],
    "on_crashed": [release_maintenance],
    "on_cancellation": [release_maintenance],
}
"""The hooks every DR flow is declared with."""


def publish_outcome(record: DrRecord, figures: Achieved, outcome: str, notes: list[str]) -> None:
    """The final artifact: the RTO and RPO against the targets, each step's timing; a
    missed objective raises an alert (a drill's as high, a real run's as critical)."""
    plan = record.plan
    targets = TARGETS[plan.scenario]
    rto = "not reached" if figures.rto_seconds is None else duration(figures.rto_seconds)
    rpo = "none kept" if figures.rpo_seconds is None else duration(figures.rpo_seconds)
    verdict = {True: "met", False: "**missed**", None: "-"}
    rows = "\n".join(
        f"| {s['step']} | {s.get('outcome')} | {s.get('seconds', 0):.1f} s | "
        f"{s.get('error') or ''} |"
        for s in record.steps
    )
    point = (
        f"{plan.recovery_point.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if plan.recovery_point
        else "-"
    )
    validated = (
        f"{record.service_validated_at:%Y-%m-%d %H:%M:%S} UTC"
        if record.service_validated_at
        else "not validated"
    )
    extra = "".join(f"\n- {note}" for note in notes)
    # One line: the UI breaks the paragraph at a newline.
    started = f"Incident started {plan.incident_started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    create_markdown_artifact(
        key=f"dr-{plan.scenario.value}",
        description=f"{plan.scenario.flow_name} ({plan.mode.value}): RTO {rto}, RPO {rpo}",
        markdown=f"""# {plan.scenario.flow_name}: {outcome}

{plan.mode.value} · plan `{plan.digest}` · reason `{plan.reason}`

| | achieved | target | |
|---|---|---|---|
| RTO | {rto} | {duration(targets.rto)} | {verdict[figures.rto_met]} |
| RPO | {rpo} | {duration(targets.rpo)} | {verdict[figures.rpo_met]} |

{started}; service validated {validated}; recovery point {point}.{extra}

| step | outcome | took | note |
|---|---|---|---|
{rows}
""",
    )
    if figures.breaches:
        raise_alert_beside(
            Alert(
                name="dr-objective-missed",
                severity=Severity.HIGH if plan.mode is Mode.DRILL else Severity.CRITICAL,
                summary=f"{plan.scenario.flow_name} ({plan.mode.value}) missed its "
                f"objectives: {'; '.join(figures.breaches)}",
                details={
                    "flow_run": record.flow_run_id,
                    "rto_seconds": figures.rto_seconds,
                    "rpo_seconds": figures.rpo_seconds,
                },
                dedup_key=f"dr-objective-missed:{plan.scenario.value}:{record.flow_run_id}",
                source_flow_run=record.flow_run_id,
                runbook_section=RUNBOOK_SECTION,
            ),
            record.blocks.targets,
        )


def run_plan(
    plan: DrPlan,
    blocks: DrBlocks,
    *,
    triggered_by: str,
    approval_timeout_seconds: int,
    act: Callable[[DrRecord], list[str]],
) -> DrOutcome:
    """Carry a plan out as every DR flow does: a dry run publishes its checklist and
    stops; otherwise take the scenario's lock, ask for approval, and run `act` (the
    flow's own steps, returning notes for the final artifact), recording the run from
    the approval to its end with the RTO and RPO achieved.

    Raises:
        OpsError: another run of the scenario is under way, or a step failed (the run's
            record then says failed, with the figures so far).
    """
    outcome = _carry_out(plan, blocks, triggered_by, approval_timeout_seconds, act)
    get_run_logger().info(
        "%s %s: %s (RTO %s, RPO %s)",
        plan.scenario.flow_name,
        plan.mode.value,
        outcome.outcome,
        "-" if outcome.rto_seconds is None else duration(outcome.rto_seconds),
        "-" if outcome.rpo_seconds is None else duration(outcome.rpo_seconds),
    )
    return outcome


def _carry_out(
    plan: DrPlan,
    blocks: DrBlocks,
    triggered_by: str,
    approval_timeout_seconds: int,
    act: Callable[[DrRecord], list[str]],
) -> DrOutcome:
    if plan.mode is Mode.DRY_RUN:
        record = DrRecord(plan, blocks, triggered_by)
        publish_checklist(plan)
        return DrOutcome.of(record, "dry run: nothing was changed")
    with dr_lock(plan.scenario, blocks.ops_db):
        record = DrRecord(plan, blocks, triggered_by)
        decision = approve(
            plan, timeout_seconds=approval_timeout_seconds, triggered_by=triggered_by, dr=blocks.dr
        )
        record.decided(decision)
        if not decision.go:
            record.finish("declined", f"{decision.how}: {decision.by}")
            get_run_logger().info("%s %s by %s: nothing was changed", plan.scenario.flow_name,
                                  decision.how, decision.by)  # fmt: skip
            return DrOutcome.of(record, decision.how, decision)
        get_run_logger().info("plan %s %s by %s", plan.digest, decision.how, decision.by)
        try:
            notes = act(record)
        except Exception as exc:
            figures = record.finish("failed", str(exc).splitlines()[0] if str(exc) else repr(exc))
            publish_outcome(record, figures, "failed", [f"failed: {exc}"])
            raise
        figures = record.finish("completed")
        publish_outcome(record, figures, "completed", [f"{decision.how} by {decision.by}", *notes])
        return DrOutcome.of(record, "completed", decision, notes=notes)


def publish_checklist(plan: DrPlan) -> None:
    """A dry run's artifact: the plan as a game-day checklist."""
    create_markdown_artifact(
        key=f"dr-{plan.scenario.value}-checklist",
        description=f"{plan.scenario.flow_name} dry run: {len(plan.steps)} steps",
        markdown=plan.markdown(f"Dry run of {plan.scenario.flow_name}: the checklist")
        + "\n\nNothing was changed. Tick each step off in a game-day drill.",
    )


class DrOutcome(BaseModel):
    """What a DR flow returns (`feedback-ops run dr-… --json` prints it as `result`)."""

    scenario: str
    mode: str
    outcome: str
    plan_digest: str
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    rto_met: bool | None = None
    rpo_met: bool | None = None
    decided_by: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        record: DrRecord,
        outcome: str,
        decision: Decision | None = None,
        **details: Any,
    ) -> DrOutcome:
        """The outcome of a recorded run, with its figures."""
        figures = record.figures()
        return cls(
            scenario=record.plan.scenario.value,
            mode=record.plan.mode.value,
            outcome=outcome,
            plan_digest=record.plan.digest,
            rto_seconds=figures.rto_seconds,
            rpo_seconds=figures.rpo_seconds,
            rto_met=figures.rto_met,
            rpo_met=figures.rpo_met,
            decided_by=decision.by if decision else "",
            details=details,
        )
