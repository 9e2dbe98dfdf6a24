"""Benchmark: webhook reconciliation on a month of deliveries, against the raw tools.

Fills a throwaway database's `webhook_delivery_attempts` with --rows attempts evenly
spread over --days (every 50th failed with a 503: 2 %), a third per provider, each with
its provider's body, and makes the three indexes the README recommends (through the
block's `create_indexes`, as an operator would). Then, in one run:

1. **The delivery health**: the flow's aggregate (`delivery_health`, connection
   included) against `psql -c` running the same GROUP BY, alternated --rounds times.
   Prints both medians and their ratio (floor: --max-ratio), and checks both counted
   the same.
2. **The replay**: the `webhook-reconciliation` flow (dry_run off) replaying the newest
   --replays failed events to the fake gateway receiver (its own process, --latency-ms
   per answer), against a raw sender: one query for the same events, then an aiohttp
   loop that signs and posts each at the same concurrency. Prints deliveries per second
   of both and their ratio; the flow runs in a fresh process per size, once for a tenth
   of --replays and once for all, so their peak RSS shows whether memory grows with the
   number of events (it must not: one page at a time).

    .venv/bin/python benchmarks/webhook_reconciliation.py --rows 1000000 --replays 10000

Exits 1 when the aggregate's ratio is above --max-ratio, a replay was not accepted by
the receiver's own signature check, or the peak RSS at --replays exceeds the one at a
tenth of them by more than --max-rss-growth-mb.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _platform_data import drop_database  # noqa: E402
from _prefect_api import prefect_api, save_blocks  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
AT = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)
EVERY_NTH_FAILS = 50
# Each provider's body as it sends it (Square's event, a Shopify order, a Zettle Pusher
# message with its payload as a JSON string), the failed ones answered 503.
FILL = """
INSERT INTO webhook_delivery_attempts (provider, status, created_at, http_status, raw_body,
    signature, signature_timestamp, event_id, event_type)
SELECT p, CASE WHEN i %% {nth} = 0 THEN 'failed' ELSE 'delivered' END,
       %(at)s::timestamptz - (i * %(span)s::interval / %(rows)s),
       CASE WHEN i %% {nth} = 0 THEN 503 ELSE 200 END,
       convert_to(CASE p
         WHEN 'square' THEN jsonb_build_object('merchant_id', 'MLSQ' || (i %% 997),
              'type', 'payment.updated', 'event_id', 'ev-' || i,
              'created_at', '2027-03-01T08:00:00Z', 'data', jsonb_build_object(
                  'type', 'payment', 'id', 'pay-' || i, 'object', jsonb_build_object(
                      'amount_money', jsonb_build_object('amount', i %% 5000, 'currency', 'SEK'))))
         WHEN 'shopify' THEN jsonb_build_object('id', i, 'total_price', (i %% 900) || '.00',
              'currency', 'SEK', 'created_at', '2027-03-01T08:00:00Z')
         ELSE jsonb_build_object('organizationUuid', 'org-' || (i %% 101),
              'messageUuid', 'msg-' || i, 'eventName', 'PurchaseCreated',
              'messageId', 'msg-' || i, 'eventId', 'ev-' || i,
              'payload', jsonb_build_object('purchaseUuid', 'pur-' || i,
                                            'amount', i %% 5000)::text,
              'timestamp', '2027-03-01T08:00:00.000Z')
       END::text, 'UTF8'),
       'not-checked', '2027-03-01T08:00:00Z', 'ev-' || i,
       CASE p WHEN 'square' THEN 'payment.updated' WHEN 'shopify' THEN 'orders/create'
              ELSE 'PurchaseCreated' END
FROM generate_series(1, %(rows)s) AS i,
     LATERAL (SELECT (ARRAY['square', 'shopify', 'zettle'])[1 + i %% 3] AS p) AS provider
"""


# --- the data ----------------------------------------------------------------------------------


def build(admin_url: str, rows: int, days: int) -> str:
    """A throwaway database with `rows` attempts and the recommended indexes."""
    from blocks.pos.deliveries import WebhookDeliveries, inspect

    sys.path.insert(0, str(ROOT / "tests"))
    from support.pg import create_database
    from support.webhook_table import create_deliveries_table

    url = create_database(admin_url)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        create_deliveries_table(conn)
        conn.execute(
            FILL.format(nth=EVERY_NTH_FAILS).encode(),
            {"at": AT, "span": timedelta(days=days), "rows": rows},
        )
        shape = inspect(conn, WebhookDeliveries(create_indexes=True))
        conn.execute("VACUUM ANALYZE webhook_delivery_attempts")
    size = _one(url, "SELECT pg_total_relation_size('webhook_delivery_attempts')")
    print(
        f"{rows} attempts over {days} days ({rows // EVERY_NTH_FAILS} failed), "
        f"{size / 1e6:.0f} MB with {len(shape.created)} indexes made, in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return url


def _one(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return row[0]


# --- 1. the delivery health ------------------------------------------------------------------


def health(url: str, rounds: int) -> tuple[float, float, str]:
    """Medians of the flow's aggregate and of psql's, and the plan PostgreSQL chose."""
    from blocks.pos.deliveries import WebhookDeliveries, delivery_health, health_query

    block = WebhookDeliveries()
    with psycopg.connect(url) as conn:
        statement = health_query(block).as_string(conn)
        literal = statement.replace("%(at)s", f"'{AT.isoformat()}'::timestamptz")
        explained = conn.execute(f"EXPLAIN (ANALYZE) {literal}".encode()).fetchall()
        plan = "\n".join(r[0] for r in explained)
    ours, raw = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        with psycopg.connect(url) as conn:
            counts = delivery_health(conn, block, AT)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-d", url, "-c", literal],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        raw.append(time.perf_counter() - start)
        theirs = {tuple(line.split("|")) for line in out.splitlines() if line}
        mine = {(c.provider, c.status, str(c.last_hour), str(c.last_day)) for c in counts}
        if mine != theirs:
            raise SystemExit(f"the aggregates differ: flow {mine}, psql {theirs}")
    return statistics.median(ours), statistics.median(raw), plan


# --- 2. the replay ------------------------------------------------------------------------------


def start_receiver(latency: float) -> tuple[subprocess.Popen[str], str]:
    """The fake gateway receiver in its own process; its base URL once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.webhook_receiver", "--port", "0",
         "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT / "tests")},
    )  # fmt: skip
    assert proc.stdout
    url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
    for _ in range(100):
        try:
            receiver_stats(url)
            return proc, url
        except OSError:
            time.sleep(0.05)  # the server binds before it listens
    raise SystemExit("the receiver did not start")


def receiver_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/webhooks/_stats", timeout=5) as answer:
        stats: dict[str, int] = json.load(answer)
    return stats


def worker(platform_url: str, ops_url: str, receiver_url: str, lookback: int) -> None:
    """Run the flow once, replaying; print its time, what it replayed and peak RSS."""
    sys.path.insert(0, str(ROOT / "tests"))
    from prefect.logging import disable_run_logger
    from support.webhook_receiver import (
        SHOPIFY_WEBHOOK_SECRET,
        SQUARE_SIGNATURE_KEY,
        ZETTLE_SIGNING_KEY,
    )

    from flows.webhook_reconciliation import webhook_reconciliation

    with prefect_api(), disable_run_logger():
        names = save_blocks(
            {
                "DATABASE_URL": platform_url,
                "OPS_DATABASE_URL": ops_url,
                "POS_WEBHOOK_URL": f"{receiver_url}/webhooks",
                "SQUARE_WEBHOOK_SIGNATURE_KEY": SQUARE_SIGNATURE_KEY,
                "SHOPIFY_WEBHOOK_SECRET": SHOPIFY_WEBHOOK_SECRET,
                "ZETTLE_WEBHOOK_SIGNING_KEY": ZETTLE_SIGNING_KEY,
            }
        )
        start = time.perf_counter()
        result = webhook_reconciliation(
            as_of=AT,
            dry_run=False,
            lookback_hours=lookback,
            deliveries_block=names["webhook-deliveries"],
            providers_block=names["pos-providers"],
            tokens_block=f"bench-{os.getpid()}-pos-tokens",
            gateway_block=names["platform-gateway"],
            database_block=names["platform-postgres"],
            ops_database_block=names["ops-postgres"],
            alert_channels_block=names["alert-channels"],
        )
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "replayed": sum(result.replayed.values()),
                "failed": sum(result.replay_failed.values()),
                "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        ),
        flush=True,
    )


def flow_replay(
    admin_url: str, platform_url: str, replays: int, lookback: int, latency: float
) -> dict[str, Any]:
    """One flow run in a fresh process, with a fresh ops catalog and receiver."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.pg import create_database

    ops_url = create_database(admin_url)
    receiver, receiver_url = start_receiver(latency)
    try:
        with tempfile.TemporaryDirectory(prefix="fo-bench-") as tmp:
            env = os.environ | {
                "PREFECT_HOME": f"{tmp}/prefect",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
            out = subprocess.run(
                [sys.executable, __file__, "--worker", platform_url, ops_url, receiver_url,
                 str(lookback)],
                check=True, capture_output=True, text=True, env=env,
            ).stdout  # fmt: skip
        answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        answer["receiver"] = receiver_stats(receiver_url)
        return answer
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
        drop_database(admin_url, ops_url)


def raw_replay(
    platform_url: str, lookback: int, concurrency: int, latency: float
) -> dict[str, Any]:
    """The same events read in one query, signed and posted by a bare aiohttp loop."""
    import aiohttp

    from blocks.pos.signatures import REPLAY_HEADER, replay_headers, signed_bytes

    sys.path.insert(0, str(ROOT / "tests"))
    from support.webhook_receiver import (
        SHOPIFY_WEBHOOK_SECRET,
        SQUARE_SIGNATURE_KEY,
        ZETTLE_SIGNING_KEY,
    )

    keys = {
        "square": SQUARE_SIGNATURE_KEY,
        "shopify": SHOPIFY_WEBHOOK_SECRET,
        "zettle": ZETTLE_SIGNING_KEY,
    }
    receiver, url = start_receiver(latency)
    try:
        start = time.perf_counter()
        with psycopg.connect(platform_url) as conn:
            rows = conn.execute(
                "SELECT provider, event_id, raw_body FROM webhook_delivery_attempts "
                "WHERE status = 'failed' AND created_at > %s AND created_at <= %s",
                (AT - timedelta(hours=lookback), AT),
            ).fetchall()

        async def send_all() -> int:
            todo = iter(rows)
            ok = 0
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def work() -> None:
                    nonlocal ok
                    for provider, event_id, body in todo:
                        signed = signed_bytes(provider, body, f"{url}/webhooks/square")
                        headers = replay_headers(
                            provider, keys[provider], signed, event_id=event_id, attempt=1
                        )
                        headers[REPLAY_HEADER] = "1"
                        async with session.post(
                            f"{url}/webhooks/{provider}", data=body, headers=headers
                        ) as answer:
                            await answer.read()
                            ok += answer.status == 200

                await asyncio.gather(*(work() for _ in range(concurrency)))
            return ok

        ok = asyncio.run(send_all())
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "sent": len(rows), "ok": ok, "receiver": receiver_stats(url)}
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--replays", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8, help="the block's default")
    parser.add_argument("--max-ratio", type=float, default=1.5)
    parser.add_argument("--max-rss-growth-mb", type=float, default=30.0)
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        platform_url, ops_url, receiver_url, lookback = args.worker
        worker(platform_url, ops_url, receiver_url, int(lookback))
        return 0

    url = build(args.admin_url, args.rows, args.days)
    try:
        return measure(args, url)
    finally:
        drop_database(args.admin_url, url)


def lookback_for(replays: int, rows: int, days: int) -> int:
    """Hours back from AT that hold at least `replays` failed events."""
    failed_per_hour = rows / EVERY_NTH_FAILS / (days * 24)
    # One hour more: the window's edges may fall just short of the count.
    return min(days * 24, math.ceil(replays / failed_per_hour) + 1)


def measure(args: argparse.Namespace, url: str) -> int:
    ours, raw, plan = health(url, args.rounds)
    ratio = ours / raw
    index_used = "webhook_delivery_attempts_created_at_idx" in plan
    executed = next((line.strip() for line in plan.splitlines() if "Execution" in line), "")
    print(
        f"delivery health (last hour and 24 h by provider and status), median of "
        f"{args.rounds}: flow {ours * 1000:.1f} ms, psql -c {raw * 1000:.1f} ms, ratio "
        f"{ratio:.2f} (floor {args.max_ratio}); the time index used: {index_used}; "
        f"in the server: {executed}",
        flush=True,
    )
    latency = args.latency_ms / 1000
    sizes = sorted({max(1, args.replays // 10), args.replays})
    flows: dict[int, dict[str, Any]] = {}
    for size in sizes:
        lookback = lookback_for(size, args.rows, args.days)
        flows[size] = flow_replay(args.admin_url, url, size, lookback, latency)
        done = flows[size]
        print(
            f"flow replay of the last {lookback} h: {done['replayed']} events in "
            f"{done['seconds']:.2f} s ({done['replayed'] / done['seconds']:.0f}/s), peak RSS "
            f"{done['peak_rss_kib'] / 1024:.0f} MB; receiver accepted "
            f"{done['receiver']['accepted']} of {done['receiver']['received']}",
            flush=True,
        )
    biggest = flows[sizes[-1]]
    lookback = lookback_for(sizes[-1], args.rows, args.days)
    bare = raw_replay(url, lookback, args.concurrency, latency)
    flow_rate = biggest["replayed"] / biggest["seconds"]
    raw_rate = bare["sent"] / bare["seconds"]
    ideal = bare["sent"] * latency / args.concurrency
    print(
        f"raw aiohttp sender: {bare['sent']} events in {bare['seconds']:.2f} s "
        f"({raw_rate:.0f}/s; ideal at {args.concurrency} in flight and {args.latency_ms:g} ms "
        f"{ideal:.2f} s); flow/raw time ratio {biggest['seconds'] / bare['seconds']:.2f}",
        flush=True,
    )
    growth = (biggest["peak_rss_kib"] - flows[sizes[0]]["peak_rss_kib"]) / 1024
    print(
        f"peak RSS {flows[sizes[0]]['peak_rss_kib'] / 1024:.0f} MB at {sizes[0]} events, "
        f"{biggest['peak_rss_kib'] / 1024:.0f} MB at {sizes[-1]}: growth {growth:+.0f} MB "
        f"(limit {args.max_rss_growth_mb:g}); flow {flow_rate:.0f}/s vs raw {raw_rate:.0f}/s",
        flush=True,
    )
    problems = []
    if ratio > args.max_ratio:
        problems.append(f"aggregate ratio {ratio:.2f} above {args.max_ratio}")
    for size, done in flows.items():
        if done["failed"] or done["receiver"]["accepted"] != done["replayed"]:
            problems.append(f"at {size}: not every replay was accepted ({done})")
    if growth > args.max_rss_growth_mb:
        problems.append(f"peak RSS grew {growth:.0f} MB with the number of events")
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
