"""Benchmark: every merchant's POS connection checked against providers 50 ms away,
within their in-flight limits, against the ideal time for that many requests.

Fills a throwaway PostgreSQL database's `pos_connections` table with --connections
active merchant connections, about a third per provider (and a twentieth as many
paused, errored or revoked ones, which must not be read). The POS fake
(`tests/support/pos_fakes.py`) knows every merchant's token: one in fifty revoked, one
in twenty expiring in 3 days, the rest in 90. It runs in a process of its own, answers
each request after --latency-ms and answers 429 to any request beyond --concurrency in
flight per provider, as a provider's rate limit does.

A third process reads the connections with `read_connections` (timed apart, not in the
wall time) and checks them all with `check_all`, at --concurrency per provider. Prints
the sweep's wall time, the ideal one (connections x latency / (3 x concurrency)), their
ratio, requests per second, the sweeping process's peak RSS and the requests the fake
refused as over its limit. Exits 1 when the ratio is above --max-ratio (1.3), the peak
RSS above --max-rss-mb (300), any request went over the limit, or a check's status is
not what the fake was told.

    .venv/bin/python benchmarks/pos_sweep.py --connections 10000 --concurrency 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _platform_data import drop_database  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
PROVIDERS = ("square", "shopify", "zettle")
SCHEMA = """
CREATE TABLE pos_connections (
    id                    bigserial PRIMARY KEY,
    business_id           bigint NOT NULL,
    provider              text NOT NULL CHECK (provider IN ('square', 'shopify', 'zettle')),
    external_location_id  text NOT NULL,
    status                text NOT NULL
                          CHECK (status IN ('active', 'paused', 'error', 'revoked')),
    config                jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (provider, external_location_id)
);
"""
INACTIVE = ("paused", "error", "revoked")


# --- the fake's process ---------------------------------------------------------------------


def serve_fake() -> None:
    """Serve the POS fake as the first stdin line says; print its URLs, then its counts
    when asked (a `stats` line); stop at the end of stdin."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.pos_fakes import MerchantToken, PosFake

    setup = json.loads(sys.stdin.readline())
    with PosFake() as fake:
        fake.latency_seconds = dict.fromkeys(PROVIDERS, setup["latency"])
        fake.in_flight_limit = setup["limit"]
        fake.register_merchants(
            {token: MerchantToken(*merchant) for token, merchant in setup["merchants"].items()}
        )
        env = fake.env()
        paths = {
            "square": "/square/oauth2/token/status",
            "shopify": "/shopify/admin/api/",
            "zettle": "/zettle-oauth/users/me",
        }
        print(json.dumps({"env": env}), flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                stats = {
                    "over_limit": fake.over_limit,
                    "max_in_flight": fake.max_in_flight,
                    "requests": {p: len(fake.requests(path)) for p, path in paths.items()},
                    "cpu_seconds": time.process_time(),
                }
                print(json.dumps(stats), flush=True)


# --- the sweeping process -------------------------------------------------------------------


def sweep() -> None:
    """Read the connections and check them all as the first stdin line says; print
    the timings, the statuses and this process's peak RSS."""
    setup = json.loads(sys.stdin.readline())
    from blocks.pos import MERCHANT_CONNECTIONS_QUERY, PosProviders
    from blocks.pos.merchants import check_all, read_connections
    from blocks.postgres import PostgresDatabase
    from blocks.postgres.client import engine_for

    imported_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    env = setup["env"]
    providers = PosProviders(
        square_api_url=env["SQUARE_API_URL"],
        shopify_api_url=env["SHOPIFY_API_URL"],
        zettle_oauth_url=env["ZETTLE_OAUTH_URL"],
        merchant_concurrency=setup["concurrency"],
    )
    started = time.perf_counter()
    engine = engine_for(PostgresDatabase.from_url(setup["db_url"]))
    try:
        connections = read_connections(engine, MERCHANT_CONNECTIONS_QUERY)
    finally:
        engine.dispose()
    read_seconds = time.perf_counter() - started

    cpu = time.process_time()
    started = time.perf_counter()
    checks = check_all(providers, connections, datetime.fromisoformat(setup["now"]))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    statuses = Counter(f"{c.provider} {c.status} {c.http_status}" for c in checks)
    print(
        json.dumps(
            {
                "read_seconds": read_seconds,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "checked": len(checks),
                "attempts": sum(c.attempts for c in checks),
                "statuses": statuses,
                "imported_kib": imported_kib,
                "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        ),
        flush=True,
    )


# --- the run --------------------------------------------------------------------------------


def fill(db_url: str, count: int, now: datetime) -> tuple[dict[str, list[Any]], Counter[str]]:
    """`count` active connections and a twentieth as many others; the merchants as the
    fake must know them, and the statuses their checks must have."""
    merchants: dict[str, list[Any]] = {}
    expected: Counter[str] = Counter()
    soon, far = now + timedelta(days=3), now + timedelta(days=90)
    rows = []
    for n in range(count + count // 20):
        provider = PROVIDERS[n % 3]
        token = f"{provider[:2]}-{secrets.token_urlsafe(24)}"
        revoked, expires = n % 50 == 7, soon if n % 20 == 3 else far
        status = "active" if n < count else INACTIVE[n % 3]
        config: dict[str, Any] = {"access_token": token, "currency": "SEK"}
        if provider == "shopify":
            config["shop_domain"] = f"kafe-{n}.myshopify.com"
        if provider != "square":  # Square's expiry is in its own answer
            config["token_expires_at"] = expires.isoformat()
        rows.append((1 + n // 2, provider, f"{provider[:2].upper()}-LOC-{n:06d}", status, config))
        if status != "active":
            continue
        merchants[token] = [provider, expires.isoformat(), revoked]
        verdict = "failing 401" if revoked else ("at_risk 200" if expires == soon else "ok 200")
        expected[f"{provider} {verdict}"] += 1
    with psycopg.connect(db_url) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cur:
            columns = "business_id, provider, external_location_id, status, config"
            with cur.copy(f"COPY pos_connections ({columns}) FROM STDIN") as copy:
                for business, provider, location, status, config in rows:
                    copy.write_row((business, provider, location, status, Jsonb(config)))
    return merchants, expected


def child(mode: str) -> subprocess.Popen[str]:
    """This script in `mode` (--serve-fake or --sweep), talking JSON lines."""
    return subprocess.Popen(
        [sys.executable, __file__, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )


def talk(proc: subprocess.Popen[str], message: Any) -> dict[str, Any]:
    """Send one JSON line (or a bare word); the answer's JSON line."""
    assert proc.stdin and proc.stdout
    proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args[-1]} exited with {proc.wait()} without answering")
    answer: dict[str, Any] = json.loads(line)
    return answer


def measure(args: argparse.Namespace, db_url: str) -> int:
    """Fill the database, serve the fake, sweep once; print the figures, 1 if a floor
    or a check was missed."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    merchants, expected = fill(db_url, args.connections, now)
    print(f"filled pos_connections in {time.perf_counter() - started:.1f} s", flush=True)
    latency = args.latency_ms / 1000
    fake = child("--serve-fake")
    try:
        ready = talk(fake, {"latency": latency, "limit": args.concurrency, "merchants": merchants})
        sweeper = child("--sweep")
        try:
            result = talk(
                sweeper,
                {
                    "env": ready["env"],
                    "db_url": db_url,
                    "concurrency": args.concurrency,
                    "now": now.isoformat(),
                },
            )
        finally:
            if sweeper.stdin:
                sweeper.stdin.close()
            sweeper.wait(timeout=60)
        served = talk(fake, "stats")
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(timeout=60)

    count = args.connections
    per_provider = Counter(PROVIDERS[n % 3] for n in range(count))
    ideal = count * latency / (3 * args.concurrency)
    ratio = result["seconds"] / ideal
    peak_mb = result["peak_rss_kib"] / 1024
    over = sum(served["over_limit"].values())
    most = ", ".join(f"{p} {served['max_in_flight'][p]}" for p in PROVIDERS)
    statuses = Counter(result["statuses"])
    by_status = Counter[str]()
    for key, n in statuses.items():
        _, status, http = key.split()
        by_status[f"{status} ({http})" if status == "failing" else status] += n
    print(
        f"connections:      {count} ("
        + ", ".join(f"{per_provider[p]} {p}" for p in PROVIDERS)
        + f"), {args.concurrency} in flight per provider, {args.latency_ms:g} ms per answer"
    )
    print(f"read_connections: {result['read_seconds']:.2f} s (apart, not in the wall time)")
    print(f"sweep wall time:  {result['seconds']:.2f} s")
    print(f"ideal:            {ideal:.2f} s ({count} x {latency:g} s / (3 x {args.concurrency}))")
    print(f"ratio wall/ideal: {ratio:.3f}  (floor <= {args.max_ratio:g}, aim <= 1.1)")
    print(f"requests/s:       {result['attempts'] / result['seconds']:.0f}")
    print(
        f"sweep CPU:        {result['cpu_seconds']:.2f} s "
        f"({100 * result['cpu_seconds'] / result['seconds']:.0f} % of one core; "
        f"the fake's process {served['cpu_seconds']:.2f} s)"
    )
    print(
        f"sweep peak RSS:   {peak_mb:.0f} MB ({result['imported_kib'] / 1024:.0f} MB after "
        f"its imports; floor <= {args.max_rss_mb} MB)"
    )
    print(f"over limit:       {over} (most in flight: {most})")
    print("statuses:         " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))

    problems = []
    if ratio > args.max_ratio:
        problems.append(f"the ratio {ratio:.3f} is above {args.max_ratio:g}")
    if peak_mb > args.max_rss_mb:
        problems.append(f"the peak RSS {peak_mb:.0f} MB is above {args.max_rss_mb} MB")
    if over:
        problems.append(f"{over} requests went over the providers' in-flight limit")
    if served["requests"] != dict(per_provider) or result["attempts"] != count:
        problems.append(f"each connection was not asked exactly once: {served['requests']}")
    if statuses != expected:
        problems.append(f"the statuses are not the ones expected: {dict(expected)}")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10, help="in flight per provider")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the fake's per answer")
    parser.add_argument("--max-ratio", type=float, default=1.3, help="floor of wall/ideal")
    parser.add_argument("--max-rss-mb", type=int, default=300, help="floor of the peak RSS")
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sweep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake()
        return 0
    if args.sweep:
        sweep()
        return 0

    name = f"fo_bench_pos_{secrets.token_hex(4)}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        return measure(args, db_url)
    finally:
        drop_database(args.admin_url, db_url)


if __name__ == "__main__":
    sys.exit(main())
