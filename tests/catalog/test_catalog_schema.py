"""The ops catalog's schema, declared once: a new database gets all of it, a catalog made
by an older release gains what it lacks, and a second run changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from blocks import PostgresDatabase
from blocks.catalog import engine_for, migrate

# A catalog as the first release made it: backup records without verification results,
# no alert tables, and its own version table.
FIRST_RELEASE = """
CREATE SCHEMA ops;
CREATE TABLE ops.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz);
INSERT INTO ops.schema_migrations VALUES (1, now());
CREATE TABLE ops.backup_records (
    id text PRIMARY KEY, kind text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    source text NOT NULL, locations jsonb NOT NULL DEFAULT '[]'::jsonb, size bigint,
    sha256 text, started_at timestamptz NOT NULL, finished_at timestamptz,
    duration_seconds double precision, error text, manifest jsonb, flow_run_id text
);
INSERT INTO ops.backup_records (id, kind, status, source, started_at)
VALUES ('database-20260101T010000Z-abc123', 'database', 'completed', 'db', now());
"""


def columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'ops' AND table_name = %s",
            (table,),
        ).fetchall()
    return {name for (name,) in rows}


def run_migrate(url: str) -> list[str]:
    db = PostgresDatabase.from_url(url)
    engine = engine_for(db)
    try:
        return migrate(engine, db)
    finally:
        engine.dispose()


def test_a_new_database_gets_every_table_then_nothing_more(db_factory: Callable[[], str]) -> None:
    url = db_factory()

    created = run_migrate(url)

    assert sorted(created) == [
        "table ops.alert_deliveries",
        "table ops.alerts",
        "table ops.backup_records",
        "table ops.dr_maintenance",
        "table ops.dr_observations",
        "table ops.dr_runs",
        "table ops.dr_triggers",
        "table ops.pos_endpoint_states",
        "table ops.pos_failovers",
        "table ops.pos_health_checks",
        "table ops.webhook_dead_letters",
        "table ops.webhook_replay_attempts",
        "table ops.webhook_replays",
    ]
    assert "verify_status" in columns(url, "backup_records")
    assert run_migrate(url) == []


def test_a_first_release_catalog_gains_the_new_columns_tables_and_keeps_its_rows(
    db_factory: Callable[[], str],
) -> None:
    url = db_factory()
    with psycopg.connect(url) as conn:
        conn.execute(FIRST_RELEASE)

    created = run_migrate(url)

    assert sorted(created) == [
        "column ops.backup_records.restore_seconds",
        "column ops.backup_records.verified_at",
        "column ops.backup_records.verify_error",
        "column ops.backup_records.verify_status",
        "index ops.backup_records_kind_created",
        "table ops.alert_deliveries",
        "table ops.alerts",
        "table ops.dr_maintenance",
        "table ops.dr_observations",
        "table ops.dr_runs",
        "table ops.dr_triggers",
        "table ops.pos_endpoint_states",
        "table ops.pos_failovers",
        "table ops.pos_health_checks",
        "table ops.webhook_dead_letters",
        "table ops.webhook_replay_attempts",
        "table ops.webhook_replays",
    ]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id, verify_status FROM ops.backup_records").fetchall() == [
            ("database-20260101T010000Z-abc123", None)
        ]
        # The added column carries its check, as a new catalog's does.
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE ops.backup_records SET verify_status = 'maybe'")
    assert run_migrate(url) == []
