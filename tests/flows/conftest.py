"""Flow tests: one Prefect test server for the session, blocks saved per test."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness

from feedback_ops.config import blocks_from_env


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """A throwaway Prefect API (SQLite) shared by every flow test: it takes ~9 s to start."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


SaveBlocks = Callable[..., dict[str, Any]]


@pytest.fixture
def save_blocks(s3_endpoint: str) -> SaveBlocks:
    """Save the blocks an environment describes under names unique to this test, and
    return the flow parameters that point a flow at them: the database flows', or with
    REDIS_URL given, the Redis flows' (`redis_block` instead of `database_block`)."""

    def save(**env: str) -> dict[str, Any]:
        env.setdefault("S3_ENDPOINT_URL", s3_endpoint)
        env.setdefault("AWS_DEFAULT_REGION", "eu-north-1")
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        prefix = f"t{secrets.token_hex(4)}"
        params = {}
        for name, block in blocks_from_env(env).items():
            block.save(f"{prefix}-{name}", overwrite=True)
            params[name] = f"{prefix}-{name}"
        if "REDIS_URL" in env:
            return {
                "redis_block": params["platform-redis"],
                "ops_database_block": params["ops-postgres"],
                "storage_block": params["backup-storage"],
            }
        return {
            "database_block": params["platform-postgres"],
            "ops_database_block": params["ops-postgres"],
            "storage_block": params["backup-storage"],
        }

    return save
