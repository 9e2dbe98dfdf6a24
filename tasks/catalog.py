"""The ops catalog: `ops.backup_records` in PostgreSQL, mirroring the manifests.

Created and migrated by the project (`migrate`), queried with SQLAlchemy Core. The
manifests in storage stay the record of truth; this table is for queries and reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Engine,
    MetaData,
    Table,
    Text,
    create_engine,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from blocks.postgres import PostgresDatabase
from tasks.pg_dump import explain_postgres_error

SCHEMA = "ops"

# Each migration runs once, in order, inside one transaction under an advisory lock,
# so two flows starting together cannot both apply it.
MIGRATIONS: Sequence[tuple[int, str]] = (
    (
        1,
        """
        CREATE TABLE ops.backup_records (
            id               text PRIMARY KEY,
            kind             text NOT NULL,
            status           text NOT NULL
                             CHECK (status IN ('running', 'completed', 'failed')),
            source           text NOT NULL,
            locations        jsonb NOT NULL DEFAULT '[]'::jsonb,
            size             bigint,
            sha256           text,
            started_at       timestamptz NOT NULL,
            finished_at      timestamptz,
            duration_seconds double precision,
            error            text,
            manifest         jsonb,
            flow_run_id      text
        );
        CREATE INDEX backup_records_kind_created ON ops.backup_records (kind, started_at DESC);
        """,
    ),
    (
        2,
        """
        CREATE TABLE ops.alerts (
            id                  bigserial PRIMARY KEY,
            dedup_key           text NOT NULL,
            name                text NOT NULL,
            severity            text NOT NULL
                                CHECK (severity IN ('critical', 'high', 'medium', 'low')),
            summary             text NOT NULL,
            details             jsonb NOT NULL DEFAULT '{}'::jsonb,
            runbook_section     text,
            source_flow_run     text,
            status              text NOT NULL
                                CHECK (status IN ('open', 'queued', 'acknowledged', 'resolved')),
            raised_at           timestamptz NOT NULL,
            last_seen_at        timestamptz NOT NULL,
            occurrences         integer NOT NULL DEFAULT 1,
            period              text NOT NULL,
            holiday             text,
            respond_within_minutes integer,
            respond_by          timestamptz,
            escalation          jsonb NOT NULL DEFAULT '[]'::jsonb,
            escalation_level    integer NOT NULL DEFAULT 0,
            next_escalation_at  timestamptz,
            delivered           boolean NOT NULL DEFAULT false,
            acknowledged_at     timestamptz,
            acknowledged_by     text,
            resolved_at         timestamptz,
            resolved_by         text
        );
        -- One live alert per condition: raising it again while live only counts.
        CREATE UNIQUE INDEX alerts_live_dedup_key ON ops.alerts (dedup_key)
            WHERE status <> 'resolved';
        CREATE INDEX alerts_due ON ops.alerts (next_escalation_at) WHERE status <> 'resolved';
        CREATE TABLE ops.alert_deliveries (
            id               bigserial PRIMARY KEY,
            alert_id         bigint NOT NULL REFERENCES ops.alerts(id),
            action           text NOT NULL,
            channel          text NOT NULL,
            recipients       jsonb NOT NULL DEFAULT '[]'::jsonb,
            status           text NOT NULL CHECK (status IN ('sent', 'failed')),
            escalation_level integer NOT NULL DEFAULT 0,
            provider_id      text,
            http_status      integer,
            error            text,
            at               timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX alert_deliveries_alert ON ops.alert_deliveries (alert_id, at);
        """,
    ),
    (
        3,
        """
        ALTER TABLE ops.backup_records
            ADD COLUMN verified_at     timestamptz,
            ADD COLUMN verify_status   text CHECK (verify_status IN ('passed', 'failed')),
            ADD COLUMN verify_error    text,
            ADD COLUMN restore_seconds double precision;
        """,
    ),
)

metadata = MetaData(schema=SCHEMA)
backup_records = Table(
    "backup_records",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("locations", JSONB, nullable=False),
    Column("size", BigInteger),
    Column("sha256", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_seconds", Double),
    Column("error", Text),
    Column("manifest", JSONB),
    Column("flow_run_id", Text),
    Column("verified_at", DateTime(timezone=True)),
    Column("verify_status", Text),
    Column("verify_error", Text),
    Column("restore_seconds", Double),
)


def engine_for(db: PostgresDatabase) -> Engine:
    """A small SQLAlchemy engine (psycopg 3) for the catalog database."""
    url = URL.create(
        "postgresql+psycopg",
        username=db.username,
        password=db.password.get_secret_value() if db.password else None,
        host=db.host,
        port=db.port,
        database=db.database,
        query={"sslmode": db.sslmode} if db.sslmode else {},
    )
    return create_engine(
        url,
        pool_size=1,
        max_overflow=1,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={"connect_timeout": db.connect_timeout, "application_name": "feedback-ops"},
    )


def migrate(engine: Engine, db: PostgresDatabase) -> int:
    """Create or upgrade the `ops` schema; returns the schema version now in place."""
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('feedback-ops:migrate'))"))
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            applied = set(
                conn.execute(text(f"SELECT version FROM {SCHEMA}.schema_migrations")).scalars()
            )
            for version, ddl in MIGRATIONS:
                if version in applied:
                    continue
                conn.exec_driver_sql(ddl)
                conn.execute(
                    text(f"INSERT INTO {SCHEMA}.schema_migrations (version) VALUES (:v)"),
                    {"v": version},
                )
    except OperationalError as exc:
        raise explain_postgres_error(str(exc.orig), db) from None
    return max(version for version, _ in MIGRATIONS)


def start_record(
    engine: Engine,
    *,
    backup_id: str,
    kind: str,
    source: str,
    started_at: datetime,
    flow_run_id: str | None,
) -> None:
    """Insert a `running` record before any data moves."""
    with engine.begin() as conn:
        conn.execute(
            insert(backup_records).values(
                id=backup_id,
                kind=kind,
                status="running",
                source=source,
                locations=[],
                started_at=started_at,
                flow_run_id=flow_run_id,
            )
        )


def finish_record(
    engine: Engine,
    backup_id: str,
    *,
    status: str,
    finished_at: datetime,
    locations: list[str] | None = None,
    size: int | None = None,
    sha256: str | None = None,
    manifest: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Mark a record `completed` or `failed`, with what is known at that point."""
    with engine.begin() as conn:
        started = conn.execute(
            select(backup_records.c.started_at).where(backup_records.c.id == backup_id)
        ).scalar_one()
        conn.execute(
            update(backup_records)
            .where(backup_records.c.id == backup_id)
            .values(
                status=status,
                finished_at=finished_at,
                duration_seconds=(finished_at - started).total_seconds(),
                locations=locations or [],
                size=size,
                sha256=sha256,
                manifest=manifest,
                error=error,
            )
        )


def read_record(engine: Engine, backup_id: str) -> dict[str, Any] | None:
    """One record as a dict, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(backup_records).where(backup_records.c.id == backup_id)).first()
    return dict(row._mapping) if row is not None else None


def record_verification(
    engine: Engine,
    backup_id: str,
    *,
    verified_at: datetime,
    status: str,
    restore_seconds: float | None,
    error: str | None,
) -> bool:
    """Store a verification's outcome; False when the catalog has no such backup."""
    with engine.begin() as conn:
        result = conn.execute(
            update(backup_records)
            .where(backup_records.c.id == backup_id)
            .values(
                verified_at=verified_at,
                verify_status=status,
                restore_seconds=restore_seconds,
                verify_error=error,
            )
        )
    return bool(result.rowcount)


def upsert_from_manifest(engine: Engine, values: dict[str, Any]) -> bool:
    """Insert or refresh one record from its manifest; True when it was new.

    Verification results already in the catalog are kept.
    """
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    insert_row = pg_insert(backup_records).values(**values)
    refreshed = {k: insert_row.excluded[k] for k in values if k != "id"}
    # xmax is 0 on a row this statement inserted, not on one it updated.
    upsert = insert_row.on_conflict_do_update(
        index_elements=[backup_records.c.id], set_=refreshed
    ).returning(text("xmax = 0"))
    with engine.begin() as conn:
        return bool(conn.execute(upsert).scalar_one())
