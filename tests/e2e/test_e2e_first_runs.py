"""A newcomer's first command, five times over: `feedback-ops run backup-report --json` on
a fresh state folder each time, with no `up` and no PREFECT_API_URL, so every run starts
its own Prefect server on an empty SQLite database (the migrations are the slow part).

Prefect's ephemeral API gave up after 20 s here one time in three; the server `run`
starts itself is waited for as `up` waits for its own. Each run must answer with its JSON
line, and leave no server behind. Five runs, not ten: with that failure back, five would
all pass by chance one time in eight (ten: one in sixty), and each run costs the suite
about 20 s of one of its two cores.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from support.cli import FEEDBACK_OPS, cli_environment
from support.net import free_port

RUNS = 5


def processes_using(state: Path) -> list[str]:
    """Command lines of the processes whose PREFECT_HOME lies in `state`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            home = process.environ().get("PREFECT_HOME", "")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if home.startswith(str(state)):
            found.append(" ".join(process.info["cmdline"] or []))
    return found


@pytest.mark.e2e
@pytest.mark.timeout(RUNS * 150)
def test_five_first_runs_in_a_row_all_answer(platform_db: str, tmp_path: Path) -> None:
    took = []
    for attempt in range(RUNS):
        state = tmp_path / f"fresh-{attempt}"
        env = cli_environment(
            state,
            DATABASE_URL=platform_db,
            BACKUP_URL=f"file://{tmp_path / 'backups'}",
            FEEDBACK_OPS_PORT=str(free_port()),  # nothing listens there: no `up` to reuse
        )
        started = time.monotonic()
        done = subprocess.run(
            [str(FEEDBACK_OPS), "run", "backup-report", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        took.append(round(time.monotonic() - started, 1))

        lines = done.stdout.splitlines()
        assert len(lines) == 1, f"run {attempt + 1}: stdout {done.stdout!r}\n{done.stderr[-3000:]}"
        report = json.loads(lines[0])
        assert report["flow"] == "backup-report"
        assert report["state"] == "Completed", f"run {attempt + 1}: {report}"
        assert done.returncode == 0
        # The report of an empty catalog: every kind's age check fails, and says so.
        assert "database-age" in report["result"]["failed"]
        assert (state / "prefect" / "prefect.db").is_file()
        assert processes_using(state) == [], f"run {attempt + 1} left its server running"

    print(f"first runs on fresh state folders took {took} s")
