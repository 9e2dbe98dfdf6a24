"""`feedback-ops run`, as the real console script: one JSON line on stdout, logs on stderr.

Runs that reach a flow use the session's Prefect server (`PREFECT_API_URL`), as they
would with `feedback-ops up` running, except one: the backup to a local folder finds no
server, as on a newcomer's machine, and starts Prefect's ephemeral API itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.cli import FEEDBACK_OPS, cli_environment
from support.net import free_port, wait_until

from flows.locks import lock_name, system_lock

# The `feedback_ops` fixture of tests/unit/conftest.py.
RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(feedback_ops: RunCli, prefect_api_url: str) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`run(*args, **env)` -> (exit code, the one JSON object printed on stdout), against
    the session's Prefect server unless `PREFECT_API_URL=""` is given."""

    def run_json(*args: str, **env: str) -> tuple[int, dict[str, Any]]:
        env.setdefault("PREFECT_API_URL", prefect_api_url)
        if not env["PREFECT_API_URL"]:
            del env["PREFECT_API_URL"]  # the developer's own is kept out by feedback_ops
        env.setdefault("FEEDBACK_OPS_PORT", str(free_port()))
        done = feedback_ops("run", *args, "--json", **env)
        lines = done.stdout.splitlines()
        assert len(lines) == 1, f"stdout is not one line:\n{done.stdout}\nstderr:\n{done.stderr}"
        report = json.loads(lines[0])
        assert isinstance(report, dict)
        return done.returncode, report

    return run_json


def test_unknown_flow(run: Callable[..., tuple[int, dict[str, Any]]]) -> None:
    code, report = run("nope")

    assert report == {
        "flow": "nope",
        "flow_run_id": None,
        "state": "Failed",
        "message": (
            "unknown flow 'nope'; known: alert-acknowledge, alert-escalation, app-config-backup, "
            "backup-report, backup-retention, backup-verify, backups-resync, database-backup, "
            "database-restore, dr-database-loss, dr-pos-providers-down, dr-regional-failover, "
            "dr-watchdog, pos-config-backup, pos-failover, pos-health-sweep, "
            "redis-restore, redis-snapshot, webhook-reconciliation, webhook-replay"
        ),
    }
    assert code != 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"BACKUP_URL": "ftp://x/y"},
            "BACKUP_URL must be file:///path or s3://bucket/prefix, got scheme 'ftp'",
        ),
        ({"DATABASE_URL": "mysql://root:hunter2@127.0.0.1:3306/platform"}, "DATABASE_URL"),
        ({"BACKUP_SSE": "des"}, "BACKUP_SSE"),
    ],
    ids=["BACKUP_URL", "DATABASE_URL", "BACKUP_SSE"],
)
def test_invalid_configuration_fails_before_the_flow_runs(
    run: Callable[..., tuple[int, dict[str, Any]]], env: dict[str, str], expected: str
) -> None:
    code, report = run("database-backup", **env)

    assert code != 0
    assert set(report) == {"flow", "flow_run_id", "state", "message"}
    assert report["flow"] == "database-backup"
    assert report["flow_run_id"] is None
    assert report["state"] == "Failed"
    if " " in expected:
        assert report["message"] == expected
    else:
        assert report["message"].startswith(f"{expected} ")
    assert "hunter2" not in report["message"]


def test_backup_to_a_local_folder(
    run: Callable[..., tuple[int, dict[str, Any]]], platform_db: str, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"

    # No PREFECT_API_URL and nothing on FEEDBACK_OPS_PORT: the ephemeral API.
    code, report = run(
        "database-backup",
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{backups}",
        PREFECT_API_URL="",
    )

    assert report["state"] == "Completed", report
    assert code == 0
    assert set(report) == {"flow", "flow_run_id", "state", "result"}
    assert report["flow"] == "database-backup"
    uuid.UUID(report["flow_run_id"])
    result = report["result"]
    assert set(result) == {"backup_id", "locations", "size", "sha256"}
    assert result["backup_id"]
    (location,) = result["locations"]
    assert location.startswith(f"file://{backups}/")
    dump = Path(location.removeprefix("file://"))
    assert dump.is_file()
    data = dump.read_bytes()
    assert result["size"] == len(data) > 0
    assert result["sha256"] == hashlib.sha256(data).hexdigest()

    # What the run left at rest is the owner's alone: the Prefect database (the saved
    # secrets and their key), the server's files, and the backup itself.
    database = tmp_path / "prefect" / "prefect.db"
    assert database.is_file()
    opened = [p for p in (database, *backups.rglob("*")) if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert opened == []


def test_backup_of_an_unreachable_database(
    run: Callable[..., tuple[int, dict[str, Any]]], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there

    code, report = run(
        "database-backup",
        DATABASE_URL=f"postgresql://postgres:pw@127.0.0.1:{port}/platform",
        BACKUP_URL=f"file://{tmp_path}/backups",
    )

    assert code != 0
    assert report["state"] == "Failed"
    assert report["message"] == (
        f"PostgreSQL at 127.0.0.1:{port}/platform is unreachable: connection refused"
    )
    uuid.UUID(report["flow_run_id"])
    assert "result" not in report


def test_an_api_that_does_not_answer_still_gets_the_json_answer(
    run: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    api = f"http://127.0.0.1:{free_port()}/api"

    code, report = run("backup-report", PREFECT_API_URL=api, PREFECT_CLIENT_MAX_RETRIES="0")

    assert code == 1
    assert report == {
        "flow": "backup-report",
        "flow_run_id": None,
        "state": "Failed",
        "message": f"backup-report could not run: [Errno 111] Connection refused "
        f"(Prefect API: {api})",
    }


RESTORE_PARAMETERS = (
    "backup_id, before, target_database, overwrite, jobs, database_block, storage_block"
)


@pytest.mark.parametrize(
    ("parameter", "said"),
    [
        ("jobs=0", "jobs=0: Input should be greater than or equal to 1"),
        ("jobs=17", "jobs=17: Input should be less than or equal to 16"),
        (
            "target_database=x; DROP DATABASE postgres",
            "target_database='x; DROP DATABASE postgres': must be a database name (lower case "
            "letters, digits and _, not starting with a digit, at most 63 characters) or empty",
        ),
        (
            "backup_id=../../etc/passwd",
            "backup_id='../../etc/passwd': must be a backup id "
            "(latest, or <kind>-YYYYMMDDTHHMMSSZ-<6 hex>)",
        ),
        (
            "before=notadate",
            "before='notadate': Input should be a valid datetime or date, input is too short",
        ),
        (
            "before=2026-12-01T02:00",
            "before='2026-12-01T02:00': give the time with its offset, e.g. "
            "2026-12-01T02:00:00+01:00",
        ),
        (
            "database_block=../other",
            "database_block='../other': must be a block name "
            "(lower case letters and digits, words joined by -)",
        ),
        ("nope=1", None),
    ],
    ids=["jobs=0", "jobs=17", "injection", "path", "notadate", "naive", "block", "unknown"],
)
def test_bad_parameters_are_refused_before_anything_starts(
    feedback_ops: RunCli, platform_db: str, pg_admin_url: str, parameter: str, said: str | None
) -> None:
    # An API nobody answers and a port nothing listens on: a check that needed either
    # would fail otherwise, and nothing can be started or written.
    api = f"http://127.0.0.1:{free_port()}/api"
    done = feedback_ops(
        "run", "database-restore", "-p", parameter, "--json",
        PREFECT_API_URL=api, DATABASE_URL=platform_db,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr == ""
    expected = (
        f"invalid parameters for database-restore: {said}"
        if said
        else f"database-restore has no parameter nope; it takes {RESTORE_PARAMETERS}"
    )
    assert json.loads(done.stdout) == {
        "flow": "database-restore",
        "flow_run_id": None,
        "state": "Failed",
        "message": expected,
    }
    with psycopg.connect(pg_admin_url) as conn:
        named = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'x;%%'").fetchall()
    assert named == []


def test_every_problem_is_named_in_one_line(feedback_ops: RunCli) -> None:
    done = feedback_ops(
        "run", "alert-acknowledge", "-p", "action=snooze", "-p", "by=",
        PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
    )  # fmt: skip

    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout == (
        "alert-acknowledge: Failed: invalid parameters for alert-acknowledge: "
        "dedup_key is required; action='snooze': Input should be 'acknowledge' or 'resolve'; "
        "by='': String should have at least 1 character\n"
    )


def test_ctrl_c_of_a_run_waiting_for_its_lock_answers_and_exits(
    prefect_api_url: str, platform_db: str, tmp_path: Path
) -> None:
    """The run waits for the database's lock (held here), Ctrl-C reaches it: it exits at
    once with the documented answer, and leaves the lock as it found it."""
    lock = lock_name("postgres", f"127.0.0.1:5432:{platform_db.rsplit('/', 1)[1]}")
    environ = cli_environment(
        tmp_path,
        PREFECT_API_URL=prefect_api_url,
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{tmp_path}/backups",
    )
    log = tmp_path / "run.log"
    with system_lock(lock), open(log, "wb") as stderr:
        run = subprocess.Popen(
            [str(FEEDBACK_OPS), "run", "database-backup", "--json"],
            env=environ,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: b"waiting for the lock " + lock.encode() in log.read_bytes(),
                timeout=120,
                what="the run to say it waits for the lock",
            )
            os.killpg(run.pid, signal.SIGINT)
            pressed = time.monotonic()
            out, _ = run.communicate(timeout=30)
            took = time.monotonic() - pressed
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()

    assert run.returncode == 130, log.read_text()[-2000:]
    assert took < 15
    assert json.loads(out) == {
        "flow": "database-backup",
        "flow_run_id": None,
        "state": "Crashed",
        "message": "database-backup was interrupted (Ctrl-C) and did not finish",
    }
    assert "Traceback" not in log.read_text()
    # The interrupted waiter took no slot: the lock is free at once.
    started = time.monotonic()
    with system_lock(lock, timeout_seconds=10):
        assert time.monotonic() - started < 5
    assert not list(tmp_path.glob("backups/**/*.dump"))


def test_two_backups_of_one_database_started_at_once_take_turns_and_both_complete(
    prefect_api_url: str, platform_db: str, tmp_path: Path
) -> None:
    """Two `run database-backup` processes at the same moment: one waits for the other's
    lock and says so, then both finish with backups of their own.

    A session holding a table lock keeps whichever run dumps first inside its lock until
    the other has said it waits, so the two overlap however the processes start.
    """
    backups = tmp_path / "backups"
    lock = lock_name("postgres", f"127.0.0.1:5432:{platform_db.rsplit('/', 1)[1]}")
    logs = [tmp_path / f"run-{n}.log" for n in (1, 2)]
    runs = []
    with psycopg.connect(platform_db) as blocker:
        blocker.execute("LOCK TABLE businesses IN ACCESS EXCLUSIVE MODE")
        for n, log in enumerate(logs, 1):
            environ = cli_environment(
                tmp_path / f"state-{n}",
                PREFECT_API_URL=prefect_api_url,
                DATABASE_URL=platform_db,
                BACKUP_URL=f"file://{backups}",
            )
            with open(log, "wb") as stderr:
                runs.append(
                    subprocess.Popen(
                        [str(FEEDBACK_OPS), "run", "database-backup", "--json"],
                        env=environ,
                        cwd=tmp_path,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                    )
                )
        wait_until(
            lambda: any(f"waiting for the lock {lock}" in log.read_text() for log in logs),
            timeout=120,
            what="one run to say it waits for the other's lock",
        )
        blocker.rollback()
    answers = []
    for run, log in zip(runs, logs, strict=True):
        out, _ = run.communicate(timeout=240)
        assert run.returncode == 0, log.read_text()[-2000:]
        answers.append(json.loads(out))

    assert [a["state"] for a in answers] == ["Completed", "Completed"]
    ids = {a["result"]["backup_id"] for a in answers}
    assert len(ids) == 2
    for answer in answers:
        (location,) = answer["result"]["locations"]
        dump = Path(location.removeprefix("file://"))
        assert dump.stat().st_size == answer["result"]["size"] > 0
    waited = [text for log in logs if f"waiting for the lock {lock}" in (text := log.read_text())]
    assert len(waited) == 1, "exactly one of the two waited for the other"
    assert f"took the lock {lock} after " in waited[0]
    with psycopg.connect(platform_db) as conn:
        rows = conn.execute(
            "SELECT id, status FROM ops.backup_records WHERE id = ANY(%s)", (list(ids),)
        ).fetchall()
    assert sorted(rows) == sorted((i, "completed") for i in ids)
