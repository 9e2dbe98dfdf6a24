"""Run the real `feedback-ops` console script of this virtualenv as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FEEDBACK_OPS = Path(sys.executable).parent / "feedback-ops"
# Every variable the project reads: a developer's shell must not leak into a test run.
PROJECT_VARIABLES = (
    "DATABASE_URL",
    "OPS_DATABASE_URL",
    "BACKUP_URL",
    "BACKUP_REPLICA_URLS",
    "S3_ENDPOINT_URL",
    "BACKUP_SSE",
    "BACKUP_KMS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "FEEDBACK_OPS_STATE_DIR",
    "FEEDBACK_OPS_PORT",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PG_BIN_DIR",
    "REDIS_URL",
    "REDIS_SNAPSHOT_METHOD",
    "REDIS_DATA_DIR",
    "REDIS_STOP_COMMAND",
    "REDIS_START_COMMAND",
    "CONFIG_BACKUP_KEY",
    "SQUARE_ACCESS_TOKEN",
    "SQUARE_API_URL",
    "SHOPIFY_SHOP_DOMAIN",
    "SHOPIFY_ACCESS_TOKEN",
    "SHOPIFY_API_URL",
    "ZETTLE_CLIENT_ID",
    "ZETTLE_API_KEY",
    "ZETTLE_OAUTH_URL",
    "ZETTLE_PUSHER_URL",
)

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def feedback_ops(tmp_path: Path) -> RunCli:
    """`feedback_ops(*args, **env)`: run the command in `tmp_path`, state kept there too."""

    def run(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
        environ.update(
            FEEDBACK_OPS_STATE_DIR=str(tmp_path),
            PREFECT_HOME=str(tmp_path / "prefect"),
            # A loaded machine may need more than Prefect's default 20 s to start the
            # ephemeral API.
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
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
