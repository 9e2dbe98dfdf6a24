"""Compare PostgreSQL databases by content: a restored copy must equal its source."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

# Fixed output settings, so the same rows give the same text on any server or session.
_SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "bytea_output": "hex",
    "extra_float_digits": "1",
}

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = ANY(%s)
ORDER BY n.nspname, c.relname
"""


def fingerprint(url: str, schemas: Iterable[str] = ("public",)) -> dict[str, tuple[int, str]]:
    """Map ``"schema.table"`` to (row count, md5 of all rows' text in sorted order).

    Covers every ordinary table of ``schemas``. Rows are rendered with ``row::text`` and
    sorted bytewise (``COLLATE "C"``), so the result does not depend on physical order,
    the database's collation, or session settings.
    """
    result: dict[str, tuple[int, str]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in _SESSION_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        tables = conn.execute(_TABLES, (list(schemas),)).fetchall()
        for schema, table in tables:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n'"
                " ORDER BY (t::text) COLLATE \"C\"), '')) FROM {}.{} AS t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            count, digest = conn.execute(query).fetchone()  # type: ignore[misc]
            result[f"{schema}.{table}"] = (int(count), str(digest))
    return result


def differences(
    expected: dict[str, tuple[int, str]], actual: dict[str, tuple[int, str]]
) -> list[str]:
    """Human-readable differences between two fingerprints (empty when equal)."""
    lines = []
    for table in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(table), actual.get(table)
        if want == got:
            continue
        if want is None:
            lines.append(f"{table}: unexpected table ({got[0]} rows)")  # type: ignore[index]
        elif got is None:
            lines.append(f"{table}: missing ({want[0]} rows expected)")
        elif want[0] != got[0]:
            lines.append(f"{table}: {got[0]} rows, expected {want[0]}")
        else:
            lines.append(f"{table}: same {got[0]} rows count but different content")
    return lines
