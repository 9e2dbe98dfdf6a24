"""Each system's Prefect block (its address and secrets) and the client it builds.

One module or package per system: `postgres`, `catalog` (the ops catalog in
PostgreSQL), `redis`, `storage`, `channels` (Slack, email, PagerDuty, SMS), `pos`
(Square, Shopify, Zettle) and `encryption` (the configuration backup key). A block
imports only `policy` and the errors module, never tasks or flows.
"""

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
from blocks.encryption import ConfigBackupKey
from blocks.pos import PosProviders
from blocks.postgres import PostgresDatabase
from blocks.redis import RedisServer
from blocks.storage import BackupStorage

B = TypeVar("B", bound=Block)


def load_block(block_type: type[B], name: str) -> B:
    """Load a saved block by name, typed as the block type asked for.

    Raises:
        ValueError: no block of that name is saved (Prefect's own error).
        TypeError: the block saved under that name is of another type.
    """
    block = block_type.load(name)
    if not isinstance(block, block_type):
        raise TypeError(f"block {name!r} is a {type(block).__name__}, not a {block_type.__name__}")
    return block


__all__ = [
    "AlertChannels",
    "BackupStorage",
    "ConfigBackupKey",
    "EmailAlerts",
    "EscalationContacts",
    "PagerDutyAlerts",
    "PosProviders",
    "PostgresDatabase",
    "RedisServer",
    "SlackAlerts",
    "SmsAlerts",
    "load_block",
]
