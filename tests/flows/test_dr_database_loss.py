"""dr-database-loss: the plan, the approval, a genuine restore on PostgreSQL, maintenance
mode that always ends off, one run at a time, and the RTO and RPO against the test's
own clock."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect import tags
from prefect.client.schemas.objects import FlowRun
from prefect.flow_runs import resume_flow_run
from prefect.states import Cancelled, Crashed
from support import pg
from support.gateway_fake import ADMIN_TOKEN, GatewayFake
from support.pgcompare import fingerprint
from support.prefect_runs import approval_form, paused_run

from blocks.catalog import dr_runs as catalog
from blocks.catalog import opened
from flows.backup_verify import backup_verify
from flows.database_backup import database_backup
from flows.database_restore import default_target_name
from flows.dr_database_loss import dr_database_loss
from flows.dr_steps import DrBlocks, release_maintenance
from tasks.gateway import maintenance_on


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, args).fetchall())


def databases(admin_url: str, backup_id: str) -> set[str]:
    """The databases restores and drills of this backup made: other tests, in other
    workers, restore their own backups meanwhile."""
    stem = default_target_name(backup_id).removeprefix("restore_")
    names = rows(admin_url, "SELECT datname FROM pg_database")
    return {name for (name,) in names if stem in name}


def restored_from(setup: dict[str, Any], admin_url: str) -> set[str]:
    """The databases this test's backup was restored into, drills' included."""
    return databases(admin_url, setup["backup"].backup_id)


@pytest.fixture
def gateway() -> Iterator[GatewayFake]:
    with GatewayFake() as fake:
        yield fake


@pytest.fixture
def setup(
    platform_db: str,
    db_factory: Any,
    tmp_path: Path,
    save_blocks: Any,
    gateway: GatewayFake,
    pg_admin_url: str,
) -> Iterator[dict[str, Any]]:
    """A backed-up platform, its ops catalog elsewhere, the gateway fake; the databases
    the runs restore into are dropped afterwards."""
    ops_url = db_factory()
    saved = save_blocks(
        "platform-gateway",
        "alert-channels",
        "disaster-recovery",
        DATABASE_URL=platform_db,
        OPS_DATABASE_URL=ops_url,
        BACKUP_URL=f"file://{tmp_path}/backups",
        **gateway.env(),
    )
    prefix = saved["ops_database_block"].removesuffix("-ops-postgres")
    params = saved | {
        "gateway_block": f"{prefix}-platform-gateway",
        "alert_channels_block": f"{prefix}-alert-channels",
        "dr_block": f"{prefix}-disaster-recovery",
    }
    backup = database_backup(
        database_block=params["database_block"],
        ops_database_block=params["ops_database_block"],
        storage_block=params["storage_block"],
    )
    yield {"params": params, "ops_url": ops_url, "backup": backup, "platform": platform_db}
    for name in databases(pg_admin_url, backup.backup_id):
        pg.drop_database(pg_admin_url, name)


def start(setup: dict[str, Any], outcome: dict[str, Any], **kwargs: Any) -> str:
    """Start a run in a thread, tagged; returns the tag."""
    tag = f"test-{uuid.uuid4().hex[:8]}"

    def run() -> None:
        with tags(tag):
            outcome["state"] = dr_database_loss(**setup["params"], **kwargs, return_state=True)

    worker = threading.Thread(target=run)
    worker.start()
    outcome["worker"] = worker
    return tag


def finished(outcome: dict[str, Any]) -> Any:
    outcome["worker"].join(timeout=180)
    assert not outcome["worker"].is_alive(), "the DR run did not end"
    return outcome["state"]


def dr_row(ops_url: str) -> dict[str, Any]:
    with psycopg.connect(ops_url, row_factory=psycopg.rows.dict_row) as conn:
        found = conn.execute("SELECT * FROM ops.dr_runs ORDER BY started_at DESC").fetchall()
    assert found, "no DR run recorded"
    return dict(found[0])


def test_a_dry_run_lists_every_call_and_touches_nothing(
    setup: dict[str, Any], gateway: GatewayFake, pg_admin_url: str
) -> None:
    state = dr_database_loss(**setup["params"], backup_id="latest", return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert result.outcome == "dry run: nothing was changed" and result.mode == "dry-run"
    assert gateway.requests("/admin") == [] and restored_from(setup, pg_admin_url) == set()
    row = dr_row(setup["ops_url"])
    assert (row["mode"], row["status"], row["triggered_by"]) == ("dry-run", "planned", "by hand")
    calls = [step["call"] for step in row["plan"]["steps"]]
    backup_id = setup["backup"].backup_id
    target = default_target_name(backup_id)
    assert calls[0] == (
        f'POST {gateway.url}/admin/maintenance {{"reason": "database_recovery", '
        '"estimated_duration": "30min"}'
    )
    assert calls[1].startswith(f"database-restore backup_id={backup_id} target_database={target}")
    assert f'"type": "database", "backup_id": "{backup_id}"' in calls[4]
    assert calls[5] == f"DELETE {gateway.url}/admin/maintenance"


def test_an_approved_run_restores_validates_hands_over_and_measures(
    setup: dict[str, Any], gateway: GatewayFake, pg_admin_url: str
) -> None:
    params = setup["params"]
    verified = backup_verify(
        ops_database_block=params["ops_database_block"],
        storage_block=params["storage_block"],
        database_block=params["database_block"],
        alert_channels_block=params["alert_channels_block"],
    )
    assert verified
    incident = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
    outcome: dict[str, Any] = {}
    tag = start(setup, outcome, dry_run=False, incident_started_at=incident)
    paused = paused_run(tag)
    form = approval_form(paused)
    backup_id = setup["backup"].backup_id
    assert f"`{backup_id}`" in form and "RPO this restore gives" in form
    assert "expected restore time" in form and "the last restore drill" in form
    assert gateway.requests("/admin") == [], "nothing is asked before approval"
    resume_flow_run(paused.id, run_input={"approve": True, "approved_by": "Anna Lind"})
    state = finished(outcome)
    after = datetime.now(UTC)

    assert state.is_completed(), state.message
    result = state.result()
    assert (result.outcome, result.decided_by) == ("completed", "Anna Lind")
    target = default_target_name(backup_id)
    restored = pg.with_database(pg_admin_url, target)
    assert fingerprint(restored) == fingerprint(setup["platform"])
    assert [kind for kind, _ in gateway.maintenance_log] == ["on", "off"]
    assert gateway.maintenance_log[0][1] == {
        "reason": "database_recovery",
        "estimated_duration": "30min",
    }
    assert gateway.maintenance is None
    assert gateway.dr_failovers == [
        {
            "type": "database",
            "backup_id": backup_id,
            "target_database": target,
            "reason": "database_recovery",
        }
    ]
    row = dr_row(setup["ops_url"])
    assert (row["status"], row["mode"], row["approved_by"]) == (
        "completed",
        "real",
        "Anna Lind (approved)",
    )
    # The RTO runs from the incident to the validation, which happened within this test.
    assert incident + timedelta(minutes=7) <= row["service_validated_at"] <= after
    assert row["rto_seconds"] == pytest.approx(
        (row["service_validated_at"] - incident).total_seconds()
    )
    assert 7 * 60 <= row["rto_seconds"] <= (after - incident).total_seconds()
    # The RPO runs back from the incident to the backup's own time.
    ((created_at,),) = rows(
        setup["ops_url"],
        "SELECT manifest->>'created_at' FROM ops.backup_records WHERE id = %s",
        backup_id,
    )
    created = datetime.fromisoformat(created_at)
    assert row["recovery_point"] == created
    assert row["rpo_seconds"] == pytest.approx(max(0.0, (incident - created).total_seconds()))
    assert (result.rto_met, result.rpo_met) == (True, True)
    steps = [(s["step"], s["outcome"]) for s in row["steps"]]
    assert steps == [
        ("maintenance mode on", "done"),
        ("restore", "done"),
        ("validate data integrity", "done"),
        ("check the gateway's health", "done"),
        ("hand over to the restored database", "done"),
        ("maintenance mode off", "done"),
        ("validate service", "done"),
    ]
    assert rows(
        setup["ops_url"], "SELECT count(*) FROM ops.dr_maintenance WHERE turned_off_at IS NULL"
    ) == [(0,)]


def test_a_declined_run_changes_nothing(
    setup: dict[str, Any], gateway: GatewayFake, pg_admin_url: str
) -> None:
    outcome: dict[str, Any] = {}
    tag = start(setup, outcome, dry_run=False, backup_id="latest")
    resume_flow_run(paused_run(tag).id, run_input={"approve": False, "approved_by": "Erik"})
    state = finished(outcome)

    assert state.is_completed(), state.message
    assert (state.result().outcome, state.result().decided_by) == ("declined", "Erik")
    assert gateway.requests("/admin") == [] and restored_from(setup, pg_admin_url) == set()
    row = dr_row(setup["ops_url"])
    assert (row["status"], row["approved_by"]) == ("declined", "Erik (declined)")


def test_a_failure_in_the_middle_ends_with_maintenance_off(
    setup: dict[str, Any], gateway: GatewayFake
) -> None:
    gateway.fail("POST", "/admin/disaster-recovery/failover", status=409)
    outcome: dict[str, Any] = {}
    tag = start(setup, outcome, dry_run=False, backup_id="latest")
    resume_flow_run(paused_run(tag).id, run_input={"approve": True, "approved_by": "Anna"})
    state = finished(outcome)

    assert state.is_failed()
    assert "POST /admin/disaster-recovery/failover" in str(state.message) + str(
        state.result(raise_on_failure=False)
    )
    assert [kind for kind, _ in gateway.maintenance_log] == ["on", "off"]
    assert gateway.maintenance is None
    row = dr_row(setup["ops_url"])
    assert row["status"] == "failed" and "409" in row["error"]
    assert row["rto_seconds"] is None, "service was never validated"
    assert [s["outcome"] for s in row["steps"]][-1] == "failed"
    assert rows(
        setup["ops_url"], "SELECT count(*) FROM ops.dr_maintenance WHERE turned_off_at IS NULL"
    ) == [(0,)]


def test_a_second_run_beside_the_first_is_refused(
    setup: dict[str, Any], gateway: GatewayFake
) -> None:
    first: dict[str, Any] = {}
    tag = start(setup, first, dry_run=False, backup_id="latest")
    paused = paused_run(tag)
    second = dr_database_loss(
        **setup["params"], dry_run=False, backup_id="latest", return_state=True
    )
    assert second.is_failed()
    message = str(second.result(raise_on_failure=False))
    assert message.startswith("another dr-database-loss run is under way")
    assert str(paused.id) in message and "this one changed nothing" in message
    resume_flow_run(paused.id, run_input={"approve": False})
    assert finished(first).is_completed()
    assert gateway.requests("/admin") == []


def test_a_drill_restores_into_a_scratch_database_and_drops_it(
    setup: dict[str, Any], gateway: GatewayFake, save_blocks: Any, pg_admin_url: str
) -> None:
    with GatewayFake() as drill_gateway:
        saved = save_blocks(
            "disaster-recovery",
            DR_DRILL_GATEWAY_URL=drill_gateway.url,
            DATABASE_URL=setup["platform"],
        )
        dr_block = saved["ops_database_block"].replace("-ops-postgres", "-disaster-recovery")
        outcome: dict[str, Any] = {}
        tag = start(
            setup | {"params": setup["params"] | {"dr_block": dr_block}},
            outcome,
            dry_run=False,
            drill=True,
            backup_id="latest",
        )
        form = approval_form(paused_run(tag))
        assert f"POST {drill_gateway.url}/admin/maintenance" in form
        assert "drill_" in form and "DROP DATABASE drill_" in form
        resume_flow_run(paused_run(tag).id, run_input={"approve": True})
        state = finished(outcome)
        assert state.is_completed(), state.message
        assert [kind for kind, _ in drill_gateway.maintenance_log] == ["on", "off"]
        assert drill_gateway.dr_failovers[0]["target_database"].startswith("drill_")
    assert gateway.requests("/admin") == [], "a drill never calls the platform's gateway"
    assert restored_from(setup, pg_admin_url) == set(), "the drill's database is dropped"
    row = dr_row(setup["ops_url"])
    assert (row["mode"], row["status"]) == ("drill", "completed")
    assert row["rto_seconds"] is not None and row["rto_seconds"] > 0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"backup_id": "database-20270101T010000Z-abcdef"},
            "no backup 'database-20270101T010000Z-abcdef' in ",
        ),
        (
            {"incident_started_at": datetime.now(UTC) + timedelta(hours=1)},
            "incident_started_at ",
        ),
    ],
)
def test_bad_input_is_one_line_before_anything_changes(
    setup: dict[str, Any], gateway: GatewayFake, given: dict[str, Any], expected: str
) -> None:
    state = dr_database_loss(**setup["params"], dry_run=False, **given, return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message.startswith(expected) and "\n" not in message
    assert gateway.requests("/admin") == []
    assert rows(setup["ops_url"], "SELECT to_regclass('ops.dr_runs') IS NULL OR "
                "(SELECT count(*) = 0 FROM ops.dr_runs)") == [(True,)]  # fmt: skip


def test_dr_history_lists_runs_and_drills_apart(setup: dict[str, Any], feedback_ops: Any) -> None:
    state = dr_database_loss(**setup["params"], backup_id="latest", return_state=True)
    assert state.is_completed()
    shown = feedback_ops("dr", "history", "--json", OPS_DATABASE_URL=setup["ops_url"])
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["real"] == [] and document["drills"] == []
    (dry,) = document["dry_runs"]
    assert dry["scenario"] == "database-loss" and dry["status"] == "planned"
    assert dry["rto_target_seconds"] == 1800 and dry["rpo_target_seconds"] == 3600
    table = feedback_ops("dr", "history", OPS_DATABASE_URL=setup["ops_url"])
    assert table.returncode == 0 and "Dry runs" in table.stdout and "database-loss" in table.stdout


def test_a_watchdog_run_goes_ahead_unanswered_only_when_the_setting_allows(
    setup: dict[str, Any], gateway: GatewayFake
) -> None:
    from blocks.disaster_recovery import DisasterRecovery

    params = setup["params"]
    DisasterRecovery(auto_proceed_minutes=0.05).save(params["dr_block"], overwrite=True)
    # The incident began 40 minutes ago: the RTO of 30 minutes is missed.
    incident = datetime.now(UTC) - timedelta(minutes=40)
    state = dr_database_loss(
        **params,
        dry_run=False,
        backup_id="latest",
        incident_started_at=incident,
        triggered_by="dr-watchdog: database-connection-failures",
        return_state=True,
    )

    assert state.is_completed(), state.message
    result = state.result()
    assert (result.outcome, result.decided_by) == ("completed", "no answer in 3 s")
    assert [kind for kind, _ in gateway.maintenance_log] == ["on", "off"]
    row = dr_row(setup["ops_url"])
    assert row["approved_by"] == "no answer in 3 s (auto-proceeded)"
    assert row["triggered_by"] == "dr-watchdog: database-connection-failures"
    assert (result.rto_met, result.rpo_met) == (False, True)
    assert 40 * 60 <= row["rto_seconds"] < 45 * 60
    [(severity, summary)] = rows(
        setup["ops_url"],
        "SELECT severity, summary FROM ops.alerts WHERE name = 'dr-objective-missed'",
    )
    assert severity == "critical"
    assert summary.startswith("dr-database-loss (real) missed its objectives: RTO 40 min")
    assert summary.endswith("> 30 min")


def test_maintenance_that_cannot_be_turned_off_is_a_critical_alert_naming_the_command(
    setup: dict[str, Any], gateway: GatewayFake
) -> None:
    gateway.fail("POST", "/admin/disaster-recovery/failover", status=409)
    gateway.fail("DELETE", "/admin/maintenance", status=403, times=20)
    outcome: dict[str, Any] = {}
    tag = start(setup, outcome, dry_run=False, backup_id="latest")
    resume_flow_run(paused_run(tag).id, run_input={"approve": True})
    state = finished(outcome)

    assert state.is_failed()
    assert gateway.maintenance is not None, "the gateway refused to end it"
    [(severity, summary)] = rows(
        setup["ops_url"],
        "SELECT severity, summary FROM ops.alerts WHERE name = 'dr-maintenance-still-on'",
    )
    assert severity == "critical"
    assert f'curl -X DELETE "{gateway.url}/admin/maintenance"' in summary
    assert "Bearer $ADMIN_TOKEN" in summary and ADMIN_TOKEN not in summary
    [(error,)] = rows(setup["ops_url"], "SELECT off_error FROM ops.dr_maintenance")
    assert "403" in error


def test_a_cancelled_run_whose_process_saw_a_crash_first_ends_cancelled(
    setup: dict[str, Any], gateway: GatewayFake
) -> None:
    """Prefect tells a run's process of its cancellation only best-effort: the runner's
    kill can reach it as a crash, so its own hook runs first with a Crashed state, and
    the serving process's hook later with the Cancelled one. Maintenance mode goes off
    once, and the record ends as the run did."""
    params = setup["params"]
    blocks = DrBlocks.load(
        params["gateway_block"],
        params["ops_database_block"],
        params["alert_channels_block"],
        params["dr_block"],
    )
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), parameters=params)
    started = datetime.now(UTC)
    with opened(blocks.ops_db) as engine:
        catalog.save_run(
            engine,
            {
                "flow_run_id": str(run.id),
                "scenario": "database-loss",
                "mode": "real",
                "status": "running",
                "triggered_by": "by hand",
                "incident_started_at": started,
                "started_at": started,
                "rto_target_seconds": 1800.0,
                "rpo_target_seconds": 3600.0,
            },
        )
    maintenance_on.fn(
        blocks.gateway,
        blocks.ops_db,
        flow_run_id=str(run.id),
        reason="database_recovery",
        estimated_duration="30min",
    )

    release_maintenance(dr_database_loss, run, Crashed(message="terminated by SIGTERM"))
    crashed = dr_row(setup["ops_url"])
    release_maintenance(dr_database_loss, run, Cancelled(message="cancelled from the UI"))

    assert [kind for kind, _ in gateway.maintenance_log] == ["on", "off"]
    row = dr_row(setup["ops_url"])
    assert (crashed["status"], row["status"]) == ("failed", "cancelled")
    assert row["finished_at"] == crashed["finished_at"]
    assert row["error"] == "cancelled from the UI"
    release_maintenance(dr_database_loss, run, Crashed(message="late"))
    assert dr_row(setup["ops_url"])["status"] == "cancelled", "a crash never replaces it"
