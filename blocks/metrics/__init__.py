"""Metrics for the platform's Prometheus: where its Pushgateway is, what the flows push
there, and the push itself.

The flows run on workers Prometheus cannot scrape, and most of them for seconds a day,
so they push: each run replaces its group on the Pushgateway (job = the flow's name,
grouped by deployment) with its figures, in one PUT, and Prometheus scrapes the
Pushgateway. `METRICS` lists every metric the flows push; the alerting rules
(`docker/prometheus/rules.yml`) and the dashboard (`docker/grafana/`) use no other.

A Pushgateway URL may carry basic-auth credentials (`https://user:password@host`): the
block keeps it as a secret, and nothing here names more of it than its host and port.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit

from prefect.blocks.core import Block
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import basic_auth_handler, push_to_gateway
from pydantic import Field, HttpUrl, SecretStr

from feedback_ops.errors import ConfigError, OpsError

VARIABLE = "PUSHGATEWAY_URL"


@dataclass(frozen=True)
class Metric:
    """One metric the flows push: a gauge with its name, help text and label names."""

    name: str
    help: str
    labels: tuple[str, ...]


BACKUP_LAST_COMPLETED = Metric(
    "feedback_ops_backup_last_completed_timestamp_seconds",
    "When the newest completed backup of the kind finished (Unix time).",
    ("kind",),
)
BACKUP_AGE = Metric(
    "feedback_ops_backup_age_seconds",
    "Age of the newest completed backup of the kind when pushed (alert on the timestamp).",
    ("kind",),
)
BACKUP_SIZE = Metric(
    "feedback_ops_backup_size_bytes",
    "Size of the newest completed backup of the kind, as stored and read back.",
    ("kind",),
)
BACKUP_DURATION = Metric(
    "feedback_ops_backup_duration_seconds",
    "How long the newest completed backup of the kind took, replicas and checks included.",
    ("kind",),
)
RESTORE_DRILL = Metric(
    "feedback_ops_restore_drill_seconds",
    "How long the restore of the last passed verification (restore drill) took.",
    ("kind",),
)
RESTORE_RTO = Metric(
    "feedback_ops_restore_rto_seconds",
    "The runbook's recovery time objective for a restore of the kind.",
    ("kind",),
)
RESTORE_DRILL_LAST = Metric(
    "feedback_ops_restore_drill_last_timestamp_seconds",
    "When the last passed restore drill of the kind finished (Unix time).",
    ("kind",),
)
OPEN_ALERTS = Metric(
    "feedback_ops_open_alerts",
    "Alerts not resolved yet (open, queued or acknowledged) in the ops catalog.",
    ("severity",),
)
POS_UPTIME = Metric(
    "feedback_ops_pos_uptime_ratio",
    "Share of good checks of the endpoint a POS provider's traffic is on (SLO 0.99).",
    ("provider", "window"),
)
WEBHOOK_SUCCESS = Metric(
    "feedback_ops_webhook_success_ratio",
    "Delivered over delivered and failed webhook attempts of a provider (SLO 0.98).",
    ("provider", "window"),
)

METRICS: tuple[Metric, ...] = (
    BACKUP_LAST_COMPLETED,
    BACKUP_AGE,
    BACKUP_SIZE,
    BACKUP_DURATION,
    RESTORE_DRILL,
    RESTORE_RTO,
    RESTORE_DRILL_LAST,
    OPEN_ALERTS,
    POS_UPTIME,
    WEBHOOK_SUCCESS,
)
"""Every metric the flows push."""


@dataclass
class Figures:
    """The samples of one push, by metric. A metric declared without samples is still
    pushed (as its help and type), so the push replaces whatever the group held."""

    samples: dict[Metric, dict[tuple[str, ...], float]] = field(default_factory=dict)

    def declare(self, *metrics: Metric) -> Figures:
        """Push these metrics, with whatever samples they get (maybe none)."""
        for metric in metrics:
            self.samples.setdefault(metric, {})
        return self

    def set(self, metric: Metric, value: float, **labels: str) -> None:
        """One sample: `metric` with exactly its labels."""
        if set(labels) != set(metric.labels):
            raise ValueError(f"{metric.name} takes labels {metric.labels}, got {tuple(labels)}")
        key = tuple(labels[name] for name in metric.labels)
        self.samples.setdefault(metric, {})[key] = float(value)

    def __iter__(self) -> Iterator[tuple[Metric, dict[str, str], float]]:
        for metric, samples in self.samples.items():
            for key, value in samples.items():
                yield metric, dict(zip(metric.labels, key, strict=True)), value

    def registry(self) -> CollectorRegistry:
        """A registry of its own holding these figures as gauges, for one push."""
        registry = CollectorRegistry(auto_describe=True)
        for metric, samples in self.samples.items():
            gauge = Gauge(metric.name, metric.help, metric.labels, registry=registry)
            for key, value in samples.items():
                gauge.labels(*key).set(value)
        return registry


@dataclass(frozen=True)
class Pushgateway:
    """Where to push: the URL without its credentials, and the credentials apart."""

    url: str
    address: str
    """`host:port`, all an error or a log line names."""
    username: str | None
    password: SecretStr | None
    timeout_seconds: float


class PushFailed(OpsError):
    """The Pushgateway did not take a push; the message names its address, never the URL."""


class MetricsPushgateway(Block):
    """The Prometheus Pushgateway every flow pushes its figures to.

    Without a URL no flow pushes anything. A push that fails is logged as a warning in
    one line naming the Pushgateway's host and the reason, and never fails the flow.

    Example:
        Push one figure to the Pushgateway saved by `feedback-ops up`:
        ```python
        from blocks.metrics import MetricsPushgateway, Figures, OPEN_ALERTS, push

        metrics_pushgateway = MetricsPushgateway.load("BLOCK_NAME")
        figures = Figures()
        figures.set(OPEN_ALERTS, 0, severity="critical")
        target = metrics_pushgateway.target()
        if target is not None:
            push(target, "alert-escalation", {"deployment": "none"}, figures)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Metrics Pushgateway"
    _block_type_slug: ClassVar[str] = "feedback-ops-metrics-pushgateway"
    _description: ClassVar[str] = "The Prometheus Pushgateway the flows push their figures to."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://prometheus.io/docs/instrumenting/pushing/"
    )

    url: SecretStr | None = Field(
        default=None,
        description="Base URL of the Pushgateway, e.g. http://pushgateway:9091; "
        "https://user:password@host for basic auth. Empty: no metrics are pushed.",
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Seconds one push may take."
    )

    def target(self) -> Pushgateway | None:
        """Where to push; None when no URL is set (metrics are off).

        Raises:
            ConfigError: the URL is not an http(s) URL with a host; the message names
                PUSHGATEWAY_URL and never repeats the URL.
        """
        text = self.url.get_secret_value().strip() if self.url is not None else ""
        if not text:
            return None
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - reading it is what checks it
        except ValueError:
            raise ConfigError(f"{VARIABLE} is not a valid URL (its port, say)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{VARIABLE} must be http://host:port or https://host, got scheme "
                f"{parts.scheme or 'none'!r}" + ("" if parts.hostname else " and no host")
            )
        address = parts.netloc.rpartition("@")[2]
        password = unquote(parts.password) if parts.password is not None else None
        return Pushgateway(
            url=f"{parts.scheme}://{address}{parts.path}".rstrip("/"),
            address=address,
            username=unquote(parts.username) if parts.username is not None else None,
            password=SecretStr(password) if password is not None else None,
            timeout_seconds=self.timeout_seconds,
        )


def push(target: Pushgateway, job: str, grouping_key: Mapping[str, str], figures: Figures) -> None:
    """Replace the group `job` + `grouping_key` on the Pushgateway with `figures` (PUT).

    Raises:
        PushFailed: the Pushgateway refused the push or did not answer; one line with
            its address and the reason, without credentials.
    """
    try:
        push_to_gateway(
            target.url,
            job=job,
            registry=figures.registry(),
            grouping_key=dict(grouping_key),
            timeout=target.timeout_seconds,
            handler=_handler(target),
        )
    except Exception as exc:
        raise PushFailed(
            f"the Pushgateway at {target.address} did not take the metrics of {job}: "
            f"{_scrubbed(_reason(exc, target), target)}"
        ) from None


def _handler(target: Pushgateway) -> Callable[..., Callable[[], None]]:
    """prometheus_client's handler, with basic auth when the URL carried credentials."""
    password = target.password.get_secret_value() if target.password is not None else None

    def handler(
        url: str, method: str, timeout: float | None, headers: list[Any], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, target.username, password)

    return handler


def _reason(exc: Exception, target: Pushgateway) -> str:
    """Why a push failed, in a few words."""
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        inner = exc.reason
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, socket.gaierror):
            return "unknown host"
        if isinstance(inner, TimeoutError):
            return f"no answer within {target.timeout_seconds:g} s"
        return str(inner)
    if isinstance(exc, TimeoutError):
        return f"no answer within {target.timeout_seconds:g} s"
    return f"{type(exc).__name__}: {exc}"


def _scrubbed(reason: str, target: Pushgateway) -> str:
    """The reason on one line, without the credentials should an error repeat them."""
    line = " ".join(reason.split())
    secret = target.password.get_secret_value() if target.password is not None else ""
    return line.replace(secret, "***") if secret else line


__all__ = [
    "BACKUP_AGE",
    "BACKUP_DURATION",
    "BACKUP_LAST_COMPLETED",
    "BACKUP_SIZE",
    "METRICS",
    "OPEN_ALERTS",
    "POS_UPTIME",
    "RESTORE_DRILL",
    "RESTORE_DRILL_LAST",
    "RESTORE_RTO",
    "WEBHOOK_SUCCESS",
    "Figures",
    "Metric",
    "MetricsPushgateway",
    "PushFailed",
    "Pushgateway",
    "push",
]
