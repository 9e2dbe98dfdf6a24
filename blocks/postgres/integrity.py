"""Is a restored database whole? The runbook's "Verify data integrity" after a restore.

A restore that `pg_restore` accepted can still be wrong in ways an operator must see
before customers are let back in: tables with fewer rows than the backup held, no
businesses at all, organisation numbers mangled on the way (the platform identifies
every business by one), rows whose foreign keys point at nothing (a restore that
skipped or reordered data with triggers off). Every check runs in one read-only
snapshot, so the figures agree with each other, and every problem becomes one line an
operator reads; deciding what a problem means is the flow's business, not this one's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from stdnum.se import orgnr

from blocks.postgres import PostgresDatabase
from blocks.postgres.client import connect, count_rows, explain_postgres_error, list_tables
from blocks.postgres.restore import compare_counts
from feedback_ops.errors import OpsError, TransientError

BUSINESSES = ("public", "businesses")
"""The table the runbook counts (`SELECT COUNT(*) FROM businesses`) and whose
`org_number` column holds each business's Swedish organisation number."""

INVALID_SAMPLE = 20
"""How many invalid organisation numbers a report lists; the count is always exact."""

_LISTED_IN_A_LINE = 5
_FETCH_ROWS = 5000


@dataclass(frozen=True)
class CountMismatch:
    """A table whose row count differs from the manifest's; None where one side has no
    such table."""

    table: str
    expected: int | None
    restored: int | None


@dataclass(frozen=True)
class InvalidOrgNumber:
    """A business whose organisation number fails its check digit (or its shape)."""

    business_id: int | str
    org_number: str


@dataclass(frozen=True)
class ForeignKey:
    """One foreign key constraint, read from `pg_constraint`, names unquoted."""

    name: str
    schema: str
    table: str
    columns: tuple[str, ...]
    parent_schema: str
    parent_table: str
    parent_columns: tuple[str, ...]
    match_full: bool = False
    """MATCH FULL: a key with some but not all columns NULL is itself a violation."""
    only_child: bool = True
    """The child is an ordinary table: FKs are not inherited, so read it with ONLY."""
    only_parent: bool = True
    """The parent is an ordinary table (a partitioned one is read with its partitions)."""

    @property
    def label(self) -> str:
        """`name on schema.table (a, b) → schema.parent (x, y)`, for people."""
        return (
            f"{self.name} on {self.schema}.{self.table} ({', '.join(self.columns)}) "
            f"→ {self.parent_schema}.{self.parent_table} ({', '.join(self.parent_columns)})"
        )


@dataclass(frozen=True)
class OrphanedForeignKey:
    """A foreign key constraint with `orphans` child rows whose parent row is missing."""

    constraint: ForeignKey
    orphans: int


@dataclass(frozen=True)
class IntegrityReport:
    """What the restored database holds against what the backup said it held.

    `problems` has one line per thing wrong, in the order counts, businesses,
    organisation numbers, foreign keys; an empty list means the data passed.
    """

    database: str
    row_counts: dict[str, int]
    count_mismatches: tuple[CountMismatch, ...]
    businesses: int | None
    """`SELECT COUNT(*) FROM businesses`; None when the table is missing."""
    org_numbers_checked: int
    """Non-NULL organisation numbers read and checked."""
    invalid_org_numbers: int
    invalid_org_number_sample: tuple[InvalidOrgNumber, ...]
    """The first `INVALID_SAMPLE` invalid ones by business id."""
    null_org_numbers: int
    foreign_keys_checked: int
    orphaned_foreign_keys: tuple[OrphanedForeignKey, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong: the flow may go on to hand over."""
        return not self.problems


def check_integrity(
    db: PostgresDatabase, expected_counts: dict[str, int], sample: int = INVALID_SAMPLE
) -> IntegrityReport:
    """Check a restored database against its backup manifest's row counts (`tables`).

    Problems in the data are reported, never raised: the caller decides whether they
    stop a recovery.

    Raises:
        TransientError: the connection was lost or the server is restarting; worth
            another attempt.
        OpsError: the database cannot be reached or read (wrong login, no such
            database), in one line.
    """
    with connect(db) as conn:
        try:
            # One snapshot for every figure, and a guarantee that checking writes nothing.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            return _check(conn, db, expected_counts, sample)
        except psycopg.Error as exc:
            raise _cannot_look(exc, db, lost=conn.broken) from None


def _cannot_look(exc: psycopg.Error, db: PostgresDatabase, lost: bool) -> OpsError:
    """Why the checks could not run: a lost connection is worth another attempt, a
    refusal (permissions, a statement timeout) is not."""
    explained = explain_postgres_error(str(exc), db)
    if lost or isinstance(explained, TransientError):
        return TransientError(
            f"PostgreSQL at {db.host}:{db.port}/{db.database}: connection lost while "
            "checking the restored data"
        )
    return explained


def _check(
    conn: psycopg.Connection[Any],
    db: PostgresDatabase,
    expected_counts: dict[str, int],
    sample: int,
) -> IntegrityReport:
    problems: list[str] = []

    counts = count_rows(conn, list_tables(conn))
    mismatches = tuple(
        CountMismatch(table, expected_counts.get(table), counts.get(table))
        for table in sorted(set(expected_counts) | set(counts))
        if expected_counts.get(table) != counts.get(table)
    )
    problems += compare_counts(expected_counts, counts)

    table = ".".join(BUSINESSES)
    businesses = counts.get(table)
    if businesses is None:
        problems.append(f"{table} does not exist: no businesses to serve")
    elif businesses == 0:
        problems.append(f"{table} is empty: SELECT COUNT(*) FROM businesses gave 0")

    org = OrgNumbers()
    if businesses:
        missing = _missing_columns(conn, BUSINESSES, ("id", "org_number"))
        if missing:
            problems.append(f"{table} has no column {', '.join(missing)}: org numbers unchecked")
        else:
            org = check_org_numbers(conn, sample)
            problems += org.problems(table)

    keys = foreign_keys(conn)
    orphaned = []
    for key in keys:
        found = count_orphans(conn, key)
        if found:
            orphaned.append(OrphanedForeignKey(key, found))
            rows = "row points" if found == 1 else "rows point"
            problems.append(f"foreign key {key.label}: {found} {rows} at no parent row")

    return IntegrityReport(
        database=db.display_name,
        row_counts=counts,
        count_mismatches=mismatches,
        businesses=businesses,
        org_numbers_checked=org.checked,
        invalid_org_numbers=org.invalid,
        invalid_org_number_sample=tuple(org.sample),
        null_org_numbers=org.nulls,
        foreign_keys_checked=len(keys),
        orphaned_foreign_keys=tuple(orphaned),
        problems=tuple(problems),
    )


def _missing_columns(
    conn: psycopg.Connection[Any], table: tuple[str, str], columns: tuple[str, ...]
) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        table,
    ).fetchall()
    present = {row[0] for row in rows}
    return [c for c in columns if c not in present]


# --- organisation numbers ------------------------------------------------------------


@dataclass
class OrgNumbers:
    """Organisation numbers of `businesses` read so far: how many, which are wrong."""

    checked: int = 0
    invalid: int = 0
    nulls: int = 0
    sample: list[InvalidOrgNumber] = field(default_factory=list)

    def problems(self, table: str) -> list[str]:
        """The lines an operator reads: invalid ones (a few named), then NULLs."""
        lines = []
        if self.invalid:
            shown = self.sample[:_LISTED_IN_A_LINE]
            named = ", ".join(f"id {s.business_id} {s.org_number!r}" for s in shown)
            more = f" and {self.invalid - len(shown)} more" if self.invalid > len(shown) else ""
            lines.append(
                f"{self.invalid} of {self.checked} org numbers in {table} are not valid "
                f"Swedish organisation numbers (check digit): {named}{more}"
            )
        if self.nulls:
            lines.append(f"{self.nulls} businesses in {table} have no org number (NULL)")
        return lines


def check_org_numbers(conn: psycopg.Connection[Any], sample: int = INVALID_SAMPLE) -> OrgNumbers:
    """Check every `businesses.org_number` by its check digit (python-stdnum's
    `se.orgnr`), streaming the rows so a large table never sits in memory."""
    found = OrgNumbers()
    query = sql.SQL("SELECT id, org_number FROM {} ORDER BY id").format(sql.Identifier(*BUSINESSES))
    with conn.cursor(name="feedback_ops_org_numbers") as cur:
        cur.itersize = _FETCH_ROWS
        cur.execute(query)
        for business_id, number in cur:
            if number is None:
                found.nulls += 1
                continue
            found.checked += 1
            text = str(number)
            if not orgnr.is_valid(text):
                found.invalid += 1
                if len(found.sample) < sample:
                    ident = business_id if isinstance(business_id, int) else str(business_id)
                    found.sample.append(InvalidOrgNumber(ident, text))
    return found


# --- foreign keys --------------------------------------------------------------------

# Only top-level constraints (conparentid = 0): a key on or to a partitioned table has
# a copy per partition, which would count its orphans again. Columns pair up by their
# position in conkey/confkey.
_FOREIGN_KEYS = """
SELECT c.conname, ns.nspname, cl.relname,
       array_agg(a.attname::text ORDER BY k.ord),
       pns.nspname, pcl.relname,
       array_agg(pa.attname::text ORDER BY k.ord),
       c.confmatchtype = 'f', cl.relkind = 'r', pcl.relkind = 'r'
FROM pg_constraint c
JOIN pg_class cl ON cl.oid = c.conrelid
JOIN pg_namespace ns ON ns.oid = cl.relnamespace
JOIN pg_class pcl ON pcl.oid = c.confrelid
JOIN pg_namespace pns ON pns.oid = pcl.relnamespace
CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.fattnum
WHERE c.contype = 'f' AND c.conparentid = 0
  AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
  AND ns.nspname NOT LIKE 'pg_toast%%' AND ns.nspname NOT LIKE 'pg_temp%%'
GROUP BY c.oid, c.conname, ns.nspname, cl.relname, pns.nspname, pcl.relname,
         c.confmatchtype, cl.relkind, pcl.relkind
ORDER BY ns.nspname, cl.relname, c.conname
"""


def foreign_keys(conn: psycopg.Connection[Any]) -> list[ForeignKey]:
    """Every foreign key constraint outside the system schemas, multi-column ones
    included, ordered by child table and name."""
    return [
        ForeignKey(
            name=name,
            schema=schema,
            table=table,
            columns=tuple(columns),
            parent_schema=parent_schema,
            parent_table=parent_table,
            parent_columns=tuple(parent_columns),
            match_full=bool(match_full),
            only_child=bool(only_child),
            only_parent=bool(only_parent),
        )
        for (
            name,
            schema,
            table,
            columns,
            parent_schema,
            parent_table,
            parent_columns,
            match_full,
            only_child,
            only_parent,
        ) in conn.execute(_FOREIGN_KEYS).fetchall()
    ]


def count_orphans(conn: psycopg.Connection[Any], key: ForeignKey) -> int:
    """Child rows whose key is not NULL yet matches no parent row: what the constraint
    forbids, found after the fact (a restore or a load with triggers off skips it).

    A key with a NULL column is not checked (MATCH SIMPLE), except that MATCH FULL
    forbids a key that is only partly NULL, so those count too.
    """
    child = sql.Identifier("child")
    parent = sql.Identifier("parent")
    columns = [sql.Identifier(c) for c in key.columns]
    complete = sql.SQL(" AND ").join(sql.SQL("{}.{} IS NOT NULL").format(child, c) for c in columns)
    joined = sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(parent, sql.Identifier(p), child, c)
        for c, p in zip(columns, key.parent_columns, strict=True)
    )
    missing = sql.SQL(
        "({complete} AND NOT EXISTS (SELECT 1 FROM {only}{table} AS {parent} WHERE {joined}))"
    ).format(
        complete=complete,
        only=sql.SQL("ONLY " if key.only_parent else ""),
        table=sql.Identifier(key.parent_schema, key.parent_table),
        parent=parent,
        joined=joined,
    )
    if key.match_full:
        nulls = [sql.SQL("{}.{} IS NULL").format(child, c) for c in columns]
        missing = sql.SQL("{} OR (({}) AND NOT ({}))").format(
            missing, sql.SQL(" OR ").join(nulls), sql.SQL(" AND ").join(nulls)
        )
    query = sql.SQL("SELECT count(*) FROM {only}{table} AS {child} WHERE {missing}").format(
        only=sql.SQL("ONLY " if key.only_child else ""),
        table=sql.Identifier(key.schema, key.table),
        child=child,
        missing=missing,
    )
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


__all__ = [
    "BUSINESSES",
    "INVALID_SAMPLE",
    "CountMismatch",
    "ForeignKey",
    "IntegrityReport",
    "InvalidOrgNumber",
    "OrgNumbers",
    "OrphanedForeignKey",
    "check_integrity",
    "check_org_numbers",
    "count_orphans",
    "foreign_keys",
]
