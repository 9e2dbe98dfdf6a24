"""`feedback-ops dr history`: the RTO and RPO every DR run and drill achieved, from the
ops catalog alone (no Prefect server is asked), drills and real runs apart so drills
can be compared over time."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import Engine

from blocks.catalog import dr_runs
from policy.disaster_recovery import Mode, duration

GROUPS = {"real": (Mode.REAL,), "drills": (Mode.DRILL,), "dry_runs": (Mode.DRY_RUN,)}


def history_document(engine: Engine) -> dict[str, Any]:
    """The `dr history --json` document: runs by kind, newest first."""
    rows = dr_runs.history(engine)
    return {
        group: [_run(row) for row in rows if row["mode"] in {m.value for m in modes}]
        for group, modes in GROUPS.items()
    }


def _met(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def _run(row: dict[str, Any]) -> dict[str, Any]:
    def at(key: str) -> str | None:
        return row[key].astimezone(UTC).isoformat() if row[key] is not None else None

    return {
        "flow_run_id": row["flow_run_id"],
        "scenario": row["scenario"],
        "mode": row["mode"],
        "status": row["status"],
        "triggered_by": row["triggered_by"],
        "incident_started_at": at("incident_started_at"),
        "started_at": at("started_at"),
        "approved_by": row["approved_by"],
        "service_validated_at": at("service_validated_at"),
        "recovery_point": at("recovery_point"),
        "finished_at": at("finished_at"),
        "rto_seconds": row["rto_seconds"],
        "rto_target_seconds": row["rto_target_seconds"],
        "rto_met": _met(row["rto_seconds"], row["rto_target_seconds"]),
        "rpo_seconds": row["rpo_seconds"],
        "rpo_target_seconds": row["rpo_target_seconds"],
        "rpo_met": _met(row["rpo_seconds"], row["rpo_target_seconds"]),
        "steps": [
            {"step": s.get("step"), "outcome": s.get("outcome"), "seconds": s.get("seconds")}
            for s in row["steps"] or []
        ],
        "error": row["error"],
    }


def history_rows(document: dict[str, Any], group: str) -> list[tuple[str, ...]]:
    """One table row per run of a group: started, scenario, status, RTO and RPO."""

    def figure(run: dict[str, Any], name: str) -> str:
        value = run[f"{name}_seconds"]
        if value is None:
            return "-"
        mark = "" if run[f"{name}_met"] else " !"
        return f"{duration(value)} / {duration(run[f'{name}_target_seconds'])}{mark}"

    return [
        (
            (run["started_at"] or "")[:19].replace("T", " "),
            run["scenario"],
            run["status"],
            figure(run, "rto"),
            figure(run, "rpo"),
            run["flow_run_id"][:8],
        )
        for run in document[group]
    ]
