"""A `feedback-ops run database-backup` killed with SIGKILL while `pg_dump` streams: what
it leaves, what the next backup clears, and what `backup-report` names.

Real processes throughout: the console script starts its own Prefect server (as on a
machine without `up`), the test kills the command's own process, and watches the
children it had: `pg_dump` and the Prefect server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from support.cli import FEEDBACK_OPS, cli_environment
from support.net import free_port, wait_until

from flows.locks import DEAD_HOLDER_BOUND_SECONDS

INTERRUPTED = "interrupted: its run ended before the backup finished (process killed or lost)"


def big_database(url: str) -> None:
    """Enough rows that pg_dump streams for several seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b "
            "FROM generate_series(1, 1500000) g"
        )


def start_backup(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            [str(FEEDBACK_OPS), "run", "database-backup", "--json"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )


def kill_while_dumping(run: subprocess.Popen[bytes], backups: Path) -> list[psutil.Process]:
    """SIGKILL the command once its partial upload has bytes; returns the children it
    had then (pg_dump, the Prefect server and the server's own)."""

    def partial() -> list[Path]:
        return [p for p in backups.rglob(".*.partial-*") if p.stat().st_size > 0]

    wait_until(lambda: bool(partial()), timeout=240, what="pg_dump streaming into the store")
    children = psutil.Process(run.pid).children(recursive=True)
    assert any(c.name() == "pg_dump" for c in children), [c.name() for c in children]
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    return children


def records(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, status, error FROM ops.backup_records ORDER BY started_at"
        ).fetchall()


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_killed_backup_leaves_a_clear_state(db_factory: Any, tmp_path: Path) -> None:
    db = db_factory()
    big_database(db)
    backups = tmp_path / "backups"
    env = cli_environment(
        tmp_path / "state",
        DATABASE_URL=db,
        BACKUP_URL=f"file://{backups}",
        FEEDBACK_OPS_PORT=str(free_port()),  # no `up` there: each run starts its server
    )
    log = tmp_path / "runs.log"

    # 1. Killed mid-dump: nothing it started outlives it, nothing is under a final key.
    children = kill_while_dumping(start_backup(env, tmp_path, log), backups)
    killed_at = time.monotonic()
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], [p.info for p in alive]
    assert not list(backups.rglob("*.dump")) and not list(backups.rglob("*.manifest.json"))
    [(dead_id, status, _)] = records(db)
    assert status == "running"

    # 2. The next backup waits for the dead run's lock, saying so, gets it within the
    # README's bound, marks the dead run's record failed and removes its partial file.
    run = start_backup(env, tmp_path, log)
    out, _ = run.communicate(timeout=DEAD_HOLDER_BOUND_SECONDS + 240)
    report = json.loads(out)
    assert report["state"] == "Completed", log.read_text()[-3000:]
    text = log.read_text()
    assert "waiting for the lock postgres:127.0.0.1:5432:" in text
    took = float(text.split("took the lock ")[1].split(" after ")[1].split(" s")[0])
    assert took <= DEAD_HOLDER_BOUND_SECONDS
    assert time.monotonic() - killed_at < DEAD_HOLDER_BOUND_SECONDS + 120
    assert f"marked failed {dead_id}; removed file://{backups}/" in text
    assert not list(backups.rglob(".*.partial-*"))
    assert records(db) == [
        (dead_id, "failed", INTERRUPTED),
        (report["result"]["backup_id"], "completed", None),
    ]

    # 3. Killed again; before any backup runs, the report names what the crash left (a
    # record running past the longest plausible run, seen 8 h later; the partial file).
    kill_while_dumping(start_backup(env, tmp_path, log), backups)
    [partial] = backups.rglob(".*.partial-*")
    later = (datetime.now(UTC) + timedelta(hours=8)).isoformat()
    done = subprocess.run(
        [str(FEEDBACK_OPS), "run", "backup-report", "-p", f"as_of={later}", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    result = json.loads(done.stdout)["result"]
    assert {"interrupted-backups", "unfinished-uploads"} <= set(result["failed"]), done.stderr
    second = records(db)[-1]
    assert second[1:] == ("failed", INTERRUPTED)
    assert "unfinished upload(s) left by runs that died" in done.stderr
    assert partial.name.startswith(f".{second[0]}.dump.partial-")
