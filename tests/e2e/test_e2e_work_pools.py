"""The production stack on one machine: a Prefect server on PostgreSQL with Redis
messaging, two API processes and the services process, a process worker per work pool.

`feedback-ops deploy` registers on it what `up` would serve (compared field by field),
a second deploy changes nothing, the primary worker runs the 02:00 backup, then it
stops: Prefect's automation starts `work-pool-watch` on the standby, which alerts
naming the command; `pool-failover --to standby` moves the schedules and the run that
waited on the primary, and the standby worker runs them, each once.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from support.cli import RunCli
from support.net import wait_until
from support.prefect_stack import AUTH, PREFECT, PrefectStack, prefect_stack
from support.receivers import HttpRecorder
from support.redis_server import redis_server

from deployments import all_deployments
from tasks.work_pools import LAYOUT_VARIABLE, active_deployment_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# What a pool decides and the server keeps per registration, not what the UI shows of
# a deployment's schedules, form, defaults and limits.
POOL_FIELDS = {"work_pool_name", "work_queue_name", "work_queue_id", "job_variables"}
BOOKKEEPING = {
    "id", "created", "updated", "created_by", "updated_by", "last_polled", "status",
    "pull_steps", "path", "storage_document_id", "infrastructure_document_id",
    "version_info", "global_concurrency_limit",
}  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path, db_factory: Any) -> Iterator[PrefectStack]:
    with redis_server() as redis, prefect_stack(tmp_path, db_factory(), redis.url) as running:
        yield running


USER, PASSWORD = AUTH.split(":", 1)
SIGNED_IN = (USER, PASSWORD)


def api_get(api: str, path: str) -> Any:
    answer = httpx.get(f"{api}{path}", auth=SIGNED_IN, timeout=10)
    answer.raise_for_status()
    return answer.json()


def api_post(api: str, path: str, body: dict[str, Any]) -> Any:
    answer = httpx.post(f"{api}{path}", json=body, auth=SIGNED_IN, timeout=10)
    answer.raise_for_status()
    return answer.json()


def deployments_by_name(api: str) -> dict[str, dict[str, Any]]:
    flows = {f["id"]: f["name"] for f in api_post(api, "/flows/filter", {"limit": 200})}
    found = api_post(api, "/deployments/filter", {"limit": 200})
    return {f"{flows[d['flow_id']]}/{d['name']}": d for d in found}


def as_the_ui_shows(deployment: dict[str, Any]) -> dict[str, Any]:
    """A registration without its pool and the server's bookkeeping; schedules by what
    they do."""
    shown = {k: v for k, v in deployment.items() if k not in POOL_FIELDS | BOOKKEEPING}
    shown.pop("name")
    limit = deployment.get("global_concurrency_limit")
    shown["concurrency_limit"] = limit["limit"] if limit else None
    shown["schedules"] = sorted(
        json.dumps({k: s[k] for k in ("schedule", "active", "parameters")}, sort_keys=True)
        for s in deployment["schedules"]
    )
    return shown


def register_as_up_does(api: str) -> None:
    """What `feedback-ops up`'s serve() registers: each deployment's `to_runner()`."""
    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: AUTH}):
        for spec in all_deployments():
            spec.to_runner().apply()


def times_run_twice(api: str) -> list[tuple[str, str]]:
    """(deployment, time) that two runs not cancelled share, a deployment and its standby
    twin counted as one: after swaps, each scheduled time runs on one side only once."""
    names = {
        d["id"]: d["name"].removesuffix("-standby") + f" of {d['flow_id']}"
        for d in api_post(api, "/deployments/filter", {"limit": 200})
    }
    live = {"state": {"type": {"not_any_": ["CANCELLED"]}}}
    seen: Counter[tuple[str, str]] = Counter()
    for offset in itertools.count(0, 200):
        page = api_post(
            api, "/flow_runs/filter", {"flow_runs": live, "limit": 200, "offset": offset}
        )
        seen.update(
            (names[r["deployment_id"]], r["expected_start_time"])
            for r in page
            if r["deployment_id"]
        )
        if len(page) < 200:
            return [key for key, count in seen.items() if count > 1]
    return []


def run_of(api: str, run_id: str) -> dict[str, Any]:
    return dict(api_get(api, f"/flow_runs/{run_id}"))


def pool_status(api: str, pool: str) -> str:
    return str(api_get(api, f"/work_pools/{pool}")["status"])


def alert_status(ops_db: str, dedup_key: str) -> str | None:
    with psycopg.connect(ops_db) as conn:
        row = conn.execute(
            "SELECT status FROM ops.alerts WHERE dedup_key = %s ORDER BY id DESC LIMIT 1",
            (dedup_key,),
        ).fetchone()
    return row[0] if row else None


def backup_runs(ops_db: str) -> list[str]:
    """The flow runs that made a database backup, one row per backup made."""
    with psycopg.connect(ops_db) as conn:
        rows = conn.execute(
            "SELECT flow_run_id FROM ops.backup_records"
            " WHERE kind = 'database' AND status = 'completed' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def test_deploy_fail_over_and_back_on_a_two_api_server(
    stack: PrefectStack,
    platform_db: str,
    db_factory: Any,
    s3_endpoint: str,
    s3_bucket: str,
    http_recorder: HttpRecorder,
    feedback_ops: RunCli,
    tmp_path: Path,
) -> None:
    api, other_api = stack.apis
    ops_db = db_factory()
    # Deployed from where `up`'s registration below is made: in a git checkout with a
    # remote both then register the commit as the version.
    env: dict[str, Any] = dict(
        cwd=Path.cwd(),
        PREFECT_API_URL=api,
        PREFECT_API_AUTH_STRING=AUTH,
        DATABASE_URL=platform_db,
        OPS_DATABASE_URL=ops_db,
        BACKUP_URL=f"s3://{s3_bucket}/platform",
        S3_ENDPOINT_URL=s3_endpoint,
        AWS_DEFAULT_REGION="eu-north-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        SLACK_WEBHOOK_URL=f"{http_recorder.url}/slack/T000/B000/pools",
    )
    # The API asks for credentials (its health probe excepted): wrong ones are one line
    # before anything is written.
    refused = feedback_ops(
        "deploy", "--pool", "ops-primary", **(env | {"PREFECT_API_AUTH_STRING": f"{USER}:wrong"})
    )
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stdout
    assert refused.stderr.splitlines()[-1] == (
        f"feedback-ops: deploy: the Prefect API at {api} refuses PREFECT_API_AUTH_STRING's "
        "credentials (HTTP 401): set PREFECT_API_AUTH_STRING to the user:password of the "
        "server's PREFECT_SERVER_API_AUTH_STRING"
    )
    assert "wrong" not in refused.stderr, "the password given is never shown"
    assert api_post(api, "/work_pools/filter", {}) == []

    synced = feedback_ops("config", "sync", **env)
    assert synced.returncode == 0, synced.stderr

    # What `up` serves, then deploy over it: only the pool may change.
    register_as_up_does(api)
    served = deployments_by_name(api)
    deployed = feedback_ops(
        "deploy", "--pool", "ops-primary", "--standby-pool", "ops-standby", "--json", **env
    )
    assert deployed.returncode == 0, deployed.stderr
    outcome = json.loads(deployed.stdout)
    # Deployments started by events are registered once, on the standby pool.
    started_by_events = [s.full_name for s in all_deployments() if s.triggers]
    names = [s.full_name for s in all_deployments() if not s.triggers]
    assert outcome["pools_created"] == ["ops-primary", "ops-standby"]
    assert outcome["updated"] == {name: ["work_pool_name"] for name in [*names, *started_by_events]}
    assert sorted(outcome["created"]) == sorted(
        [f"{name}-standby" for name in names] + ["work-pool-watch/on-pool-event"]
    )
    registered = deployments_by_name(other_api)  # the second API process sees the same
    for name in started_by_events:
        assert registered[name]["work_pool_name"] == "ops-standby"
        assert as_the_ui_shows(registered[name]) == as_the_ui_shows(served[name]), name
    for name in names:
        assert as_the_ui_shows(registered[name]) == as_the_ui_shows(served[name]), name
        assert registered[name]["work_pool_name"] == "ops-primary"
        twin = as_the_ui_shows(registered[f"{name}-standby"])
        assert registered[f"{name}-standby"]["work_pool_name"] == "ops-standby"
        assert all('"active": false' in s for s in twin["schedules"]), name
        twin["schedules"] = [
            s.replace('"active": false', '"active": true') for s in twin["schedules"]
        ]
        assert twin == as_the_ui_shows(served[name]), name
    automations = api_post(api, "/automations/filter", {})
    watch = [a for a in automations if a["name"] == "ops-primary ready or not"]
    assert len(watch) == 1
    assert set(watch[0]["trigger"]["expect"]) == {
        "prefect.work-pool.not-ready",
        "prefect.work-pool.ready",
    }
    dr_automations = sorted(a["name"] for a in automations if a["name"].startswith("dr-watchdog"))
    assert dr_automations == [
        "dr-watchdog starts dr-database-loss",
        "dr-watchdog starts dr-regional-failover",
    ]

    again = feedback_ops(
        "deploy", "--pool", "ops-primary", "--standby-pool", "ops-standby", "--json", **env
    )
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["created"], second["updated"], second["pools_created"]) == ([], {}, [])
    assert len(second["unchanged"]) == 2 * len(names) + len(started_by_events) + 1
    assert {n: d["updated"] for n, d in deployments_by_name(api).items()} == {
        n: d["updated"] for n, d in registered.items()
    }

    primary = stack.start_worker("primary-worker", "ops-primary", api)
    standby = stack.start_worker("standby-worker", "ops-standby", other_api)
    wait_until(
        lambda: pool_status(api, "ops-primary") == pool_status(api, "ops-standby") == "READY",
        timeout=60,
        interval=0.5,
        what="both pools ready",
    )

    # The 02:00 backup by hand, as an operator would, watched through one API process.
    watched = subprocess.run(
        [*PREFECT, "deployment", "run", "database-backup/daily-0200", "--watch"],
        env=stack.client_env(api),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    first_id = re.search(r"UUID: ([0-9a-f-]{36})", watched.stdout).group(1)  # type: ignore[union-attr]
    first = run_of(other_api, first_id)
    assert first["state"]["type"] == "COMPLETED"
    assert first["work_pool_name"] == "ops-primary"
    assert first_id in primary.output() and first_id not in standby.output()

    # The primary region's worker goes; Prefect's automation has the standby alert.
    primary.stop()
    wait_until(
        lambda: pool_status(api, "ops-primary") == "NOT_READY",
        timeout=60,
        interval=0.5,
        what="ops-primary not ready",
    )
    waiting = api_post(
        api,
        f"/deployments/{registered['database-backup/daily-0200']['id']}/create_flow_run",
        {},
    )

    def watch_runs() -> list[dict[str, Any]]:
        watcher = registered["work-pool-watch/on-pool-event"]["id"]
        return list(
            api_post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [watcher]}}})
        )

    wait_until(
        lambda: any(
            r["state"]["type"] == "COMPLETED"
            and r["parameters"].get("event") == "prefect.work-pool.not-ready"
            for r in watch_runs()
        ),
        timeout=120,
        interval=1,
        what="work-pool-watch run completed",
    )
    slack = [json.loads(r.body) for r in http_recorder.requests("/slack/")]
    said = json.dumps(slack)
    assert "ops-primary has no ready worker" in said
    assert "feedback-ops pool-failover --to standby" in said

    moved = feedback_ops("pool-failover", "--to", "standby", "--json", **env)
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["to_pool"] == "ops-standby" and report["from_pool"] == "ops-primary"
    # The backup that waited is among the moved runs (so are the every-minute
    # escalation sweeps that came due while no worker polled ops-primary).
    backup_twin = registered["database-backup/daily-0200-standby"]["id"]
    moved_to = [run_of(api, r)["deployment_id"] for r in report["moved_runs"]]
    assert len(moved_to) == len(set(moved_to)), "a schedule's backlog moves as one run"
    twins = [r for r, d in zip(report["moved_runs"], moved_to, strict=True) if d == backup_twin]
    assert len(twins) == 1, report
    twin_id = twins[0]
    wait_until(
        lambda: run_of(api, twin_id)["state"]["type"] == "COMPLETED",
        timeout=180,
        interval=1,
        what="the moved backup run",
    )
    old = run_of(api, waiting["id"])
    assert (old["state"]["type"], old["state"]["name"]) == ("CANCELLED", "Moved")
    assert run_of(api, twin_id)["work_pool_name"] == "ops-standby"
    assert twin_id in standby.output() and waiting["id"] not in standby.output()

    # The schedules moved with it: every waiting scheduled run is the standby's now.
    scheduled = api_post(
        api,
        "/flow_runs/filter",
        {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200},
    )
    pools = {r["work_pool_name"] for r in scheduled if r["deployment_id"]}
    assert pools <= {"ops-standby"}, pools
    # The first run and the moved one made a backup each, and nothing else ran.
    assert backup_runs(ops_db) == sorted([first_id, twin_id])

    # A flow that starts another deployment starts the twin on the active side.
    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: AUTH}):
        assert active_deployment_name("pos-health-sweep/every-5-minutes") == (
            "pos-health-sweep/every-5-minutes-standby"
        )

    # Back to the primary once its worker is back; the alert resolves itself.
    back_again = stack.start_worker("primary-worker-2", "ops-primary", api)
    wait_until(lambda: pool_status(api, "ops-primary") == "READY", timeout=60, interval=0.5)
    back = feedback_ops("pool-failover", "--to", "primary", **env)
    assert back.returncode == 0, back.stderr
    assert "scheduled work now runs on ops-primary (was ops-standby)" in back.stdout
    again = feedback_ops("pool-failover", "--to", "primary", **env)
    assert again.stdout.startswith(
        "scheduled work runs on ops-primary (it was already the active side): 21 deployments, "
        "0 schedules turned on there, 0 turned off on ops-standby"
    ), again.stdout + again.stderr
    assert times_run_twice(api) == []
    schedules = deployments_by_name(api)
    assert all(s["active"] for s in schedules["database-backup/daily-0200"]["schedules"])
    assert not any(
        s["active"] for s in schedules["database-backup/daily-0200-standby"]["schedules"]
    )
    wait_until(
        lambda: alert_status(ops_db, "work-pool-not-ready:ops-primary") == "resolved",
        timeout=120,
        interval=1,
        what="the work pool alert resolved",
    )

    # With POOL_AUTO_FAILOVER on, the watcher moves the work by itself.
    synced = feedback_ops("config", "sync", **env, POOL_AUTO_FAILOVER="true")
    assert synced.returncode == 0, synced.stderr
    back_again.stop()

    def slack_says(text: str) -> bool:
        return text in json.dumps([json.loads(r.body) for r in http_recorder.requests("/slack/")])

    wait_until(
        lambda: slack_says("moved to ops-standby by itself (POOL_AUTO_FAILOVER)"),
        timeout=120,
        interval=1,
        what="the automatic failover's alert",
    )
    layout = api_get(api, f"/variables/name/{LAYOUT_VARIABLE}")["value"]
    assert layout == {"primary": "ops-primary", "standby": "ops-standby", "active": "standby"}
    schedules = deployments_by_name(api)
    assert not any(s["active"] for s in schedules["database-backup/daily-0200"]["schedules"])
