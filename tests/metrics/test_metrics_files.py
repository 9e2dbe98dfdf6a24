"""The files the platform's Prometheus and Grafana read, checked by their own tools where
this machine has them (Debian's `promtool`), and the configuration of the push."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from support.promql import (
    GRAFANA_PROVISIONING,
    ROOT,
    RULE_TESTS,
    RULES,
    dashboard,
    metric_names,
    panel_expressions,
    panels,
    rule_expressions,
)

from blocks.metrics import METRICS, OPEN_ALERTS, Figures, MetricsPushgateway
from feedback_ops.config import blocks_from_env
from feedback_ops.errors import ConfigError

PROMTOOL = "promtool"


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(PROMTOOL)
    assert binary, "promtool is not installed (Debian's `prometheus`; `make tools` installs it)"
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd
    )


# --- the alerting rules ------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", RULES)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout
    assert set(rule_expressions()) == {
        "BackupTooOld",
        "RedisSnapshotTooOld",
        "RestoreDrillSlowerThanRTO",
    }


def test_the_rules_fire_and_stay_quiet_as_their_tests_say() -> None:
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("> 26 * 3600", "> > 26 * 3600"))

    checked = promtool("check", "rules", broken)

    assert checked.returncode != 0
    assert "BackupTooOld" in checked.stdout + checked.stderr


def test_a_rule_that_fires_too_early_fails_its_tests(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES.read_text().replace("26 * 3600", "24 * 3600"))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)

    tested = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)

    assert tested.returncode != 0
    # The backup 25 hours old (1d1h), which must not alert yet.
    assert "alertname: BackupTooOld, time: 1d1h," in tested.stdout + tested.stderr


# --- the dashboard and its provisioning -----------------------------------------------------


def test_every_dashboard_query_is_promql_that_promtool_accepts(tmp_path: Path) -> None:
    """Each panel's query as a recording rule: `promtool check rules` parses it."""
    expressions = [e for exprs in panel_expressions(dashboard()).values() for e in exprs]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(expressions)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    checked = promtool("check", "rules", path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout


def test_the_dashboard_is_provisioned_from_its_folder_against_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources/prometheus.yml").read_text())
    [prometheus] = datasources["datasources"]
    assert (prometheus["uid"], prometheus["type"], prometheus["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    providers = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards/feedback-ops.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    document = dashboard()
    assert document["uid"] == "feedback-ops" and document["timezone"] == "Europe/Stockholm"
    ids = [panel["id"] for panel in panels(document)]
    assert len(ids) == len(set(ids))
    for panel in panels(document):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]


TIMESTAMP = "feedback_ops_backup_last_completed_timestamp_seconds"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (f'time() - max by (kind) ({TIMESTAMP}{{kind=~"a|b"}}) > 26 * 3600', {TIMESTAMP}),
        ("max by (kind) (a) > on (kind) group_left max by (kind) (b_seconds)", {"a", "b_seconds"}),
        ('sum(rate(up{job="x"}[5m] offset 1h)) / 1e3 and on(job) other', {"up", "other"}),
        ("histogram_quantile(0.9, rate(x_bucket[$__rate_interval]))", {"x_bucket"}),
        ("vector(1) + time()", set()),
    ],
)
def test_the_names_a_query_reads(expr: str, names: set[str]) -> None:
    """The check of the dashboard and the rules against the pushed names can fail: it
    sees every metric a query reads, and nothing else."""
    assert metric_names(expr) == names


def test_the_readme_names_every_metric_and_rule() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in [m.name for m in METRICS] + list(rule_expressions()):
        assert f"`{name}`" in readme, name


# --- the configuration of the push ----------------------------------------------------------


def test_the_url_is_taken_apart_and_its_credentials_kept_secret() -> None:
    block = MetricsPushgateway(url=SecretStr("https://ops%40x:p%2Fss@push.example.se:9443/pg/"))

    target = block.target()

    assert target is not None
    assert target.url == "https://push.example.se:9443/pg"
    assert target.address == "push.example.se:9443"
    assert target.username == "ops@x"
    assert target.password is not None and target.password.get_secret_value() == "p/ss"
    for shown in (repr(block), repr(target), block.model_dump_json()):
        assert "p%2Fss" not in shown and "p/ss" not in shown
    assert MetricsPushgateway().target() is None
    assert MetricsPushgateway(url=SecretStr(" ")).target() is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://u:secret-pw@push.example.se",
            "PUSHGATEWAY_URL must be http://host:port or https://host, got scheme 'ftp'",
        ),
        (
            "push.example.se:9091",
            "PUSHGATEWAY_URL must be http://host:port or https://host, got scheme "
            "'push.example.se' and no host",
        ),
        (
            "http://u:secret-pw@push.example.se:port",
            "PUSHGATEWAY_URL is not a valid URL (its port, say)",
        ),
    ],
)
def test_a_malformed_url_fails_at_start_up_by_name_without_repeating_it(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        blocks_from_env({"PUSHGATEWAY_URL": url})

    assert str(caught.value) == message
    assert "secret-pw" not in str(caught.value)


def test_the_block_is_saved_only_when_the_url_is_set() -> None:
    assert "metrics-pushgateway" not in blocks_from_env({})
    block = blocks_from_env({"PUSHGATEWAY_URL": "http://pushgateway:9091"})["metrics-pushgateway"]
    assert isinstance(block, MetricsPushgateway)
    assert block.url is not None and block.url.get_secret_value() == "http://pushgateway:9091"


def test_a_figure_takes_exactly_its_metrics_labels() -> None:
    figures = Figures()
    figures.set(OPEN_ALERTS, 3, severity="high")
    with pytest.raises(ValueError, match="feedback_ops_open_alerts takes labels"):
        figures.set(OPEN_ALERTS, 1, severity="high", provider="square")
    assert list(figures) == [(OPEN_ALERTS, {"severity": "high"}, 3.0)]
