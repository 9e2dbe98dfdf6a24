"""End to end: disaster recovery under a real `feedback-ops up`.

1. In a real browser, as an operator: open `dr-database-loss/manual`, fill its form for
   a drill, start it, find the paused run, approve it in the Resume form, and see the run
   Completed with its RTO/RPO artifact. A screenshot of each step is kept under
   `test-artifacts/dr-database-loss-ui/` (git-ignored).
2. `dr-watchdog` sees the primary region unavailable for more than five minutes: its
   event makes Prefect's automation start `dr-regional-failover/on-watchdog`, for real,
   waiting for approval.
3. A served `dr-database-loss` run is cancelled while the platform is in maintenance
   mode: the serving process's cancellation hook turns maintenance mode off.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import psycopg
import pytest
from playwright.sync_api import Page, expect
from support.browser import browser_page, press_until, submit_resume_form
from support.cli import RunCli, cli_environment
from support.gateway_fake import GatewayFake
from support.net import free_port, wait_until
from support.up import api_call, api_get, resume, start_up

from flows.database_restore import default_target_name

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dr-database-loss-ui"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
PATIENT = 60_000  # ms: the UI checks its forms with a server that is busy with the suite


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows a statement returns; none for one that returns none."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, args)
        return list(cursor.fetchall()) if cursor.description else []


def run_state(client: httpx.Client, run_id: str) -> str:
    return str(api_get(client, f"/flow_runs/{run_id}")["state"]["type"])


def wait_for_state(client: httpx.Client, run_id: str, states: tuple[str, ...], log: Path) -> str:
    wait_until(
        lambda: run_state(client, run_id) in (*states, *FINAL),
        timeout=180,
        what=f"run {run_id} in {states}",
    )
    found = run_state(client, run_id)
    assert found in states, f"{found}: " + log.read_text(errors="replace")[-4000:]
    return found


def runs_of(client: httpx.Client, deployment: str) -> list[dict[str, Any]]:
    found = api_get(client, f"/deployments/name/{deployment}")
    return list(
        api_call(
            client, "POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [found["id"]]}}}
        )
    )


def shot(page: Page, step: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{step}.png"), full_page=True)


@pytest.fixture
def zone(s3_endpoint: str) -> Iterator[tuple[str, str]]:
    """A Route 53 zone on moto whose `api.` record points at the primary region."""
    route53 = boto3.client("route53", endpoint_url=s3_endpoint)
    domain = f"e{secrets.token_hex(4)}.ai-feedback.se"
    zone_id = route53.create_hosted_zone(Name=domain, CallerReference=secrets.token_hex(8))[
        "HostedZone"
    ]["Id"].rsplit("/", 1)[-1]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": f"api.{domain}", "Type": "CNAME", "TTL": 300,
            "ResourceRecords": [{"Value": "api.eu-west-1.ai-feedback.se"}]}}]},
    )  # fmt: skip
    yield zone_id, f"api.{domain}"


def walk_the_drill(client: httpx.Client, port: int, log: Path) -> None:
    """The operator's drill, in Chromium: the run form, the approval, the outcome."""
    deployment = api_get(client, "/deployments/name/dr-database-loss/manual")
    properties = deployment["parameter_openapi_schema"]["properties"]
    ui = f"http://127.0.0.1:{port}"
    with browser_page() as page:
        page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run", wait_until="networkidle")

        def field(name: str) -> Any:
            label = f"{properties[name]['title']} (Optional)"
            return page.locator(".schema-form-property", has_text=label).first

        dry_run = field("dry_run").get_by_role("switch")
        expect(dry_run).to_have_attribute("aria-checked", "true")  # a dry run unless told
        dry_run.click()
        expect(dry_run).to_have_attribute("aria-checked", "false")
        drill = field("drill").get_by_role("switch")
        drill.click()
        expect(drill).to_have_attribute("aria-checked", "true")
        field("backup_id").locator("textarea, input").first.fill("latest")
        page.keyboard.press("Tab")
        page.wait_for_load_state("networkidle")
        shot(page, "1-run-form-filled")
        press_until(
            page.get_by_role("button", name="Submit"),
            lambda: page.wait_for_url(lambda url: "tab=Runs" in url, timeout=20_000),
            lambda: runs_of(client, "dr-database-loss/manual") == [],
            "the run form",
        )
        # A run was created: the form hands over to the deployment's runs.
        page.wait_for_url(lambda url: "tab=Runs" in url, timeout=PATIENT)
        shot(page, "2-run-started")

        [run] = runs_of(client, "dr-database-loss/manual")
        assert (run["parameters"]["dry_run"], run["parameters"]["drill"]) == (False, True)
        run_id = run["id"]
        wait_for_state(client, run_id, ("PAUSED",), log)

        page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
        expect(page.get_by_text("Paused").first).to_be_visible(timeout=PATIENT)
        shot(page, "3-run-paused")
        page.get_by_role("button", name="Resume").first.click()
        form = page.get_by_role("dialog")
        expect(form.get_by_text("Approve dr-database-loss?").first).to_be_visible(timeout=PATIENT)
        expect(form.get_by_text("drop the drill's database").first).to_be_visible()
        approve = form.locator(".schema-form-property", has_text="Approve").get_by_role("switch")
        approve.click()
        expect(approve).to_have_attribute("aria-checked", "true", timeout=PATIENT)
        form.locator(".schema-form-property", has_text="Your name").locator(
            "textarea, input"
        ).first.fill("Sara Ek")
        page.keyboard.press("Tab")
        page.wait_for_load_state("networkidle")
        shot(page, "4-approval-form")
        try:
            submit_resume_form(form, lambda: run_state(client, run_id) == "PAUSED")
        except AssertionError:
            shot(page, "4-approval-form-stuck")
            raise

        assert wait_for_state(client, run_id, ("COMPLETED",), log) == "COMPLETED"
        page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
        expect(page.get_by_text("Completed").first).to_be_visible(timeout=PATIENT)
        shot(page, "5-run-completed")
        [artifact] = api_call(
            client,
            "POST",
            "/artifacts/filter",
            {
                "artifacts": {
                    "flow_run_id": {"any_": [run_id]},
                    "key": {"any_": ["dr-database-loss"]},
                }
            },
        )
        page.goto(f"{ui}/artifacts/artifact/{artifact['id']}", wait_until="networkidle")
        shot(page, "6-rto-rpo-artifact")
        expect(page.get_by_text("dr-database-loss: completed").first).to_be_visible(timeout=PATIENT)
        table = page.locator("table").first
        expect(table).to_contain_text("RTO")
        expect(table).to_contain_text("RPO")
        expect(table).to_contain_text("30 min")
        shot(page, "6-rto-rpo-artifact")


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_dr_under_up_drill_in_the_ui_watchdog_trigger_and_cancellation(
    platform_db: str,
    tmp_path: Path,
    s3_endpoint: str,
    zone: tuple[str, str],
    pg_admin_url: str,
    feedback_ops: RunCli,
) -> None:
    state = tmp_path / "state"
    with GatewayFake() as gateway, GatewayFake() as drill_gateway:
        configured = cli_environment(
            state,
            DATABASE_URL=platform_db,
            BACKUP_URL=f"file://{tmp_path}/backups",
            FEEDBACK_OPS_PORT=str(free_port()),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DR_DRILL_GATEWAY_URL=drill_gateway.url,
            DR_BACKUP_REGION_URL=f"file://{tmp_path}/frankfurt",
            DR_DNS_ZONE_ID=zone[0],
            DR_DNS_RECORD=zone[1],
            DR_DNS_BACKUP_VALUE="api.eu-central-1.ai-feedback.se",
            ROUTE53_ENDPOINT_URL=s3_endpoint,
            AWS_ACCESS_KEY_ID=os.environ["AWS_ACCESS_KEY_ID"],
            AWS_SECRET_ACCESS_KEY=os.environ["AWS_SECRET_ACCESS_KEY"],
            **gateway.env(),
        )
        synced = feedback_ops("config", "sync", **configured)
        assert "disaster-recovery: created\n" in synced.stdout, synced.stdout + synced.stderr
        backed_up = feedback_ops("run", "database-backup", "--json", **configured)
        assert json.loads(backed_up.stdout)["state"] == "Completed", backed_up.stderr[-3000:]

        env = configured | {
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
        log_path = tmp_path / "up.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
        up, port = start_up(tmp_path, env, log, state)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=10) as client:
                wait_until(
                    lambda: (
                        client.get("/deployments/name/dr-watchdog/every-minute").status_code == 200
                    ),
                    timeout=180,
                    what="the served DR deployments",
                )
                walk_the_drill(client, port, log_path)
                assert [kind for kind, _ in drill_gateway.maintenance_log] == ["on", "off"]
                assert gateway.requests("/admin") == [], "a drill never calls the platform's"

                see_the_watchdog_start_a_regional_failover(client, gateway, platform_db, log_path)
                cancel_a_run_in_maintenance(client, gateway, platform_db, log_path)

            os.killpg(up.pid, signal.SIGINT)
            assert up.wait(timeout=90) == 0
        finally:
            drop_restores_of_this_test(platform_db, pg_admin_url)
            if up.poll() is None:
                for child in psutil.Process(up.pid).children(recursive=True):
                    child.kill()
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
            log.close()


def drop_restores_of_this_test(platform_db: str, admin_url: str) -> None:
    """Drop what this test's backups were restored into (other tests restore theirs
    meanwhile, under names of their own backups)."""
    ids = rows(platform_db, "SELECT id FROM ops.backup_records WHERE kind = 'database'")
    stems = [default_target_name(backup_id).removeprefix("restore_") for (backup_id,) in ids]
    for (name,) in rows(admin_url, "SELECT datname FROM pg_database"):
        if any(stem in name for stem in stems):
            rows(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def see_the_watchdog_start_a_regional_failover(
    client: httpx.Client, gateway: GatewayFake, ops_url: str, log: Path
) -> None:
    """Six minutes of the primary region unavailable, as earlier watchdog runs saw it,
    and the gateway still not answering: the next run fires, and Prefect's automation
    starts the regional failover, which shows its plan and waits."""
    now = datetime.now(UTC)
    # What the scheduled runs saw while the gateway answered is replaced by the outage.
    rows(ops_url, "DELETE FROM ops.dr_observations WHERE check_name = 'primary-region'")
    for minutes in range(6, 0, -1):
        rows(
            ops_url,
            "INSERT INTO ops.dr_observations (observed_at, check_name, ok, detail) "
            "VALUES (%s, 'primary-region', false, '{\"error\": \"seeded\"}')",
            now - timedelta(minutes=minutes),
        )
    gateway.fail("GET", "/health", status=503, times=1000)
    deployment = api_get(client, "/deployments/name/dr-watchdog/every-minute")
    api_call(client, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})

    def triggered() -> list[dict[str, Any]]:
        return runs_of(client, "dr-regional-failover/on-watchdog")

    wait_until(lambda: len(triggered()) > 0, timeout=120, what="the triggered DR run")
    [run] = triggered()
    assert run["parameters"] == {
        "dry_run": False,
        "triggered_by": "dr-watchdog: primary-region-unavailable",
    }
    wait_for_state(client, run["id"], ("PAUSED",), log)
    fired = rows(ops_url, "SELECT trigger, event_id IS NOT NULL FROM ops.dr_triggers")
    assert fired == [("primary-region-unavailable", True)]
    resume(client, run["id"], {"approve": False})
    assert wait_for_state(client, run["id"], ("COMPLETED",), log) == "COMPLETED"
    assert gateway.requests("/admin/disaster-recovery/failover") == []
    gateway.reset()


def cancel_a_run_in_maintenance(
    client: httpx.Client, gateway: GatewayFake, ops_url: str, log: Path
) -> None:
    """Approved, in maintenance mode, stuck on a gateway that does not answer: cancelled
    from the UI's API, the run's process is killed and the serving process's hook turns
    maintenance mode off, as the ops catalog says this run turned it on."""
    deployment = api_get(client, "/deployments/name/dr-database-loss/manual")
    created = api_call(
        client,
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"dry_run": False, "backup_id": "latest"}},
    )
    run_id = created["id"]
    wait_for_state(client, run_id, ("PAUSED",), log)
    gateway.fail("GET", "/health", status=503, times=1000, delay_seconds=30)
    resume(client, run_id, {"approve": True, "approved_by": "e2e"})
    wait_until(
        lambda: gateway.maintenance is not None and len(gateway.requests("/health")) > 0,
        timeout=120,
        what="maintenance mode on and the health check asked",
    )
    api_call(
        client,
        "POST",
        f"/flow_runs/{run_id}/set_state",
        {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
    )
    assert wait_for_state(client, run_id, ("CANCELLED",), log) == "CANCELLED"
    wait_until(lambda: gateway.maintenance is None, timeout=60, what="maintenance mode off")
    assert [kind for kind, _ in gateway.maintenance_log] == ["on", "off"]
    assert rows(ops_url, "SELECT status FROM ops.dr_runs WHERE flow_run_id = %s", run_id) == [
        ("cancelled",)
    ]
    assert rows(ops_url, "SELECT count(*) FROM ops.dr_maintenance WHERE turned_off_at IS NULL") == [
        (0,)
    ]
