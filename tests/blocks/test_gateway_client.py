"""The gateway admin client against a real HTTP server that answers like the gateway:
the exact requests it sends, what it tries again and for how long, and the one line it
fails with (never holding the admin token)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from support.gateway_fake import ADMIN_TOKEN, GatewayFake
from support.net import free_port

from blocks.channels.base import ChannelError
from blocks.gateway import PlatformGateway
from blocks.gateway.client import GatewayClient
from feedback_ops.config import blocks_from_env
from feedback_ops.errors import ConfigError, TransientError


@pytest.fixture
def fake() -> Iterator[GatewayFake]:
    with GatewayFake() as served:
        yield served


class Waits(list[float]):
    """The waits the client asked for, instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(fake: GatewayFake, waits: Waits | None = None, **fields: Any) -> GatewayClient:
    gateway = blocks_from_env(fake.env())["platform-gateway"]
    assert isinstance(gateway, PlatformGateway)
    return GatewayClient(
        gateway.model_copy(update=fields), sleep=waits if waits is not None else Waits()
    )


def failure(call: Any) -> ChannelError:
    with pytest.raises(ChannelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and ADMIN_TOKEN not in message
    return caught.value


def test_health_checks_need_no_token(fake: GatewayFake) -> None:
    with client_for(fake) as gateway:
        assert gateway.health() == {"status": "healthy", "maintenance": False, "error_rate": 0.0}
        assert gateway.pos_health("zettle") == {
            "provider": "zettle",
            "healthy": True,
            "endpoint": "primary",
        }
    assert [(r.method, r.path) for r in fake.requests()] == [
        ("GET", "/health"),
        ("GET", "/pos/health/zettle"),
    ]
    assert all("authorization" not in r.headers for r in fake.requests())


def test_failover_sends_the_runbooks_body_with_the_admin_token(fake: GatewayFake) -> None:
    with client_for(fake) as gateway:
        answer = gateway.pos_failover("square", "primary_endpoint_down")

    assert answer == {"provider": "square", "active_endpoint": "secondary"}
    assert fake.active_endpoint["square"] == "secondary"
    (sent,) = fake.requests("/admin/pos/failover")
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {"provider": "square", "reason": "primary_endpoint_down"}


def test_maintenance_on_then_off(fake: GatewayFake) -> None:
    with client_for(fake) as gateway:
        gateway.maintenance_on("database_recovery", "30min")
        assert fake.maintenance == {"reason": "database_recovery", "estimated_duration": "30min"}
        assert gateway.health()["maintenance"] is True
        assert gateway.maintenance_off() == {}  # 204, no body
    assert fake.maintenance is None
    assert [(r.method, r.path) for r in fake.requests("/admin")] == [
        ("POST", "/admin/maintenance"),
        ("DELETE", "/admin/maintenance"),
    ]


def test_disaster_recovery_failover_and_status(fake: GatewayFake) -> None:
    body = {"type": "regional", "target_region": "eu-central-1", "reason": "drill"}
    with client_for(fake) as gateway:
        fake.dr_healthy_after = None
        assert gateway.dr_status() == {"status": "idle", "active_region": "eu-west-1"}
        assert gateway.dr_failover(body)["status"] == "in_progress"
        assert gateway.dr_status()["status"] == "in_progress"
        fake.dr_healthy_after = 0.0
        assert gateway.dr_status() == {
            "status": "healthy",
            "active_region": "eu-central-1",
            "type": "regional",
        }
    assert fake.requests("/admin/disaster-recovery/failover")[0].body == body


def test_5xx_is_tried_again_with_doubling_waits(fake: GatewayFake) -> None:
    fake.fail("POST", "/admin/pos/failover", 503, times=2)
    waits = Waits()
    with client_for(fake, waits) as gateway:
        gateway.pos_failover("shopify", "primary_endpoint_down")

    assert len(fake.requests("/admin/pos/failover")) == 3
    assert waits == [1.0, 2.0]
    assert fake.active_endpoint["shopify"] == "secondary"


def test_a_429_waits_as_long_as_the_gateway_asks(fake: GatewayFake) -> None:
    fake.fail("GET", "/pos/health/square", 429, retry_after="7")
    waits = Waits()
    with client_for(fake, waits) as gateway:
        assert gateway.pos_health("square")["healthy"] is True
    assert waits == [7.0]


def test_a_5xx_that_lasts_fails_in_one_line_naming_the_endpoint(fake: GatewayFake) -> None:
    fake.fail("POST", "/admin/pos/failover", 503, times=10)
    waits = Waits()
    with client_for(fake, waits) as gateway:
        error = failure(lambda: gateway.pos_failover("zettle", "primary_endpoint_down"))

    assert str(error) == (
        f"gateway: POST /admin/pos/failover at 127.0.0.1:{fake.port} answered HTTP 503: "
        "scripted 503"
    )
    assert isinstance(error, TransientError)  # the task's own retries may try later
    assert len(fake.requests("/admin/pos/failover")) == 3
    assert waits == [1.0, 2.0]


def test_a_wrong_token_fails_at_once_without_showing_it(fake: GatewayFake) -> None:
    with client_for(fake, admin_token=SecretStr("not-the-token")) as gateway:
        error = failure(lambda: gateway.maintenance_on("x", "5min"))

    assert str(error) == (
        f"gateway: POST /admin/maintenance at 127.0.0.1:{fake.port} answered HTTP 401: "
        "invalid admin token"
    )
    assert "not-the-token" not in str(error)
    assert not isinstance(error, TransientError)
    assert len(fake.requests("/admin/maintenance")) == 1
    assert fake.maintenance is None


def test_an_html_page_is_named_not_quoted(fake: GatewayFake) -> None:
    fake.fail("GET", "/health", 502, times=10, html=True)
    fake.fail("GET", "/pos/health/square", 200, html=True)
    with client_for(fake, attempts=1) as gateway:
        bad_gateway = failure(gateway.health)
        not_json = failure(lambda: gateway.pos_health("square"))

    assert str(bad_gateway) == (
        f"gateway: GET /health at 127.0.0.1:{fake.port} answered HTTP 502: an HTML page"
    )
    assert str(not_json) == (
        f"gateway: GET /pos/health/square at 127.0.0.1:{fake.port} answered with something "
        "that is not a JSON object (text/html)"
    )
    assert not isinstance(not_json, TransientError)


def test_a_slow_answer_ends_at_the_timeout_and_is_tried_again(fake: GatewayFake) -> None:
    fake.fail("GET", "/health", 200, times=1, delay_seconds=2)
    waits = Waits()
    with client_for(fake, waits, timeout_seconds=0.3) as gateway:
        assert gateway.health()["status"] == "healthy"
    assert waits == [1.0]
    assert len(fake.requests("/health")) == 2


def test_an_unreachable_gateway_is_named() -> None:
    port = free_port()
    gateway = PlatformGateway(url=f"http://127.0.0.1:{port}", attempts=2, backoff_seconds=0.5)
    waits = Waits()
    with GatewayClient(gateway, sleep=waits) as client:
        error = failure(client.health)
    assert str(error) == (
        f"gateway: could not reach GET /health at 127.0.0.1:{port} (connection refused)"
    )
    assert waits == [0.5]


def test_a_missing_url_or_token_is_one_line_naming_the_variable(fake: GatewayFake) -> None:
    with pytest.raises(ConfigError, match=r"^GATEWAY_URL is not set: "):
        GatewayClient(PlatformGateway())
    with GatewayClient(PlatformGateway(url=fake.url)) as gateway:
        assert gateway.health()["status"] == "healthy"
        with pytest.raises(ConfigError, match=r"^GATEWAY_ADMIN_TOKEN is not set: POST /admin/pos"):
            gateway.pos_failover("square", "primary_endpoint_down")
    assert fake.requests("/admin") == []


def test_an_unknown_provider_is_refused_before_any_request(fake: GatewayFake) -> None:
    with client_for(fake) as gateway, pytest.raises(ConfigError) as caught:
        gateway.pos_failover("klarna", "primary_endpoint_down")
    assert str(caught.value) == "unknown POS provider 'klarna'; known: square, shopify, zettle"
    assert fake.requests() == []
