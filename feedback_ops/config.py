"""Configuration from the environment, written into Prefect blocks.

`feedback-ops up` and `feedback-ops run` call `sync_blocks()`. A variable that is set
wins over what the block holds; a variable that is unset leaves the block as an
operator last saved it in the UI, or at its default when the block is new. The one
exception is documented: with OPS_DATABASE_URL unset, the ops catalog follows
DATABASE_URL, as it is its default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from blocks import BackupStorage, PostgresDatabase, load_block
from feedback_ops.errors import ConfigError
from tasks.object_store import parse_location

PLATFORM_DATABASE_BLOCK = "platform-postgres"
OPS_DATABASE_BLOCK = "ops-postgres"
BACKUP_STORAGE_BLOCK = "backup-storage"


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
    Variable("BACKUP_URL", "file://$FEEDBACK_OPS_STATE_DIR/backups", "Primary backup location."),
    Variable("BACKUP_REPLICA_URLS", "", "Comma-separated replica locations."),
    Variable("S3_ENDPOINT_URL", "", "S3-compatible endpoint (MinIO); empty for AWS."),
    Variable("BACKUP_SSE", "AES256", "S3 server-side encryption: AES256 or aws:kms."),
    Variable("BACKUP_KMS_KEY_ID", "", "KMS key id when BACKUP_SSE is aws:kms."),
    Variable("AWS_ACCESS_KEY_ID", "", "S3 access key id (else boto3's usual chain)."),
    Variable("AWS_SECRET_ACCESS_KEY", "", "S3 secret access key.", secret=True),
    Variable("AWS_SESSION_TOKEN", "", "S3 session token, for temporary credentials.", secret=True),
    Variable("AWS_DEFAULT_REGION", "", "AWS region of the buckets, e.g. eu-north-1."),
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
    for variable, field in plain.items():
        if variable in env:
            fields[field] = env[variable] or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        fields["region_name"] = region
    for variable, field in (
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if variable in env:
            fields[field] = SecretStr(env[variable]) if env[variable] else None
    return fields


def _defaults(env: Mapping[str, str]) -> dict[str, Callable[[], Block]]:
    return {
        PLATFORM_DATABASE_BLOCK: PostgresDatabase,
        OPS_DATABASE_BLOCK: PostgresDatabase,
        BACKUP_STORAGE_BLOCK: lambda: BackupStorage(url=f"file://{state_dir(env) / 'backups'}"),
    }


def blocks_from_env(
    env: Mapping[str, str] = os.environ, existing: Mapping[str, Block] | None = None
) -> dict[str, Block]:
    """The blocks the environment describes, laid over `existing` ones.

    Raises:
        ConfigError: a variable is invalid; the message names it.
    """
    existing = existing or {}
    platform_fields = _postgres(env, "DATABASE_URL")
    ops_fields = _postgres(env, "OPS_DATABASE_URL") or platform_fields
    overrides = {
        PLATFORM_DATABASE_BLOCK: platform_fields,
        OPS_DATABASE_BLOCK: ops_fields,
        BACKUP_STORAGE_BLOCK: _storage(env),
    }
    blocks: dict[str, Block] = {}
    for name, make_default in _defaults(env).items():
        base = existing.get(name) or make_default()
        try:
            blocks[name] = type(base).model_validate(
                base.model_dump(exclude={"block_type_slug"}) | overrides[name]
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(
                f"block {name!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from None
    return blocks


def sync_blocks(env: Mapping[str, str] = os.environ) -> dict[str, Block]:
    """Write the environment's configuration into the Prefect API's blocks."""
    existing: dict[str, Block] = {}
    for name, make_default in _defaults(env).items():
        try:
            existing[name] = load_block(type(make_default()), name)
        except ValueError:
            continue
    blocks = blocks_from_env(env, existing)
    for name, block in blocks.items():
        block.save(name, overwrite=True)
    return blocks
