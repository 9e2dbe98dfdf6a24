"""A platform-shaped database of a chosen size, for the backup and restore benchmarks."""

from __future__ import annotations

import psycopg

# Measured: about 309 bytes of database per feedback row, counting its share of the
# webhook delivery attempts (half as many rows, with JSON payloads) and of the indexes.
_BYTES_PER_FEEDBACK_ROW = 309
_SCHEMA = """
CREATE TABLE businesses (
    id bigint PRIMARY KEY,
    org_number text NOT NULL UNIQUE,
    name text NOT NULL,
    city text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE feedback (
    id bigint PRIMARY KEY,
    business_id bigint NOT NULL REFERENCES businesses(id),
    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment text,
    sentiment numeric(4,3),
    created_at timestamptz NOT NULL
);
CREATE TABLE webhook_delivery_attempts (
    id bigint PRIMARY KEY,
    provider text NOT NULL,
    status text NOT NULL,
    http_status int,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
"""

_FILL = """
INSERT INTO businesses
SELECT g, lpad((550000000 + g)::text, 6, '0') || '-' || lpad((g % 10000)::text, 4, '0'),
       'Företag ' || g, (ARRAY['Stockholm','Göteborg','Malmö','Uppsala'])[1 + g % 4],
       now() - g * interval '1 minute'
FROM generate_series(1, 5000) g;
INSERT INTO feedback
SELECT g, 1 + g % 5000, 1 + g % 5,
       'Kunden tyckte att ' || md5(g::text) || ' var ' ||
       (ARRAY['mycket bra','bra','okej','dåligt'])[1 + g % 4] || '. ' || md5((g * 7)::text),
       ((g % 2000) - 1000) / 1000.0, now() - g * interval '1 second'
FROM generate_series(1, {feedback}) g;
INSERT INTO webhook_delivery_attempts
SELECT g, (ARRAY['square','shopify','zettle'])[1 + g % 3],
       (ARRAY['delivered','delivered','delivered','failed','pending'])[1 + g % 5],
       (ARRAY[200, 200, 500, 429])[1 + g % 4],
       jsonb_build_object('event_id', md5(g::text), 'amount', g % 100000,
                          'currency', 'SEK', 'location', md5((g % 977)::text)),
       now() - g * interval '2 seconds'
FROM generate_series(1, {webhooks}) g;
"""


def ensure_database(admin_url: str, size_mb: int, name: str | None = None) -> str:
    """Create (once) a database of about `size_mb` MB and return its URL."""
    name = name or f"fo_bench_{size_mb}mb"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        built = conn.execute("SELECT to_regclass('public.feedback') IS NOT NULL").fetchone()
        if not (built and built[0]):
            rows = size_mb * 1024 * 1024 // _BYTES_PER_FEEDBACK_ROW
            with conn.transaction():  # a build cut short leaves nothing half-made
                conn.execute(_SCHEMA)
                conn.execute(_FILL.format(feedback=rows, webhooks=rows // 2))
    return url


def database_size(url: str) -> int:
    """pg_database_size of the database at `url`, in bytes."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database at `url`."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
