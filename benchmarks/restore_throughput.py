"""Benchmark: the database-restore flow against raw `pg_restore -j N`, in one run.

On the same platform-shaped database as the backup benchmark (--size-mb, built once),
one `database-backup` run makes the dump; then, alternating, the `database-restore`
flow restores it into a fresh database and raw `createdb` + `pg_restore --jobs N`
restores the same file into another, --rounds times. Prints the medians, the ratio
flow/raw and the flow process's peak RSS.

    .venv/bin/python benchmarks/restore_throughput.py --size-mb 1024 --rounds 3 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
FLOW_TARGET = "fo_bench_restore_flow"
RAW_TARGET = "fo_bench_restore_raw"


def worker(database_url: str, store: Path, jobs: int) -> None:
    """Back up once, then restore once per line on stdin, answering with JSON lines."""
    from prefect.logging import disable_run_logger

    from flows.database_backup import database_backup
    from flows.database_restore import database_restore

    with prefect_api(), disable_run_logger():
        names = save_blocks({"DATABASE_URL": database_url, "BACKUP_URL": f"file://{store}"})
        backup = database_backup(
            database_block=names["platform-postgres"],
            storage_block=names["backup-storage"],
            ops_database_block=names["ops-postgres"],
            alert_channels_block=names["alert-channels"],
        )
        dump = backup.locations[0].removeprefix("file://")
        print(json.dumps({"dump": dump, "backup_id": backup.backup_id}), flush=True)
        for _line in sys.stdin:
            start = time.perf_counter()
            database_restore(
                backup_id=backup.backup_id,
                target_database=FLOW_TARGET,
                jobs=jobs,
                database_block=names["platform-postgres"],
                storage_block=names["backup-storage"],
            )
            seconds = time.perf_counter() - start
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(json.dumps({"seconds": seconds, "peak_rss_kib": peak_kib}), flush=True)


def raw_restore(pg_restore: str, admin_url: str, dump: str, jobs: int) -> float:
    """Time `CREATE DATABASE` + `pg_restore --jobs N` of the same file."""
    target = admin_url.rsplit("/", 1)[0] + f"/{RAW_TARGET}"
    start = time.perf_counter()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{RAW_TARGET}"')
    subprocess.run(
        [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", f"--jobs={jobs}",
         "--dbname", target, dump],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument(
        "--throwaway", action="store_true", help="build a fresh database and drop it after"
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]))
        return 0

    print(f"building/reusing a ~{args.size_mb} MB platform database …", flush=True)
    name = f"fo_bench_tmp_{os.getpid()}" if args.throwaway else None
    url = ensure_database(args.admin_url, args.size_mb, name)
    try:
        return measure(args, url)
    finally:
        for target in (FLOW_TARGET, RAW_TARGET):
            drop_database(args.admin_url, args.admin_url.rsplit("/", 1)[0] + f"/{target}")
        if args.throwaway:
            drop_database(args.admin_url, url)


def measure(args: argparse.Namespace, url: str) -> int:
    """Alternate flow and raw restores of one dump; print the comparison."""
    from blocks.postgres.client import find_pg_tool

    with psycopg.connect(url) as conn:
        pg_restore = find_pg_tool("pg_restore", conn.info.server_version // 10000)
    print(f"database size: {database_size(url) / 1e6:.0f} MB", flush=True)
    base = args.admin_url.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="fo-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        env = os.environ | {
            "PREFECT_HOME": f"{tmp}/prefect",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", url, f"{tmp}/store", str(args.jobs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin and proc.stdout
        made = json.loads(proc.stdout.readline())
        flow_times, raw_times, peak_kib = [], [], 0
        for round_no in range(1, args.rounds + 1):
            for target in (FLOW_TARGET, RAW_TARGET):
                drop_database(args.admin_url, f"{base}/{target}")
            proc.stdin.write("run\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            flow_times.append(answer["seconds"])
            peak_kib = max(peak_kib, answer["peak_rss_kib"])
            raw_times.append(raw_restore(pg_restore, args.admin_url, made["dump"], args.jobs))
            print(
                f"round {round_no}: flow {flow_times[-1]:.2f} s, "
                f"raw pg_restore -j {args.jobs} {raw_times[-1]:.2f} s",
                flush=True,
            )
        proc.stdin.close()
        proc.wait(timeout=120)
    flow_median, raw_median = statistics.median(flow_times), statistics.median(raw_times)
    print(f"flow median:        {flow_median:.2f} s")
    print(f"raw pg_restore median: {raw_median:.2f} s")
    print(f"ratio flow/raw:     {flow_median / raw_median:.3f}  (target <= 1.15)")
    print(f"flow peak RSS:      {peak_kib / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
