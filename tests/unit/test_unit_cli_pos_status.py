"""`feedback-ops pos status [--json]`: each POS provider's state, last check, uptime
against the 99 % SLO and merchants at risk, read from a real ops catalog that the
catalog's own functions filled as sweeps do."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from blocks.catalog import migrate
from blocks.catalog.pos_health import Check, advance_states, record_checks, record_move
from blocks.postgres import PostgresDatabase
from blocks.postgres.client import engine_for

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ops_url(db_factory: Callable[[], str]) -> str:
    """An ops catalog with a day of sweeps: Square up but for one failed sweep in 200,
    Shopify failed over after its primary went down, Zettle never checked."""
    url = db_factory()
    ops_db = PostgresDatabase.from_url(url)
    engine = engine_for(ops_db)
    migrate(engine, ops_db)
    now = datetime.now(UTC)
    for n in range(200):
        at = now - timedelta(hours=23) + timedelta(minutes=5 * n)
        square_ok = n != 100
        shopify_ok = n < 180
        record_checks(
            engine,
            f"sweep-{n}",
            [
                Check("square", "primary", square_ok, at),
                Check("square", "service", square_ok, at, detail={"endpoint": "primary"}),
                Check("shopify", "primary", shopify_ok, at),
                Check("shopify", "secondary", True, at),
                Check("shopify", "service", True, at, detail={"endpoint": "secondary"}),
            ],
        )
        advance_states(
            engine,
            {("square", "primary"): square_ok, ("shopify", "primary"): shopify_ok},
            at,
        )
    record_checks(
        engine,
        "sweep-last",
        [Check("square", "merchants", True, now, detail={"ok": 40, "at_risk": 3, "failing": 0})],
    )
    record_move(
        engine,
        provider="shopify",
        direction="failover",
        reason="primary_endpoint_down: 3 failed sweeps in a row, secondary healthy",
        requested_by="pos-health-sweep",
        at=now - timedelta(minutes=90),
        flow_run_id=None,
        checks={},
        gateway_answer={},
    )
    engine.dispose()
    return url


def test_status_json_gives_state_last_check_uptime_and_merchants_at_risk(
    feedback_ops: RunCli, ops_url: str
) -> None:
    done = feedback_ops("pos", "status", "--json", OPS_DATABASE_URL=ops_url)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)

    square, shopify, zettle = (document["providers"][p] for p in ("square", "shopify", "zettle"))
    assert square["state"] == "up"
    assert square["uptime"]["1d"] == {"share": 0.995, "meets_slo": True}
    assert square["merchants_at_risk"] == 3
    assert square["last_check"]["ok"] is True and square["last_check"]["endpoint"] == "primary"
    assert shopify["state"] == "failed over"
    assert shopify["primary"]["state"] == "down"
    assert shopify["last_move"]["direction"] == "failover"
    assert shopify["last_move"]["by"] == "pos-health-sweep"
    assert shopify["uptime"]["1d"]["share"] == 1.0
    assert zettle["state"] == "never checked" and zettle["last_check"] is None
    assert zettle["uptime"]["30d"] == {"share": None, "meets_slo": None}


def test_status_table_has_a_row_per_provider(feedback_ops: RunCli, ops_url: str) -> None:
    done = feedback_ops("pos", "status", OPS_DATABASE_URL=ops_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("POS providers")
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == {"square", "shopify", "zettle"}
    assert "99.50%" in rows["square"] and "failed over" in rows["shopify"]


@pytest.mark.parametrize("command", [("pos", "status"), ("dr", "history")])
def test_an_unreachable_catalog_is_one_line(feedback_ops: RunCli, command: tuple[str, str]) -> None:
    done = feedback_ops(*command, OPS_DATABASE_URL="postgresql://ops:secret-pw@127.0.0.1:9/ops")
    assert done.returncode == 1
    err = done.stderr.strip()
    assert err.startswith("feedback-ops: ") and "\n" not in err
    assert "secret-pw" not in err
