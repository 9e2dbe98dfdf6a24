"""Run the real `feedback-ops` console script of this virtualenv as a subprocess."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import FEEDBACK_OPS, cli_environment

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def feedback_ops(tmp_path: Path) -> RunCli:
    """`feedback_ops(*args, **env)`: run the command in `tmp_path`, state kept there too."""

    def run(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        environ = cli_environment(tmp_path, **env)
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
