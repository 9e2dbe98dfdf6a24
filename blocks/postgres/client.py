"""Connections to PostgreSQL, the client tools, and libpq's failures in one line.

Plain functions on a `PostgresDatabase`; every message names the server and never a
secret. Dropped connections and a server restarting are `TransientError`s, so a task
retries them; a wrong password or a missing database fails at once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from blocks.tools import installed
from feedback_ops.errors import OpsError, TimedOut, TransientError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from blocks.postgres import PostgresDatabase


_TRANSIENT_MARKERS = (
    "server closed the connection unexpectedly",
    "connection reset",
    "terminating connection due to administrator command",
    "could not receive data from server",
    "ssl syscall error",
    "the database system is shutting down",
    "the database system is starting up",
    "too many connections",
    "remaining connection slots are reserved",
)


def explain_postgres_error(message: str, db: PostgresDatabase) -> OpsError:
    """A one-line, secret-free reason for a libpq or pg_dump failure."""
    text = " ".join(message.split())
    lower = text.lower()
    where = f"PostgreSQL at {db.host}:{db.port}/{db.database}"
    if "password authentication failed" in lower or "no password supplied" in lower:
        return OpsError(f"{where} rejected the login of user {db.username!r}: wrong password")
    if f'role "{db.username.lower()}" does not exist' in lower:
        return OpsError(f"{where} has no role {db.username!r}")
    if "does not exist" in lower and "database" in lower:
        return OpsError(f"{where}: database {db.database!r} does not exist")
    if "connection refused" in lower:
        return OpsError(f"{where} is unreachable: connection refused")
    if "could not translate host name" in lower or "name or service not known" in lower:
        return OpsError(f"{where} is unreachable: unknown host {db.host!r}")
    if "timeout expired" in lower:
        return TimedOut(
            f"{where} is unreachable: no answer within {db.connect_timeout} s (connect_timeout)"
        )
    if (
        "could not obtain lock" in lower
        or "lock timeout" in lower
        or ("statement timeout" in lower and "lock table" in lower)
    ):
        return OpsError(f"{where}: could not lock a table for the dump in time ({_tail(text)})")
    if "server version mismatch" in lower:
        return OpsError(f"{where}: pg_dump is older than the server ({_tail(text)})")
    if any(marker in lower for marker in _TRANSIENT_MARKERS):
        return TransientError(f"{where}: connection lost during the dump ({_tail(text)})")
    return OpsError(f"{where}: {_tail(text)}")


def _tail(text: str) -> str:
    """The last `error:`/`FATAL:` clause of a libpq message, without the long prefix."""
    for marker in ("FATAL:", "ERROR:", "error:"):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    # Drop anything shaped like a connection string in case a tool echoed one.
    text = re.sub(r"\w+://\S+", "<url>", text)
    return text.strip()[:300]


def connect(db: PostgresDatabase, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection, turning login failures into one-line reasons."""
    try:
        return psycopg.connect(**db.connect_kwargs(), **kwargs)
    except psycopg.OperationalError as exc:
        raise explain_postgres_error(str(exc), db) from None


def server_major(conn: psycopg.Connection[Any]) -> int:
    """The server's major version, e.g. 15."""
    return conn.info.server_version // 10000


def find_pg_tool(name: str, major: int | None = None) -> str:
    """The path of a PostgreSQL client tool, preferring the server's major version.

    Debian installs each major version's tools under /usr/lib/postgresql/N/bin; a
    tool older than the server refuses to dump it.
    """
    if override := os.environ.get("PG_BIN_DIR"):
        return str(Path(override) / name)
    if major is not None:
        candidate = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    return installed(name, "postgresql-client")


def list_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Every ordinary table outside the system schemas, as (schema, table)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
        ORDER BY 1, 2
        """
    ).fetchall()
    return [(schema, table) for schema, table in rows]


def count_rows(conn: psycopg.Connection[Any], tables: list[tuple[str, str]]) -> dict[str, int]:
    """Exact row counts per table, as `schema.table`."""
    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def table_rows(db: PostgresDatabase, table: str) -> list[dict[str, Any]] | None:
    """Every row of `schema.table` as JSON objects ordered by its first column; None when
    the table does not exist."""
    schema, _, name = table.rpartition(".")
    try:
        with connect(db) as conn:
            first = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND ordinal_position = 1",
                (schema or "public", name),
            ).fetchone()
            if not first:
                return None
            query = sql.SQL("SELECT row_to_json(t) FROM {} AS t ORDER BY t.{}").format(
                sql.Identifier(schema or "public", name), sql.Identifier(first[0])
            )
            return [row[0] for row in conn.execute(query)]
    except psycopg.Error as exc:
        raise explain_postgres_error(str(exc), db) from None


def child_env(db: PostgresDatabase, application_name: str = "feedback-ops") -> dict[str, str]:
    """The environment of a libpq tool (pg_dump, pg_restore) that reaches `db`: this
    process's own without its PG* variables, and the block's connection settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return env | db.libpq_env() | {"PGAPPNAME": application_name}


def engine_for(db: PostgresDatabase) -> Engine:
    """A small SQLAlchemy engine (psycopg 3) for `db`, its parameters hidden from logs."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import URL

    url = URL.create(
        "postgresql+psycopg",
        username=db.username,
        password=db.password.get_secret_value() if db.password else None,
        host=db.host,
        port=db.port,
        database=db.database,
        query={"sslmode": db.sslmode} if db.sslmode else {},
    )
    kwargs = db.connect_kwargs()
    return create_engine(
        url,
        pool_size=1,
        max_overflow=1,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={
            k: v
            for k, v in kwargs.items()
            if k not in ("host", "port", "dbname", "user", "password", "sslmode")
        },
    )


def size_on_disk(conn: psycopg.Connection[Any]) -> int:
    """Bytes the connection's database takes on disk now (`pg_database_size`)."""
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def database_size(db: PostgresDatabase) -> int:
    """Bytes the database takes on disk now."""
    with connect(db) as conn:
        return size_on_disk(conn)
