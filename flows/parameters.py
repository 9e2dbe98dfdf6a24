"""Bounds of flow parameters, in the types the parameter schema is built from.

Prefect turns these into the schema's `minimum` and `maximum`: the run form in the UI
refuses a value outside them, and a run started any other way fails its parameter
validation before the flow's first step. Each parameter's description is in its flow's
docstring (`Args:`), where Prefect reads it from.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from blocks.storage.manifest import BACKUP_ID

RestoreJobs = Annotated[int, Field(ge=1, le=16)]
"""Parallel `pg_restore` jobs: at least one, and no more than a 2–16 core server uses."""

AtLeastOne = Annotated[int, Field(ge=1)]
"""A count of days, weeks or years to keep backups."""

LockWaitSeconds = Annotated[int, Field(ge=1, le=3600)]
"""Seconds to wait for a table lock: pg_dump takes 0 as "wait forever"."""

StallSeconds = Annotated[int, Field(ge=10, le=3600)]
"""Seconds a tool may go without sending a byte before it is stopped as hung."""

BACKUP_ID_PATTERN = f"^(latest|{BACKUP_ID})$"
BackupId = Annotated[str, Field(pattern=BACKUP_ID_PATTERN, max_length=80)]
"""`latest`, or an id as backups are named: `database-20270328T010000Z-3fa2c1`."""

DR_BACKUP_ID_PATTERN = f"^(verified|latest|{BACKUP_ID})$"
DrBackupId = Annotated[str, Field(pattern=DR_BACKUP_ID_PATTERN, max_length=80)]
"""`verified` (the newest whose restore drill passed), `latest`, or a backup's id."""

# Empty is allowed, meaning "a new database": the UI's form then shows one text box,
# not a choice between a string and None.
DATABASE_NAME_PATTERN = r"^([a-z_][a-z0-9_]{0,62})?$"
DatabaseName = Annotated[str, Field(pattern=DATABASE_NAME_PATTERN)]
"""A PostgreSQL database name that needs no quoting: lower case, digits and `_`, at
most 63 characters (PostgreSQL's limit), not starting with a digit; or empty."""

BLOCK_NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
BlockName = Annotated[str, Field(pattern=BLOCK_NAME_PATTERN, max_length=100)]
"""A saved block's name, as Prefect allows them: lower case, digits and dashes."""

TABLE_NAME_PATTERN = r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$"
TableName = Annotated[str, Field(pattern=TABLE_NAME_PATTERN)]
"""A table, optionally with its schema: `public.platform_settings`."""

Operator = Annotated[str, Field(min_length=1, max_length=100)]
"""Who acts, as the alert's history records it."""

Provider = Literal["square", "shopify", "zettle"]
"""A POS provider, by the name its gateway uses: a choice in the run form."""

ReplayProvider = Literal["all", "square", "shopify", "zettle"]
"""Whose webhooks to replay: one POS provider, or all."""

FailureKind = Literal["no answer", "5xx", "429", "signature rejected", "refused"]
"""How a webhook delivery failed (`policy.webhooks.Failure`): a choice in the run form."""

LookbackHours = Annotated[int, Field(ge=1, le=24 * 30)]
"""Hours of failed webhook deliveries to reconcile: at least one, at most 30 days."""

Direction = Literal["failover", "failback"]
"""Where to move a provider's traffic: to its secondary endpoint, or back."""

ONE_LINE_PATTERN = r"^[^\n\r]+$"
Reason = Annotated[str, Field(min_length=3, max_length=200, pattern=ONE_LINE_PATTERN)]
"""Why, in one line: it goes to the gateway, the alert and the catalog."""

ApprovalSeconds = Annotated[int, Field(ge=60, le=24 * 3600)]
"""How long a run waits for its approval before it gives up, changing nothing."""

SHAPES = {
    BACKUP_ID_PATTERN: "a backup id (latest, or <kind>-YYYYMMDDTHHMMSSZ-<6 hex>)",
    DR_BACKUP_ID_PATTERN: ("a backup id (verified, latest, or <kind>-YYYYMMDDTHHMMSSZ-<6 hex>)"),
    DATABASE_NAME_PATTERN: (
        "a database name (lower case letters, digits and _, not starting with a digit, "
        "at most 63 characters) or empty"
    ),
    BLOCK_NAME_PATTERN: "a block name (lower case letters and digits, words joined by -)",
    TABLE_NAME_PATTERN: "a table name, with its schema if needed (public.platform_settings)",
    ONE_LINE_PATTERN: "one line of text",
}
"""What each pattern accepts, in words: the line `run` answers a mismatch with."""

TITLES = {
    "database_block": "Platform database (block name)",
    "ops_database_block": "Ops catalog database (block name)",
    "redis_block": "Platform Redis (block name)",
    "target_block": "Redis to restore into (block name)",
    "storage_block": "Backup storage (block name)",
    "alert_channels_block": "Alert channels (block name)",
    "providers_block": "POS providers (block name)",
    "key_block": "Config backup key (block name)",
    "metrics_block": "Metrics Pushgateway (block name)",
    "backup_id": "Backup id",
    "before": "Newest backup before",
    "target_database": "Database to restore into",
    "overwrite": "Overwrite a target that holds data",
    "jobs": "Parallel restore jobs",
    "lock_wait_timeout_seconds": "Table lock wait (seconds)",
    "stall_timeout_seconds": "Silence before a dump counts as hung (seconds)",
    "config_tables": "Configuration tables",
    "dry_run": "Dry run (report only)",
    "daily_days": "Keep daily backups (days)",
    "weekly_weeks": "Keep weekly backups (weeks)",
    "monthly_years": "Keep monthly backups (years)",
    "as_of": "As of",
    "dedup_key": "Alert dedup key",
    "action": "Action",
    "by": "Who acts",
    "tokens_block": "POS tokens (block name)",
    "gateway_block": "Platform gateway (block name)",
    "provider": "POS provider",
    "reason": "Reason",
    "direction": "Direction",
    "approval_timeout_seconds": "Wait for approval (seconds)",
    "deliveries_block": "Webhook deliveries (block name)",
    "lookback_hours": "Failed deliveries of the last (hours)",
    "pos_sweep_deployment": "POS health sweep deployment",
    "since": "Since (Stockholm time)",
    "until": "Until (Stockholm time; empty: now)",
    "failures": "Failures to replay",
    "pool": "Work pool",
    "event": "Prefect event",
    "occurred": "When it happened",
    "failover_block": "Work pool failover policy (block name)",
    "drill": "Drill (every step for real, on scratch targets)",
    "incident_started_at": "Incident started at (empty: when this run starts)",
    "triggered_by": "Started by (empty: by hand)",
    "dr_block": "Disaster recovery settings (block name)",
    "target_region": "Target region",
    "status_poll_seconds": "DR status polled every (seconds)",
}
"""The label of each parameter in the UI's run form. Prefect titles every schema field
with the parameter's own name (`ops_database_block`); the deployments replace it with
these when they are registered (see `deployments.DeploymentSpec.to_runner`)."""
