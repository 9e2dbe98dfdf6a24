"""A schema like the feedback platform's, seeded with deterministic Swedish data.

The data is meant to make dump/restore checks meaningful: Swedish letters, tabs, newlines,
backslashes and quotes in text, NULLs in several columns, jsonb, numeric, timestamptz with
microseconds, and a bytea column holding every byte value (and NULLs).
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

DEFAULT_SEED = 20240606
PROVIDERS = ("square", "shopify", "zettle")

BASE_COUNTS: dict[str, int] = {
    "public.businesses": 200,
    "public.pos_connections": 400,
    "public.feedback": 3000,
    "public.webhook_delivery_attempts": 2000,
    "public.feedback_attachments": 300,
}

POS_SWEEP_TABLES_SQL = """
CREATE TABLE businesses (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE pos_connections (
    id bigserial PRIMARY KEY,
    business_id bigint NOT NULL REFERENCES businesses (id),
    provider text NOT NULL,
    external_location_id text NOT NULL,
    status text NOT NULL,
    config jsonb NOT NULL DEFAULT '{}'::jsonb
);
"""
"""Only what the POS health sweep reads of the platform: businesses and their POS
connections, for tests that add their own few rows."""

SCHEMA_SQL = r"""
CREATE TABLE businesses (
    id          bigserial PRIMARY KEY,
    org_number  text NOT NULL UNIQUE CHECK (org_number ~ '^\d{6}-\d{4}$'),
    name        text NOT NULL,
    city        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pos_connections (
    id                    bigserial PRIMARY KEY,
    business_id           bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    provider              text NOT NULL CHECK (provider IN ('square', 'shopify', 'zettle')),
    external_location_id  text NOT NULL,
    status                text NOT NULL
                          CHECK (status IN ('active', 'paused', 'error', 'revoked')),
    config                jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_location_id)
);
CREATE INDEX pos_connections_business_idx ON pos_connections (business_id);

CREATE TABLE feedback (
    id           bigserial PRIMARY KEY,
    business_id  bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    rating       smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment      text,
    sentiment    numeric(4, 3) CHECK (sentiment BETWEEN -1 AND 1),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_business_created_idx ON feedback (business_id, created_at DESC);

CREATE TABLE webhook_delivery_attempts (
    id                 bigserial PRIMARY KEY,
    pos_connection_id  bigint NOT NULL REFERENCES pos_connections (id) ON DELETE CASCADE,
    provider           text NOT NULL CHECK (provider IN ('square', 'shopify', 'zettle')),
    status             text NOT NULL CHECK (status IN ('delivered', 'failed', 'pending')),
    http_status        integer,
    payload            jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_status_created_idx
    ON webhook_delivery_attempts (status, created_at);

CREATE TABLE feedback_attachments (
    id            bigserial PRIMARY KEY,
    feedback_id   bigint NOT NULL REFERENCES feedback (id) ON DELETE CASCADE,
    filename      text NOT NULL,
    content_type  text,
    content       bytea,
    sha256        text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
"""

CITIES = (
    "Stockholm", "Göteborg", "Malmö", "Uppsala", "Västerås", "Örebro", "Linköping",
    "Helsingborg", "Jönköping", "Norrköping", "Lund", "Umeå", "Gävle", "Borås",
    "Södertälje", "Eskilstuna", "Täby", "Karlstad", "Växjö", "Halmstad", "Sundsvall",
    "Luleå", "Östersund", "Kiruna", "Visby", "Skellefteå", "Trollhättan", "Åre",
)  # fmt: skip
KINDS = (
    "Kafé", "Bageri", "Konditori", "Restaurang", "Pizzeria", "Frisör", "Blomsterhandel",
    "Hälsokost", "Bokhandel", "Cykelverkstad", "Glassbar", "Sushibar", "Vinbar", "Gym",
)  # fmt: skip
NAMES = (
    "Åkervallen", "Söderljus", "Björkängen", "Älvkanten", "Östermalm", "Kvarnen",
    "Fjällrosen", "Lingonet", "Hamnkrogen", "Solgläntan", "Mårtens", "Rönnbäret",
    "Gröna Lund", "Väderkvarnen", "Tallbacken", "Sjöboden", "Ängsgården", "Höjden",
)  # fmt: skip
COMMENTS = (
    "Fantastisk service, personalen var så trevlig!",
    "Kaffet var ljummet och kön var lång.",
    "Bästa kanelbullen i stan – kommer tillbaka!",
    "Lite för dyrt för vad man får, tyvärr.",
    "Maten var god men det tog över en timme att få den.",
    "Trevlig miljö, men toaletten var smutsig.",
    "Personalen pratade engelska med mig, helt okej.",
    "Jättegott! Smörgåstårtan var perfekt till kalaset.",
    "Kortläsaren fungerade inte, fick betala med Swish.",
    "Mysigt ställe med härlig utsikt över sjön.",
    'Servitören sa "vi stänger snart" redan kl. 20.',
    "Glassen smälte innan jag hann äta – för varmt inne?",
    "Rad ett\nRad två: tack för en trevlig kväll!",
    "Tabb\tmellan orden och ett snedstreck \\ i slutet\\",
    "Åtta älgar åt ört och öl – ÅÄÖ åäö é ü ß 😊",
    "100% nöjd; 0% klagomål. Pris: 49,90 kr",
)
LOCATION_STATUSES = ("active", "active", "active", "paused", "error", "revoked")
SQUARE_EVENTS = ("payment.created", "payment.updated", "refund.created")
SHOPIFY_EVENTS = ("orders/create", "orders/paid", "refunds/create")
ZETTLE_EVENTS = ("PurchaseCreated", "PurchaseUpdated", "InventoryBalanceChanged")
EVENTS = {"square": SQUARE_EVENTS, "shopify": SHOPIFY_EVENTS, "zettle": ZETTLE_EVENTS}
CONTENT_TYPES = ("image/jpeg", "image/png", "application/pdf", None)

EPOCH = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
ORG_NUMBER_RE = re.compile(r"^\d{6}-\d{4}$")


# --- Swedish organisation numbers ------------------------------------------------------


def luhn_check_digit(digits: str) -> int:
    """Luhn check digit for ``digits`` (weights 2,1,2,… from the left, as for org numbers)."""
    total = 0
    for i, ch in enumerate(digits):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def is_valid_org_number(org_number: str) -> bool:
    """True for ``NNNNNN-NNNN`` whose last digit is the Luhn check of the first nine."""
    if not ORG_NUMBER_RE.match(org_number):
        return False
    digits = org_number.replace("-", "")
    return luhn_check_digit(digits[:9]) == int(digits[9])


def make_org_number(rng: random.Random) -> str:
    """A random aktiebolag number ``55NNNN-NNNC`` with a valid check digit."""
    body = "55" + "".join(str(rng.randrange(10)) for _ in range(7))
    digits = body + str(luhn_check_digit(body))
    return f"{digits[:6]}-{digits[6:]}"


# --- seeding -------------------------------------------------------------------------------


def planned_counts(scale: float = 1.0) -> dict[str, int]:
    """Row counts ``seed_platform`` inserts at ``scale`` (at least one row per table)."""
    return {table: max(1, round(n * scale)) for table, n in BASE_COUNTS.items()}


def _moment(rng: random.Random, days: int = 365) -> datetime:
    return EPOCH - timedelta(seconds=rng.randrange(days * 86400), microseconds=rng.randrange(10**6))


def _rows(seed: int, counts: dict[str, int]) -> dict[str, list[tuple[Any, ...]]]:
    """Generate every table's rows, in insertion order, from one ``random.Random(seed)``."""
    rng = random.Random(seed)
    n_biz = counts["public.businesses"]

    businesses = []
    seen: set[str] = set()
    for biz_id in range(1, n_biz + 1):
        org = make_org_number(rng)
        while org in seen:
            org = make_org_number(rng)
        seen.add(org)
        city = None if rng.random() < 0.05 else rng.choice(CITIES)
        name = f"{rng.choice(KINDS)} {rng.choice(NAMES)}"
        if city and rng.random() < 0.3:
            name += f" {city}"
        businesses.append((biz_id, org, name, city, _moment(rng, 900)))

    connections = []
    for conn_id in range(1, counts["public.pos_connections"] + 1):
        provider = PROVIDERS[conn_id % 3]
        biz_id = rng.randint(1, n_biz)
        location = f"{provider[:2].upper()}-LOC-{conn_id:05d}-{rng.randrange(16**6):06x}"
        config: dict[str, Any] = {
            "currency": "SEK",
            "timezone": "Europe/Stockholm",
            "webhook_events": list(EVENTS[provider]),
            "sync_interval_minutes": rng.choice((5, 15, 60)),
            "kassa_namn": f"Kassa {rng.randint(1, 9)} – {rng.choice(NAMES)}",
        }
        if rng.random() < 0.2:
            config["last_error"] = None
        status = rng.choice(LOCATION_STATUSES)
        connections.append(
            (conn_id, biz_id, provider, location, status, Jsonb(config), _moment(rng, 600))
        )

    feedback = []
    for fb_id in range(1, counts["public.feedback"] + 1):
        rating = rng.choices((1, 2, 3, 4, 5), weights=(5, 8, 15, 35, 37))[0]
        comment = None if rng.random() < 0.15 else rng.choice(COMMENTS)
        sentiment = (
            None
            if rng.random() < 0.1
            else (Decimal(rng.randint(-1000, 1000)) / 1000).quantize(Decimal("0.001"))
        )
        feedback.append((fb_id, rng.randint(1, n_biz), rating, comment, sentiment, _moment(rng)))

    attempts = []
    for att_id in range(1, counts["public.webhook_delivery_attempts"] + 1):
        conn_id = rng.randint(1, len(connections))
        provider = connections[conn_id - 1][2]
        status = rng.choices(("delivered", "failed", "pending"), weights=(80, 15, 5))[0]
        http_status = {
            "delivered": rng.choice((200, 200, 201, 204)),
            "failed": rng.choice((500, 502, 503, 429, 401, None)),
            "pending": None,
        }[status]
        payload = {
            "event": rng.choice(EVENTS[provider]),
            "attempt": rng.randint(1, 5),
            "amount": {"value": rng.randint(100, 250_000), "currency": "SEK"},
            "note": rng.choice(("", "Tack för köpet!", "Återbetalning: fel vara", None)),
        }
        attempts.append(
            (att_id, conn_id, provider, status, http_status, Jsonb(payload), _moment(rng, 30))
        )

    attachments = []
    all_bytes = bytes(range(256))
    for att_id in range(1, counts["public.feedback_attachments"] + 1):
        content_type = rng.choice(CONTENT_TYPES)
        if rng.random() < 0.15:
            content = None
        else:
            content = rng.randbytes(rng.randrange(0, 2048))
            if att_id % 7 == 0:
                content = all_bytes + content
        sha = hashlib.sha256(content).hexdigest() if content is not None else None
        attachments.append(
            (
                att_id,
                rng.randint(1, len(feedback)),
                f"bild_{att_id:04d}_åäö.{(content_type or 'x/bin').split('/')[1]}",
                content_type,
                content,
                sha,
                _moment(rng),
            )
        )

    return {
        "public.businesses": businesses,
        "public.pos_connections": connections,
        "public.feedback": feedback,
        "public.webhook_delivery_attempts": attempts,
        "public.feedback_attachments": attachments,
    }


COLUMNS: dict[str, tuple[str, ...]] = {
    "public.businesses": ("id", "org_number", "name", "city", "created_at"),
    "public.pos_connections": (
        "id", "business_id", "provider", "external_location_id", "status", "config",
        "created_at",
    ),
    "public.feedback": ("id", "business_id", "rating", "comment", "sentiment", "created_at"),
    "public.webhook_delivery_attempts": (
        "id", "pos_connection_id", "provider", "status", "http_status", "payload", "created_at",
    ),
    "public.feedback_attachments": (
        "id", "feedback_id", "filename", "content_type", "content", "sha256", "created_at",
    ),
}  # fmt: skip


def seed_platform(conn_url: str, *, scale: float = 1.0, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Create the platform schema in ``conn_url``'s database and fill it deterministically.

    Returns the row count of every table, keyed ``"public.<table>"``. The same ``seed``
    and ``scale`` always give the same rows. Sequences are set past the highest id.
    """
    counts = planned_counts(scale)
    rows = _rows(seed, counts)
    with psycopg.connect(conn_url) as conn:
        conn.execute(SCHEMA_SQL)
        with conn.cursor() as cur:
            for table, table_rows in rows.items():
                columns = ", ".join(COLUMNS[table])
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in table_rows:
                        copy.write_row(row)
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            actual = {}
            for table in rows:
                cur.execute(f"SELECT count(*) FROM {table}")
                actual[table] = int(cur.fetchone()[0])  # type: ignore[index]
    if actual != counts:  # pragma: no cover - a bug in the generator
        raise AssertionError(f"seeded {actual}, planned {counts}")
    return actual
