"""Metrics tests: a real Pushgateway per module. The flow tests among them run on the
session's Prefect test server (tests/conftest.py) and save their blocks with `save`;
the tests of files alone start neither."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from support.pushgateway import Pushgateway, pushgateway

from feedback_ops.config import blocks_from_env


@pytest.fixture(scope="module")
def gateway() -> Iterator[Pushgateway]:
    """A Pushgateway of this module's own, in memory, on a free loopback port."""
    with pushgateway() as running:
        yield running


SaveBlocks = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def save_blocks_as(prefect_api_url: str) -> SaveBlocks:
    """`save(env, *names)`: save the blocks `names` (their default names, such as
    `"ops-postgres"`) that `env` describes, under names of their own on the session's
    Prefect server; returns default name → saved name, for the flows' parameters
    (`metrics_block=saved["metrics-pushgateway"]`)."""

    def save(env: dict[str, str], *names: str) -> dict[str, str]:
        prefix = f"t{secrets.token_hex(4)}"
        blocks = blocks_from_env(env)
        saved = {}
        for name in names:
            blocks[name].save(f"{prefix}-{name}", overwrite=True)
            saved[name] = f"{prefix}-{name}"
        return saved

    return save
