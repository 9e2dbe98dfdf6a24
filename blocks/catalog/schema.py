"""The ops catalog's tables, declared once, and the migration that brings a database to them.

Schema `ops` holds `backup_records` (mirroring the manifests in storage, which stay the
record of truth), and `alerts` with `alert_deliveries` (who was told what, when). The
tables below are the only description of the schema: `migrate` creates what is
missing from them, table by table, column by column, index by index, so a catalog
made by an older release gains the new columns and nothing is ever dropped.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateColumn, CreateSchema

from blocks.postgres import PostgresDatabase
from blocks.postgres.client import explain_postgres_error
from feedback_ops.errors import OpsError

SCHEMA = "ops"
EMPTY_LIST = text("'[]'::jsonb")
EMPTY_OBJECT = text("'{}'::jsonb")

metadata = MetaData(schema=SCHEMA)

backup_records = Table(
    "backup_records",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column(
        "status",
        Text,
        CheckConstraint("status IN ('running', 'completed', 'failed')"),
        nullable=False,
    ),
    Column("source", Text, nullable=False),
    Column("locations", JSONB, nullable=False, server_default=EMPTY_LIST),
    Column("size", BigInteger),
    Column("sha256", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_seconds", Double),
    Column("error", Text),
    Column("manifest", JSONB),
    Column("flow_run_id", Text),
    Column("verified_at", DateTime(timezone=True)),
    Column("verify_status", Text, CheckConstraint("verify_status IN ('passed', 'failed')")),
    Column("verify_error", Text),
    Column("restore_seconds", Double),
    Index("backup_records_kind_created", "kind", text("started_at DESC")),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dedup_key", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column(
        "severity",
        Text,
        CheckConstraint("severity IN ('critical', 'high', 'medium', 'low')"),
        nullable=False,
    ),
    Column("summary", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("runbook_section", Text),
    Column("source_flow_run", Text),
    Column(
        "status",
        Text,
        CheckConstraint("status IN ('open', 'queued', 'acknowledged', 'resolved')"),
        nullable=False,
    ),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("occurrences", Integer, nullable=False, server_default=text("1")),
    Column("period", Text, nullable=False),
    Column("holiday", Text),
    Column("respond_within_minutes", Integer),
    Column("respond_by", DateTime(timezone=True)),
    Column("escalation", JSONB, nullable=False, server_default=EMPTY_LIST),
    Column("escalation_level", Integer, nullable=False, server_default=text("0")),
    Column("next_escalation_at", DateTime(timezone=True)),
    Column("delivered", Boolean, nullable=False, server_default=text("false")),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", Text),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", Text),
    # One live alert per condition: raising it again while live only counts.
    Index(
        "alerts_live_dedup_key",
        "dedup_key",
        unique=True,
        postgresql_where=text("status <> 'resolved'"),
    ),
    Index("alerts_due", "next_escalation_at", postgresql_where=text("status <> 'resolved'")),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("ops.alerts.id"), nullable=False),
    Column("action", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("recipients", JSONB, nullable=False, server_default=EMPTY_LIST),
    Column("status", Text, CheckConstraint("status IN ('sent', 'failed')"), nullable=False),
    Column("escalation_level", Integer, nullable=False, server_default=text("0")),
    Column("provider_id", Text),
    Column("http_status", Integer),
    Column("error", Text),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("alert_deliveries_alert", "alert_id", "at"),
)

pos_health_checks = Table(
    "pos_health_checks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("sweep_id", Text, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("provider", Text, nullable=False),
    # gateway, primary, secondary, service (the endpoint in use), token,
    # subscriptions or merchants
    Column("target", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("http_status", Integer),
    Column("connect_ms", Double),
    Column("total_ms", Double),
    Column("detail", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("error", Text),
    Index("pos_health_checks_by_target", "provider", "target", "checked_at"),
)

pos_endpoint_states = Table(
    "pos_endpoint_states",
    metadata,
    Column("provider", Text, primary_key=True),
    Column("endpoint", Text, primary_key=True),
    Column("state", Text, CheckConstraint("state IN ('up', 'down')"), nullable=False),
    Column("since", DateTime(timezone=True)),
    Column("against", Integer, nullable=False, server_default=text("0")),
    Column("last_sweep_at", DateTime(timezone=True), nullable=False),
)

pos_failovers = Table(
    "pos_failovers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("provider", Text, nullable=False),
    Column(
        "direction", Text, CheckConstraint("direction IN ('failover', 'failback')"), nullable=False
    ),
    Column("reason", Text, nullable=False),
    # pos-health-sweep, or the operator who approved a manual one
    Column("requested_by", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("flow_run_id", Text),
    Column("checks", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("gateway_answer", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Index("pos_failovers_by_provider", "provider", "at"),
)


webhook_replays = Table(
    "webhook_replays",
    metadata,
    # One row per event: the claim that makes a replay happen once, however many runs
    # overlap. A run sends only what it claimed (state `sending`, its lease running).
    Column("provider", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column(
        "state",
        Text,
        CheckConstraint("state IN ('sending', 'failed', 'delivered', 'dead')"),
        nullable=False,
    ),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("source_id", BigInteger),
    Column("first_failed_at", DateTime(timezone=True)),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_http_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Column("flow_run_id", Text),
    Index("webhook_replays_due", "next_attempt_at", postgresql_where=text("state = 'failed'")),
)

webhook_replay_attempts = Table(
    "webhook_replay_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("provider", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("http_status", Integer),
    Column("error", Text),
    Column("source_id", BigInteger),
    Column("flow_run_id", Text),
    Index("webhook_replay_attempts_by_event", "provider", "event_id", "at"),
)

webhook_dead_letters = Table(
    "webhook_dead_letters",
    metadata,
    Column("provider", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("source_id", BigInteger),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_http_status", Integer),
    Column("dead_at", DateTime(timezone=True), nullable=False),
    Column("flow_run_id", Text),
)


dr_runs = Table(
    "dr_runs",
    metadata,
    # One row per DR run (its Prefect flow run id), written as it goes: a run that dies
    # leaves its row `running`, and running it again continues that row.
    Column("flow_run_id", Text, primary_key=True),
    Column("scenario", Text, nullable=False),
    Column("mode", Text, CheckConstraint("mode IN ('dry-run', 'drill', 'real')"), nullable=False),
    Column(
        "status",
        Text,
        CheckConstraint(
            "status IN ('planned', 'running', 'completed', 'failed', 'declined', 'cancelled')"
        ),
        nullable=False,
    ),
    Column("triggered_by", Text, nullable=False),
    Column("incident_started_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("approved_at", DateTime(timezone=True)),
    Column("approved_by", Text),
    Column("service_validated_at", DateTime(timezone=True)),
    Column("recovery_point", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("rto_seconds", Double),
    Column("rpo_seconds", Double),
    Column("rto_target_seconds", Double, nullable=False),
    Column("rpo_target_seconds", Double, nullable=False),
    Column("plan", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("steps", JSONB, nullable=False, server_default=EMPTY_LIST),
    Column("error", Text),
    Index("dr_runs_by_scenario", "scenario", "mode", text("started_at DESC")),
)

dr_maintenance = Table(
    "dr_maintenance",
    metadata,
    # Written before `POST /admin/maintenance` and closed after the `DELETE` answered:
    # what a cancellation hook, running in another process, reads to know what to undo.
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("flow_run_id", Text, nullable=False),
    Column("gateway_url", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("turned_on_at", DateTime(timezone=True), nullable=False),
    Column("turned_off_at", DateTime(timezone=True)),
    Column("off_error", Text),
    Index("dr_maintenance_open", "flow_run_id", postgresql_where=text("turned_off_at IS NULL")),
)

dr_observations = Table(
    "dr_observations",
    metadata,
    # What dr-watchdog saw each minute, per check: the triggers are judged on these.
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("check_name", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("value", Double),
    Column("detail", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("flow_run_id", Text),
    Index("dr_observations_by_check", "check_name", text("observed_at DESC")),
)

dr_triggers = Table(
    "dr_triggers",
    metadata,
    # One row per trigger while it holds: a trigger fires once, not every minute.
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("trigger", Text, nullable=False),
    Column("scenario", Text, nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
    Column("cleared_at", DateTime(timezone=True)),
    Column("event_id", Text),
    Column("detail", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("flow_run_id", Text),
    Index(
        "dr_triggers_live",
        "trigger",
        unique=True,
        postgresql_where=text("cleared_at IS NULL"),
    ),
)


def migrate(engine: Engine, db: PostgresDatabase) -> list[str]:
    """Bring schema `ops` to the tables above; returns what was created, e.g.
    `table ops.alerts` or `column ops.backup_records.verified_at`.

    Runs in one transaction under an advisory lock, so two flows starting together
    cannot both create the same table.

    Raises:
        OpsError: the database refused (the message is libpq's reason), or a column
            that must be filled has no default to fill the existing rows with.
    """
    try:
        with engine.connect() as conn:
            if _up_to_date(conn):
                return []
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('feedback-ops:migrate'))"))
            conn.execute(CreateSchema(SCHEMA, if_not_exists=True))
            return _bring_up_to_date(conn)
    except OperationalError as exc:
        raise explain_postgres_error(str(exc.orig), db) from None


def _up_to_date(conn: Connection) -> bool:
    """Whether every table, column and index above exists: two cheap queries, so the
    steps that open the catalog on every run take no lock when nothing is missing."""
    columns = {
        (str(table), str(column))
        for table, column in conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = :schema"
            ),
            {"schema": SCHEMA},
        )
    }
    indexes = set(
        conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE schemaname = :schema"),
            {"schema": SCHEMA},
        ).scalars()
    )
    return all(
        (table.name, column.name) in columns
        for table in metadata.sorted_tables
        for column in table.columns
    ) and all(index.name in indexes for table in metadata.sorted_tables for index in table.indexes)


def _bring_up_to_date(conn: Connection) -> list[str]:
    inspector = inspect(conn)
    present = set(inspector.get_table_names(schema=SCHEMA))
    created: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in present:
            table.create(conn)
            created.append(f"table {table.fullname}")
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name, schema=SCHEMA)}
        for column in table.columns:
            if column.name in columns:
                continue
            if not column.nullable and column.server_default is None:
                raise OpsError(
                    f"cannot add column {table.fullname}.{column.name}: it is NOT NULL "
                    "without a server default for the rows already there"
                )
            spec = CreateColumn(column).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.fullname} ADD COLUMN {spec}"))
            created.append(f"column {table.fullname}.{column.name}")
        indexes = {i["name"] for i in inspector.get_indexes(table.name, schema=SCHEMA)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                created.append(f"index {SCHEMA}.{index.name}")
    return created
