"""Configuration from the environment, written into Prefect blocks.

`feedback-ops up` and `feedback-ops run` call `sync_blocks()`. A variable that is set
wins over what the block holds; a variable that is unset leaves the block as an
operator last saved it in the UI, or at its default when the block is new. The one
exception is documented: with OPS_DATABASE_URL unset, the ops catalog follows
DATABASE_URL, as it is its default.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.channels import EmailAlerts, PagerDutyAlerts, SlackAlerts, SmsAlerts
from blocks.contacts import EscalationContacts
from blocks.encryption import ConfigBackupKey
from blocks.pos import PosProviders
from blocks.redis import RedisServer
from feedback_ops.errors import ConfigError
from tasks.object_store import parse_location
from tasks.sealing import parse_key

PLATFORM_DATABASE_BLOCK = "platform-postgres"
OPS_DATABASE_BLOCK = "ops-postgres"
BACKUP_STORAGE_BLOCK = "backup-storage"
SLACK_BLOCK = "slack-alerts"
EMAIL_BLOCK = "email-alerts"
PAGERDUTY_BLOCK = "pagerduty-alerts"
SMS_BLOCK = "sms-alerts"
CONTACTS_BLOCK = "escalation-contacts"
REDIS_BLOCK = "platform-redis"
POS_PROVIDERS_BLOCK = "pos-providers"
CONFIG_KEY_BLOCK = "config-backup-key"


@dataclass(frozen=True)
class Variable:
    """One environment variable the project reads."""

    name: str
    default: str
    description: str
    secret: bool = False


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The git-ignored folder for local state: Prefect's database, local backups."""
    return Path(env.get("FEEDBACK_OPS_STATE_DIR") or Path.cwd() / ".state").absolute()


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "The platform's PostgreSQL database (the one backed up).",
        secret=True,
    ),
    Variable(
        "OPS_DATABASE_URL",
        "DATABASE_URL",
        "Where the ops catalog (schema `ops`: backup_records) lives.",
        secret=True,
    ),
    Variable(
        "REDIS_URL",
        "redis://127.0.0.1:6379",
        "The platform's Redis (redis:// or rediss://; snapshotted every 6 hours).",
        secret=True,
    ),
    Variable("REDIS_SNAPSHOT_METHOD", "logical", "rdb (redis-cli --rdb) or logical (SCAN+DUMP)."),
    Variable("REDIS_DATA_DIR", "", "Self-hosted Redis: its data directory, as seen here."),
    Variable("REDIS_STOP_COMMAND", "", "Self-hosted Redis: command that stops it."),
    Variable("REDIS_START_COMMAND", "", "Self-hosted Redis: command that starts it."),
    Variable(
        "CONFIG_BACKUP_KEY",
        "",
        "base64 AES-256 key sealing secrets in configuration backups; unset: left out.",
        secret=True,
    ),
    Variable("SQUARE_ACCESS_TOKEN", "", "Square API access token.", secret=True),
    Variable("SQUARE_API_URL", "https://connect.squareup.com", "Square API base URL."),
    Variable("SHOPIFY_SHOP_DOMAIN", "", "The Shopify shop, e.g. feedback.myshopify.com."),
    Variable("SHOPIFY_ACCESS_TOKEN", "", "Shopify Admin API access token.", secret=True),
    Variable("SHOPIFY_API_URL", "", "Shopify API base URL (default: https://<shop domain>)."),
    Variable("ZETTLE_CLIENT_ID", "", "Zettle OAuth client id."),
    Variable("ZETTLE_API_KEY", "", "Zettle API key (JWT-bearer assertion).", secret=True),
    Variable("ZETTLE_OAUTH_URL", "https://oauth.zettle.com", "Zettle OAuth base URL."),
    Variable("ZETTLE_PUSHER_URL", "https://pusher.izettle.com", "Zettle Pusher API base URL."),
    Variable("BACKUP_URL", "file://$FEEDBACK_OPS_STATE_DIR/backups", "Primary backup location."),
    Variable("BACKUP_REPLICA_URLS", "", "Comma-separated replica locations."),
    Variable("S3_ENDPOINT_URL", "", "S3-compatible endpoint (MinIO); empty for AWS."),
    Variable("BACKUP_SSE", "AES256", "S3 server-side encryption: AES256 or aws:kms."),
    Variable("BACKUP_KMS_KEY_ID", "", "KMS key id when BACKUP_SSE is aws:kms."),
    Variable("AWS_ACCESS_KEY_ID", "", "S3 access key id (else boto3's usual chain)."),
    Variable("AWS_SECRET_ACCESS_KEY", "", "S3 secret access key.", secret=True),
    Variable("AWS_SESSION_TOKEN", "", "S3 session token, for temporary credentials.", secret=True),
    Variable("AWS_DEFAULT_REGION", "", "AWS region of the buckets, e.g. eu-north-1."),
    Variable("SLACK_WEBHOOK_URL", "", "Slack incoming webhook for alerts.", secret=True),
    Variable("SMTP_HOST", "", "SMTP server for alert email (STARTTLS)."),
    Variable("SMTP_PORT", "587", "SMTP port."),
    Variable("SMTP_USERNAME", "", "SMTP login."),
    Variable("SMTP_PASSWORD", "", "SMTP password.", secret=True),
    Variable("SMTP_FROM", "", "Sender address of alert email."),
    Variable("SMTP_STARTTLS", "true", "Require STARTTLS (true/false)."),
    Variable("SMTP_CA_FILE", "", "CA bundle to verify the SMTP server with."),
    Variable("ALERT_EMAIL_TO", "", "Comma-separated alert email recipients."),
    Variable("PAGERDUTY_ROUTING_KEY", "", "PagerDuty Events API v2 routing key.", secret=True),
    Variable("PAGERDUTY_EVENTS_URL", "", "PagerDuty Events API URL (default: PagerDuty's)."),
    Variable("SMS_PROVIDER", "46elks", "SMS gateway: 46elks or twilio."),
    Variable("SMS_USERNAME", "", "46elks API username or Twilio account SID."),
    Variable("SMS_PASSWORD", "", "46elks API password or Twilio auth token.", secret=True),
    Variable("SMS_FROM", "", "SMS sender name or number."),
    Variable("SMS_TO", "", "Comma-separated phone numbers (E.164) for critical SMS."),
    Variable("SMS_API_URL", "", "SMS gateway URL (default: the provider's)."),
    Variable("ESCALATION_CONTACTS", "{}", "JSON: role -> {phone, email, slack}."),
    Variable("FEEDBACK_OPS_STATE_DIR", "./.state", "Local state: Prefect's SQLite, backups."),
    Variable("FEEDBACK_OPS_PORT", "4200", "Port of the Prefect server and UI `up` starts."),
    Variable("PREFECT_API_URL", "", "Use an existing Prefect server instead of starting one."),
)


def _postgres(env: Mapping[str, str], variable: str) -> dict[str, Any]:
    url = env.get(variable)
    if not url:
        return {}
    # model_dump keeps SecretStr values as they are, so the password is carried along.
    return PostgresDatabase.from_url(url, variable=variable).model_dump(exclude={"block_type_slug"})


def _redis(env: Mapping[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if url := env.get("REDIS_URL"):
        parsed = RedisServer.from_url(url)
        fields |= parsed.model_dump(
            include={"host", "port", "username", "password", "tls"}, exclude_none=False
        )
        fields["password"] = parsed.password
    if method := env.get("REDIS_SNAPSHOT_METHOD"):
        if method not in ("rdb", "logical"):
            raise ConfigError(f"REDIS_SNAPSHOT_METHOD must be rdb or logical, got {method!r}")
        fields["snapshot_method"] = method
    if "REDIS_DATA_DIR" in env:
        fields["data_dir"] = env["REDIS_DATA_DIR"] or None
    for variable, name in (
        ("REDIS_STOP_COMMAND", "stop_command"),
        ("REDIS_START_COMMAND", "start_command"),
    ):
        if variable in env:
            try:
                fields[name] = shlex.split(env[variable])
            except ValueError as exc:
                raise ConfigError(f"{variable} is not a valid command line: {exc}") from None
    return fields


_POS_FIELDS = (
    ("SQUARE_ACCESS_TOKEN", "square_access_token", "secret"),
    ("SQUARE_API_URL", "square_api_url", "str"),
    ("SHOPIFY_SHOP_DOMAIN", "shopify_shop_domain", "str"),
    ("SHOPIFY_ACCESS_TOKEN", "shopify_access_token", "secret"),
    ("SHOPIFY_API_URL", "shopify_api_url", "str"),
    ("ZETTLE_CLIENT_ID", "zettle_client_id", "str"),
    ("ZETTLE_API_KEY", "zettle_api_key", "secret"),
    ("ZETTLE_OAUTH_URL", "zettle_oauth_url", "str"),
    ("ZETTLE_PUSHER_URL", "zettle_pusher_url", "str"),
)


def _pos(env: Mapping[str, str]) -> dict[str, Any]:
    fields = {
        name: _convert(variable, env[variable], kind)
        for variable, name, kind in _POS_FIELDS
        if variable in env
    }
    # An empty URL means the provider's own default, not "no URL".
    return {k: v for k, v in fields.items() if v is not None or not k.endswith("_url")}


def _config_key(env: Mapping[str, str]) -> dict[str, Any]:
    if "CONFIG_BACKUP_KEY" not in env:
        return {}
    text = env["CONFIG_BACKUP_KEY"]
    if not text:
        return {"key": None}
    parse_key(text)
    return {"key": SecretStr(text)}


def _storage(env: Mapping[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if url := env.get("BACKUP_URL"):
        parse_location(url, variable="BACKUP_URL")
        fields["url"] = url
    if "BACKUP_REPLICA_URLS" in env:
        replicas = [u.strip() for u in env["BACKUP_REPLICA_URLS"].split(",") if u.strip()]
        for url in replicas:
            parse_location(url, variable="BACKUP_REPLICA_URLS")
        fields["replica_urls"] = replicas
    if sse := env.get("BACKUP_SSE"):
        if sse not in ("AES256", "aws:kms"):
            raise ConfigError(f"BACKUP_SSE must be AES256 or aws:kms, got {sse!r}")
        fields["sse"] = sse
    plain = {
        "S3_ENDPOINT_URL": "endpoint_url",
        "BACKUP_KMS_KEY_ID": "kms_key_id",
        "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    }
    for variable, name in plain.items():
        if variable in env:
            fields[name] = env[variable] or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        fields["region_name"] = region
    for variable, name in (
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if variable in env:
            fields[name] = SecretStr(env[variable]) if env[variable] else None
    return fields


# How each plain variable becomes a block field: (variable, field, kind).
_CHANNEL_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    SLACK_BLOCK: (("SLACK_WEBHOOK_URL", "webhook_url", "secret"),),
    EMAIL_BLOCK: (
        ("SMTP_HOST", "host", "str"),
        ("SMTP_PORT", "port", "int"),
        ("SMTP_USERNAME", "username", "str"),
        ("SMTP_PASSWORD", "password", "secret"),
        ("SMTP_FROM", "sender", "str"),
        ("ALERT_EMAIL_TO", "recipients", "list"),
        ("SMTP_STARTTLS", "starttls", "bool"),
        ("SMTP_CA_FILE", "ca_file", "str"),
    ),
    PAGERDUTY_BLOCK: (
        ("PAGERDUTY_ROUTING_KEY", "routing_key", "secret"),
        ("PAGERDUTY_EVENTS_URL", "events_url", "str"),
    ),
    SMS_BLOCK: (
        ("SMS_PROVIDER", "provider", "str"),
        ("SMS_USERNAME", "username", "str"),
        ("SMS_PASSWORD", "password", "secret"),
        ("SMS_FROM", "sender", "str"),
        ("SMS_TO", "recipients", "list"),
        ("SMS_API_URL", "api_url", "str"),
    ),
}


def _convert(variable: str, value: str, kind: str) -> Any:
    if kind == "secret":
        return SecretStr(value) if value else None
    if kind == "list":
        return [item.strip() for item in value.split(",") if item.strip()]
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{variable} must be a whole number, got {value!r}") from None
    if kind == "bool":
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{variable} must be true or false, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    return value or None


def _channel(block_name: str) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    def fields(env: Mapping[str, str]) -> dict[str, Any]:
        return {
            field: _convert(variable, env[variable], kind)
            for variable, field, kind in _CHANNEL_FIELDS[block_name]
            if variable in env
        }

    return fields


def _contacts(env: Mapping[str, str]) -> dict[str, Any]:
    text = env.get("ESCALATION_CONTACTS")
    if not text:
        return {}
    try:
        contacts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"ESCALATION_CONTACTS is not valid JSON: {exc.msg}") from None
    if not isinstance(contacts, dict):
        raise ConfigError('ESCALATION_CONTACTS must be a JSON object: {"DevOps": {...}, ...}')
    return {"contacts": contacts}


@dataclass(frozen=True)
class BlockSpec:
    """One block the environment configures."""

    name: str
    block_type: type[Block]
    fields: Callable[[Mapping[str, str]], dict[str, Any]]
    default: Callable[[Mapping[str, str]], Block] | None = None
    """Builds the block when nothing configures it; None: the block is optional."""
    variables: Mapping[str, str] = field(default_factory=dict)
    """Field name to the variable that sets it, to name it in errors."""


def _platform(env: Mapping[str, str]) -> dict[str, Any]:
    return _postgres(env, "DATABASE_URL")


def _ops(env: Mapping[str, str]) -> dict[str, Any]:
    return _postgres(env, "OPS_DATABASE_URL") or _postgres(env, "DATABASE_URL")


def _variables(block_name: str) -> dict[str, str]:
    return {f: v for v, f, _kind in _CHANNEL_FIELDS[block_name]}


BLOCK_SPECS: tuple[BlockSpec, ...] = (
    BlockSpec(PLATFORM_DATABASE_BLOCK, PostgresDatabase, _platform, lambda env: PostgresDatabase()),
    BlockSpec(OPS_DATABASE_BLOCK, PostgresDatabase, _ops, lambda env: PostgresDatabase()),
    BlockSpec(REDIS_BLOCK, RedisServer, _redis, lambda env: RedisServer()),
    BlockSpec(POS_PROVIDERS_BLOCK, PosProviders, _pos, lambda env: PosProviders()),
    BlockSpec(CONFIG_KEY_BLOCK, ConfigBackupKey, _config_key, lambda env: ConfigBackupKey()),
    BlockSpec(
        BACKUP_STORAGE_BLOCK,
        BackupStorage,
        _storage,
        lambda env: BackupStorage(url=f"file://{state_dir(env) / 'backups'}"),
    ),
    BlockSpec(SLACK_BLOCK, SlackAlerts, _channel(SLACK_BLOCK), None, _variables(SLACK_BLOCK)),
    BlockSpec(EMAIL_BLOCK, EmailAlerts, _channel(EMAIL_BLOCK), None, _variables(EMAIL_BLOCK)),
    BlockSpec(
        PAGERDUTY_BLOCK,
        PagerDutyAlerts,
        _channel(PAGERDUTY_BLOCK),
        None,
        _variables(PAGERDUTY_BLOCK),
    ),
    BlockSpec(SMS_BLOCK, SmsAlerts, _channel(SMS_BLOCK), None, _variables(SMS_BLOCK)),
    BlockSpec(
        CONTACTS_BLOCK,
        EscalationContacts,
        _contacts,
        lambda env: EscalationContacts(),
        {"contacts": "ESCALATION_CONTACTS"},
    ),
)


def blocks_from_env(
    env: Mapping[str, str] = os.environ, existing: Mapping[str, Block] | None = None
) -> dict[str, Block]:
    """The blocks the environment describes, laid over `existing` ones.

    An optional block (an alert channel) that neither the environment nor an existing
    block configures is left out: that channel is not configured.

    Raises:
        ConfigError: a variable is invalid or one a block needs is missing; the
            message names the variable.
    """
    existing = existing or {}
    blocks: dict[str, Block] = {}
    for spec in BLOCK_SPECS:
        overrides = spec.fields(env)
        base = existing.get(spec.name)
        if base is None and spec.default is not None:
            base = spec.default(env)
        if base is None and not overrides:
            continue
        data = base.model_dump(exclude={"block_type_slug"}) if base is not None else {}
        try:
            block = spec.block_type.model_validate(data | overrides)
        except ValidationError as exc:
            raise _explain(spec, exc, env) from None
        if hasattr(block, "channel"):
            # Build the client once now, so a malformed URL fails at start-up with the
            # variable's name, not at 3 a.m. when the first alert needs it.
            try:
                block.channel()
            except ConfigError as exc:
                variable = next(iter(spec.variables.values()))
                raise ConfigError(f"{variable} (block {spec.name!r}): {exc}") from None
        blocks[spec.name] = block
    return blocks


def _explain(spec: BlockSpec, exc: ValidationError, env: Mapping[str, str]) -> ConfigError:
    first = exc.errors()[0]
    field_name = str(first["loc"][0]) if first["loc"] else ""
    variable = spec.variables.get(field_name)
    if variable is None:
        return ConfigError(f"block {spec.name!r}: {field_name}: {first['msg']}")
    given = [v for v in spec.variables.values() if env.get(v)]
    if first["type"] == "missing" or not env.get(variable):
        because = f", as {given[0]} is" if given else ""
        return ConfigError(f"{variable} must be set{because}")
    return ConfigError(f"{variable}: {first['msg']}")


def sync_blocks(env: Mapping[str, str] = os.environ) -> dict[str, Block]:
    """Write the environment's configuration into the Prefect API's blocks."""
    existing: dict[str, Block] = {}
    for spec in BLOCK_SPECS:
        try:
            existing[spec.name] = load_block(spec.block_type, spec.name)
        except ValueError:
            continue
    blocks = blocks_from_env(env, existing)
    for name, block in blocks.items():
        block.save(name, overwrite=True)
    return blocks
