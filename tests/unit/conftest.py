"""Run the real `feedback-ops` console script of this virtualenv as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from feedback_ops.settings import VARIABLES

FEEDBACK_OPS = Path(sys.executable).parent / "feedback-ops"
# Every variable the project reads (the settings table), and Prefect's own server and
# key: a developer's shell must not leak into a test run.
PROJECT_VARIABLES = (*VARIABLES, "PREFECT_API_URL", "PREFECT_API_KEY")

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def feedback_ops(tmp_path: Path) -> RunCli:
    """`feedback_ops(*args, **env)`: run the command in `tmp_path`, state kept there too."""

    def run(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
        environ.update(
            FEEDBACK_OPS_STATE_DIR=str(tmp_path),
            PREFECT_HOME=str(tmp_path / "prefect"),
            PYTHONIOENCODING="utf-8",
        )
        environ.update(env)
        assert FEEDBACK_OPS.is_file(), f"{FEEDBACK_OPS} is not installed"
        return subprocess.run(
            [str(FEEDBACK_OPS), *args],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            check=False,
        )

    return run
