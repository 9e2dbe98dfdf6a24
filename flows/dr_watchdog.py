"""Runbook, "Failover Procedures": the automated failover triggers, every minute.

Each run observes the primary region (the gateway's `GET /health`, once, which also
reports the error rate) and the platform's database (one connection and `SELECT 1`),
keeps the observations in `ops.dr_observations`, and judges the runbook's three
triggers on the last minutes of them (`policy.dr_triggers`):

* primary region unavailable > 5 minutes: `regional-failover`;
* database connection failures > 3 consecutive: `database-loss`;
* error rate > 50 % for > 2 minutes during business hours: `regional-failover`.

A trigger that newly holds fires once: its live row in `ops.dr_triggers`, a critical
page (runbook: "Disaster Recovery"; dedup key `dr-trigger:<trigger>`), and the Prefect
event DR_TRIGGER_EVENT on the scenario's resource (`scenario_resource`), which the DR
deployment's trigger turns into a `dr-<scenario>` run; the event's id is kept on the
row. While it keeps holding nothing fires again; once it no longer holds, its row is
cleared and its page resolved. While a DR run has the gateway in maintenance mode (or
the gateway says it is), triggers are judged and shown but not fired: the DR run is
the response already. The run's artifact is a table of the three checks and whether
each trigger holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import AwareDatetime, BaseModel

from blocks import PlatformGateway, PostgresDatabase, load_block
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    GATEWAY_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
)
from flows.alert_steps import AlertTargets, Conditions
from flows.parameters import BlockName
from policy import STOCKHOLM, Severity
from policy.disaster_recovery import Scenario
from policy.dr_triggers import TRIGGERS, Finding, Observation
from tasks.watchdog import (
    clear_dr_trigger,
    emit_dr_event,
    fire_dr_trigger,
    judge_dr_triggers,
    observe_database,
    observe_primary_region,
    record_dr_event,
    record_dr_observations,
)

DR_TRIGGER_EVENT: Final = "feedback-ops.dr.triggered"
"""The event a trigger emits when it fires; a DR deployment's trigger expects it."""
SECTION = "Disaster Recovery"
ALERT_PREFIX = "dr-trigger:"


def scenario_resource(scenario: Scenario | str) -> str:
    """The `prefect.resource.id` of a scenario's trigger events, e.g.
    `feedback-ops.dr.regional-failover`: what a DR deployment's trigger matches on.

    Raises:
        ValueError: `scenario` is not one of the runbook's scenarios.
    """
    return f"feedback-ops.dr.{Scenario(scenario).value}"


class TriggerReport(BaseModel):
    """One trigger in a watchdog run: what its check saw, whether it holds, what was done."""

    trigger: str
    scenario: str
    check: str
    observed: str
    """What the check saw in this run, in a few words."""
    holds: bool
    why: str
    action: str
    """fired, live, cleared, held back (with why), or empty: nothing to do."""
    event_id: str | None = None


class WatchdogResult(BaseModel):
    """What `feedback-ops run dr-watchdog --json` prints as `result`."""

    checked_at: datetime
    triggers: list[TriggerReport]
    fired: list[str] = []
    cleared: list[str] = []
    held_back: str | None = None
    """Why holding triggers were not fired (maintenance mode on), if they were not."""


class DrAlerts(Conditions):
    """The pages of the DR triggers, one condition per trigger (`dr-trigger:<name>`)."""

    def __init__(self, at: datetime, targets: AlertTargets) -> None:
        super().__init__(at, targets, ALERT_PREFIX)

    def fired(self, finding: Finding, event_id: str | None) -> None:
        """A trigger fired: page, critical, with what starts the DR run."""
        scenario = Scenario(finding.scenario)
        if event_id is not None:
            next_step = (
                f"{scenario.flow_name} is started by event {DR_TRIGGER_EVENT}; it shows its "
                "plan and waits for approval in the Prefect UI"
            )
        else:
            next_step = f"no event could be emitted: start {scenario.flow_name} by hand"
        rule = next(t.rule for t in TRIGGERS if t.name == finding.trigger)
        self._raise(
            f"{ALERT_PREFIX}{finding.trigger}",
            f"dr-trigger-{finding.trigger}",
            Severity.CRITICAL,
            f"Automated failover trigger: {finding.why}. {next_step}",
            {
                "trigger": finding.trigger,
                "rule": rule,
                "scenario": scenario.value,
                "flow": scenario.flow_name,
                "why": finding.why,
                "since": _iso(finding.since),
                "observed_at": _iso(finding.observed_at),
                "event": DR_TRIGGER_EVENT,
                "event_id": event_id,
            },
            SECTION,
        )

    def cleared(self, trigger: str) -> None:
        """The trigger no longer holds: its page is resolved."""
        self._clear(f"{ALERT_PREFIX}{trigger}")


@flow(name="dr-watchdog")
def dr_watchdog(
    as_of: AwareDatetime | None = None,
    gateway_block: BlockName = GATEWAY_BLOCK,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
) -> WatchdogResult:
    """Observe the primary region, the database and the error rate, and judge the
    runbook's automated failover triggers; a trigger that newly holds pages and starts
    its DR run through a Prefect event (runbook: "Failover Procedures").

    Args:
        as_of: The observations' time, for a drill of the triggers at another moment
            (business hours, a holiday); empty means now, as the schedule runs it.
        gateway_block: Name of the Platform Gateway block: where the primary region's
            gateway answers `/health`.
        database_block: Name of the Postgres Database block of the platform's database,
            whose connections are watched.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (observations, triggers, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a trigger is paged to.
    """
    at = as_of or datetime.now(UTC)
    gateway = load_block(PlatformGateway, gateway_block)
    gateway.base_url()  # no URL: say so, rather than report the region unavailable
    platform_db = load_block(PostgresDatabase, database_block)
    ops_db = load_block(PostgresDatabase, ops_database_block)
    run_id = str(flow_run.get_id()) if flow_run.get_id() else None

    region = observe_primary_region.submit(gateway, at)
    database = observe_database.submit(platform_db, at)
    observations = [*region.result(), database.result()]
    record_dr_observations(ops_db, observations, run_id)
    judgement = judge_dr_triggers(ops_db, at)

    held_back = _held_back(observations, judgement.maintenance)
    respond = _Responder(
        at, ops_db, run_id, AlertTargets(ops_database_block, alert_channels_block), held_back
    )
    seen = {o.check: o for o in observations}
    reports = [
        respond(finding, judgement.live.get(finding.trigger), seen)
        for finding in judgement.findings
    ]
    result = WatchdogResult(
        checked_at=at,
        triggers=reports,
        fired=[r.trigger for r in reports if r.action == FIRED],
        cleared=[r.trigger for r in reports if r.action == CLEARED],
        held_back=held_back,
    )
    _publish(result)
    return result


FIRED = "fired"
CLEARED = "cleared"


class _Responder:
    """What a watchdog run does about each finding: fire a trigger that newly holds,
    clear one that no longer does, leave a live one be."""

    def __init__(
        self,
        at: datetime,
        ops_db: PostgresDatabase,
        run_id: str | None,
        targets: AlertTargets,
        held_back: str | None,
    ) -> None:
        self.at, self.ops_db, self.run_id = at, ops_db, run_id
        self.targets, self.held_back = targets, held_back
        self._alerts: DrAlerts | None = None

    @property
    def alerts(self) -> DrAlerts:
        """The run's DR pages, read from the catalog only when one is raised or resolved."""
        if self._alerts is None:
            self._alerts = DrAlerts(self.at, self.targets)
        return self._alerts

    def __call__(
        self, finding: Finding, live: dict[str, Any] | None, seen: dict[str, Observation]
    ) -> TriggerReport:
        """Act on one finding (`live`: its trigger's live row); its row of the report."""
        check = next(t.check for t in TRIGGERS if t.name == finding.trigger)
        report = TriggerReport(
            trigger=finding.trigger,
            scenario=finding.scenario.value,
            check=check,
            observed=_observed(seen.get(check)),
            holds=finding.holds,
            why=finding.why,
            action="",
        )
        if finding.holds and live is not None:
            report.event_id = live.get("event_id")
            report.action = f"live since {_clock(live['fired_at'])}"
            if report.event_id is None and not self.held_back:
                # Fired before, but its event never reached Prefect: no DR run started yet.
                report.event_id = _emit(finding, live, self.ops_db, self.run_id)
                report.action += "; its event emitted now" if report.event_id else ""
        elif finding.holds and self.held_back:
            report.action = f"held back: {self.held_back}"
        elif finding.holds:
            self._fire(finding, report)
        elif live is not None:
            clear_dr_trigger(self.ops_db, finding.trigger, self.at, finding.why)
            self.alerts.cleared(finding.trigger)
            report.action = CLEARED
            get_run_logger().info("DR trigger %s cleared: %s", finding.trigger, finding.why)
        return report

    def _fire(self, finding: Finding, report: TriggerReport) -> None:
        """Make the trigger live, and if this run did: its event and its page."""
        row, new = fire_dr_trigger(self.ops_db, finding, self.at, self.run_id)
        if not new:
            report.event_id = row.get("event_id")
            report.action = f"live since {_clock(row['fired_at'])} (fired by another run)"
            return
        report.event_id = _emit(finding, row, self.ops_db, self.run_id)
        self.alerts.fired(finding, report.event_id)
        report.action = FIRED
        get_run_logger().warning(
            "DR trigger %s fired (%s): %s", finding.trigger, finding.scenario, finding.why
        )


def _emit(
    finding: Finding, row: dict[str, Any], ops_db: PostgresDatabase, run_id: str | None
) -> str | None:
    """Emit the trigger's event and note its id on the trigger's row."""
    scenario = Scenario(finding.scenario)
    related = (
        [{"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}]
        if run_id
        else []
    )
    event_id = emit_dr_event(
        DR_TRIGGER_EVENT,
        {
            "prefect.resource.id": scenario_resource(scenario),
            "prefect.resource.name": scenario.flow_name,
            "feedback-ops.dr.trigger": finding.trigger,
        },
        {
            "trigger": finding.trigger,
            "scenario": scenario.value,
            "why": finding.why,
            "observed_at": _iso(finding.observed_at),
            "since": _iso(finding.since),
            "fired_at": _iso(row["fired_at"]),
        },
        related,
    )
    if event_id is None:
        get_run_logger().error(
            "DR trigger %s: no Prefect event could be emitted; %s does not start by itself",
            finding.trigger,
            scenario.flow_name,
        )
        return None
    record_dr_event(ops_db, int(row["id"]), event_id)
    return event_id


def _held_back(observations: list[Observation], maintenance: list[dict[str, Any]]) -> str | None:
    """Why triggers must not fire now: maintenance mode is on, by a DR run or as the
    gateway says; None when they may."""
    if maintenance:
        first = maintenance[0]
        return (
            f"maintenance mode is on by DR run {first['flow_run_id']} since "
            f"{_clock(first['turned_on_at'])} ({first['reason']})"
        )
    if any(o.detail.get("maintenance") is True for o in observations):
        return "the gateway reports maintenance mode on"
    return None


def _observed(seen: Observation | None) -> str:
    """A check's observation in a few words, for the table."""
    if seen is None:
        return "not observed"
    detail = seen.detail
    if seen.value is not None:
        return f"{seen.value * 100:.1f} %"
    if seen.ok:
        ms = detail.get("ms")
        return f"ok ({ms:.0f} ms)" if isinstance(ms, int | float) else "ok"
    return str(detail.get("error") or "failed")


def _iso(at: datetime | None) -> str | None:
    """ISO 8601 in Stockholm time, as the runbook's operators read it."""
    return at.astimezone(STOCKHOLM).isoformat() if at is not None else None


def _clock(at: datetime) -> str:
    return f"{at.astimezone(STOCKHOLM):%Y-%m-%d %H:%M:%S}"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _publish(result: WatchdogResult) -> None:
    """The run's artifact: the three checks and whether each trigger holds."""
    rows = "\n".join(
        f"| {r.check} | {_cell(r.observed)} | {r.trigger} | {'**yes**' if r.holds else 'no'} | "
        f"{_cell(r.why)} | {_cell(r.action) or '–'} |"
        for r in result.triggers
    )
    held = f"\nNot fired: {result.held_back}.\n" if result.held_back else ""
    create_markdown_artifact(
        key="dr-watchdog",
        description=f"DR triggers at {_clock(result.checked_at)}: "
        + (", ".join(result.fired) + " fired" if result.fired else "none fired"),
        markdown=f"""# DR watchdog at {_clock(result.checked_at)} (Stockholm)

| check | observed | trigger | holds | why | action |
|---|---|---|---|---|---|
{rows}
{held}""",
    )
