"""Prefect block types that hold each system's address and secrets."""

from typing import TypeVar

from prefect.blocks.core import Block

from blocks.postgres import PostgresDatabase
from blocks.storage import BackupStorage

B = TypeVar("B", bound=Block)


def load_block(block_type: type[B], name: str) -> B:
    """Load a saved block by name, typed as the block type asked for."""
    block = block_type.load(name)
    if not isinstance(block, block_type):
        raise TypeError(f"block {name!r} is a {type(block).__name__}, not a {block_type.__name__}")
    return block


__all__ = ["BackupStorage", "PostgresDatabase", "load_block"]
