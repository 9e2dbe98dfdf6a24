"""Runbook, "Backup & Recovery Procedures": POS configuration daily at 03:00 and
application configuration daily at 04:00.

Each is a JSON bundle an operator can read in an emergency, stored like every backup
(read back and checked, manifest, replicas, `ops.backup_records`, alert on failure).
Secrets inside are sealed with AES-256-GCM under the key in the `config-backup-key`
block, or left out when there is no key; never stored in clear (`blocks/encryption.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from blocks import BackupStorage, ConfigBackupKey, PosProviders, PostgresDatabase, load_block
from blocks.encryption import ALGORITHM, SealCount, key_id, seal
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    CONFIG_KEY_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
)
from blocks.storage.stores import ObjectStore
from feedback_ops.errors import OpsError
from flows.alert_steps import AlertTargets, alerting_on_failure
from flows.backup_steps import (
    RUNBOOK_SECTION,
    BackupOf,
    Produced,
    Producer,
    StoredBackup,
    locations_table,
    take_backup,
)
from flows.locks import lock_name
from flows.metric_steps import backup_figures_after
from flows.parameters import BlockName, TableName
from tasks.pos import read_pos_webhooks
from tasks.postgres import read_table_rows
from tasks.prefect_api import read_prefect_configuration
from tasks.storage import store_bytes

BUNDLE_FORMAT = 1
CONTENT_FORMAT = "config-bundle-json-v1"
# The platform's configuration tables; one that does not exist is listed as absent.
PLATFORM_CONFIG_TABLES = ("public.platform_settings", "public.feature_flags")


class ConfigBackupResult(BaseModel):
    """What `feedback-ops run pos-config-backup --json` (or app-) prints as `result`."""

    backup_id: str
    locations: list[str] = Field(description="Primary first, then every replica.")
    size: int
    sha256: str
    sections: dict[str, int] = Field(description="Items per section of the bundle.")
    secrets_sealed: int
    secrets_left_out: int


def _bundle(
    kind: str, sections: dict[str, Any], key: bytes | None, secret_paths: set[str]
) -> tuple[bytes, dict[str, int], SealCount]:
    """The bundle's bytes with every secret sealed or left out, items per section, and
    how many secrets there were."""
    count = SealCount()
    sealed_sections = seal(sections, key, secret_paths, count)
    document = {
        "bundle_format": BUNDLE_FORMAT,
        "kind": kind,
        "taken_at": datetime.now(UTC).isoformat(),
        "secrets": {
            "algorithm": ALGORITHM if key else None,
            "kid": key_id(key) if key else None,
            "sealed": count.sealed,
            "left_out": count.redacted,
        },
        "sections": sealed_sections,
    }
    data = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    sizes = {name: _items(value) for name, value in sections.items()}
    return data, sizes, count


def _items(section: Any) -> int:
    """Rows, blocks or deployments in a section; subscriptions for the providers'."""
    if isinstance(section, dict) and all(
        isinstance(v, dict) and "subscriptions" in v for v in section.values()
    ):
        return sum(len(v["subscriptions"]) for v in section.values())
    return len(section) if section is not None else 0


def _producer(
    kind: str, build: Callable[[], tuple[dict[str, Any], set[str]]], key: bytes | None
) -> Producer:
    def produce(store: ObjectStore, object_key: str, _previous: int | None) -> Produced:
        started = datetime.now(UTC)
        sections, secret_paths = build()
        data, sizes, count = _bundle(kind, sections, key, secret_paths)
        stored = store_bytes(store, object_key, data)
        return Produced(
            size=stored.size,
            sha256=stored.sha256,
            started_at=started,
            finished_at=datetime.now(UTC),
            tools={"bundle_format": str(BUNDLE_FORMAT)},
            content_format=CONTENT_FORMAT,
            contents={
                "sections": sizes,
                "secrets": {"sealed": count.sealed, "left_out": count.redacted},
            },
        )

    return produce


def _back_up_bundle(
    kind: str,
    source: str,
    build: Callable[[], tuple[dict[str, Any], set[str]]],
    key_block: str,
    storage_block: str,
    targets: AlertTargets,
    metrics_block: str,
) -> ConfigBackupResult:
    """The shared steps of both configuration backups, around the bundle `build` makes."""
    with (
        backup_figures_after(metrics_block, targets.ops_database_block, kind),
        alerting_on_failure(
            condition=f"{kind}-backup",
            alert_name=f"{kind}-backup-failed",
            what=f"The {kind} backup",
            details={"kind": kind},
            runbook_section=RUNBOOK_SECTION,
            targets=targets,
        ),
    ):
        key = load_block(ConfigBackupKey, key_block).key_bytes()
        backup = take_backup(
            BackupOf(
                kind=kind,
                source=source,
                suffix=".json",
                lock=lock_name("config", kind),
                artifact_key=f"{kind}-backup",
            ),
            storage=load_block(BackupStorage, storage_block),
            ops_db=load_block(PostgresDatabase, targets.ops_database_block),
            produce=_producer(kind, build, key),
        )
    _publish(kind, backup, source)
    contents = backup.produced.contents
    return ConfigBackupResult(
        backup_id=backup.backup_id,
        locations=backup.locations,
        size=backup.produced.size,
        sha256=backup.produced.sha256,
        sections=contents["sections"],
        secrets_sealed=contents["secrets"]["sealed"],
        secrets_left_out=contents["secrets"]["left_out"],
    )


@flow(name="pos-config-backup")
def pos_config_backup(
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    providers_block: BlockName = POS_PROVIDERS_BLOCK,
    key_block: BlockName = CONFIG_KEY_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> ConfigBackupResult:
    """Back up the POS configuration (runbook: daily at 03:00).

    The platform's `pos_connections` rows and each provider's webhook subscriptions as
    Square, Shopify and Zettle report them, in one JSON bundle. A provider without
    credentials is recorded as not configured; one that cannot be read fails the
    backup (after retries), as the bundle would be incomplete.

    Args:
        database_block: Name of the Postgres Database block of the platform's database
            (the default is the one `feedback-ops up` saves).
        providers_block: Name of the POS Providers block with the Square, Shopify and
            Zettle credentials.
        key_block: Name of the Config Backup Key block whose key seals the bundle's
            secrets; without a key they are left out.
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    db = load_block(PostgresDatabase, database_block)
    providers = load_block(PosProviders, providers_block)

    def build() -> tuple[dict[str, Any], set[str]]:
        rows = read_table_rows(db, "public.pos_connections")
        if rows is None:
            raise OpsError(f"{db.display_name} has no table public.pos_connections")
        return {
            "pos_connections": rows,
            "webhook_subscriptions": read_pos_webhooks(providers),
        }, set()

    return _back_up_bundle(
        "pos-config",
        db.display_name,
        build,
        key_block,
        storage_block,
        AlertTargets(ops_database_block, alert_channels_block),
        metrics_block,
    )


@flow(name="app-config-backup")
def app_config_backup(
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    config_tables: list[TableName] = list(PLATFORM_CONFIG_TABLES),  # noqa: B006
    key_block: BlockName = CONFIG_KEY_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> ConfigBackupResult:
    """Back up the application configuration (runbook: daily at 04:00).

    The project's block documents (their secret fields sealed), its deployments with
    schedules and parameters, and the platform's configuration tables
    (`config_tables`; one that does not exist is recorded as absent), in one JSON
    bundle.

    Args:
        database_block: Name of the Postgres Database block of the platform's database
            (the default is the one `feedback-ops up` saves).
        config_tables: The platform's configuration tables to include, as
            `schema.table`; one that does not exist is recorded as absent.
        key_block: Name of the Config Backup Key block whose key seals the bundle's
            secrets; without a key they are left out.
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    db = load_block(PostgresDatabase, database_block)

    def build() -> tuple[dict[str, Any], set[str]]:
        blocks, deployments, secret_paths = read_prefect_configuration()
        tables = {table: read_table_rows(db, table) for table in config_tables}
        return {
            "blocks": blocks,
            "deployments": deployments,
            "platform_tables": tables,
        }, secret_paths

    return _back_up_bundle(
        "app-config",
        db.display_name,
        build,
        key_block,
        storage_block,
        AlertTargets(ops_database_block, alert_channels_block),
        metrics_block,
    )


def _publish(kind: str, backup: StoredBackup, source: str) -> None:
    contents = backup.produced.contents
    sections = "\n".join(f"| {name} | {n} |" for name, n in contents["sections"].items())
    secrets = contents["secrets"]
    create_markdown_artifact(
        key=f"{kind}-backup",
        description=f"{kind} backup {backup.backup_id}: completed",
        markdown=f"""# {kind} backup `{backup.backup_id}` — completed

| | |
|---|---|
| Source | `{source}` |
| Size | {backup.produced.size} bytes |
| sha256 | `{backup.produced.sha256}` |
| Secrets | {secrets["sealed"]} sealed (AES-256-GCM), {secrets["left_out"]} left out |

## Sections

| section | items |
|---|---|
{sections}

## Locations

{locations_table(backup.copies)}
""",
    )
