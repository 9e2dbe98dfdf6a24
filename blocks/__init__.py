"""Each system's Prefect block (its address and secrets) and the client it builds.

One module or package per system: `postgres`, `catalog` (the ops catalog in
PostgreSQL), `redis`, `storage`, `channels` (Slack, email, PagerDuty, SMS), `pos`
(Square, Shopify, Zettle), `gateway` (the platform's API gateway), `encryption`
(the configuration backup key), `metrics` (the Prometheus Pushgateway), `work_pools`
(the standby's failover policy) and `disaster_recovery` (the backup region, its bucket
and DNS). A block imports other blocks, `policy` and the errors module, never tasks or
flows.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from prefect.blocks.core import Block

from blocks.channels import (
    AlertChannels,
    EmailAlerts,
    EscalationContacts,
    PagerDutyAlerts,
    SlackAlerts,
    SmsAlerts,
)
from blocks.disaster_recovery import DisasterRecovery
from blocks.encryption import ConfigBackupKey
from blocks.gateway import PlatformGateway
from blocks.metrics import MetricsPushgateway
from blocks.pos import PosProviders
from blocks.pos.deliveries import WebhookDeliveries
from blocks.pos.tokens import PosTokens
from blocks.postgres import PostgresDatabase
from blocks.redis import RedisServer
from blocks.storage import BackupStorage
from blocks.work_pools import WorkPoolFailover

B = TypeVar("B", bound=Block)

# Blocks that stand in for saved ones by name, in this process only: a process-wide
# dict, not a context variable, because tasks run in the task runner's threads.
_RUN_ONLY: dict[str, Block] = {}


@contextmanager
def run_only_blocks(blocks: Mapping[str, Block]) -> Iterator[None]:
    """Within the block, `load_block(type, name)` returns `blocks[name]` instead of the
    block saved under that name: configuration for one run that nothing saves."""
    saved = dict(_RUN_ONLY)
    _RUN_ONLY.update(blocks)
    try:
        yield
    finally:
        _RUN_ONLY.clear()
        _RUN_ONLY.update(saved)


def load_block(block_type: type[B], name: str) -> B:
    """Load a block by name, typed as the block type asked for: the run-only block of
    that name when one is set (see `run_only_blocks`), else the saved one.

    Raises:
        ValueError: no block of that name is saved (Prefect's own error).
        TypeError: the block under that name is of another type.
    """
    block = _RUN_ONLY.get(name) or block_type.load(name)
    if not isinstance(block, block_type):
        raise TypeError(f"block {name!r} is a {type(block).__name__}, not a {block_type.__name__}")
    return block


__all__ = [
    "AlertChannels",
    "BackupStorage",
    "ConfigBackupKey",
    "DisasterRecovery",
    "EmailAlerts",
    "EscalationContacts",
    "MetricsPushgateway",
    "PagerDutyAlerts",
    "PlatformGateway",
    "PosProviders",
    "PosTokens",
    "PostgresDatabase",
    "RedisServer",
    "SlackAlerts",
    "SmsAlerts",
    "WorkPoolFailover",
    "WebhookDeliveries",
    "load_block",
    "run_only_blocks",
]
