"""The ops catalog: schema `ops` in a PostgreSQL database (block `ops-postgres`).

`schema` declares its tables once and migrates a database to them; `backups`,
`alerts` and `pos_health` hold the queries on `ops.backup_records`, on `ops.alerts`
with `ops.alert_deliveries`, and on `ops.pos_health_checks` with
`ops.pos_endpoint_states`. `opened(db)` is the way in: a migrated engine, disposed of
on leaving.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from blocks.catalog.schema import SCHEMA, metadata, migrate
from blocks.postgres import PostgresDatabase
from blocks.postgres.client import engine_for


@contextmanager
def opened(db: PostgresDatabase) -> Iterator[Engine]:
    """The ops catalog in `db`, created or migrated, its connections closed on leaving."""
    engine = engine_for(db)
    try:
        migrate(engine, db)
        yield engine
    finally:
        engine.dispose()


__all__ = ["SCHEMA", "engine_for", "metadata", "migrate", "opened"]
