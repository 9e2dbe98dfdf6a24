"""A small run of each benchmark, so a broken benchmark fails a test, not a release.

The runs report to the session's Prefect server (`PREFECT_API_URL`) instead of starting
a throwaway one each.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", ["backup_throughput.py", "restore_throughput.py"])
def test_benchmark_runs_and_prints_its_ratio(
    script: str, pg_admin_url: str, tmp_path: Path, prefect_api_url: str
) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--size-mb",
            "4",
            "--rounds",
            "1",
            "--throwaway",
            "--admin-url",
            pg_admin_url,
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env=os.environ | {"BENCH_DIR": str(tmp_path), "PREFECT_API_URL": prefect_api_url},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ratio = re.search(r"ratio flow/raw:\s+([\d.]+)", out.stdout)
    rss = re.search(r"flow peak RSS:\s+(\d+) MB", out.stdout)
    assert ratio and float(ratio.group(1)) > 0, out.stdout
    assert rss and int(rss.group(1)) > 0, out.stdout
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone


@pytest.mark.timeout(300)
def test_redis_snapshot_benchmark_runs_and_prints_its_ratios(
    pg_admin_url: str, tmp_path: Path, prefect_api_url: str
) -> None:
    """Both methods and the raw tool run once on 2000 keys; nothing is left behind."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "redis_snapshot.py"),
            "--keys",
            "2000",
            "--rounds",
            "1",
            "--admin-url",
            pg_admin_url,
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env=os.environ | {"BENCH_DIR": str(tmp_path), "PREFECT_API_URL": prefect_api_url},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for method in ("rdb", "logical"):
        ratio = re.search(rf"ratio {method}/raw:\s+([\d.]+)", out.stdout)
        rss = re.search(rf"{method} peak RSS:\s+(\d+) MB", out.stdout)
        assert ratio and float(ratio.group(1)) > 0, out.stdout
        assert rss and int(rss.group(1)) > 0, out.stdout
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone


@pytest.mark.timeout(120)
def test_progress_cost_benchmark_prints_both_shares(
    pg_admin_url: str, prefect_api_url: str
) -> None:
    """A short run: every figure printed, both shares a percentage."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "progress_cost.py"),
            "--chunk-calls",
            "1000",
            "--updates",
            "3",
            "--admin-url",
            pg_admin_url,
        ],
        capture_output=True,
        text=True,
        timeout=100,
        env=os.environ | {"PREFECT_API_URL": prefect_api_url},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for figure in ("per chunk call", "per API update", "per size query"):
        assert re.search(rf"{figure}:\s+[\d.]+ (ns|ms)", out.stdout), out.stdout
    for step in (r"dump at 200 MB/s", "database restore"):
        share = re.search(rf"{step}:\s+([\d.]+) % of its time", out.stdout)
        assert share and 0 < float(share.group(1)) < 100, out.stdout


@pytest.mark.timeout(120)
def test_pos_sweep_benchmark_prints_its_figures(pg_admin_url: str) -> None:
    """300 connections: every figure printed, none over the fake's in-flight limit, and
    the run's own checks (each connection asked once, every status as planted) pass.

    The ratio's floor is loosened: the sweep's fixed start-up (a TLS context, the first
    connections) is a large share of half a second, and other tests share the CPU."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "pos_sweep.py"),
            "--connections",
            "300",
            "--max-ratio",
            "3",
            "--admin-url",
            pg_admin_url,
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ratio = re.search(r"ratio wall/ideal:\s+([\d.]+)", out.stdout)
    rss = re.search(r"sweep peak RSS:\s+(\d+) MB", out.stdout)
    rate = re.search(r"requests/s:\s+(\d+)", out.stdout)
    assert ratio and 1 <= float(ratio.group(1)) <= 3, out.stdout
    assert rss and 0 < int(rss.group(1)) <= 300, out.stdout
    assert rate and int(rate.group(1)) > 0, out.stdout
    assert re.search(r"over limit:\s+0 ", out.stdout), out.stdout


def test_webhook_benchmark_prints_its_figures(pg_admin_url: str, prefect_api_url: str) -> None:
    """20,000 attempts and 100 replays: every figure printed, each replay accepted by the
    receiver's signature check, both aggregates counting the same (the run checks it)."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "webhook_reconciliation.py"),
            "--rows",
            "20000",
            "--replays",
            "100",
            "--rounds",
            "1",
            "--latency-ms",
            "1",
            "--admin-url",
            pg_admin_url,
        ],
        capture_output=True,
        text=True,
        timeout=250,
        check=False,
        env=os.environ | {"PREFECT_API_URL": prefect_api_url},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ratio = re.search(r"psql -c [\d.]+ ms, ratio ([\d.]+)", out.stdout)
    assert ratio and float(ratio.group(1)) > 0, out.stdout
    assert "the time index used: True" in out.stdout, out.stdout
    replayed = re.findall(r"flow replay of the last \d+ h: (\d+) events", out.stdout)
    assert [int(n) >= 10 for n in replayed] == [True, True], out.stdout
    accepted = re.findall(r"receiver accepted (\d+) of (\d+)", out.stdout)
    assert accepted and all(a == b for a, b in accepted), out.stdout
    assert re.search(r"raw aiohttp sender: \d+ events", out.stdout), out.stdout
