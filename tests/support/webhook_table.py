"""The table of webhook delivery attempts in the shape the reconciliation reads by
default (the block's default column names), for the tests and the benchmark."""

from __future__ import annotations

from typing import Any

import psycopg


def create_deliveries_table(
    conn: psycopg.Connection[Any], table: str = "webhook_delivery_attempts"
) -> None:
    """Create `table` with every column the reconciliation can use."""
    conn.execute(
        f"""
        CREATE TABLE {table} (
            id                  bigserial PRIMARY KEY,
            provider            text NOT NULL,
            status              text NOT NULL,
            created_at          timestamptz NOT NULL,
            http_status         integer,
            raw_body            bytea,
            signature           text,
            signature_timestamp text,
            event_id            text,
            event_type          text
        )
        """.encode()
    )
