"""Whom a POS outage affects: the businesses with an active connection to a provider, and
the address each is told at.

The platform keeps one row per business in `businesses` and one per POS location in
`pos_connections` (`status` 'active', 'paused', 'error' or 'revoked'). A business is
affected when at least one of its active connections is to a provider that is down; it
is told once, whatever number of locations it has. Which column of `businesses` holds
its email address is configuration (the platform's schema is not ours), checked here
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import psycopg
from psycopg import sql

from blocks.postgres import PostgresDatabase
from blocks.postgres.client import connect, explain_postgres_error
from feedback_ops.errors import ConfigError

ACTIVE = "active"


@dataclass(frozen=True)
class BusinessToTell:
    """One business with an active POS connection to a provider in question.

    Attributes:
        business_id: `businesses.id`, as text.
        email: Its address, or None when the column is empty or not one address.
        providers: The providers in question it has active connections to, sorted.
    """

    business_id: str
    email: str | None
    providers: tuple[str, ...]


def businesses_to_tell(
    db: PostgresDatabase, providers: Sequence[str], email_column: str, *, variable: str
) -> list[BusinessToTell]:
    """The businesses with an active `pos_connections` row for one of `providers`, by id.

    Args:
        db: The platform's database.
        providers: The providers in question, e.g. `["square", "zettle"]`.
        email_column: The column of `businesses` with the email address.
        variable: The setting that names `email_column`, for the error.

    Raises:
        ConfigError: `businesses` has no such column (the message names `variable`).
        OpsError: the database cannot be read.
    """
    try:
        with connect(db) as conn:
            _require_column(conn, email_column, variable)
            query = sql.SQL(
                """
                SELECT b.id::text, b.{email}::text,
                       array_agg(DISTINCT c.provider ORDER BY c.provider)
                FROM businesses b JOIN pos_connections c ON c.business_id = b.id
                WHERE c.status = %s AND c.provider = ANY(%s)
                GROUP BY b.id, b.{email}
                ORDER BY b.id
                """
            ).format(email=sql.Identifier(email_column))
            rows = conn.execute(query, (ACTIVE, list(providers))).fetchall()
    except psycopg.Error as exc:
        raise explain_postgres_error(str(exc), db) from None
    return [
        BusinessToTell(str(business), one_address(email), tuple(sorted(set(found))))
        for business, email, found in rows
    ]


def _require_column(conn: psycopg.Connection[Any], column: str, variable: str) -> None:
    found = conn.execute(
        "SELECT to_regclass('businesses') IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute "
        "WHERE attrelid = to_regclass('businesses') AND attname = %s AND attnum > 0 "
        "AND NOT attisdropped)",
        (column,),
    ).fetchone()
    table, has_column = found if found else (False, False)
    if not table:
        raise ConfigError("the platform's database has no businesses table to tell")
    if not has_column:
        raise ConfigError(
            f"{variable} is {column!r}, but the platform's businesses table has no such "
            "column: set it to the column that holds each business's email address"
        )


def one_address(value: str | None) -> str | None:
    """`value` when it is one plain email address, else None: a business is never sent
    to a list, a display name or something that is no address."""
    text = (value or "").strip()
    if not text or any(c in text for c in ",;<>\"' \t\r\n"):
        return None
    name, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    if name or address != text or not at or not local or "." not in domain:
        return None
    return address


__all__ = ["ACTIVE", "BusinessToTell", "businesses_to_tell", "one_address"]
