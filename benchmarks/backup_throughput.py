"""Benchmark: the database-backup flow against raw `pg_dump -Fc -f FILE`, in one run.

Builds (once) a platform-shaped database of --size-mb, then alternates: one run of the
`database-backup` flow to a local store, one raw `pg_dump --format=custom -f FILE` of
the same database, --rounds times. Prints the medians, the ratio flow/raw, and the
peak RSS of the process that ran the flow.

    .venv/bin/python benchmarks/backup_throughput.py --size-mb 1024 --rounds 3

The flow runs in a worker process under a throwaway Prefect API (started before timing),
so the flow's own time and memory are measured, not the API server's start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _platform_data import database_size, drop_database, ensure_database  # noqa: E402
from _prefect_api import prefect_api, save_blocks  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"


def worker(database_url: str, store: Path) -> None:
    """Run the flow once per line on stdin; answer each with a JSON line."""
    from prefect.logging import disable_run_logger

    from flows.database_backup import database_backup

    with prefect_api(), disable_run_logger():
        names = save_blocks({"DATABASE_URL": database_url, "BACKUP_URL": f"file://{store}"})
        print(json.dumps({"ready": True}), flush=True)
        for _line in sys.stdin:
            shutil.rmtree(store, ignore_errors=True)
            start = time.perf_counter()
            result = database_backup(
                database_block=names["platform-postgres"],
                storage_block=names["backup-storage"],
                ops_database_block=names["ops-postgres"],
                alert_channels_block=names["alert-channels"],
            )
            seconds = time.perf_counter() - start
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(
                json.dumps({"seconds": seconds, "size": result.size, "peak_rss_kib": peak_kib}),
                flush=True,
            )


def raw_pg_dump(pg_dump: str, database_url: str, target: Path) -> float:
    """Time `pg_dump --format=custom -f FILE`, the same binary the flow runs."""
    target.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(
        [pg_dump, "--format=custom", "-f", str(target), "--dbname", database_url], check=True
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument(
        "--worker", nargs=2, metavar=("DATABASE_URL", "STORE"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--throwaway", action="store_true", help="build a fresh database and drop it after"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return 0

    print(f"building/reusing a ~{args.size_mb} MB platform database …", flush=True)
    name = f"fo_bench_tmp_{os.getpid()}" if args.throwaway else None
    url = ensure_database(args.admin_url, args.size_mb, name)
    try:
        return measure(args, url)
    finally:
        if args.throwaway:
            drop_database(args.admin_url, url)


def measure(args: argparse.Namespace, url: str) -> int:
    """Alternate flow and raw runs on the database at `url`; print the comparison."""
    from blocks.postgres.client import find_pg_tool

    with psycopg.connect(url) as conn:
        pg_dump = find_pg_tool("pg_dump", conn.info.server_version // 10000)
    print(f"database size: {database_size(url) / 1e6:.0f} MB", flush=True)
    with tempfile.TemporaryDirectory(prefix="fo-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        env = os.environ | {
            "PREFECT_HOME": f"{tmp}/prefect",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", url, f"{tmp}/store"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin and proc.stdout
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        flow_times, raw_times, peak_kib, sizes = [], [], 0, []
        for round_no in range(1, args.rounds + 1):
            proc.stdin.write("run\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            flow_times.append(answer["seconds"])
            peak_kib = max(peak_kib, answer["peak_rss_kib"])
            raw_file = Path(tmp) / "raw.dump"
            raw_times.append(raw_pg_dump(pg_dump, url, raw_file))
            sizes.append((answer["size"], raw_file.stat().st_size))
            raw_file.unlink()
            print(
                f"round {round_no}: flow {flow_times[-1]:.2f} s, raw pg_dump {raw_times[-1]:.2f} s"
                f" (dump {answer['size'] / 1e6:.0f} MB)",
                flush=True,
            )
        proc.stdin.close()
        proc.wait(timeout=120)
    flow_median, raw_median = statistics.median(flow_times), statistics.median(raw_times)
    print(f"flow median:      {flow_median:.2f} s")
    print(f"raw pg_dump median: {raw_median:.2f} s")
    print(f"ratio flow/raw:   {flow_median / raw_median:.3f}  (target <= 1.15)")
    print(f"flow peak RSS:    {peak_kib / 1024:.0f} MB  (target <= 300 MB)")
    print(f"dump sizes (flow, raw): {sizes[-1][0]} / {sizes[-1][1]} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
