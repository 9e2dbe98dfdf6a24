"""`feedback-ops pos status`: each POS provider as the sweeps left it, from the ops
catalog alone (no Prefect server, no provider is asked)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from blocks.catalog import pos_health
from blocks.catalog.pos_health import SERVICE, UPTIME_WINDOWS, PosHistory
from blocks.pos import PROVIDERS
from policy.pos_health import Damped, provider_state

SLO = 0.99
"""Runbook, "Service Level Objectives": POS Connectivity > 99 % uptime."""


def status_document(engine: Engine, at: datetime) -> dict[str, Any]:
    """The `pos status --json` document, as of `at`."""
    history = pos_health.history(engine, at)
    return {
        "as_of": at.isoformat(),
        "slo": SLO,
        "providers": {p: _provider(history, p) for p in PROVIDERS},
    }


def _provider(history: PosHistory, provider: str) -> dict[str, Any]:
    primary = history.states.get((provider, "primary"))
    secondary = history.states.get((provider, "secondary"))
    last = {target: row for (p, target), row in history.last.items() if p == provider}
    merchants = (last.get("merchants") or {}).get("detail") or {}
    uptime = history.uptime.get(provider) or dict.fromkeys(UPTIME_WINDOWS)
    if primary is None:
        state = "never checked"
    else:
        others = ("token", "subscriptions", "merchants")
        trouble = any(not last[t]["ok"] for t in others if t in last)
        state = provider_state(primary, secondary, history.failed_over(provider), trouble).value
    service = last.get(SERVICE)
    move = history.moves.get(provider)
    return {
        "state": state,
        "primary": _endpoint(primary),
        "secondary": _endpoint(secondary),
        "last_check": None
        if service is None
        else {
            "at": service["checked_at"].isoformat(),
            "ok": service["ok"],
            "endpoint": (service["detail"] or {}).get("endpoint"),
            "error": service["error"],
        },
        "uptime": {
            window: {"share": share, "meets_slo": None if share is None else share >= SLO}
            for window, share in uptime.items()
        },
        "merchants_at_risk": int(merchants.get("at_risk", 0)),
        "merchants_failing": int(merchants.get("failing", 0)),
        "last_move": None
        if move is None
        else {
            "direction": move["direction"],
            "at": move["at"].isoformat(),
            "reason": move["reason"],
            "by": move["requested_by"],
        },
    }


def _endpoint(damped: Damped | None) -> dict[str, Any] | None:
    if damped is None:
        return None
    return {
        "state": damped.state.value,
        "since": damped.since.isoformat() if damped.since else None,
        "sweeps_against": damped.against,
    }


def status_rows(document: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table `pos status` prints: one row per provider."""
    rows: list[tuple[str, ...]] = []
    for provider, p in document["providers"].items():
        check = p["last_check"]
        seen = "–"
        if check is not None:
            seen = f"{check['at'][:16]} {'ok' if check['ok'] else 'FAILED'}"
        uptime = " / ".join(
            "–" if u["share"] is None else f"{u['share'] * 100:.2f}%{'' if u['meets_slo'] else '!'}"
            for u in p["uptime"].values()
        )
        rows.append((provider, p["state"], seen, uptime, str(p["merchants_at_risk"])))
    return rows
