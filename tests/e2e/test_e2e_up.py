"""End to end: `feedback-ops up` on free ports, its deployment triggered through the API.

First the configuration is saved with `feedback-ops config sync`, and a one-off
`feedback-ops run` backs up another database given in its environment. Then `up` is
started without any database in its environment: it serves the saved configuration.
The test checks what the UI would show, triggers `database-backup/daily-0200` through
the REST API, waits for it to complete and checks it backed up the configured database
(the one-off run changed nothing). In a real browser it then walks the restore's run
form as an operator would: descriptions, a refused target, a restore started there;
and approves a paused `webhook-replay` of 101 events in its resume form, after which
the fake gateway receives each event once. Last, it stops `up` with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psutil
import psycopg
import pytest
from playwright.sync_api import Locator, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from support.browser import browser_page, press_until, submit_resume_form
from support.cli import FEEDBACK_OPS, cli_environment
from support.net import free_port, port_accepts, wait_until
from support.platform_schema import planned_counts
from support.up import api_call, api_get, start_up
from support.webhook_receiver import (
    SQUARE_SIGNATURE_KEY,
    WebhookReceiver,
    square_body,
    square_signature,
)
from support.webhook_table import create_deliveries_table

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FEEDBACK_OPS), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


UI_TARGET = "restored_from_the_ui"


def walk_the_restore_form(client: httpx.Client, port: int, log: Path, server: str) -> str:
    """In a real browser, as an operator: the `database-restore/manual` run form shows
    every parameter's description, refuses a target database that is not a plain name
    (and no run is created), then starts a restore into a new database. Returns the
    restored database's URL (on `server`) once the run has completed."""
    deployment = api_get(client, "/deployments/name/database-restore/manual")
    properties = deployment["parameter_openapi_schema"]["properties"]
    ui = f"http://127.0.0.1:{port}"
    with browser_page() as page:
        page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run", wait_until="networkidle")

        def field(name: str) -> Locator:
            # Labelled by its title: words an operator reads, not the parameter's name.
            label = f"{properties[name]['title']} (Optional)"
            return page.locator(".schema-form-property", has_text=label).first

        for name, schema in properties.items():
            # The description as the form renders its markdown: code spans lose their ticks.
            shown = " ".join(field(name).inner_text().split())
            assert " ".join(schema["description"].replace("`", "").split()) in shown, name

        def settle() -> None:
            # The form checks its values with the server as they change: let those
            # checks finish, as an operator's pause before Submit does, or a slow one
            # would still hold the previous value when Submit is pressed.
            page.keyboard.press("Tab")
            page.wait_for_load_state("networkidle")

        field("target_database").locator("textarea, input").first.fill("x; DROP DATABASE postgres")
        settle()
        page.get_by_role("button", name="Submit").click()
        expect(
            page.get_by_text("Validation failed for field 'target_database'").first
        ).to_be_visible()
        runs = {"deployments": {"id": {"any_": [deployment["id"]]}}}
        assert api_call(client, "POST", "/flow_runs/count", runs) == 0

        field("target_database").locator("textarea, input").first.fill(UI_TARGET)
        field("jobs").locator("input").first.fill("2")
        settle()
        name = page.locator(".schema-form-property, .p-label", has_text="Run Name")
        run_name = name.locator("input").first.input_value()
        runs_page = re.compile(r"/deployments/deployment/[0-9a-f-]{36}\?tab=Runs$")
        press_until(
            page.get_by_role("button", name="Submit"),
            lambda: page.wait_for_url(runs_page, timeout=20_000),
            lambda: api_call(client, "POST", "/flow_runs/count", runs) == 0,
            "the restore's run form",
        )
        # The form hands over to the deployment's runs, where the new run is listed.
        try:
            page.wait_for_url(runs_page, timeout=60_000)
        except PlaywrightTimeout:
            toasts = page.locator(".p-toast").all_inner_texts()
            raise AssertionError(
                f"no run page after Submit: at {page.url}, toasts {toasts}"
            ) from None
        expect(page.get_by_text(run_name).first).to_be_visible()

    [run] = api_call(client, "POST", "/flow_runs/filter", runs)
    run_id = run["id"]
    assert run["name"] == run_name
    assert run["deployment_id"] == deployment["id"]
    assert run["parameters"]["target_database"] == UI_TARGET
    assert run["parameters"]["jobs"] == 2

    def final_state() -> str | None:
        state_type = api_get(client, f"/flow_runs/{run_id}")["state"]["type"]
        return state_type if state_type in ("COMPLETED", "FAILED", "CRASHED") else None

    wait_until(lambda: final_state() is not None, timeout=180, what="the restore run")
    assert final_state() == "COMPLETED", log.read_text()[-3000:]
    return f"{server}/{UI_TARGET}"


REPLAYED_EVENTS = 101
WEBHOOK_TABLE = "public.gateway_webhook_attempts"


def seed_failed_webhooks(platform_db: str, receiver: WebhookReceiver) -> None:
    """REPLAYED_EVENTS Square deliveries the gateway answered 503, half an hour ago, in a
    table of the shape the reconciliation reads (the runbook's table lacks the body)."""
    url = receiver.notification_url("square")
    with psycopg.connect(platform_db, autocommit=True) as conn:
        create_deliveries_table(conn, WEBHOOK_TABLE)
        for n in range(REPLAYED_EVENTS):
            body = square_body(f"sq-ui-{n:03}")
            conn.execute(
                f"INSERT INTO {WEBHOOK_TABLE} (provider, status, created_at, http_status, "
                "raw_body, signature, event_id) VALUES ('square', 'failed', "
                "now() - interval '30 minutes', 503, %s, %s, %s)",
                (body, square_signature(SQUARE_SIGNATURE_KEY, url, body), f"sq-ui-{n:03}"),
            )


def walk_the_replay_approval(
    client: httpx.Client, port: int, log: Path, receiver: WebhookReceiver
) -> None:
    """In a real browser, as an operator: a `webhook-replay` of more than 100 events
    waits; the operator opens the paused run, reads how many it would send, approves
    with their name, and exactly those reach the gateway, each once."""
    deployment = api_get(client, "/deployments/name/webhook-replay/manual")
    since = datetime.now(STOCKHOLM) - timedelta(hours=2)
    created = api_call(
        client,
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"since": since.isoformat(), "dry_run": False}},
    )
    run_id = created["id"]

    def state() -> str:
        return str(api_get(client, f"/flow_runs/{run_id}")["state"]["type"])

    wait_until(lambda: state() in ("PAUSED", "FAILED", "CRASHED"), timeout=180, what="a pause")
    assert state() == "PAUSED", log.read_text()[-3000:]
    assert receiver.received() == [], "nothing is sent before approval"
    with browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/runs/flow-run/{run_id}", wait_until="networkidle")
        page.get_by_role("button", name="Resume").first.click()
        asked = f"Replay {REPLAYED_EVENTS} failed webhook events (square {REPLAYED_EVENTS})"
        # The UI validates the form against the server, then resumes through it: under
        # the suite's load that has taken more than Playwright's default 5 s.
        patient = 60_000
        try:
            expect(page.get_by_text(asked).first).to_be_visible(timeout=patient)
            form = page.get_by_role("dialog")
            approve = form.locator(".schema-form-property", has_text="Approve").get_by_role(
                "switch"
            )
            approve.click()
            expect(approve).to_have_attribute("aria-checked", "true", timeout=patient)
            form.locator(".schema-form-property", has_text="Your name").locator(
                "textarea, input"
            ).first.fill("Karin Berg")
            page.keyboard.press("Tab")
            page.wait_for_load_state("networkidle")
            submit_resume_form(form, lambda: state() == "PAUSED")  # the resume was accepted
        except (AssertionError, PlaywrightTimeout):
            (log.parent / "resume.html").write_text(page.content())
            raise
    wait_until(
        lambda: state() in ("COMPLETED", "FAILED", "CRASHED"), timeout=180, what="the replay"
    )
    assert state() == "COMPLETED", log.read_text()[-3000:]
    # Sent 8 at a time: they arrive in any order, each once.
    assert sorted(receiver.accepted_ids("square")) == [
        f"sq-ui-{n:03}" for n in range(REPLAYED_EVENTS)
    ]
    assert receiver.duplicates() == []


def drop_restored(platform_db: str) -> None:
    with psycopg.connect(platform_db.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {UI_TARGET} WITH (FORCE)")


@pytest.mark.e2e
@pytest.mark.timeout(400)
def test_up_serves_the_backup_deployment_and_stops_cleanly(
    platform_db: str, db_factory: Any, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    backups = tmp_path / "backups"
    receiver = WebhookReceiver()
    receiver.start()
    seed_failed_webhooks(platform_db, receiver)
    configured = cli_environment(
        state,
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{backups}",
        FEEDBACK_OPS_PORT=str(free_port()),  # nothing listens there before `up`
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        WEBHOOK_ATTEMPTS_TABLE=WEBHOOK_TABLE,
        POS_WEBHOOK_URL=f"{receiver.url}/webhooks",
        SQUARE_WEBHOOK_SIGNATURE_KEY=SQUARE_SIGNATURE_KEY,
    )
    saved = _cli(tmp_path, configured, "config", "sync")
    assert "platform-postgres: created\n" in saved.stdout, saved.stderr
    assert "backup-storage: created\n" in saved.stdout

    # A one-off run against another database: that run only.
    scratch = db_factory()
    one_off = _cli(
        tmp_path, configured | {"DATABASE_URL": scratch}, "run", "database-backup", "--json"
    )
    assert json.loads(one_off.stdout)["state"] == "Completed", one_off.stderr[-3000:]
    assert (
        "feedback-ops: this run only, from the environment, nothing saved: "
        "platform-postgres (database), ops-postgres (database)\n"
    ) in one_off.stderr
    unchanged = _cli(tmp_path, configured, "config", "sync")
    assert unchanged.stdout == (
        "configuration unchanged: the saved blocks already match the environment\n"
    )

    # `up` with no database in its environment: it serves what is saved.
    env = {k: v for k, v in configured.items() if k != "DATABASE_URL"} | {
        # Faster loops than production, so the test need not wait a minute for each.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed in finally
    up, port = start_up(tmp_path, env, log, state)
    api = f"http://127.0.0.1:{port}/api"
    try:
        with httpx.Client(base_url=api, timeout=10) as client:

            def served() -> bool:
                try:
                    answer = client.get("/deployments/name/database-backup/daily-0200")
                except httpx.TransportError:
                    assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
                    return False
                return answer.status_code == 200

            wait_until(served, timeout=180, what="the served database-backup deployment")
            deployment = api_get(client, "/deployments/name/database-backup/daily-0200")
            assert deployment["paused"] is False
            assert deployment["entrypoint"] == "flows.database_backup.database_backup"
            assert "Full backup of the platform" in deployment["description"]
            [schedule] = deployment["schedules"]
            assert schedule["schedule"]["cron"] == "0 2 * * *"
            assert schedule["schedule"]["timezone"] == "Europe/Stockholm"
            assert schedule["active"] is True

            # What the UI lists as upcoming runs: the scheduler's own, at 02:00 Stockholm.
            def scheduled() -> list[dict[str, Any]]:
                return list(
                    api_call(
                        client,
                        "POST",
                        "/flow_runs/filter",
                        {
                            "deployments": {"id": {"any_": [deployment["id"]]}},
                            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                            "limit": 10,
                        },
                    )
                )

            wait_until(lambda: len(scheduled()) >= 3, timeout=60, what="scheduled runs")
            for run in scheduled():
                local = datetime.fromisoformat(run["expected_start_time"]).astimezone(STOCKHOLM)
                assert (local.hour, local.minute) in ((2, 0), (3, 0)), local

            # The "Run" button: a flow run created from the deployment, picked up by serve.
            created = api_call(
                client, "POST", f"/deployments/{deployment['id']}/create_flow_run", {}
            )
            run_id = created["id"]

            def final_state() -> str | None:
                state_type = api_get(client, f"/flow_runs/{run_id}")["state"]["type"]
                return state_type if state_type in ("COMPLETED", "FAILED", "CRASHED") else None

            wait_until(lambda: final_state() is not None, timeout=180, what="the flow run")
            assert final_state() == "COMPLETED", (tmp_path / "up.log").read_text()[-3000:]

            restored = walk_the_restore_form(
                client, port, tmp_path / "up.log", platform_db.rsplit("/", 1)[0]
            )
            walk_the_replay_approval(client, port, tmp_path / "up.log", receiver)
        # The served run backed up the configured database, not the one-off run's.
        sources = sorted(
            json.loads(m.read_text())["source"] for m in backups.rglob("*.manifest.json")
        )
        assert sources == sorted(
            f"postgres@127.0.0.1:5432/{url.rsplit('/', 1)[1]}" for url in (platform_db, scratch)
        )

        with psycopg.connect(restored) as conn:
            assert conn.execute("SELECT count(*) FROM businesses").fetchone() == (
                planned_counts()["public.businesses"],
            )

        # Ctrl-C: `up` stops serving and stops the server it started.
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=90) == 0
        wait_until(lambda: not port_accepts("127.0.0.1", port), timeout=30, what="port closed")
        # The deployment is left active for the next start, not paused.
        with sqlite3.connect(state / "prefect" / "prefect.db") as db:
            rows = db.execute(
                "SELECT d.paused FROM deployment d JOIN flow f ON f.id = d.flow_id "
                "WHERE f.name = 'database-backup' AND d.name = 'daily-0200'"
            ).fetchall()
        assert rows == [(0,)]
    finally:
        receiver.stop()
        drop_restored(platform_db)
        if up.poll() is None:
            # The server runs in a session of its own: kill it too, not only `up`.
            for child in psutil.Process(up.pid).children(recursive=True):
                child.kill()
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        log.close()
