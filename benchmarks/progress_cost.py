"""Benchmark: what the progress bars cost a backup and a restore, as a share of their time.

A bar costs in two places: the call made for every chunk read (1 MiB for a dump, one
batch for a Redis restore), which only compares clocks until an update is due, and the
update itself, one API call every UPDATE_SECONDS (a dump) or, for a database restore,
a size query plus an API call every PROGRESS_SECONDS. This measures each against the
Prefect API and PostgreSQL, inside a flow run as the steps do, and prints the share of
a step's time they take at --mb-per-s (the issue's limit: 1 %).

    .venv/bin/python benchmarks/progress_cost.py --mb-per-s 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prefect_api import prefect_api  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per chunk call, per API update and per size query, in one flow run."""
    from prefect import flow

    from blocks.postgres import PostgresDatabase
    from blocks.postgres.client import database_size
    from tasks import StepProgress

    @flow(name="progress-cost")
    def progress_cost() -> dict[str, float]:
        bar = StepProgress("progress cost", 10**12)
        started = time.perf_counter()
        for done in range(args.chunk_calls):
            bar(done)
        per_chunk = (time.perf_counter() - started) / args.chunk_calls

        forced = StepProgress("progress cost, every call", 10**12, every=0)
        updates = []
        for done in range(args.updates):
            started = time.perf_counter()
            forced(done)
            updates.append(time.perf_counter() - started)

        db = PostgresDatabase.from_url(args.admin_url)
        queries = []
        for _ in range(args.updates):
            started = time.perf_counter()
            database_size(db)
            queries.append(time.perf_counter() - started)
        return {
            "per_chunk": per_chunk,
            "per_update": statistics.median(updates),
            "per_update_p95": sorted(updates)[int(len(updates) * 0.95) - 1],
            "per_size_query": statistics.median(queries),
        }

    return progress_cost()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb-per-s", type=float, default=200.0, help="the step's throughput")
    parser.add_argument("--chunk-calls", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    args = parser.parse_args()

    from blocks.postgres.restore import PROGRESS_SECONDS
    from blocks.storage.stores import CHUNK_SIZE
    from tasks import UPDATE_SECONDS

    with prefect_api():
        cost = measure(args)
    chunks_per_second = args.mb_per_s * 1e6 / CHUNK_SIZE
    dump_share = chunks_per_second * cost["per_chunk"] + cost["per_update"] / UPDATE_SECONDS
    restore_share = (cost["per_update"] + cost["per_size_query"]) / PROGRESS_SECONDS
    print(f"per chunk call:   {cost['per_chunk'] * 1e9:.0f} ns")
    print(
        f"per API update:   {cost['per_update'] * 1e3:.1f} ms "
        f"(p95 {cost['per_update_p95'] * 1e3:.1f} ms)"
    )
    print(f"per size query:   {cost['per_size_query'] * 1e3:.1f} ms")
    print(
        f"dump at {args.mb_per_s:.0f} MB/s:  {100 * dump_share:.3f} % of its time  (target <= 1 %)"
    )
    print(f"database restore: {100 * restore_share:.3f} % of its time  (target <= 1 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
