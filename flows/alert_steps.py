"""How a flow tells people: raise an alert, raise one beside a failure it is already
failing with, and alert on failure / resolve on success around a whole procedure.

Each takes the flow's `ops_database_block` and `alert_channels_block`, so a flow that
was pointed at another ops catalog or another set of channels alerts there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import get_run_logger

from blocks.names import ALERT_CHANNELS_BLOCK, OPS_DATABASE_BLOCK
from policy import Severity
from tasks.notify import Alert, AlertOutcome, find_live_alerts, notify, resolve_alert


@dataclass(frozen=True)
class AlertTargets:
    """Where a flow's alerts are recorded and sent: the blocks' names."""

    ops_database_block: str = OPS_DATABASE_BLOCK
    alert_channels_block: str = ALERT_CHANNELS_BLOCK


def raise_alert(
    alert: Alert, at: datetime | None = None, targets: AlertTargets | None = None
) -> AlertOutcome:
    """Tell the right people now, or queue for the next business day.

    Raises:
        OpsError: the alert reached no one (it stays stored; the sweep sends it again).
    """
    targets = targets or AlertTargets()
    return notify(alert, at, targets.ops_database_block, targets.alert_channels_block)


def raise_alert_beside(alert: Alert, targets: AlertTargets) -> AlertOutcome | None:
    """`raise_alert` for a flow that is failing already: a failure to deliver is logged,
    not raised, so it cannot hide the flow's own failure (the alert stays stored)."""
    try:
        return raise_alert(alert, targets=targets)
    except Exception as exc:
        get_run_logger().error("Could not deliver alert %s: %s", alert.dedup_key, exc)
        return None


def clear_alert(condition: str, targets: AlertTargets) -> None:
    """Resolve the live alert of `condition`, if there is one: it has cleared."""
    resolve_alert(
        condition,
        ops_database_block=targets.ops_database_block,
        alert_channels_block=targets.alert_channels_block,
    )


@contextmanager
def alerting_on_failure(
    *,
    condition: str,
    alert_name: str,
    what: str,
    details: dict[str, Any],
    runbook_section: str,
    targets: AlertTargets,
) -> Iterator[None]:
    """A failure inside raises a high alert (and is re-raised); success resolves it.

    A failure to alert is logged beside the original failure and never hides it.
    """
    try:
        yield
    except Exception as exc:
        raise_alert_beside(
            Alert(
                name=alert_name,
                severity=Severity.HIGH,
                summary=f"{what} failed: {exc}",
                details={**details, "reason": str(exc)},
                dedup_key=condition,
                runbook_section=runbook_section,
            ),
            targets,
        )
        raise
    clear_alert(condition, targets)


class Conditions:
    """The alerts of one run of a sweep-like flow at `at`, each condition under one dedup
    key: raised while it holds, resolved by the first run that finds it cleared.

    The live alerts whose keys start with `prefix` are read once, so a run with nothing
    to resolve resolves nothing. A failure to deliver never stops the run: the alert
    stays stored for the escalation sweep. `raised` lists the keys this run raised.
    """

    def __init__(self, at: datetime, targets: AlertTargets, prefix: str) -> None:
        self.at, self.targets = at, targets
        self.raised: list[str] = []
        self._live = find_live_alerts(targets.ops_database_block, prefix)

    def _raise(
        self,
        key: str,
        name: str,
        severity: Severity,
        summary: str,
        details: dict[str, Any],
        section: str,
    ) -> None:
        alert = Alert(
            name=name,
            severity=severity,
            summary=summary,
            details=details,
            dedup_key=key,
            runbook_section=section,
        )
        self.raised.append(key)
        try:
            raise_alert(alert, self.at, self.targets)
        except Exception as exc:
            get_run_logger().error("Could not deliver alert %s: %s", key, exc)

    def _clear(self, key: str) -> None:
        if key not in self._live:
            return
        self._live.discard(key)
        try:
            clear_alert(key, self.targets)
        except Exception as exc:
            get_run_logger().error("Could not resolve alert %s: %s", key, exc)
