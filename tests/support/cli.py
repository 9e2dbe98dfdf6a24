"""The real `feedback-ops` console script of this virtualenv, and a clean environment
to run it in: a developer's shell must not leak into a test run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from feedback_ops.settings import VARIABLES

FEEDBACK_OPS = Path(sys.executable).parent / "feedback-ops"
# Every variable the project reads (the settings table), and Prefect's own server and key.
PROJECT_VARIABLES = (*VARIABLES, "PREFECT_API_URL", "PREFECT_API_KEY")

RunCli = Callable[..., subprocess.CompletedProcess[str]]
"""The `feedback_ops` fixture: `feedback_ops(*args, timeout=300, cwd=None, **env)`."""


def cli_environment(state: Path, **env: str) -> dict[str, str]:
    """This process's environment without the project's variables, state kept in
    `state`, and `env` on top."""
    environ = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
    environ.update(
        FEEDBACK_OPS_STATE_DIR=str(state),
        PREFECT_HOME=str(state / "prefect"),
        PYTHONIOENCODING="utf-8",
    )
    return environ | env
