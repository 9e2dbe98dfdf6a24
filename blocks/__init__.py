"""Prefect block types that hold each system's address and secrets."""

from blocks.postgres import PostgresDatabase
from blocks.storage import BackupStorage

__all__ = ["BackupStorage", "PostgresDatabase"]
