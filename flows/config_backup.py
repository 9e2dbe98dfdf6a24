"""Runbook, "Backup & Recovery Procedures": POS configuration daily at 03:00 and
application configuration daily at 04:00.

Each is a JSON bundle an operator can read in an emergency, stored like every backup
(read back and checked, manifest, replicas, `ops.backup_records`, alert on failure).
Secrets inside are sealed with AES-256-GCM under the key in the `config-backup-key`
block, or left out when there is no key; never stored in clear (`tasks/sealing.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from psycopg import sql
from pydantic import BaseModel, Field

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.encryption import ConfigBackupKey
from blocks.pos import PosProviders
from feedback_ops.config import (
    BACKUP_STORAGE_BLOCK,
    CONFIG_KEY_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
)
from feedback_ops.errors import OpsError
from tasks.backup_run import (
    Produced,
    StoredBackup,
    alerting_on_failure,
    locations_table,
    take_backup,
)
from tasks.locks import lock_name
from tasks.object_store import ChunkStream, HashingReader, ObjectStore
from tasks.pg_dump import connect, explain_postgres_error
from tasks.pos_webhooks import all_subscriptions
from tasks.retry import RETRY_DELAYS, retry_if_transient
from tasks.sealing import ALGORITHM, SealCount, key_id, seal

T = TypeVar("T")
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


@task(
    name="read-table-rows",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def read_table_rows(db: PostgresDatabase, table: str) -> list[dict[str, Any]] | None:
    """Every row of `schema.table` as JSON objects ordered by its first column; None when
    the table does not exist."""
    schema, _, name = table.rpartition(".")
    try:
        with connect(db) as conn:
            first = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND ordinal_position = 1",
                (schema or "public", name),
            ).fetchone()
            if not first:
                return None
            query = sql.SQL("SELECT row_to_json(t) FROM {} AS t ORDER BY t.{}").format(
                sql.Identifier(schema or "public", name), sql.Identifier(first[0])
            )
            return [row[0] for row in conn.execute(query)]
    except psycopg.Error as exc:
        raise explain_postgres_error(str(exc), db) from None


@task(
    name="read-pos-webhooks",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def read_pos_webhooks(providers: PosProviders) -> dict[str, dict[str, Any]]:
    """Each provider's webhook subscriptions as the provider reports them."""
    return dict(all_subscriptions(providers))


@task(name="read-prefect-configuration", cache_policy=NO_CACHE)
def read_prefect_configuration() -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """The project's block documents (secrets included, to be sealed) and deployments;
    and the JSON paths of the blocks' declared secret fields."""
    with get_client(sync_client=True) as client:
        documents = _every(
            lambda offset: client.read_block_documents(
                offset=offset, limit=PAGE, include_secrets=True
            )
        )
        flows = {f.id: f.name for f in _every(lambda o: client.read_flows(offset=o, limit=PAGE))}
        deployments = _every(lambda o: client.read_deployments(offset=o, limit=PAGE))
    blocks: dict[str, Any] = {}
    secret_paths: set[str] = set()
    for doc in sorted(documents, key=lambda d: d.name or ""):
        if doc.is_anonymous or not doc.name:
            continue
        slug = doc.block_type.slug if doc.block_type else None
        blocks[doc.name] = {"type": slug, "data": _plain(doc.data)}
        fields = doc.block_schema.fields if doc.block_schema else {}
        for field_path in fields.get("secret_fields", []):
            secret_paths.add(f"/blocks/{doc.name}/data/{field_path.replace('.', '/')}")
    served = {}
    for dep in sorted(deployments, key=lambda d: (flows.get(d.flow_id, ""), d.name)):
        served[f"{flows.get(dep.flow_id, dep.flow_id)}/{dep.name}"] = {
            "description": dep.description,
            "entrypoint": dep.entrypoint,
            "parameters": dep.parameters,
            "tags": dep.tags,
            "paused": dep.paused,
            "schedules": [s.model_dump(mode="json", include={"schedule", "active", "parameters"})
                          for s in dep.schedules],
        }  # fmt: skip
    return blocks, served, secret_paths


PAGE = 200  # the API's own default and maximum page size


def _every(read_page: Callable[[int], list[T]]) -> list[T]:
    """Every item of a paged API read: the server returns at most a page at a time."""
    items: list[T] = []
    while True:
        page = read_page(len(items))
        items += page
        if len(page) < PAGE:
            return items


def _plain(value: Any) -> Any:
    """Block data as JSON values (SecretStr and friends revealed, to be sealed next)."""
    if hasattr(value, "get_secret_value"):
        return _plain(value.get_secret_value())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return json.loads(json.dumps(value, default=str))


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
) -> Callable[[ObjectStore, str], Produced]:
    def produce(store: ObjectStore, object_key: str) -> Produced:
        started = datetime.now(UTC)
        sections, secret_paths = build()
        data, sizes, count = _bundle(kind, sections, key, secret_paths)
        reader = HashingReader(ChunkStream(iter((data,))))
        store.upload_stream(object_key, reader)
        return Produced(
            size=reader.digest.size,
            sha256=reader.digest.sha256,
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
    ops_database_block: str,
) -> ConfigBackupResult:
    with alerting_on_failure(
        condition=f"{kind}-backup",
        alert_name=f"{kind}-backup-failed",
        what=f"The {kind} backup",
        details={"kind": kind},
        ops_database_block=ops_database_block,
    ):
        key = load_block(ConfigBackupKey, key_block).key_bytes()
        backup = take_backup(
            kind=kind,
            source=source,
            suffix=".json",
            lock=lock_name("config", kind),
            artifact_key=f"{kind}-backup",
            storage=load_block(BackupStorage, storage_block),
            ops_db=load_block(PostgresDatabase, ops_database_block),
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
    database_block: str = PLATFORM_DATABASE_BLOCK,
    providers_block: str = POS_PROVIDERS_BLOCK,
    key_block: str = CONFIG_KEY_BLOCK,
    storage_block: str = BACKUP_STORAGE_BLOCK,
    ops_database_block: str = OPS_DATABASE_BLOCK,
) -> ConfigBackupResult:
    """Back up the POS configuration (runbook: daily at 03:00).

    The platform's `pos_connections` rows and each provider's webhook subscriptions as
    Square, Shopify and Zettle report them, in one JSON bundle. A provider without
    credentials is recorded as not configured; one that cannot be read fails the
    backup (after retries), as the bundle would be incomplete.
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
        "pos-config", db.display_name, build, key_block, storage_block, ops_database_block
    )


@flow(name="app-config-backup")
def app_config_backup(
    database_block: str = PLATFORM_DATABASE_BLOCK,
    config_tables: list[str] = list(PLATFORM_CONFIG_TABLES),  # noqa: B006
    key_block: str = CONFIG_KEY_BLOCK,
    storage_block: str = BACKUP_STORAGE_BLOCK,
    ops_database_block: str = OPS_DATABASE_BLOCK,
) -> ConfigBackupResult:
    """Back up the application configuration (runbook: daily at 04:00).

    The project's block documents (their secret fields sealed), its deployments with
    schedules and parameters, and the platform's configuration tables
    (`config_tables`; one that does not exist is recorded as absent), in one JSON
    bundle.
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
        "app-config", db.display_name, build, key_block, storage_block, ops_database_block
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
