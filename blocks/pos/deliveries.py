"""The platform's record of webhook deliveries (`webhook_delivery_attempts`), as the
reconciliation reads it: which columns it has, which indexes, the delivery health by
provider and status, and the failed deliveries page by page.

The runbook's query shows `provider`, `status` and `created_at`. The audit and the
replay need more of each attempt: the raw body, the received signature and timestamp,
the event id and the HTTP status the gateway answered. Their names are the block's
fields; `inspect` finds which exist, and a check whose columns are missing is reported
as not run, with the reason, instead of failing the run.

Nothing here creates an index on the platform's table unless the block's
`create_indexes` says so; `inspect` names each missing one with the statement that
makes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from prefect.blocks.core import Block
from psycopg import sql
from pydantic import Field, HttpUrl, SecretStr, field_validator

from blocks.pos import PROVIDERS, reveal
from blocks.pos.signatures import Unverifiable, audit, event_id_in, parse_body, signed_bytes
from policy.webhooks import Failure, Signature, failure_of, replayable, window_ended

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TABLE = re.compile(r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$")

ROLES = (
    "id",
    "provider",
    "status",
    "created_at",
    "http_status",
    "body",
    "signature",
    "timestamp",
    "event_id",
    "event_type",
)
"""What each column is to the reconciliation; the block names the column of each."""

NEEDS: dict[str, tuple[str, ...]] = {
    "delivery health": ("provider", "status", "created_at"),
    "failed deliveries": ("id", "provider", "status", "created_at", "http_status", "event_id"),
    "signature audit": ("body", "signature"),
    "replay": ("body",),
}
"""The columns each check needs; the audit and the replay read the failed deliveries too."""


class WebhookDeliveries(Block):
    """Where the platform records webhook deliveries, the column that holds each fact,
    the providers' webhook signing keys (current and previous), and how replays go.

    The Zettle keys here are the ones configured; a key the POS health sweep stored in
    the `pos-tokens` block when it re-created a subscription is newer and wins.

    Example:
        ```python
        from blocks.pos.deliveries import WebhookDeliveries

        deliveries = WebhookDeliveries.load("BLOCK_NAME")
        print(deliveries.table, deliveries.columns())
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Webhook Deliveries"
    _block_type_slug: ClassVar[str] = "feedback-ops-webhook-deliveries"
    _description: ClassVar[str] = (
        "The platform's webhook delivery table, its columns, signing keys and replay settings."
    )
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.squareup.com/docs/webhooks/step3validate"
    )

    table: str = Field(
        default="public.webhook_delivery_attempts",
        description="The platform's table of webhook delivery attempts.",
    )
    id_column: str = Field(default="id", description="The attempt's id (a number).")
    provider_column: str = Field(default="provider", description="square, shopify or zettle.")
    status_column: str = Field(default="status", description="delivered, failed or pending.")
    created_at_column: str = Field(default="created_at", description="When it was received.")
    http_status_column: str = Field(
        default="http_status", description="The HTTP status the gateway answered (none: no answer)."
    )
    body_column: str = Field(default="raw_body", description="The raw body, as received.")
    signature_column: str = Field(default="signature", description="The signature header.")
    timestamp_column: str = Field(
        default="signature_timestamp",
        description="The timestamp received with the signature (Shopify's triggered-at).",
    )
    event_id_column: str = Field(default="event_id", description="The provider's event id.")
    event_type_column: str = Field(
        default="event_type", description="The event type (Shopify's topic)."
    )
    delivered_status: str = Field(default="delivered", description="Status of a delivery taken.")
    failed_status: str = Field(default="failed", description="Status of a delivery refused.")
    square_signature_key: SecretStr | None = Field(
        default=None, description="Signature key of Square's webhook subscription."
    )
    square_previous_signature_key: SecretStr | None = Field(
        default=None, description="Square's signature key before the current one."
    )
    shopify_webhook_secret: SecretStr | None = Field(
        default=None, description="Shopify app client secret that signs webhooks."
    )
    shopify_previous_webhook_secret: SecretStr | None = Field(
        default=None, description="Shopify's client secret before the current one."
    )
    zettle_signing_key: SecretStr | None = Field(
        default=None, description="Signing key of Zettle's webhook subscription."
    )
    zettle_previous_signing_key: SecretStr | None = Field(
        default=None, description="Zettle's signing key before the current one."
    )
    square_notification_url: str | None = Field(
        default=None,
        description="The notification URL Square signs (default: the webhook URL + /square).",
    )
    create_indexes: bool = Field(
        default=False, description="Create missing indexes on the platform's table."
    )
    replay_concurrency: int = Field(
        default=8, ge=1, le=64, description="Replays in flight at once."
    )
    page_size: int = Field(
        default=500, ge=10, le=5000, description="Failed deliveries read and replayed at once."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Seconds a replay waits for the gateway."
    )

    @field_validator("table")
    @classmethod
    def _a_table(cls, value: str) -> str:
        if not TABLE.match(value):
            raise ValueError(f"not a table name: {value!r}")
        return value

    @field_validator(
        "id_column",
        "provider_column",
        "status_column",
        "created_at_column",
        "http_status_column",
        "body_column",
        "signature_column",
        "timestamp_column",
        "event_id_column",
        "event_type_column",
    )
    @classmethod
    def _a_column(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"not a column name: {value!r}")
        return value

    def columns(self) -> dict[str, str]:
        """Each role's column name."""
        return {role: str(getattr(self, f"{role}_column")) for role in ROLES}

    def table_parts(self) -> tuple[str, str]:
        """(schema, table); `public` when the name has no schema."""
        schema, _, name = self.table.rpartition(".")
        return schema or "public", name


# --- the table's shape --------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    """An index the reconciliation's queries want, and whether the table has one."""

    purpose: str
    statement: str
    present: bool


@dataclass(frozen=True)
class Shape:
    """What the table offers: the roles whose columns exist, each check that cannot
    run with its reason, and the indexes."""

    table: str
    present: frozenset[str]
    columns: dict[str, str]
    missing_table: bool = False
    indexes: tuple[Index, ...] = ()
    created: tuple[str, ...] = ()

    def can(self, check: str) -> bool:
        """Whether every column `check` needs exists (the audit and the replay also
        need the failed deliveries' columns)."""
        return self.why_not(check) is None

    def why_not(self, check: str) -> str | None:
        """Why `check` cannot run, in one line; None when it can."""
        if self.missing_table:
            return f"table {self.table} does not exist"
        needed = NEEDS[check]
        if check in ("signature audit", "replay"):
            needed = NEEDS["failed deliveries"] + needed
        missing = [self.columns[role] for role in needed if role not in self.present]
        if not missing:
            return None
        return f"{self.table} has no column {', '.join(missing)}"

    def unchecked(self) -> dict[str, str]:
        """Every check that cannot run, with its reason."""
        return {check: why for check in NEEDS if (why := self.why_not(check)) is not None}


def _quoted_table(deliveries: WebhookDeliveries) -> sql.Composed:
    schema, name = deliveries.table_parts()
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def inspect(conn: psycopg.Connection[Any], deliveries: WebhookDeliveries) -> Shape:
    """The table's columns and indexes; with `create_indexes`, the missing indexes
    made first (`CREATE INDEX CONCURRENTLY`, which needs `conn` in autocommit)."""
    schema, name = deliveries.table_parts()
    columns = deliveries.columns()
    found = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, name),
        )
    }
    if not found:
        return Shape(deliveries.table, frozenset(), columns, missing_table=True)
    present = frozenset(role for role, column in columns.items() if column in found)
    wanted = _wanted_indexes(deliveries, present)
    have = _index_definitions(conn, deliveries)
    created: list[str] = []
    indexes = []
    for purpose, (statement, test) in wanted.items():
        ok = any(test(first, rest, predicate) for first, rest, predicate in have)
        if not ok and deliveries.create_indexes:
            conn.execute(statement.encode())
            created.append(statement)
            ok = True
        indexes.append(Index(purpose, statement, ok))
    return Shape(deliveries.table, present, columns, indexes=tuple(indexes), created=tuple(created))


IndexTest = Callable[[str, list[str], str | None], bool]
"""A test of an existing index: its (first column, other key columns, predicate)."""


def _wanted_indexes(
    deliveries: WebhookDeliveries, present: frozenset[str]
) -> dict[str, tuple[str, IndexTest]]:
    """The indexes the queries want, each with its statement and a test of an existing
    index's (first column, other columns, predicate)."""
    schema, name = deliveries.table_parts()
    c = deliveries.columns()
    table = f"{schema}.{name}"
    wanted: dict[str, tuple[str, IndexTest]] = {}
    if {"created_at", "provider", "status"} <= present:
        wanted["the hourly and daily health by provider and status"] = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_created_at_idx ON {table} "
            f"({c['created_at']}) INCLUDE ({c['provider']}, {c['status']})",
            lambda first, rest, predicate: first == c["created_at"] and predicate is None,
        )
    if {"created_at", "status"} <= present:
        failed = deliveries.failed_status.replace("'", "''")
        wanted["the failed deliveries to audit and replay"] = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_failed_idx ON {table} "
            f"({c['created_at']}) WHERE {c['status']} = '{failed}'",
            lambda first, rest, predicate: (
                first == c["created_at"] and predicate is not None and f"'{failed}'" in predicate
            ),
        )
    if {"provider", "event_id"} <= present:
        wanted["whether an event was delivered since"] = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_event_idx ON {table} "
            f"({c['event_id']}, {c['provider']})",
            lambda first, rest, predicate: (
                predicate is None
                and (
                    first == c["event_id"]
                    or (first == c["provider"] and rest[:1] == [c["event_id"]])
                )
            ),
        )
    return wanted


def _index_definitions(
    conn: psycopg.Connection[Any], deliveries: WebhookDeliveries
) -> list[tuple[str, list[str], str | None]]:
    """Each valid index on the table: its first column, its other key columns, and its
    predicate (None when it covers every row)."""
    rows = conn.execute(
        """
        SELECT (SELECT array_agg(a.attname ORDER BY k.n)
                  FROM unnest(x.indkey[0:x.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
                  JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum),
               pg_get_expr(x.indpred, x.indrelid)
        FROM pg_index x
        WHERE x.indrelid = to_regclass(%s) AND x.indisvalid
        """,
        (deliveries.table,),
    ).fetchall()
    return [(keys[0], list(keys[1:]), predicate) for keys, predicate in rows if keys]


# --- delivery health ----------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """Deliveries of one provider in one status: in the last hour and the last 24 hours."""

    provider: str
    status: str
    last_hour: int
    last_day: int


def health_query(deliveries: WebhookDeliveries) -> sql.Composed:
    """The runbook's GROUP BY, over the last hour and the last 24 hours at once, in one
    range scan of the time column. Parameters: the moment, then the moment again."""
    c = {role: sql.Identifier(column) for role, column in deliveries.columns().items()}
    return sql.SQL(
        "SELECT {provider}, {status}, "
        "count(*) FILTER (WHERE {created_at} > %(at)s - interval '1 hour'), count(*) "
        "FROM {table} "
        "WHERE {created_at} > %(at)s - interval '24 hours' AND {created_at} <= %(at)s "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(table=_quoted_table(deliveries), **c)


def delivery_health(
    conn: psycopg.Connection[Any], deliveries: WebhookDeliveries, at: datetime
) -> list[Count]:
    """Deliveries by provider and status before `at`, aggregated by PostgreSQL."""
    rows = conn.execute(health_query(deliveries), {"at": at}).fetchall()
    return [Count(str(p), str(s), int(hour), int(day)) for p, s, hour, day in rows]


# --- failed deliveries --------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """The newest failed attempt of one event that was never delivered, as stored."""

    id: int
    provider: str
    event_id: str | None
    http_status: int | None
    body: bytes | None = field(repr=False)
    signature: str | None = field(repr=False)
    timestamp: str | None
    event_type: str | None
    created_at: datetime
    first_failed_at: datetime
    failures: int


@dataclass(frozen=True)
class Page:
    """One page of failed deliveries, and where the next one starts (None: the last)."""

    rows: list[Stored]
    after: tuple[str, str] | None


def _event_key(c: dict[str, sql.Identifier]) -> sql.Composable:
    """An event's key: its id, or its attempt's own id when none was stored (events
    without an id are never merged)."""
    return sql.SQL("coalesce({event_id}, 'row:' || {id}::text)").format(**c)


def failed_page(
    conn: psycopg.Connection[Any],
    deliveries: WebhookDeliveries,
    shape: Shape,
    *,
    since: datetime,
    until: datetime,
    after: tuple[str, str] | None = None,
    provider: str | None = None,
    max_id: int | None = None,
    limit: int | None = None,
) -> Page:
    """The next page of events whose attempts in (since, until] all failed, ordered by
    provider and event id and starting after `after`; each with its newest failed
    attempt, when it first failed and how often. Events delivered since `since` are
    left out; so are attempts with an id above `max_id`."""
    c = {role: sql.Identifier(column) for role, column in deliveries.columns().items()}
    key = _event_key(c)

    def column(role: str) -> sql.Composable:
        return c[role] if role in shape.present else sql.SQL("NULL")

    conditions = [
        sql.SQL("{status} = %(failed)s").format(**c),
        sql.SQL("{created_at} > %(since)s AND {created_at} <= %(until)s").format(**c),
    ]
    if after is not None:
        conditions.append(sql.SQL("({provider}, {key}) > (%(p)s, %(e)s)").format(key=key, **c))
    if provider is not None:
        conditions.append(sql.SQL("{provider} = %(provider)s").format(**c))
    if max_id is not None:
        conditions.append(sql.SQL("{id} <= %(max_id)s").format(**c))
    query = sql.SQL(
        """
        SELECT f.* FROM (
            SELECT DISTINCT ON ({provider}, {key})
                   {id}, {provider}, {event_id}, {http_status}, {body}, {signature},
                   {timestamp}, {event_type}, {created_at},
                   min({created_at}) OVER w, count(*) OVER w, {key}
            FROM {table}
            WHERE {where}
            WINDOW w AS (PARTITION BY {provider}, {key})
            ORDER BY {provider}, {key}, {created_at} DESC
        ) AS f ({id}, {provider}, {event_id}, {http_status}, {body}, {signature},
                {timestamp}, {event_type}, {created_at}, first_failed_at, failures, event_key)
        WHERE NOT EXISTS (
            SELECT 1 FROM {table} AS d
            WHERE d.{provider} = f.{provider} AND d.{event_id} = f.{event_id}
              AND d.{status} = %(delivered)s AND d.{created_at} > %(since)s
        )
        ORDER BY f.{provider}, f.event_key
        LIMIT %(limit)s
        """
    ).format(
        table=_quoted_table(deliveries),
        key=key,
        where=sql.SQL(" AND ").join(conditions),
        body=column("body"),
        signature=column("signature"),
        timestamp=column("timestamp"),
        event_type=column("event_type"),
        **{role: c[role] for role in ("id", "provider", "status", "created_at", "http_status")},
        event_id=c["event_id"],
    )
    size = limit or deliveries.page_size
    params = {
        "failed": deliveries.failed_status,
        "delivered": deliveries.delivered_status,
        "since": since,
        "until": until,
        "p": after[0] if after else None,
        "e": after[1] if after else None,
        "provider": provider,
        "max_id": max_id,
        "limit": size,
    }
    rows = conn.execute(query, params).fetchall()
    stored = [
        Stored(
            id=int(r[0]),
            provider=str(r[1]),
            event_id=None if r[2] is None else str(r[2]),
            http_status=None if r[3] is None else int(r[3]),
            body=_bytes(r[4]),
            signature=None if r[5] is None else str(r[5]),
            timestamp=None if r[6] is None else str(r[6]),
            event_type=None if r[7] is None else str(r[7]),
            created_at=r[8],
            first_failed_at=r[9],
            failures=int(r[10]),
        )
        for r in rows
    ]
    following = (str(rows[-1][1]), str(rows[-1][11])) if len(rows) == size else None
    return Page(stored, following)


def newest_id(conn: psycopg.Connection[Any], deliveries: WebhookDeliveries) -> int | None:
    """The highest attempt id now: a plan counted up to it acts on nothing newer."""
    query = sql.SQL("SELECT max({id}) FROM {table}").format(
        id=sql.Identifier(deliveries.id_column), table=_quoted_table(deliveries)
    )
    row = conn.execute(query).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _bytes(value: Any) -> bytes | None:
    """A stored body as bytes: bytea as it is, text as UTF-8."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    # A json/jsonb column: PostgreSQL re-serialised it, so a signature over the bytes
    # the provider sent will not match what comes back.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- judging one failed delivery ----------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """A provider's webhook signing keys: the current one and the one before."""

    current: str | None = field(default=None, repr=False)
    previous: str | None = field(default=None, repr=False)


def signing_keys(
    deliveries: WebhookDeliveries,
    zettle_key: SecretStr | None = None,
    zettle_previous: SecretStr | None = None,
) -> dict[str, Keys]:
    """Each provider's keys. The Zettle key the POS health sweep stored with a
    subscription it re-created (`zettle_key`, and the one it replaced) is newer than
    the configured one, which then counts as a previous key."""
    zettle = Keys(
        reveal(deliveries.zettle_signing_key), reveal(deliveries.zettle_previous_signing_key)
    )
    if zettle_key is not None:
        zettle = Keys(
            reveal(zettle_key),
            reveal(zettle_previous) or reveal(deliveries.zettle_signing_key),
        )
    return {
        "square": Keys(
            reveal(deliveries.square_signature_key),
            reveal(deliveries.square_previous_signature_key),
        ),
        "shopify": Keys(
            reveal(deliveries.shopify_webhook_secret),
            reveal(deliveries.shopify_previous_webhook_secret),
        ),
        "zettle": Keys(zettle.current or None, zettle.previous or None),
    }


@dataclass(frozen=True)
class Judged:
    """A failed delivery judged: why it failed, what its signature showed, whether it
    is replayed, and whether its provider has stopped retrying it."""

    stored: Stored
    event_id: str | None
    failure: Failure | None
    signature: Signature | None = None
    replay: bool = False
    reason: str = ""
    """Why it is, or is not, replayed; or why it could not be judged."""
    window_ended: bool = False
    signed: bytes | None = field(default=None, repr=False)


def judge(
    stored: Stored,
    keys: dict[str, Keys],
    square_url: str | None,
    at: datetime,
    shape: Shape,
) -> Judged:
    """Classify one failed delivery: never raises, whatever the row holds."""
    if stored.provider not in PROVIDERS:
        return Judged(stored, stored.event_id, None, reason=f"unknown provider {stored.provider!r}")
    failure = failure_of(stored.http_status)
    ended = window_ended(stored.provider, stored.first_failed_at, at)
    base = Judged(stored, stored.event_id, failure, window_ended=ended)
    if not shape.can("replay"):
        why = shape.why_not("replay") or ""
        return _with(base, reason=f"not replayable: {why}")
    try:
        signed = signed_bytes(stored.provider, stored.body, square_url)
        event_id = stored.event_id or event_id_in(stored.provider, parse_body(stored.body))
    except Unverifiable as exc:
        return _with(base, reason=f"not replayable: {exc}")
    if not event_id:
        return _with(base, reason="not replayable: no event id stored or in the body")
    base = _with(base, event_id=event_id, signed=signed)
    signature = None
    if failure is Failure.SIGNATURE:
        if not shape.can("signature audit"):
            return _with(base, reason=f"unchecked: {shape.why_not('signature audit')}")
        provider_keys = keys.get(stored.provider, Keys())
        try:
            signature = audit(
                stored.provider, signed, stored.signature, provider_keys.current,
                provider_keys.previous,
            )  # fmt: skip
        except Unverifiable as exc:
            return _with(base, reason=f"unchecked: {exc}")
        base = _with(base, signature=signature)
    if not replayable(failure, signature):
        return _with(base, reason=_not_replayed(failure, signature, stored.http_status))
    if not keys.get(stored.provider, Keys()).current:
        return _with(base, reason=f"not replayable: no current {stored.provider} signing key")
    return _with(base, replay=True, reason=_replayed(failure, signature, stored.http_status))


def _with(judged: Judged, **changes: Any) -> Judged:
    return replace(judged, **changes)


def _replayed(failure: Failure, signature: Signature | None, status: int | None) -> str:
    if failure is Failure.SIGNATURE:
        return (
            "signed with the previous key: a rotation not rolled out"
            if signature is Signature.PREVIOUS_KEY
            else "signed with the current key yet rejected: a gateway bug"
        )
    if failure is Failure.NO_ANSWER:
        return "the gateway did not answer"
    return f"the gateway answered HTTP {status}"


def _not_replayed(failure: Failure, signature: Signature | None, status: int | None) -> str:
    if signature is Signature.NO_KEY:
        return "not replayed: signed with no known key (possible forgery)"
    return f"not replayed: the gateway refused the payload (HTTP {status})"
