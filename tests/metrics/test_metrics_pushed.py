"""What the flows push to a real Pushgateway, scraped as Prometheus scrapes it: one run
each of database-backup, redis-snapshot, backup-verify, alert-escalation,
pos-health-sweep and webhook-reconciliation against real PostgreSQL, Redis and the
gateway's fake, then `GET /metrics` parsed by prometheus_client. The dashboard and the
alerting rules are checked against the names those runs really pushed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.samples import Sample
from support import pg
from support.gateway_fake import GatewayFake
from support.platform_schema import POS_SWEEP_TABLES_SQL, seed_platform
from support.promql import dashboard, metric_names, panel_expressions, rule_expressions
from support.pushgateway import Pushgateway
from support.redis_server import redis_server
from support.webhook_table import create_deliveries_table

from blocks import PostgresDatabase
from blocks.catalog import backups, opened, pos_health
from blocks.catalog.pos_health import SERVICE, Check
from blocks.metrics import METRICS
from flows.alerting import alert_escalation
from flows.backup_verify import RTO_SECONDS, backup_verify
from flows.database_backup import database_backup
from flows.pos_health_sweep import pos_health_sweep
from flows.redis_snapshot import redis_snapshot
from flows.webhook_reconciliation import webhook_reconciliation
from policy import STOCKHOLM

# The Pushgateway is this module's: its tests go to one xdist worker, which runs the
# flows once for all of them.
pytestmark = pytest.mark.xdist_group("metrics-pushed")

# A Wednesday in March, in business hours but not at peak: the POS sweep's moment.
MORNING = datetime(2027, 3, 10, 9, 0, tzinfo=STOCKHOLM)
BLOCKS = ("platform-postgres", "ops-postgres", "backup-storage", "metrics-pushgateway")


@dataclass
class Pushed:
    """What the module's flow runs pushed, and what they did to compare it with."""

    samples: list[Sample]
    backup: Any
    backup_record: dict[str, Any]
    manifest: dict[str, Any]
    snapshot_record: dict[str, Any]
    drill: Any
    drill_record: dict[str, Any]
    drill_window: tuple[float, float]
    scraped_at: float

    def of(self, job: str) -> list[Sample]:
        """The samples pushed by `job`."""
        return [s for s in self.samples if s.labels["job"] == job]


def values(samples: list[Sample], name: str, *labels: str) -> dict[Any, float]:
    """The samples named `name`, by the values of `labels` (one label: the bare value)."""
    found = {}
    for sample in samples:
        if sample.name == name:
            key = tuple(sample.labels[label] for label in labels)
            found[key[0] if len(key) == 1 else key] = sample.value
    return found


def record(url: str, backup_id: str) -> dict[str, Any]:
    with opened(PostgresDatabase.from_url(url)) as engine:
        row = backups.read_record(engine, backup_id)
    assert row is not None
    return row


def insert_alerts(ops_url: str, now: datetime) -> None:
    """Alerts in every status, none due for escalation: critical 1 open, high 1
    acknowledged and 1 queued, low 1 resolved (not counted)."""
    later = now + timedelta(days=30)
    rows = [
        ("metrics:critical-open", "critical", "open", True, later, None),
        ("metrics:high-ack", "high", "acknowledged", True, None, None),
        ("metrics:high-queued", "high", "queued", False, None, later),
        ("metrics:low-resolved", "low", "resolved", True, None, None),
    ]
    with psycopg.connect(ops_url, autocommit=True) as conn:
        for key, severity, status, delivered, next_at, respond_by in rows:
            conn.execute(
                "INSERT INTO ops.alerts (dedup_key, name, severity, summary, status, "
                "raised_at, last_seen_at, period, delivered, next_escalation_at, respond_by) "
                "VALUES (%s, 'metrics-test', %s, 'A test alert', %s, %s, %s, 'business', "
                "%s, %s, %s)",
                (key, severity, status, now, now, delivered, next_at, respond_by),
            )


def insert_pos_history(ops_url: str) -> None:
    """Square's service checks before MORNING: in the last day 2 good of 3, in the last
    week and month 3 of 4. Shopify and Zettle were never checked."""
    checks = [
        Check("square", SERVICE, True, MORNING - timedelta(hours=1)),
        Check("square", SERVICE, True, MORNING - timedelta(hours=2)),
        Check("square", SERVICE, False, MORNING - timedelta(hours=3)),
        Check("square", SERVICE, True, MORNING - timedelta(days=3)),
    ]
    with opened(PostgresDatabase.from_url(ops_url)) as engine:
        pos_health.record_checks(engine, "pos-before-metrics", checks)


def insert_deliveries(url: str, now: datetime) -> None:
    """Square: 9 delivered and 1 failed in the last hour, 2 more delivered 3 hours ago;
    Shopify: 4 delivered in the last hour; Zettle: none."""
    rows = [("square", "delivered", timedelta(minutes=5 + n)) for n in range(9)]
    rows += [("square", "failed", timedelta(minutes=20))]
    rows += [("square", "delivered", timedelta(hours=3, minutes=n)) for n in range(2)]
    rows += [("shopify", "delivered", timedelta(minutes=10 + n)) for n in range(4)]
    with psycopg.connect(url, autocommit=True) as conn:
        create_deliveries_table(conn)
        for provider, status, ago in rows:
            conn.execute(
                "INSERT INTO webhook_delivery_attempts (provider, status, created_at, "
                "http_status) VALUES (%s, %s, %s, %s)",
                (provider, status, now - ago, 200 if status == "delivered" else 503),
            )


@pytest.fixture(scope="module")
def pushed(
    gateway: Pushgateway,
    save_blocks_as: Any,
    pg_admin_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pushed]:
    """Each flow run once with its metrics block pointing at the module's Pushgateway,
    then one scrape of it."""
    store = tmp_path_factory.mktemp("backups")
    with (
        pg.throwaway_database(pg_admin_url) as platform,
        pg.throwaway_database(pg_admin_url) as pos_platform,
        pg.throwaway_database(pg_admin_url) as deliveries,
        redis_server() as redis,
        GatewayFake() as platform_gateway,
    ):
        seed_platform(platform)
        env = {
            "DATABASE_URL": platform,
            "BACKUP_URL": f"file://{store}",
            "PUSHGATEWAY_URL": gateway.url,
        }
        saved = save_blocks_as(env, *BLOCKS, "alert-channels")
        metrics = saved["metrics-pushgateway"]
        common = {
            "ops_database_block": saved["ops-postgres"],
            "alert_channels_block": saved["alert-channels"],
            "metrics_block": metrics,
        }
        params = {
            "database_block": saved["platform-postgres"],
            "storage_block": saved["backup-storage"],
            **common,
        }

        backup = database_backup(**params)

        redis.client().set("metrics:key", "value")
        redis_block = save_blocks_as({"REDIS_URL": redis.url}, "platform-redis")
        snapshot = redis_snapshot(
            redis_block=redis_block["platform-redis"],
            storage_block=saved["backup-storage"],
            **common,
        )

        before = time.time()
        drill = backup_verify(**params)
        drill_window = (before, time.time())

        insert_alerts(platform, datetime.now(UTC))
        alert_escalation(**common)

        with psycopg.connect(pos_platform, autocommit=True) as conn:
            conn.execute(POS_SWEEP_TABLES_SQL)
        insert_pos_history(platform)
        pos = save_blocks_as(
            {"DATABASE_URL": pos_platform, "REDIS_URL": redis.url, **platform_gateway.env()},
            "platform-postgres",
            "platform-redis",
            "platform-gateway",
            "pos-providers",
        )
        pos_health_sweep(
            as_of=MORNING,
            providers_block=pos["pos-providers"],
            tokens_block=f"{pos['pos-providers']}-tokens",
            gateway_block=pos["platform-gateway"],
            redis_block=pos["platform-redis"],
            database_block=pos["platform-postgres"],
            **common,
        )

        now = datetime.now(UTC)
        insert_deliveries(deliveries, now)
        hooks = save_blocks_as(
            {"DATABASE_URL": deliveries},
            "platform-postgres",
            "webhook-deliveries",
            "pos-providers",
            "platform-gateway",
        )
        webhook_reconciliation(
            as_of=now,
            deliveries_block=hooks["webhook-deliveries"],
            providers_block=hooks["pos-providers"],
            tokens_block=f"{hooks['pos-providers']}-tokens",
            gateway_block=hooks["platform-gateway"],
            database_block=hooks["platform-postgres"],
            **common,
        )

        manifest_path = next(Path(store).rglob(f"{backup.backup_id}.manifest.json"))
        yield Pushed(
            samples=gateway.samples(),
            backup=backup,
            backup_record=record(platform, backup.backup_id),
            manifest=json.loads(manifest_path.read_text()),
            snapshot_record=record(platform, snapshot.backup_id),
            drill=drill,
            drill_record=record(platform, drill.backup_id),
            drill_window=drill_window,
            scraped_at=time.time(),
        )


def test_each_flow_pushes_as_its_own_job_grouped_by_deployment(pushed: Pushed) -> None:
    jobs = {s.labels["job"] for s in pushed.samples}
    assert jobs == {
        "database-backup",
        "redis-snapshot",
        "backup-verify",
        "alert-escalation",
        "pos-health-sweep",
        "webhook-reconciliation",
    }
    # Runs without a deployment (as here, or `feedback-ops run`) share the group "none".
    assert {s.labels["deployment"] for s in pushed.samples} == {"none"}
    assert {s.name for s in pushed.samples} == {m.name for m in METRICS}


def test_a_database_backup_pushes_its_age_size_and_duration(pushed: Pushed) -> None:
    samples = pushed.of("database-backup")
    row = pushed.backup_record

    assert {s.name for s in samples} == {
        "feedback_ops_backup_last_completed_timestamp_seconds",
        "feedback_ops_backup_age_seconds",
        "feedback_ops_backup_size_bytes",
        "feedback_ops_backup_duration_seconds",
    }
    for sample in samples:
        assert sample.labels == {
            "job": "database-backup",
            "deployment": "none",
            "kind": "database",
            "instance": "",
        }
    size = values(samples, "feedback_ops_backup_size_bytes", "kind")
    assert size == {"database": pushed.backup.size}
    assert pushed.backup.size == row["size"] == pushed.manifest["size"]
    finished = values(samples, "feedback_ops_backup_last_completed_timestamp_seconds", "kind")
    assert finished["database"] == pytest.approx(row["finished_at"].timestamp(), abs=1e-3)
    age = values(samples, "feedback_ops_backup_age_seconds", "kind")["database"]
    assert 0 <= age <= pushed.scraped_at - finished["database"]
    duration = values(samples, "feedback_ops_backup_duration_seconds", "kind")
    assert duration["database"] == pytest.approx(row["duration_seconds"], abs=1e-6)
    assert 0 < duration["database"] < 120


def test_a_redis_snapshot_pushes_its_own_kind(pushed: Pushed) -> None:
    samples = pushed.of("redis-snapshot")
    row = pushed.snapshot_record

    assert {s.labels["kind"] for s in samples} == {"redis"}
    assert values(samples, "feedback_ops_backup_size_bytes", "kind") == {"redis": row["size"]}
    finished = values(samples, "feedback_ops_backup_last_completed_timestamp_seconds", "kind")
    assert finished["redis"] == pytest.approx(row["finished_at"].timestamp(), abs=1e-3)


def test_the_restore_drill_is_pushed_beside_the_rto(pushed: Pushed) -> None:
    samples = pushed.of("backup-verify")

    assert {s.labels["kind"] for s in samples} == {"database"}
    drill = values(samples, "feedback_ops_restore_drill_seconds", "kind")["database"]
    assert drill == pytest.approx(pushed.drill.restore_seconds, abs=1e-3)
    assert drill == pytest.approx(pushed.drill_record["restore_seconds"], abs=1e-6)
    assert values(samples, "feedback_ops_restore_rto_seconds", "kind") == {"database": RTO_SECONDS}
    last = values(samples, "feedback_ops_restore_drill_last_timestamp_seconds", "kind")
    assert last["database"] == pytest.approx(
        pushed.drill_record["verified_at"].timestamp(), abs=1e-3
    )
    started, ended = pushed.drill_window
    assert started <= last["database"] <= ended


def test_open_alerts_are_pushed_for_every_severity(pushed: Pushed) -> None:
    samples = pushed.of("alert-escalation")

    assert values(samples, "feedback_ops_open_alerts", "severity") == {
        "critical": 1,
        "high": 2,  # acknowledged and queued are open still
        "medium": 0,
        "low": 0,  # resolved
    }


def test_pos_uptime_is_pushed_per_provider_and_window(pushed: Pushed) -> None:
    samples = pushed.of("pos-health-sweep")

    # Only what was measured: Shopify and Zettle were never checked.
    assert values(samples, "feedback_ops_pos_uptime_ratio", "provider", "window") == {
        ("square", "1d"): pytest.approx(2 / 3),
        ("square", "7d"): 0.75,
        ("square", "30d"): 0.75,
    }


def test_webhook_success_is_pushed_per_provider_and_window(pushed: Pushed) -> None:
    samples = pushed.of("webhook-reconciliation")

    assert values(samples, "feedback_ops_webhook_success_ratio", "provider", "window") == {
        ("square", "1h"): 0.9,
        ("square", "24h"): pytest.approx(11 / 12),
        ("shopify", "1h"): 1.0,
        ("shopify", "24h"): 1.0,
    }


def test_the_dashboard_graphs_only_what_the_flows_pushed_and_all_of_it(pushed: Pushed) -> None:
    names = {s.name for s in pushed.samples}
    graphed: set[str] = set()
    for title, expressions in panel_expressions(dashboard()).items():
        assert expressions, f"panel {title!r} has no query"
        for expr in expressions:
            read = metric_names(expr)
            assert read, f"panel {title!r}: {expr!r} reads no metric"
            assert read <= names, f"panel {title!r} reads what no flow pushed: {read - names}"
            graphed |= read
    assert graphed == names, f"pushed but on no panel: {names - graphed}"


def test_the_alerting_rules_read_only_what_the_flows_pushed(pushed: Pushed) -> None:
    names = {s.name for s in pushed.samples}
    for alert, expr in rule_expressions().items():
        read = metric_names(expr)
        assert read, f"{alert} reads no metric"
        assert read <= names, f"{alert} reads what no flow pushed: {read - names}"
