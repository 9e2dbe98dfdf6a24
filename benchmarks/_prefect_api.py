"""The Prefect API a benchmark's flow runs report to, and the blocks they use there.

By default a throwaway API of the benchmark's own (Prefect's test harness), started
before any timing. With `PREFECT_API_URL` set (the test suite's smoke runs share its
server), that server, so no second one starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """The API for the flow runs of this process."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def save_blocks(env: Mapping[str, str]) -> dict[str, str]:
    """Save the blocks `env` describes under names of this process's own; returns each
    block's default name mapped to the name it was saved under."""
    from prefect.exceptions import ObjectAlreadyExists

    from feedback_ops.config import blocks_from_env

    prefix = f"bench-{os.getpid()}"
    names = {}
    for name, block in blocks_from_env(env).items():
        try:
            block.save(f"{prefix}-{name}", overwrite=True)
        except ObjectAlreadyExists:
            # Workers started side by side on one server race to register a block
            # type; the loser finds it registered on its second try.
            block.save(f"{prefix}-{name}", overwrite=True)
        names[name] = f"{prefix}-{name}"
    return names
