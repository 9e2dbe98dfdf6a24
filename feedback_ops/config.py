"""Configuration from the environment, written into Prefect blocks.

`feedback-ops up` and `feedback-ops config sync` save it (`sync_blocks()`); a one-off
`feedback-ops run` lays it over the saved blocks for that run only and saves nothing
(`configured_blocks()` with `blocks.run_only_blocks`). A variable that is set wins over
what the block holds; a variable that is unset leaves the block as an
operator last saved it in the UI, or at its default when the block is new. Which
variable fills which field, and how its text is read, is the table in
`feedback_ops.settings`; this module only applies it. With OPS_DATABASE_URL unset the
ops catalog follows DATABASE_URL, as the table says.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from blocks import (
    AlertChannels,
    BackupStorage,
    ConfigBackupKey,
    DisasterRecovery,
    EmailAlerts,
    EscalationContacts,
    MetricsPushgateway,
    PagerDutyAlerts,
    PlatformGateway,
    PosProviders,
    PostgresDatabase,
    RedisServer,
    SlackAlerts,
    SmsAlerts,
    WebhookDeliveries,
    WorkPoolFailover,
    load_block,
)
from blocks.encryption import parse_key
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    CONFIG_KEY_BLOCK,
    CONTACTS_BLOCK,
    DR_BLOCK,
    EMAIL_BLOCK,
    GATEWAY_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PAGERDUTY_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
    REDIS_BLOCK,
    SLACK_BLOCK,
    SMS_BLOCK,
    WEBHOOK_DELIVERIES_BLOCK,
    WORK_POOL_FAILOVER_BLOCK,
)
from blocks.pos.deliveries import IDENTIFIER, ROLES
from blocks.storage.stores import parse_location
from feedback_ops.errors import ConfigError
from feedback_ops.settings import Kind, Setting, for_block


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The git-ignored folder for local state: Prefect's database, local backups."""
    return Path(env.get("FEEDBACK_OPS_STATE_DIR") or Path.cwd() / ".state").absolute()


@dataclass(frozen=True)
class BlockSpec:
    """One block the environment configures."""

    name: str
    block_type: type[Block]
    default: Callable[[Mapping[str, str]], Block] | None
    """Builds the block when nothing configures it; None: the block is optional."""

    @property
    def settings(self) -> tuple[Setting, ...]:
        """The rows of the settings table that fill this block."""
        return for_block(self.name)

    @property
    def variables(self) -> dict[str, str]:
        """Field name to the variable that sets it, to name it in errors."""
        return {s.field: s.variable for s in self.settings if s.field}


BLOCK_SPECS: tuple[BlockSpec, ...] = (
    BlockSpec(PLATFORM_DATABASE_BLOCK, PostgresDatabase, lambda env: PostgresDatabase()),
    BlockSpec(OPS_DATABASE_BLOCK, PostgresDatabase, lambda env: PostgresDatabase()),
    BlockSpec(REDIS_BLOCK, RedisServer, lambda env: RedisServer()),
    BlockSpec(POS_PROVIDERS_BLOCK, PosProviders, lambda env: PosProviders()),
    BlockSpec(GATEWAY_BLOCK, PlatformGateway, lambda env: PlatformGateway()),
    BlockSpec(WEBHOOK_DELIVERIES_BLOCK, WebhookDeliveries, lambda env: WebhookDeliveries()),
    BlockSpec(CONFIG_KEY_BLOCK, ConfigBackupKey, lambda env: ConfigBackupKey()),
    BlockSpec(
        BACKUP_STORAGE_BLOCK,
        BackupStorage,
        lambda env: BackupStorage(url=f"file://{state_dir(env) / 'backups'}"),
    ),
    BlockSpec(SLACK_BLOCK, SlackAlerts, None),
    BlockSpec(EMAIL_BLOCK, EmailAlerts, None),
    BlockSpec(PAGERDUTY_BLOCK, PagerDutyAlerts, None),
    BlockSpec(SMS_BLOCK, SmsAlerts, None),
    BlockSpec(METRICS_BLOCK, MetricsPushgateway, None),
    BlockSpec(CONTACTS_BLOCK, EscalationContacts, lambda env: EscalationContacts()),
    BlockSpec(WORK_POOL_FAILOVER_BLOCK, WorkPoolFailover, None),
    BlockSpec(DR_BLOCK, DisasterRecovery, None),
)
"""Every block the environment configures, in the order they are saved; the alert
channels block that refers to the channel blocks and contacts comes after them."""


def read_setting(setting: Setting, value: str) -> dict[str, Any]:
    """The block fields one variable's text sets; {} when it leaves the block as it is.

    Raises:
        ConfigError: the text is not what the variable takes; the message names the
            variable and never repeats a secret.
    """
    name, field = setting.variable, setting.field or ""
    kind = setting.kind
    if kind is Kind.POSTGRES_URL:
        if not value:
            return {}
        # model_dump keeps SecretStr values as they are, so the password is carried along.
        parsed = PostgresDatabase.from_url(value, variable=name)
        return parsed.model_dump(exclude={"block_type_slug"})
    if kind is Kind.REDIS_URL:
        if not value:
            return {}
        redis = RedisServer.from_url(value, variable=name)
        return {
            "host": redis.host,
            "port": redis.port,
            "username": redis.username,
            "password": redis.password,
            "tls": redis.tls,
        }
    leaves_when_empty = (
        Kind.CHOICE,
        Kind.LOCATION,
        Kind.REGION,
        Kind.URL,
        Kind.CONTACTS,
        Kind.NAME,
    )
    if kind in leaves_when_empty and not value:
        return {}
    if kind is Kind.COLUMNS:
        return _columns(name, value)
    return {field: _field_value(setting, value)}


def _field_value(setting: Setting, value: str) -> Any:
    name, kind = setting.variable, setting.kind
    if kind is Kind.SECRET:
        return SecretStr(value) if value else None
    if kind is Kind.LIST:
        return [item.strip() for item in value.split(",") if item.strip()]
    if kind is Kind.INT:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if kind is Kind.BOOL:
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    if kind is Kind.COMMAND:
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{name} is not a valid command line: {exc}") from None
    if kind is Kind.CHOICE:
        if value not in setting.choices:
            raise ConfigError(f"{name} must be {' or '.join(setting.choices)}, got {value!r}")
        return value
    if kind is Kind.LOCATION:
        parse_location(value, variable=name)
        return value
    if kind is Kind.LOCATIONS:
        urls = [u.strip() for u in value.split(",") if u.strip()]
        for url in urls:
            parse_location(url, variable=name)
        return urls
    if kind is Kind.KEY:
        if not value:
            return None
        parse_key(value, variable=name)
        return SecretStr(value)
    if kind is Kind.CONTACTS:
        return _contacts(name, value)
    return value or None


def _columns(name: str, text: str) -> dict[str, str]:
    """`role=column` pairs as the Webhook Deliveries block's `<role>_column` fields."""
    fields: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        role, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or role not in ROLES or not column:
            raise ConfigError(
                f"{name} takes role=column pairs with roles {', '.join(ROLES)}; got {pair!r}"
            )
        if not IDENTIFIER.match(column):
            raise ConfigError(f"{name}: {column!r} is not a column name ([a-z_][a-z0-9_]*)")
        fields[f"{role}_column"] = column
    return fields


def _contacts(name: str, text: str) -> dict[str, Any]:
    try:
        contacts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc.msg}") from None
    if not isinstance(contacts, dict):
        raise ConfigError(f'{name} must be a JSON object: {{"DevOps": {{...}}, ...}}')
    return contacts


def _overrides(spec: BlockSpec, env: Mapping[str, str]) -> dict[str, Any]:
    """What the environment sets in one block, rows applied in the table's order."""
    fields: dict[str, Any] = {}
    for setting in spec.settings:
        variable = setting.variable
        if not env.get(variable) and setting.fallback is not None:
            variable = setting.fallback
        if variable in env:
            fields |= read_setting(setting, env[variable])
    return fields


def blocks_from_env(
    env: Mapping[str, str] = os.environ, existing: Mapping[str, Block] | None = None
) -> dict[str, Block]:
    """The blocks the environment describes, laid over `existing` ones, and the alert
    channels block that refers to the channels and contacts among them.

    An optional block (an alert channel) that neither the environment nor an existing
    block configures is left out: that channel is not configured.

    Raises:
        ConfigError: a variable is invalid or one a block needs is missing; the
            message names the variable.
    """
    existing = existing or {}
    blocks: dict[str, Block] = {}
    for spec in BLOCK_SPECS:
        overrides = _overrides(spec, env)
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
        if isinstance(block, MetricsPushgateway):
            block.target()  # likewise: a malformed PUSHGATEWAY_URL fails here, by name
        blocks[spec.name] = block
    blocks[ALERT_CHANNELS_BLOCK] = alert_channels(blocks)
    return blocks


def alert_channels(blocks: Mapping[str, Block]) -> AlertChannels:
    """The alert channels block made of the channel blocks and contacts in `blocks`."""
    return AlertChannels.model_validate(
        {
            "slack": blocks.get(SLACK_BLOCK),
            "email": blocks.get(EMAIL_BLOCK),
            "pagerduty": blocks.get(PAGERDUTY_BLOCK),
            "sms": blocks.get(SMS_BLOCK),
            "contacts": blocks.get(CONTACTS_BLOCK) or EscalationContacts(),
        }
    )


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


def saved_blocks() -> dict[str, Block]:
    """The configured blocks as saved in the Prefect API, by name (missing ones left out)."""
    saved: dict[str, Block] = {}
    kinds: list[tuple[str, type[Block]]] = [(spec.name, spec.block_type) for spec in BLOCK_SPECS]
    kinds.append((ALERT_CHANNELS_BLOCK, AlertChannels))
    for name, block_type in kinds:
        try:
            saved[name] = load_block(block_type, name)
        except ValueError:
            continue
    return saved


def configured_blocks(env: Mapping[str, str] = os.environ) -> dict[str, Block]:
    """The blocks a run uses: the environment laid over the saved blocks."""
    return blocks_from_env(env, saved_blocks())


def changes(saved: Mapping[str, Block], blocks: Mapping[str, Block]) -> dict[str, list[str]]:
    """What `blocks` changes against `saved`: block name to the fields that differ
    (`["(new)"]` for a block not saved yet). Field names only, never their values."""
    changed: dict[str, list[str]] = {}
    for name, block in blocks.items():
        before = saved.get(name)
        if before is None:
            changed[name] = ["(new)"]
            continue
        # SecretStr compares by its secret, so a changed password counts as a change.
        old, new = _fields(before), _fields(block)
        if fields := sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)):
            changed[name] = fields
    return changed


def _fields(block: Block) -> dict[str, Any]:
    """The block's settings, nested blocks included, without Prefect's bookkeeping (the
    saved document's ids and names, which a block built from the environment lacks)."""

    def settings(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: settings(v)
                for k, v in value.items()
                if not k.startswith("_") and k != "block_type_slug"
            }
        return value

    fields: dict[str, Any] = settings(block.model_dump())
    return fields


def sync_blocks(env: Mapping[str, str] = os.environ) -> dict[str, list[str]]:
    """Write the environment's configuration into the Prefect API's blocks, and return
    what changed (see `changes`). Only `up` and `config sync` save configuration.

    The channel blocks are saved before the alert channels block, which then refers to
    them: an operator who edits a channel in the UI changes what every flow uses.
    """
    saved = saved_blocks()
    blocks = blocks_from_env(env, saved)
    changed = changes(saved, blocks)
    for name, block in blocks.items():
        block.save(name, overwrite=True)
    return changed
