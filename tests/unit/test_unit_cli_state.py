"""The state folder is private: made 0700 with 0600 files, and a loosened one is named
in one warning line (stderr) without stopping the command."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

# The `feedback_ops` fixture of tests/unit/conftest.py.
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_state_folder_is_made_private(feedback_ops: RunCli, tmp_path: Path) -> None:
    state = tmp_path / "fresh-state"

    done = feedback_ops(
        "schedule", FEEDBACK_OPS_STATE_DIR=str(state), PREFECT_HOME=str(state / "prefect")
    )

    assert done.returncode == 0, done.stderr
    assert mode(state) == 0o700
    assert mode(state / "prefect") == 0o700
    assert "warning" not in done.stderr


def test_a_loosened_database_is_named_in_one_warning_line(
    feedback_ops: RunCli, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    (state / "prefect").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    database = state / "prefect" / "prefect.db"
    database.write_bytes(b"")
    database.chmod(0o644)

    done = feedback_ops(
        "schedule", FEEDBACK_OPS_STATE_DIR=str(state), PREFECT_HOME=str(state / "prefect")
    )

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"feedback-ops: warning: {database} is open to other users, mode 0644; this folder "
        f"holds the saved secrets and the key that decrypts them: chmod -R go= {state}"
    ]
    assert mode(database) == 0o644  # named, not changed behind the operator's back
    assert done.stdout.startswith("Runs from ")
