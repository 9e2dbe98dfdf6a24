"""What the flows push to the platform's Prometheus (`blocks.metrics`), written once.

A flow hands its figures to `push_figures` at its end, with the name of its Metrics
Pushgateway block. With no block of that name, or one without a URL, metrics are off
and no task runs. Anything that goes wrong on the way (the block, the ops catalog, the
Pushgateway) is a warning in the run's log and never the run's failure: the figures are
for graphs and alerting rules, and the run's next push brings fresher ones.

Each push replaces the group of the flow's name (the job) and its deployment (`none` for
a run without one, such as `feedback-ops run`) with this run's figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.runtime import deployment, flow_run
from pydantic import ValidationError

from blocks import MetricsPushgateway, PostgresDatabase, load_block
from blocks.metrics import (
    BACKUP_AGE,
    BACKUP_DURATION,
    BACKUP_LAST_COMPLETED,
    BACKUP_SIZE,
    OPEN_ALERTS,
    POS_UPTIME,
    RESTORE_DRILL,
    RESTORE_DRILL_LAST,
    RESTORE_RTO,
    WEBHOOK_SUCCESS,
    Figures,
    Metric,
)
from policy import Severity
from tasks.catalog import read_newest_backup
from tasks.metrics import push_metrics
from tasks.notify import count_live_alerts

NO_DEPLOYMENT = "none"
"""The `deployment` label of a run started without a deployment."""


def metrics_gateway(block_name: str) -> MetricsPushgateway | None:
    """The Metrics Pushgateway block when metrics are on: saved, with a URL."""
    try:
        gateway = load_block(MetricsPushgateway, block_name)
    except ValidationError as exc:
        # Only the messages: pydantic's own text would repeat the values given.
        reasons = "; ".join(str(error["msg"]) for error in exc.errors())
        get_run_logger().warning("Metrics not pushed: block %s: %s", block_name, reasons)
        return None
    except ValueError:
        return None  # none saved: metrics were never configured
    except Exception as exc:
        get_run_logger().warning("Metrics not pushed: block %s unreadable: %s", block_name, exc)
        return None
    return gateway if gateway.url is not None and gateway.url.get_secret_value().strip() else None


def push_figures(block_name: str, figures: Figures) -> bool:
    """Push `figures` as this flow's group; False when metrics are off or it failed."""
    gateway = metrics_gateway(block_name)
    if gateway is None:
        return False
    return _push(gateway, figures)


def _push(gateway: MetricsPushgateway, figures: Figures) -> bool:
    try:
        job = flow_run.flow_name or "unknown"
        group = deployment.name or NO_DEPLOYMENT  # asks the API when there is one
        state = push_metrics(gateway, job, group, figures, return_state=True)
    except Exception as exc:
        get_run_logger().warning("Metrics not pushed: %s", exc)
        return False
    if not state.is_completed():
        get_run_logger().warning("Metrics not pushed: %s", state.message)
        return False
    return bool(state.result())


# --- backups ---------------------------------------------------------------------------


@contextmanager
def backup_figures_after(metrics_block: str, ops_database_block: str, kind: str) -> Iterator[None]:
    """After the block, push the newest completed backup of `kind`, whether this one
    completed or failed: either way the figures are the catalog's, and its age is now's.

    A run that is stopped (Ctrl-C, cancelled) pushes nothing: no task can run then.
    """
    try:
        yield
    except Exception:
        push_backup_figures(metrics_block, ops_database_block, kind)
        raise
    push_backup_figures(metrics_block, ops_database_block, kind)


def push_backup_figures(metrics_block: str, ops_database_block: str, kind: str) -> bool:
    """Push the age, size and duration of the newest completed backup of `kind`."""
    gateway = metrics_gateway(metrics_block)
    if gateway is None:
        return False
    try:
        ops_db = load_block(PostgresDatabase, ops_database_block)
        record = read_newest_backup(ops_db, kind)
    except Exception as exc:
        get_run_logger().warning("Metrics not pushed: the newest %s backup: %s", kind, exc)
        return False
    return _push(gateway, backup_figures(kind, record, datetime.now(UTC)))


def backup_figures(kind: str, record: Mapping[str, Any] | None, now: datetime) -> Figures:
    """The figures of the newest completed backup of `kind` (its catalog record), as of
    `now`; without one the metrics are pushed empty, replacing older figures."""
    figures = Figures().declare(BACKUP_LAST_COMPLETED, BACKUP_AGE, BACKUP_SIZE, BACKUP_DURATION)
    if record is None or record.get("finished_at") is None:
        return figures
    finished: datetime = record["finished_at"]
    figures.set(BACKUP_LAST_COMPLETED, finished.timestamp(), kind=kind)
    figures.set(BACKUP_AGE, max(0.0, (now - finished).total_seconds()), kind=kind)
    if record.get("size") is not None:
        figures.set(BACKUP_SIZE, record["size"], kind=kind)
    if record.get("duration_seconds") is not None:
        figures.set(BACKUP_DURATION, record["duration_seconds"], kind=kind)
    return figures


# --- what the other flows found ----------------------------------------------------------


def drill_figures(kind: str, seconds: float, rto_seconds: float, at: datetime) -> Figures:
    """A passed restore drill of `kind`: how long its restore took, against the RTO."""
    figures = Figures()
    figures.set(RESTORE_DRILL, seconds, kind=kind)
    figures.set(RESTORE_RTO, rto_seconds, kind=kind)
    figures.set(RESTORE_DRILL_LAST, at.timestamp(), kind=kind)
    return figures


def push_open_alerts(metrics_block: str, ops_database_block: str) -> bool:
    """Push how many alerts are not resolved, by severity (every severity, 0 too)."""
    gateway = metrics_gateway(metrics_block)
    if gateway is None:
        return False
    try:
        counts = count_live_alerts(ops_database_block)
    except Exception as exc:
        get_run_logger().warning("Metrics not pushed: the open alerts: %s", exc)
        return False
    return _push(gateway, open_alert_figures(counts))


def open_alert_figures(counts: Mapping[str, int]) -> Figures:
    """Open alerts by severity, every severity present (0 when none): a graph of
    critical alerts drops to 0 rather than ending."""
    figures = Figures()
    for severity in Severity:
        figures.set(OPEN_ALERTS, counts.get(severity.value, 0), severity=severity.value)
    return figures


def ratio_figures(metric: Metric, shares: Mapping[str, Mapping[str, float | None]]) -> Figures:
    """Per provider and window, the shares known (None: nothing to measure, left out)."""
    figures = Figures().declare(metric)
    for provider, windows in shares.items():
        for window, share in windows.items():
            if share is not None:
                figures.set(metric, share, provider=provider, window=window)
    return figures


def pos_uptime_figures(uptime: Mapping[str, Mapping[str, float | None]]) -> Figures:
    """Each POS provider's uptime per window (`1d`, `7d`, `30d`), as the sweep reported."""
    return ratio_figures(POS_UPTIME, uptime)


def webhook_figures(success: Mapping[str, Mapping[str, float | None]]) -> Figures:
    """Each provider's webhook delivery success per window (`1h`, `24h`)."""
    return ratio_figures(WEBHOOK_SUCCESS, success)
