"""Flow tests: one Prefect test server for the session, blocks saved per test."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from support.names import EVERY_BLOCK

from feedback_ops.config import blocks_from_env


@pytest.fixture(scope="session", autouse=True)
def prefect_server(prefect_api_url: str) -> str:
    """Every flow test runs against the session's Prefect server (tests/conftest.py)."""
    return prefect_api_url


SaveBlocks = Callable[..., dict[str, Any]]


@pytest.fixture
def save_blocks(s3_endpoint: str) -> SaveBlocks:
    """Save blocks an environment describes under names unique to this test, and return
    the flow parameters that point a flow at them: the database flows', or with
    REDIS_URL given, the Redis flows' (`redis_block` instead of `database_block`).

    Only the blocks those parameters name are saved (a save costs a tenth of a second
    or more), and the others asked for by their default names (`"pos-providers"`), or
    all of them with `EVERY_BLOCK`. Each is saved as `<prefix>-<default name>`.
    """

    def save(*also: str, **env: str) -> dict[str, Any]:
        env.setdefault("S3_ENDPOINT_URL", s3_endpoint)
        env.setdefault("AWS_DEFAULT_REGION", "eu-north-1")
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        prefix = f"t{secrets.token_hex(4)}"
        redis = "REDIS_URL" in env
        wanted = {
            "platform-redis" if redis else "platform-postgres",
            "ops-postgres",
            "backup-storage",
            *also,
        }
        blocks = blocks_from_env(env)
        for name, block in blocks.items():
            if EVERY_BLOCK in wanted or name in wanted:
                block.save(f"{prefix}-{name}", overwrite=True)
        params = {
            "ops_database_block": f"{prefix}-ops-postgres",
            "storage_block": f"{prefix}-backup-storage",
        }
        if redis:
            return {"redis_block": f"{prefix}-platform-redis", **params}
        return {"database_block": f"{prefix}-platform-postgres", **params}

    return save
