"""The runbook's disaster scenarios, their recovery objectives, and how a run is measured.

Runbook, "Disaster Scenarios & Response":

* Scenario 1, complete database loss: RTO 30 minutes, RPO 1 hour.
* Scenario 2, all POS providers down: RTO 10 minutes, RPO 5 minutes.
* Scenario 3, regional infrastructure failure: RTO 60 minutes, RPO 15 minutes.

The recovery time is measured from the incident's start to the moment service was
validated; the recovery point is the newest moment whose data the recovery kept, and
the RPO achieved is how far it lies before the incident's start.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Achieved", "Mode", "Scenario", "Targets", "TARGETS", "achieved", "mode_of"]


class Scenario(StrEnum):
    """A disaster scenario of the runbook, by the name its DR flow carries."""

    DATABASE_LOSS = "database-loss"
    POS_PROVIDERS_DOWN = "pos-providers-down"
    REGIONAL_FAILOVER = "regional-failover"

    @property
    def flow_name(self) -> str:
        """The flow that recovers from it, e.g. `dr-database-loss`."""
        return f"dr-{self.value}"


class Mode(StrEnum):
    """How much a DR run touches."""

    DRY_RUN = "dry-run"
    """Nothing: the plan and every call it would make."""
    DRILL = "drill"
    """Every step for real, against scratch targets."""
    REAL = "real"


def mode_of(*, dry_run: bool, drill: bool) -> Mode:
    """A dry run touches nothing even when also asked to drill."""
    if dry_run:
        return Mode.DRY_RUN
    return Mode.DRILL if drill else Mode.REAL


@dataclass(frozen=True)
class Targets:
    """A scenario's recovery objectives."""

    rto: datetime.timedelta
    rpo: datetime.timedelta


TARGETS: dict[Scenario, Targets] = {
    Scenario.DATABASE_LOSS: Targets(
        rto=datetime.timedelta(minutes=30), rpo=datetime.timedelta(hours=1)
    ),
    Scenario.POS_PROVIDERS_DOWN: Targets(
        rto=datetime.timedelta(minutes=10), rpo=datetime.timedelta(minutes=5)
    ),
    Scenario.REGIONAL_FAILOVER: Targets(
        rto=datetime.timedelta(minutes=60), rpo=datetime.timedelta(minutes=15)
    ),
}


@dataclass(frozen=True)
class Achieved:
    """The recovery time and point a run achieved against its scenario's targets."""

    rto_seconds: float | None
    rpo_seconds: float | None
    targets: Targets

    @property
    def rto_met(self) -> bool | None:
        """None while service is not validated."""
        if self.rto_seconds is None:
            return None
        return self.rto_seconds <= self.targets.rto.total_seconds()

    @property
    def rpo_met(self) -> bool | None:
        """None when the run kept no recovery point."""
        if self.rpo_seconds is None:
            return None
        return self.rpo_seconds <= self.targets.rpo.total_seconds()

    @property
    def breaches(self) -> list[str]:
        """One line per objective missed, e.g. `RTO 41 min 5 s > 30 min`."""
        lines = []
        if self.rto_met is False and self.rto_seconds is not None:
            lines.append(f"RTO {duration(self.rto_seconds)} > {duration(self.targets.rto)}")
        if self.rpo_met is False and self.rpo_seconds is not None:
            lines.append(f"RPO {duration(self.rpo_seconds)} > {duration(self.targets.rpo)}")
        return lines


def achieved(
    scenario: Scenario,
    *,
    incident_started_at: datetime.datetime,
    service_validated_at: datetime.datetime | None,
    recovery_point: datetime.datetime | None,
) -> Achieved:
    """The RTO and RPO of a run.

    Args:
        scenario: Which targets apply.
        incident_started_at: When the incident began (aware).
        service_validated_at: When service was validated again; None if it was not.
        recovery_point: The newest moment whose data was kept; None if none applies.

    Returns:
        The figures in seconds; a recovery point after the incident's start (a backup
        taken during it) counts as no loss, 0 s.
    """
    rto = (
        (service_validated_at - incident_started_at).total_seconds()
        if service_validated_at is not None
        else None
    )
    rpo = (
        max(0.0, (incident_started_at - recovery_point).total_seconds())
        if recovery_point is not None
        else None
    )
    return Achieved(rto_seconds=rto, rpo_seconds=rpo, targets=TARGETS[scenario])


def duration(value: float | datetime.timedelta) -> str:
    """`41 min 5 s`, `2 h 3 min`, `12 s`: a span an operator reads at a glance."""
    seconds = int(round(value.total_seconds() if isinstance(value, datetime.timedelta) else value))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"
