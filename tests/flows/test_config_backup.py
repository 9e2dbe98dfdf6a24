"""pos-config-backup and app-config-backup against real PostgreSQL, a real local disk,
the session's Prefect test server, and Square, Shopify and Zettle served on loopback
(`support.pos_fakes.PosFake`)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from support.names import EVERY_BLOCK
from support.pos_fakes import (
    JWT_BEARER,
    SHOPIFY_TOKEN,
    SHOPIFY_WEBHOOKS,
    SQUARE_PAT,
    SQUARE_SUBSCRIPTIONS,
    SQUARE_TOKEN,
    ZETTLE_API_KEY,
    ZETTLE_CLIENT_ID,
    ZETTLE_SUBSCRIPTIONS,
    PosFake,
)

from blocks import PostgresDatabase
from blocks.encryption import key_id, open_sealed
from blocks.pos import PosProviders
from deployments import DeploymentSpec
from deployments.schedules import daily_at
from feedback_ops.config import blocks_from_env
from feedback_ops.errors import ConfigError
from flows.config_backup import app_config_backup, pos_config_backup

SIGNING_KEYS = [s["signingKey"] for s in ZETTLE_SUBSCRIPTIONS]
SQUARE_VERSION = PosProviders().square_version
SHOPIFY_API_VERSION = PosProviders().shopify_api_version
SEALED_FIELDS = {"$sealed", "kid", "nonce", "ct"}

# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def _pos_fake_server() -> Iterator[PosFake]:
    with PosFake() as fake:
        yield fake


@pytest.fixture
def pos_fake(_pos_fake_server: PosFake) -> PosFake:
    """The running `PosFake` with no requests or scripted failures yet."""
    _pos_fake_server.reset()
    return _pos_fake_server


def new_key() -> tuple[str, bytes]:
    """A fresh CONFIG_BACKUP_KEY: its base64 text and its 32 bytes."""
    raw = os.urandom(32)
    return base64.b64encode(raw).decode(), raw


def config_params(save_blocks: Any, *also: str, **env: str) -> dict[str, Any]:
    """`save_blocks`' flow parameters plus the config-backup key block's name."""
    params: dict[str, Any] = save_blocks("config-backup-key", "pos-providers", *also, **env)
    prefix = params["database_block"].removesuffix("platform-postgres")
    return params | {"key_block": f"{prefix}config-backup-key"}


def pos_params(save_blocks: Any, **env: str) -> dict[str, Any]:
    """`config_params` plus the POS providers block's name, for pos-config-backup."""
    params = config_params(save_blocks, **env)
    prefix = params["database_block"].removesuffix("platform-postgres")
    return params | {"providers_block": f"{prefix}pos-providers"}


def failure_of(state: Any) -> str:
    """The failed run's reason, as the operator reads it."""
    assert state.is_failed(), state
    return str(state.result(raise_on_failure=False))


def completed(state: Any) -> Any:
    """The flow's result; fails the test with the run's own reason otherwise."""
    assert state.is_completed(), f"the run did not complete: {state.message}"
    return state.result()


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def local_path(location: str) -> Path:
    assert location.startswith("file://"), location
    return Path(location.removeprefix("file://"))


def stored(location: str) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """The bundle at a file:// location and its manifest, each as text and parsed."""
    path = local_path(location)
    manifest = path.with_name(path.name.removesuffix(".json") + ".manifest.json")
    bundle_text, manifest_text = path.read_text(), manifest.read_text()
    return bundle_text, json.loads(bundle_text), manifest_text, json.loads(manifest_text)


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def pos_connection_rows(url: str) -> list[Any]:
    return [
        row[0] for row in query(url, "SELECT row_to_json(p) FROM pos_connections p ORDER BY id")
    ]


def run_texts(flow_run_id: UUID | None) -> list[str]:
    """Everything Prefect keeps of a run that a person can read: its logs (the flow's and
    its tasks'), its artifacts, its parameters and its final state message."""
    assert flow_run_id is not None
    # Logs reach the API in batches from a background worker: send what is queued.
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = client.read_flow_run(flow_run_id)
    assert logs, "the run left no logs to check"
    texts = [log.message for log in logs]
    texts += [json.dumps(a.data) + json.dumps(a.description) for a in artifacts]
    texts += [json.dumps(run.parameters), (run.state.message or "") if run.state else ""]
    return texts


def leaked(secret_values: list[str], texts: list[str]) -> list[str]:
    """The secrets (by position, never by value) found in any of `texts`."""
    return [f"secret #{i}" for i, s in enumerate(secret_values) if any(s in t for t in texts)]


def with_password(url: str, password: str) -> str:
    """`url` with its password replaced (the test server trusts loopback, so any works)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def is_sealed(value: Any, key: bytes) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == SEALED_FIELDS
        and value["$sealed"] == "aes-256-gcm"
        and value["kid"] == key_id(key)
    )


# --- pos-config-backup ---------------------------------------------------------------------


def test_pos_bundle_holds_the_rows_and_every_page_of_every_provider_with_secrets_sealed(
    platform_db: str, pos_fake: PosFake, tmp_path: Path, save_blocks: Any
) -> None:
    key_text, key = new_key()
    store, replica = tmp_path / "backups", tmp_path / "replica"
    params = pos_params(
        save_blocks,
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{store}",
        BACKUP_REPLICA_URLS=f"file://{replica}",
        CONFIG_BACKUP_KEY=key_text,
        **pos_fake.env(),
    )

    state = pos_config_backup(**params, return_state=True)
    result = completed(state)

    primary, copy = (local_path(location) for location in result.locations)
    assert primary.relative_to(store).parts[0] == "pos-config"
    assert copy == replica / primary.relative_to(store)
    bundle_text, bundle, manifest_text, manifest = stored(result.locations[0])
    replica_text, _, replica_manifest_text, _ = stored(result.locations[1])
    assert replica_text == bundle_text and replica_manifest_text == manifest_text
    data = bundle_text.encode()
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    # The bundle and its manifest, nothing else (no temporary file left behind).
    stem = primary.relative_to(store).as_posix().removesuffix(".json")
    assert files_under(store) == [f"{stem}.json", f"{stem}.manifest.json"]

    # The bundle: the platform's rows as they are, each provider's subscriptions from
    # every page, Zettle's signing keys sealed in place.
    assert bundle["bundle_format"] == 1 and bundle["kind"] == "pos-config"
    assert bundle["secrets"] == {
        "algorithm": "aes-256-gcm",
        "kid": key_id(key),
        "sealed": 2,
        "left_out": 0,
    }
    sections = bundle["sections"]
    assert set(sections) == {"pos_connections", "webhook_subscriptions"}
    rows = pos_connection_rows(platform_db)
    assert len(rows) == 400 and sections["pos_connections"] == rows
    webhooks = sections["webhook_subscriptions"]
    assert webhooks["square"] == {"status": "read", "subscriptions": SQUARE_SUBSCRIPTIONS}
    assert [s["id"] for s in webhooks["square"]["subscriptions"]] == [
        "wbhk_b35f6b3145074cf9ad513610786c19d5",
        "wbhk_0c1e4d8a5f2b4e6c9a7d3b1f0e8c6a42",
        "wbhk_9e7d5c3b1a0f4e2d8c6b4a2f0e1d3c5b",
    ]
    assert webhooks["shopify"] == {"status": "read", "subscriptions": SHOPIFY_WEBHOOKS}
    assert [w["id"] for w in webhooks["shopify"]["subscriptions"]] == [
        1047895551,
        1047895552,
        1047895553,
    ]
    zettle = webhooks["zettle"]
    assert zettle["status"] == "read"
    assert [{k: v for k, v in s.items() if k != "signingKey"} for s in zettle["subscriptions"]] == [
        {k: v for k, v in s.items() if k != "signingKey"} for s in ZETTLE_SUBSCRIPTIONS
    ]
    assert all(is_sealed(s["signingKey"], key) for s in zettle["subscriptions"])
    opened = open_sealed(sections, key)
    opened_zettle = opened["webhook_subscriptions"]["zettle"]["subscriptions"]
    assert [s["signingKey"] for s in opened_zettle] == SIGNING_KEYS
    assert opened_zettle == ZETTLE_SUBSCRIPTIONS
    assert opened["pos_connections"] == rows

    # The result and the manifest say what is inside.
    assert result.sections == {"pos_connections": 400, "webhook_subscriptions": 8}
    assert (result.secrets_sealed, result.secrets_left_out) == (2, 0)
    assert manifest["kind"] == "pos-config"
    assert manifest["id"] == result.backup_id
    assert manifest["object"] == primary.name
    assert manifest["format"] == "config-bundle-json-v1"
    assert manifest["sha256"] == result.sha256 and manifest["size"] == result.size
    assert manifest["sections"] == {"pos_connections": 400, "webhook_subscriptions": 8}
    assert manifest["secrets"] == {"sealed": 2, "left_out": 0}

    # The providers were asked exactly this, with their own credentials.
    square = pos_fake.requests("/square/")
    assert [(r.method, r.path) for r in square] == [
        ("GET", "/square/v2/webhooks/subscriptions")
    ] * 2
    assert square[0].query == {"include_disabled": "true"}
    assert set(square[1].query) == {"include_disabled", "cursor"}
    for request in square:
        assert request.headers["authorization"] == f"Bearer {SQUARE_PAT}"
        assert request.headers["square-version"] == SQUARE_VERSION
        assert "x-shopify-access-token" not in request.headers
    shopify = pos_fake.requests("/shopify/")
    path = f"/shopify/admin/api/{SHOPIFY_API_VERSION}/webhooks.json"
    assert [(r.method, r.path) for r in shopify] == [("GET", path)] * 2
    assert shopify[0].query == {"limit": "250"}
    assert shopify[1].query.keys() == {"limit", "page_info"}
    for request in shopify:
        assert request.headers["x-shopify-access-token"] == SHOPIFY_TOKEN
        assert "authorization" not in request.headers
    grant, listing = pos_fake.requests("/zettle")
    assert (grant.method, grant.path) == ("POST", "/zettle-oauth/token")
    assert grant.form == {
        "grant_type": JWT_BEARER,
        "client_id": ZETTLE_CLIENT_ID,
        "assertion": ZETTLE_API_KEY,
    }
    [access_token] = pos_fake.zettle_access_tokens
    assert (listing.method, listing.path) == (
        "GET",
        "/zettle-pusher/organizations/self/subscriptions",
    )
    assert listing.headers["authorization"] == f"Bearer {access_token}"
    assert len(pos_fake.requests()) == 6

    # No credential and no signing key in clear anywhere the backup left a trace.
    secret_values = [SQUARE_TOKEN, SHOPIFY_TOKEN, ZETTLE_API_KEY, access_token, key_text]
    secret_values += SIGNING_KEYS
    catalog = [row[0] for row in query(platform_db, "SELECT r::text FROM ops.backup_records r")]
    assert len(catalog) == 1
    texts = [bundle_text, manifest_text, replica_text, *catalog]
    texts += run_texts(state.state_details.flow_run_id)
    assert leaked(secret_values, texts) == []


def test_without_a_key_signing_keys_are_left_out_and_a_provider_without_token_is_named(
    platform_db: str, pos_fake: PosFake, tmp_path: Path, save_blocks: Any
) -> None:
    """No CONFIG_BACKUP_KEY: secrets are left out, and counted. Shopify with a shop but no
    access token is not configured: recorded as such and never called."""
    env = {k: v for k, v in pos_fake.env().items() if k != "SHOPIFY_ACCESS_TOKEN"}
    params = pos_params(
        save_blocks, DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}", **env
    )

    result = completed(pos_config_backup(**params, return_state=True))

    bundle_text, bundle, _, manifest = stored(result.locations[0])
    webhooks = bundle["sections"]["webhook_subscriptions"]
    assert webhooks["square"] == {"status": "read", "subscriptions": SQUARE_SUBSCRIPTIONS}
    assert webhooks["shopify"] == {"status": "not configured", "subscriptions": []}
    assert webhooks["zettle"]["status"] == "read"
    zettle = webhooks["zettle"]["subscriptions"]
    assert [s["signingKey"] for s in zettle] == [{"$redacted": True}] * 2
    assert [{k: v for k, v in s.items() if k != "signingKey"} for s in zettle] == [
        {k: v for k, v in s.items() if k != "signingKey"} for s in ZETTLE_SUBSCRIPTIONS
    ]
    assert bundle["secrets"] == {"algorithm": None, "kid": None, "sealed": 0, "left_out": 2}
    assert (result.secrets_sealed, result.secrets_left_out) == (0, 2)
    assert manifest["secrets"] == {"sealed": 0, "left_out": 2}
    assert leaked(SIGNING_KEYS, [bundle_text]) == []
    assert pos_fake.requests("/shopify/") == []
    assert len(pos_fake.requests()) == 4  # two Square pages, Zettle's grant and list


def test_square_unavailable_once_is_asked_again_after_retry_after_and_the_backup_completes(
    platform_db: str, pos_fake: PosFake, tmp_path: Path, save_blocks: Any
) -> None:
    """A 503 with Retry-After is transient: asked again after exactly that long, then
    every page is read."""
    pos_fake.fail("/square/", 503, times=1, retry_after=1)
    params = pos_params(
        save_blocks, DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}", **pos_fake.env()
    )

    started = time.monotonic()
    result = completed(pos_config_backup(**params, return_state=True))
    elapsed = time.monotonic() - started

    _, bundle, _, _ = stored(result.locations[0])
    webhooks = bundle["sections"]["webhook_subscriptions"]
    assert webhooks["square"]["subscriptions"] == SQUARE_SUBSCRIPTIONS
    assert webhooks["shopify"]["subscriptions"] == SHOPIFY_WEBHOOKS
    # The failed attempt, then both pages.
    assert len(pos_fake.requests("/square/")) == 3
    assert elapsed >= 1
    assert query(platform_db, "SELECT status FROM ops.backup_records") == [("completed",)]


def test_a_rejected_square_token_fails_at_once_with_the_providers_reason(
    platform_db: str, pos_fake: PosFake, tmp_path: Path, save_blocks: Any
) -> None:
    wrong_token = f"EAAAl-revoked-{secrets.token_hex(8)}"
    store = tmp_path / "backups"
    params = pos_params(
        save_blocks,
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{store}",
        **pos_fake.env() | {"SQUARE_PERSONAL_ACCESS_TOKEN": wrong_token},
    )

    state = pos_config_backup(**params, return_state=True)
    message = failure_of(state)

    assert message == (
        "square: Square webhook subscriptions answered HTTP 401: "
        "This request could not be authorized."
    )
    # Not transient: no retry, and nothing asked of the other providers after it.
    assert [r.path for r in pos_fake.requests()] == ["/square/v2/webhooks/subscriptions"]
    assert files_under(store) == []
    assert query(platform_db, "SELECT status, error FROM ops.backup_records") == [
        ("failed", message)
    ]
    alerts = query(
        platform_db,
        "SELECT name, severity, summary FROM ops.alerts WHERE dedup_key = 'pos-config-backup'",
    )
    assert alerts == [
        ("pos-config-backup-failed", "high", f"The pos-config backup failed: {message}")
    ]
    texts = [message, state.message or "", *run_texts(state.state_details.flow_run_id)]
    texts += [row[0] for row in query(platform_db, "SELECT a::text FROM ops.alerts a")]
    assert leaked([wrong_token], texts) == []


def test_an_invalid_config_backup_key_is_one_line_naming_the_variable() -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(ConfigError) as caught:
        blocks_from_env({"CONFIG_BACKUP_KEY": short})
    message = str(caught.value)
    assert message == (
        "CONFIG_BACKUP_KEY must be 32 bytes of base64 (openssl rand -base64 32), got 16"
    )
    assert short not in message

    with pytest.raises(ConfigError) as caught:
        blocks_from_env({"CONFIG_BACKUP_KEY": "not base64 at all!"})
    assert str(caught.value) == "CONFIG_BACKUP_KEY must be base64 (openssl rand -base64 32)"


# --- app-config-backup ---------------------------------------------------------------------


def create_platform_settings(url: str, rows: list[tuple[str, Any]]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE platform_settings (key text PRIMARY KEY, value jsonb)")
        for name, value in rows:
            conn.execute(
                "INSERT INTO platform_settings VALUES (%s, %s::jsonb)", (name, json.dumps(value))
            )


def test_app_bundle_holds_blocks_deployments_and_tables_with_secrets_sealed(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    key_text, key = new_key()
    password = f"pg-{secrets.token_hex(10)}"
    widget_token = f"wt-{secrets.token_hex(12)}"
    create_platform_settings(
        platform_db,
        [
            ("currency", "SEK"),
            ("default_locale", "sv-SE"),
            ("feedback_widget", {"theme": "ljus", "api_token": widget_token, "max_längd": 500}),
        ],
    )
    env = {
        "DATABASE_URL": with_password(platform_db, password),
        "BACKUP_URL": f"file://{tmp_path}/backups",
        "CONFIG_BACKUP_KEY": key_text,
        "SQUARE_ACCESS_TOKEN": f"sq-{secrets.token_hex(12)}",
        "SHOPIFY_SHOP_DOMAIN": "feedback-kafe.myshopify.com",
        "SHOPIFY_ACCESS_TOKEN": f"shpat_{secrets.token_hex(12)}",
        "ZETTLE_CLIENT_ID": "zettle-client",
        "ZETTLE_API_KEY": f"zk-{secrets.token_hex(12)}",
        "AWS_SECRET_ACCESS_KEY": f"aws-{secrets.token_hex(12)}",
        "SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/T0/B0/{secrets.token_hex(12)}",
        "GATEWAY_URL": "https://api.ai-feedback.se",
        "GATEWAY_ADMIN_TOKEN": f"gw-{secrets.token_hex(12)}",
        "SHOPIFY_WEBHOOK_SECRET": f"shpss-{secrets.token_hex(12)}",
    }
    params = config_params(save_blocks, EVERY_BLOCK, **env)
    prefix = params["database_block"].removesuffix("platform-postgres")
    # A deployment as `feedback-ops up` registers it, under a name of this test's own.
    deployment = DeploymentSpec(
        pos_config_backup,
        f"{prefix}daily-0300",
        (daily_at(3, 0),),
        parameters={"providers_block": f"{prefix}pos-providers"},
        tags=("backup", "runbook:backup-recovery"),
    )
    deployment_id = deployment.to_runner().apply()
    assert isinstance(deployment_id, UUID)  # called from sync code: not a coroutine
    try:
        state = app_config_backup(**params, return_state=True)
    finally:
        # The Prefect server is shared by the session: leave no deployment behind.
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
    result = completed(state)

    bundle_text, bundle, manifest_text, manifest = stored(result.locations[0])
    assert bundle["kind"] == "app-config" and manifest["kind"] == "app-config"
    assert (bundle["secrets"]["algorithm"], bundle["secrets"]["kid"]) == (
        "aes-256-gcm",
        key_id(key),
    )
    sections = bundle["sections"]
    assert set(sections) == {"blocks", "deployments", "platform_tables"}
    opened = open_sealed(sections, key)

    # This test's blocks, each with its secret fields sealed, and decryptable back.
    mine = {name: value for name, value in sections["blocks"].items() if name.startswith(prefix)}
    assert set(mine) == {
        f"{prefix}{name}"
        for name in (
            "platform-postgres",
            "ops-postgres",
            "platform-redis",
            "pos-providers",
            "platform-gateway",
            "webhook-deliveries",
            "config-backup-key",
            "backup-storage",
            "slack-alerts",
            "escalation-contacts",
            "alert-channels",
        )
    }
    expected_secrets = {
        ("platform-postgres", "password"): password,
        ("ops-postgres", "password"): password,
        ("pos-providers", "square_access_token"): env["SQUARE_ACCESS_TOKEN"],
        ("pos-providers", "shopify_access_token"): env["SHOPIFY_ACCESS_TOKEN"],
        ("pos-providers", "zettle_api_key"): env["ZETTLE_API_KEY"],
        ("config-backup-key", "key"): key_text,
        ("backup-storage", "aws_secret_access_key"): env["AWS_SECRET_ACCESS_KEY"],
        ("slack-alerts", "webhook_url"): env["SLACK_WEBHOOK_URL"],
        ("platform-gateway", "admin_token"): env["GATEWAY_ADMIN_TOKEN"],
        ("webhook-deliveries", "shopify_webhook_secret"): env["SHOPIFY_WEBHOOK_SECRET"],
    }
    for (block, field), value in expected_secrets.items():
        name = f"{prefix}{block}"
        assert is_sealed(sections["blocks"][name]["data"][field], key), (block, field)
        assert opened["blocks"][name]["data"][field] == value, (block, field)
    db = PostgresDatabase.from_url(platform_db)
    platform = opened["blocks"][f"{prefix}platform-postgres"]
    assert platform["type"] == PostgresDatabase.get_block_type_slug()
    assert (platform["data"]["host"], platform["data"]["port"], platform["data"]["database"]) == (
        db.host,
        db.port,
        db.database,
    )
    assert opened["blocks"][f"{prefix}pos-providers"]["data"]["zettle_client_id"] == "zettle-client"
    # The alert channels refer to the Slack block: its webhook is sealed there too.
    channels = sections["blocks"][f"{prefix}alert-channels"]["data"]
    assert is_sealed(channels["slack"]["webhook_url"], key)
    assert (
        opened["blocks"][f"{prefix}alert-channels"]["data"]["slack"]["webhook_url"]
        == (env["SLACK_WEBHOOK_URL"])
    )

    # The deployment, with its schedule and parameters.
    served = sections["deployments"][f"pos-config-backup/{prefix}daily-0300"]
    assert served["entrypoint"] == "flows.config_backup.pos_config_backup"
    assert served["parameters"] == {"providers_block": f"{prefix}pos-providers"}
    assert served["tags"] == ["backup", "runbook:backup-recovery"]
    assert served["paused"] is False
    [schedule] = served["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 3 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Stockholm"

    # The platform's configuration tables: the one there as it is, the missing one null.
    tables = sections["platform_tables"]
    assert set(tables) == {"public.platform_settings", "public.feature_flags"}
    assert tables["public.feature_flags"] is None
    settings = query(platform_db, "SELECT row_to_json(s) FROM platform_settings s ORDER BY key")
    assert opened["platform_tables"]["public.platform_settings"] == [row[0] for row in settings]
    [widget] = [r for r in tables["public.platform_settings"] if r["key"] == "feedback_widget"]
    assert is_sealed(widget["value"]["api_token"], key)
    assert widget["value"]["theme"] == "ljus"

    # Counts, and not one secret in clear.
    assert result.sections == {
        "blocks": len(sections["blocks"]),
        "deployments": len(sections["deployments"]),
        "platform_tables": 2,
    }
    assert manifest["sections"] == result.sections
    assert bundle["secrets"]["sealed"] == result.secrets_sealed >= len(expected_secrets) + 1
    assert result.secrets_left_out == 0
    secret_values = [*expected_secrets.values(), widget_token]
    texts = [bundle_text, manifest_text, *run_texts(state.state_details.flow_run_id)]
    assert leaked(secret_values, texts) == []


def test_a_secret_kept_in_a_key_value_settings_row_is_not_stored_in_clear(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    """`platform_settings` is a key/value table: a row named like a secret holds one,
    though its column is only called `value`."""
    key_text, key = new_key()
    smtp_password = f"smtp-{secrets.token_hex(12)}"
    create_platform_settings(platform_db, [("currency", "SEK"), ("smtp_password", smtp_password)])
    params = config_params(
        save_blocks,
        DATABASE_URL=platform_db,
        BACKUP_URL=f"file://{tmp_path}",
        CONFIG_BACKUP_KEY=key_text,
    )

    result = completed(app_config_backup(**params, return_state=True))

    bundle_text, bundle, _, _ = stored(result.locations[0])
    rows = open_sealed(bundle["sections"], key)["platform_tables"]["public.platform_settings"]
    assert {r["key"]: r["value"] for r in rows} == {
        "currency": "SEK",
        "smtp_password": smtp_password,
    }
    # A boolean, so that a failure does not print the bundle (and the password).
    in_clear = smtp_password in bundle_text
    assert not in_clear, "platform_settings row 'smtp_password': its value is stored in clear"
