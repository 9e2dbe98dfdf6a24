"""Every environment variable the project reads, in one table.

Each row says which block and field the variable fills, how its text becomes a value
(its kind), whether it is a secret, its default and what it is. The converters in
`feedback_ops.config`, `.env.example`, the README's configuration table and the
tests' list of variables to keep out of a test run all come from this table:

    python -m feedback_ops.settings env-example > .env.example
    python -m feedback_ops.settings readme-table

Rows are applied in order, so a later row for the same field wins (`AWS_REGION` over
`AWS_DEFAULT_REGION`, as the AWS SDKs read them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum

from blocks.names import (
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


class Kind(StrEnum):
    """How a variable's text becomes a block value."""

    TEXT = "text"
    """As written; empty clears the field."""
    SECRET = "secret"
    """A `SecretStr`; empty clears the field."""
    INT = "int"
    BOOL = "bool"
    """true/false, yes/no, 1/0."""
    LIST = "list"
    """Comma-separated; empty is an empty list."""
    COMMAND = "command"
    """A command line, split like a shell does; empty is no command."""
    CHOICE = "choice"
    """One of `choices`; empty leaves the field as it is."""
    URL = "url"
    """A URL with a default: empty means the default, not "no URL"."""
    POSTGRES_URL = "postgres-url"
    """`postgresql://user:password@host:port/db`: fills the whole block."""
    REDIS_URL = "redis-url"
    """`redis://[user:password@]host:port`: fills host, port, login and TLS."""
    LOCATION = "location"
    """`file:///path` or `s3://bucket/prefix`; empty leaves the field as it is."""
    LOCATIONS = "locations"
    """Comma-separated locations."""
    KEY = "key"
    """A base64 AES-256 key; empty clears it."""
    CONTACTS = "contacts"
    """JSON: escalation role → {"phone", "email", "slack"}."""
    REGION = "region"
    """An AWS region; empty leaves the field as it is."""
    NAME = "name"
    """A table or column name; empty leaves the field as it is."""
    COLUMNS = "columns"
    """Comma-separated `role=column` pairs; empty leaves the columns as they are."""
    PROCESS = "process"
    """Read by the command itself, not written into a block."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it fills, how it is read, what it is."""

    variable: str
    block: str | None
    field: str | None
    kind: Kind
    default: str
    description: str
    section: str
    secret: bool = False
    example: str | None = None
    """A value for `.env.example` where the default would not show the format."""
    choices: tuple[str, ...] = ()
    fallback: str | None = None
    """Another variable whose value applies when this one is unset."""
    active_in_example: bool = False
    """Whether `.env.example` sets it (uncommented) rather than showing it commented."""


_DATABASES = "The platform's databases"
_REDIS = "The platform's Redis (the cache)"
_CONFIG_KEY = "Configuration backups"
_POS = (
    "POS providers (read by pos-config-backup and pos-health-sweep; each is skipped until "
    "configured)"
)
_GATEWAY = "The platform gateway (health checks and its admin API)"
_WEBHOOKS = (
    "Webhook deliveries (read by webhook-reconciliation and webhook-replay; the audit "
    "and the replay of a provider need its keys)"
)
_METRICS = "Metrics (what the platform's Prometheus reads, through its Pushgateway)"
_STORAGE = "Backup storage"
_ALERTS = "Alert channels (each is off until its variables are set)"
_POOLS = "Work pools (`feedback-ops deploy`, `pool-failover`)"
_DR = "Disaster recovery (`dr-*` flows; the regional failover refuses until configured)"
_LOCAL = "This machine"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        PLATFORM_DATABASE_BLOCK,
        None,
        Kind.POSTGRES_URL,
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "The platform's PostgreSQL database, the one backed up. `?connect_timeout=N` "
        "sets how long to wait for it (default 10 s).",
        _DATABASES,
        secret=True,
        active_in_example=True,
    ),
    Setting(
        "OPS_DATABASE_URL",
        OPS_DATABASE_BLOCK,
        None,
        Kind.POSTGRES_URL,
        "same as DATABASE_URL",
        "Where the ops catalog lives: schema `ops` (backup_records, alerts).",
        _DATABASES,
        secret=True,
        example="postgresql://ops:secret@127.0.0.1:5432/ops",
        fallback="DATABASE_URL",
    ),
    Setting(
        "REDIS_URL",
        REDIS_BLOCK,
        None,
        Kind.REDIS_URL,
        "redis://127.0.0.1:6379",
        "The platform's Redis, snapshotted every 6 hours (`rediss://` for TLS).",
        _REDIS,
        secret=True,
        active_in_example=True,
    ),
    Setting(
        "REDIS_SNAPSHOT_METHOD",
        REDIS_BLOCK,
        "snapshot_method",
        Kind.CHOICE,
        "logical",
        "`logical` (SCAN+DUMP, any Redis: Redis Cloud, ElastiCache) or `rdb` "
        "(`redis-cli --rdb`, a Redis that allows SYNC).",
        _REDIS,
        choices=("rdb", "logical"),
        active_in_example=True,
    ),
    Setting(
        "REDIS_DATA_DIR",
        REDIS_BLOCK,
        "data_dir",
        Kind.TEXT,
        "",
        "Self-hosted Redis: its data directory as this machine sees it.",
        _REDIS,
        example="/var/lib/docker/volumes/redis-data/_data",
    ),
    Setting(
        "REDIS_STOP_COMMAND",
        REDIS_BLOCK,
        "stop_command",
        Kind.COMMAND,
        "",
        "Self-hosted Redis: the command that stops it; with the start command and the "
        "data directory, `redis-restore` of an RDB snapshot follows the runbook.",
        _REDIS,
        example="docker stop redis-container",
    ),
    Setting(
        "REDIS_START_COMMAND",
        REDIS_BLOCK,
        "start_command",
        Kind.COMMAND,
        "",
        "Self-hosted Redis: the command that starts it.",
        _REDIS,
        example="docker start redis-container",
    ),
    Setting(
        "CONFIG_BACKUP_KEY",
        CONFIG_KEY_BLOCK,
        "key",
        Kind.KEY,
        "",
        "base64 AES-256 key (`openssl rand -base64 32`) sealing the secrets in "
        "configuration backups; unset: secrets are left out. Keep a copy outside the "
        "platform: a bundle is only as recoverable as its key.",
        _CONFIG_KEY,
        secret=True,
    ),
    Setting(
        "SQUARE_ACCESS_TOKEN",
        POS_PROVIDERS_BLOCK,
        "square_access_token",
        Kind.SECRET,
        "",
        "Square API access token.",
        _POS,
        secret=True,
    ),
    Setting(
        "SQUARE_API_URL",
        POS_PROVIDERS_BLOCK,
        "square_api_url",
        Kind.URL,
        "https://connect.squareup.com",
        "Square API base URL.",
        _POS,
    ),
    Setting(
        "SQUARE_SECONDARY_API_URL",
        POS_PROVIDERS_BLOCK,
        "square_secondary_api_url",
        Kind.TEXT,
        "",
        "Square's secondary endpoint, probed beside the primary; unset: no failover target.",
        _POS,
    ),
    Setting(
        "SQUARE_APPLICATION_ID",
        POS_PROVIDERS_BLOCK,
        "square_application_id",
        Kind.TEXT,
        "",
        "Square application id (OAuth client_id), to refresh the access token.",
        _POS,
    ),
    Setting(
        "SQUARE_APPLICATION_SECRET",
        POS_PROVIDERS_BLOCK,
        "square_application_secret",
        Kind.SECRET,
        "",
        "Square application secret, to refresh the access token.",
        _POS,
        secret=True,
    ),
    Setting(
        "SQUARE_REFRESH_TOKEN",
        POS_PROVIDERS_BLOCK,
        "square_refresh_token",
        Kind.SECRET,
        "",
        "Refresh token of SQUARE_ACCESS_TOKEN; the sweep refreshes it with fewer than 7 days "
        "left and keeps the new one in block pos-tokens.",
        _POS,
        secret=True,
    ),
    Setting(
        "SQUARE_PERSONAL_ACCESS_TOKEN",
        POS_PROVIDERS_BLOCK,
        "square_personal_access_token",
        Kind.SECRET,
        "",
        "The Square application's personal access token: the webhook subscriptions API "
        "takes no merchant OAuth token (unset: SQUARE_ACCESS_TOKEN is tried).",
        _POS,
        secret=True,
    ),
    Setting(
        "SHOPIFY_SHOP_DOMAIN",
        POS_PROVIDERS_BLOCK,
        "shopify_shop_domain",
        Kind.TEXT,
        "",
        "The Shopify shop.",
        _POS,
        example="ai-feedback.myshopify.com",
    ),
    Setting(
        "SHOPIFY_ACCESS_TOKEN",
        POS_PROVIDERS_BLOCK,
        "shopify_access_token",
        Kind.SECRET,
        "",
        "Shopify Admin API access token.",
        _POS,
        secret=True,
    ),
    Setting(
        "SHOPIFY_API_URL",
        POS_PROVIDERS_BLOCK,
        "shopify_api_url",
        Kind.URL,
        "https://<shop domain>",
        "Shopify API base URL, when it is not the shop's own.",
        _POS,
    ),
    Setting(
        "SHOPIFY_SECONDARY_API_URL",
        POS_PROVIDERS_BLOCK,
        "shopify_secondary_api_url",
        Kind.TEXT,
        "",
        "Shopify's secondary endpoint, probed beside the primary; unset: no failover target.",
        _POS,
    ),
    Setting(
        "ZETTLE_CLIENT_ID",
        POS_PROVIDERS_BLOCK,
        "zettle_client_id",
        Kind.TEXT,
        "",
        "Zettle OAuth client id.",
        _POS,
    ),
    Setting(
        "ZETTLE_API_KEY",
        POS_PROVIDERS_BLOCK,
        "zettle_api_key",
        Kind.SECRET,
        "",
        "Zettle API key, exchanged for a token with the JWT-bearer grant.",
        _POS,
        secret=True,
    ),
    Setting(
        "ZETTLE_OAUTH_URL",
        POS_PROVIDERS_BLOCK,
        "zettle_oauth_url",
        Kind.URL,
        "https://oauth.zettle.com",
        "Zettle OAuth base URL.",
        _POS,
    ),
    Setting(
        "ZETTLE_SECONDARY_OAUTH_URL",
        POS_PROVIDERS_BLOCK,
        "zettle_secondary_oauth_url",
        Kind.TEXT,
        "",
        "Zettle's secondary OAuth endpoint, probed beside the primary; unset: no failover target.",
        _POS,
    ),
    Setting(
        "ZETTLE_PUSHER_URL",
        POS_PROVIDERS_BLOCK,
        "zettle_pusher_url",
        Kind.URL,
        "https://pusher.izettle.com",
        "Zettle Pusher API base URL.",
        _POS,
    ),
    Setting(
        "ZETTLE_CONTACT_EMAIL",
        POS_PROVIDERS_BLOCK,
        "zettle_contact_email",
        Kind.TEXT,
        "",
        "Contact e-mail Zettle gets for a webhook subscription the sweep re-creates.",
        _POS,
        example="devops@ai-feedback.se",
    ),
    Setting(
        "POS_WEBHOOK_URL",
        POS_PROVIDERS_BLOCK,
        "webhook_url",
        Kind.TEXT,
        "",
        "Where the providers must deliver webhooks; a subscription pointing elsewhere is "
        "reported. Unset: GATEWAY_URL + /webhooks.",
        _POS,
        example="https://api.ai-feedback.se/webhooks",
    ),
    Setting(
        "POS_MERCHANT_CONCURRENCY",
        POS_PROVIDERS_BLOCK,
        "merchant_concurrency",
        Kind.INT,
        "10",
        "Merchant connection checks in flight per provider (1-100): keeps a sweep within "
        "each provider's rate limit.",
        _POS,
    ),
    Setting(
        "WEBHOOK_ATTEMPTS_TABLE",
        WEBHOOK_DELIVERIES_BLOCK,
        "table",
        Kind.NAME,
        "public.webhook_delivery_attempts",
        "The platform's table of webhook delivery attempts (`schema.table`).",
        _WEBHOOKS,
    ),
    Setting(
        "WEBHOOK_ATTEMPTS_COLUMNS",
        WEBHOOK_DELIVERIES_BLOCK,
        None,
        Kind.COLUMNS,
        "",
        "Columns named otherwise than the defaults (see Webhook reconciliation), as "
        "`role=column` pairs: id, provider, status, created_at, http_status, body, "
        "signature, timestamp, event_id, event_type.",
        _WEBHOOKS,
        example="body=payload_raw,event_id=provider_event_id",
    ),
    Setting(
        "SQUARE_WEBHOOK_SIGNATURE_KEY",
        WEBHOOK_DELIVERIES_BLOCK,
        "square_signature_key",
        Kind.SECRET,
        "",
        "Signature key of Square's webhook subscription: audits rejected deliveries and "
        "signs replays.",
        _WEBHOOKS,
        secret=True,
    ),
    Setting(
        "SQUARE_PREVIOUS_WEBHOOK_SIGNATURE_KEY",
        WEBHOOK_DELIVERIES_BLOCK,
        "square_previous_signature_key",
        Kind.SECRET,
        "",
        "Square's signature key before the last rotation: a delivery signed with it "
        "means the rotation is not rolled out.",
        _WEBHOOKS,
        secret=True,
    ),
    Setting(
        "SQUARE_WEBHOOK_NOTIFICATION_URL",
        WEBHOOK_DELIVERIES_BLOCK,
        "square_notification_url",
        Kind.TEXT,
        "",
        "The notification URL of Square's subscription, byte for byte as Square signs "
        "it. Unset: the webhook URL + /square.",
        _WEBHOOKS,
        example="https://api.ai-feedback.se/webhooks/square",
    ),
    Setting(
        "SHOPIFY_WEBHOOK_SECRET",
        WEBHOOK_DELIVERIES_BLOCK,
        "shopify_webhook_secret",
        Kind.SECRET,
        "",
        "The Shopify app's client secret that signs its webhooks.",
        _WEBHOOKS,
        secret=True,
    ),
    Setting(
        "SHOPIFY_PREVIOUS_WEBHOOK_SECRET",
        WEBHOOK_DELIVERIES_BLOCK,
        "shopify_previous_webhook_secret",
        Kind.SECRET,
        "",
        "The Shopify client secret before the last rotation.",
        _WEBHOOKS,
        secret=True,
    ),
    Setting(
        "ZETTLE_WEBHOOK_SIGNING_KEY",
        WEBHOOK_DELIVERIES_BLOCK,
        "zettle_signing_key",
        Kind.SECRET,
        "",
        "Signing key of Zettle's webhook subscription; one the POS health sweep gets "
        "when it re-creates the subscription replaces it.",
        _WEBHOOKS,
        secret=True,
    ),
    Setting(
        "ZETTLE_PREVIOUS_WEBHOOK_SIGNING_KEY",
        WEBHOOK_DELIVERIES_BLOCK,
        "zettle_previous_signing_key",
        Kind.SECRET,
        "",
        "Zettle's signing key before the last rotation.",
        _WEBHOOKS,
        secret=True,
    ),
    Setting(
        "WEBHOOK_CREATE_INDEXES",
        WEBHOOK_DELIVERIES_BLOCK,
        "create_indexes",
        Kind.BOOL,
        "false",
        "Create the recommended indexes the table lacks (`CREATE INDEX CONCURRENTLY`). "
        "Off: they are named in each run's report, never made.",
        _WEBHOOKS,
    ),
    Setting(
        "WEBHOOK_REPLAY_CONCURRENCY",
        WEBHOOK_DELIVERIES_BLOCK,
        "replay_concurrency",
        Kind.INT,
        "8",
        "Replays in flight at once (1-64).",
        _WEBHOOKS,
    ),
    Setting(
        "GATEWAY_URL",
        GATEWAY_BLOCK,
        "url",
        Kind.TEXT,
        "",
        "Base URL of the platform's API gateway (`/health`, `/pos/health/…`, `/admin/…`); "
        "unset: nothing that needs the gateway can run, and says so.",
        _GATEWAY,
        example="https://api.ai-feedback.se",
    ),
    Setting(
        "GATEWAY_ADMIN_TOKEN",
        GATEWAY_BLOCK,
        "admin_token",
        Kind.SECRET,
        "",
        "Bearer token of the gateway's admin API (failover, maintenance, disaster "
        "recovery); the health checks need none.",
        _GATEWAY,
        secret=True,
    ),
    Setting(
        "PUSHGATEWAY_URL",
        METRICS_BLOCK,
        "url",
        Kind.SECRET,
        "",
        "The Prometheus Pushgateway the flows push their figures to (backups' age, size "
        "and duration, restore drills, open alerts, POS uptime, webhook success); "
        "`https://user:password@host` for basic auth. Unset: nothing is pushed.",
        _METRICS,
        secret=True,
        example="http://pushgateway:9091",
    ),
    Setting(
        "BACKUP_URL",
        BACKUP_STORAGE_BLOCK,
        "url",
        Kind.LOCATION,
        "file://$FEEDBACK_OPS_STATE_DIR/backups",
        "Primary backup location: `file:///absolute/path` or `s3://bucket/prefix`.",
        _STORAGE,
        example="s3://ai-feedback-backups-stockholm/platform",
    ),
    Setting(
        "BACKUP_REPLICA_URLS",
        BACKUP_STORAGE_BLOCK,
        "replica_urls",
        Kind.LOCATIONS,
        "",
        "Comma-separated replica locations (the runbook's Stockholm and Gothenburg "
        "buckets), each checked like the primary.",
        _STORAGE,
        example="s3://ai-feedback-backups-gothenburg/platform",
    ),
    Setting(
        "S3_ENDPOINT_URL",
        BACKUP_STORAGE_BLOCK,
        "endpoint_url",
        Kind.TEXT,
        "",
        "An S3-compatible endpoint such as MinIO; empty for AWS S3.",
        _STORAGE,
    ),
    Setting(
        "BACKUP_SSE",
        BACKUP_STORAGE_BLOCK,
        "sse",
        Kind.CHOICE,
        "AES256",
        "Server-side encryption asked of S3: `AES256` or `aws:kms`.",
        _STORAGE,
        choices=("AES256", "aws:kms"),
        active_in_example=True,
    ),
    Setting(
        "BACKUP_KMS_KEY_ID",
        BACKUP_STORAGE_BLOCK,
        "kms_key_id",
        Kind.TEXT,
        "",
        "The KMS key when `BACKUP_SSE=aws:kms`.",
        _STORAGE,
    ),
    Setting(
        "AWS_ACCESS_KEY_ID",
        BACKUP_STORAGE_BLOCK,
        "aws_access_key_id",
        Kind.TEXT,
        "",
        "S3 access key id; when unset, boto3's usual chain (instance role, …).",
        _STORAGE,
    ),
    Setting(
        "AWS_SECRET_ACCESS_KEY",
        BACKUP_STORAGE_BLOCK,
        "aws_secret_access_key",
        Kind.SECRET,
        "",
        "S3 secret access key.",
        _STORAGE,
        secret=True,
    ),
    Setting(
        "AWS_SESSION_TOKEN",
        BACKUP_STORAGE_BLOCK,
        "aws_session_token",
        Kind.SECRET,
        "",
        "S3 session token, for temporary credentials.",
        _STORAGE,
        secret=True,
    ),
    Setting(
        "AWS_DEFAULT_REGION",
        BACKUP_STORAGE_BLOCK,
        "region_name",
        Kind.REGION,
        "",
        "Region of the buckets.",
        _STORAGE,
        example="eu-north-1",
    ),
    Setting(
        "AWS_REGION",
        BACKUP_STORAGE_BLOCK,
        "region_name",
        Kind.REGION,
        "",
        "Region of the buckets; wins over `AWS_DEFAULT_REGION`, as in the AWS SDKs.",
        _STORAGE,
        example="eu-north-1",
    ),
    Setting(
        "SLACK_WEBHOOK_URL",
        SLACK_BLOCK,
        "webhook_url",
        Kind.SECRET,
        "",
        "Slack incoming webhook for alerts (#ai-feedback-swedish-alerts).",
        _ALERTS,
        secret=True,
        example="https://hooks.slack.com/services/T000/B000/XXXX",
    ),
    Setting(
        "SMTP_HOST",
        EMAIL_BLOCK,
        "host",
        Kind.TEXT,
        "",
        "SMTP server for alert email, with STARTTLS.",
        _ALERTS,
        example="smtp.example.se",
    ),
    Setting("SMTP_PORT", EMAIL_BLOCK, "port", Kind.INT, "587", "SMTP port.", _ALERTS),
    Setting(
        "SMTP_USERNAME",
        EMAIL_BLOCK,
        "username",
        Kind.TEXT,
        "",
        "SMTP login.",
        _ALERTS,
        example="alerts@ai-feedback.se",
    ),
    Setting(
        "SMTP_PASSWORD",
        EMAIL_BLOCK,
        "password",
        Kind.SECRET,
        "",
        "SMTP password.",
        _ALERTS,
        secret=True,
    ),
    Setting(
        "SMTP_FROM",
        EMAIL_BLOCK,
        "sender",
        Kind.TEXT,
        "",
        "Sender address of alert email.",
        _ALERTS,
        example="alerts@ai-feedback.se",
    ),
    Setting(
        "ALERT_EMAIL_TO",
        EMAIL_BLOCK,
        "recipients",
        Kind.LIST,
        "",
        "Comma-separated alert email recipients (devops@).",
        _ALERTS,
        example="devops@ai-feedback.se",
    ),
    Setting(
        "SMTP_STARTTLS",
        EMAIL_BLOCK,
        "starttls",
        Kind.BOOL,
        "true",
        "Require STARTTLS (`true`/`false`).",
        _ALERTS,
    ),
    Setting(
        "SMTP_CA_FILE",
        EMAIL_BLOCK,
        "ca_file",
        Kind.TEXT,
        "",
        "A CA bundle to verify the SMTP server with.",
        _ALERTS,
    ),
    Setting(
        "PAGERDUTY_ROUTING_KEY",
        PAGERDUTY_BLOCK,
        "routing_key",
        Kind.SECRET,
        "",
        "PagerDuty Events API v2 routing key (trigger, acknowledge, resolve by dedup key).",
        _ALERTS,
        secret=True,
    ),
    Setting(
        "PAGERDUTY_EVENTS_URL",
        PAGERDUTY_BLOCK,
        "events_url",
        Kind.URL,
        "https://events.pagerduty.com/v2/enqueue",
        "Events API URL (PagerDuty's EU endpoint, say).",
        _ALERTS,
    ),
    Setting(
        "SMS_PROVIDER",
        SMS_BLOCK,
        "provider",
        Kind.CHOICE,
        "46elks",
        "SMS gateway for critical alerts in business hours: `46elks` or `twilio`.",
        _ALERTS,
        choices=("46elks", "twilio"),
    ),
    Setting(
        "SMS_USERNAME",
        SMS_BLOCK,
        "username",
        Kind.TEXT,
        "",
        "46elks API user, or Twilio account SID.",
        _ALERTS,
    ),
    Setting(
        "SMS_PASSWORD",
        SMS_BLOCK,
        "password",
        Kind.SECRET,
        "",
        "46elks API password, or Twilio auth token.",
        _ALERTS,
        secret=True,
    ),
    Setting(
        "SMS_FROM",
        SMS_BLOCK,
        "sender",
        Kind.TEXT,
        "",
        "SMS sender name or number.",
        _ALERTS,
        example="AIFeedback",
    ),
    Setting(
        "SMS_TO",
        SMS_BLOCK,
        "recipients",
        Kind.LIST,
        "",
        "Comma-separated E.164 numbers for critical SMS.",
        _ALERTS,
        example="+46700000000",
    ),
    Setting(
        "SMS_API_URL",
        SMS_BLOCK,
        "api_url",
        Kind.TEXT,
        "the provider's",
        "The SMS gateway's URL.",
        _ALERTS,
    ),
    Setting(
        "ESCALATION_CONTACTS",
        CONTACTS_BLOCK,
        "contacts",
        Kind.CONTACTS,
        "{}",
        'JSON: escalation role → `{"phone", "email", "slack"}` (roles of the runbook\'s '
        "escalation matrix).",
        _ALERTS,
        example='{"DevOps": {"phone": "+46700000001", "email": "devops@ai-feedback.se", '
        '"slack": "@devops-team"}, "Engineering Lead": {"phone": "+46700000002", '
        '"email": "engineering@ai-feedback.se", "slack": "@eng-lead"}}',
    ),
    Setting(
        "POOL_AUTO_FAILOVER",
        WORK_POOL_FAILOVER_BLOCK,
        "auto_failover",
        Kind.BOOL,
        "false",
        "When the primary work pool goes not-ready, move the schedules to the standby pool "
        "without waiting for an operator (off: the alert names the command instead).",
        _POOLS,
    ),
    Setting(
        "DR_BACKUP_REGION",
        DR_BLOCK,
        "backup_region",
        Kind.REGION,
        "eu-central-1",
        "The region `dr-regional-failover` activates (the runbook's backup region).",
        _DR,
    ),
    Setting(
        "DR_BACKUP_REGION_URL",
        DR_BLOCK,
        "backup_region_url",
        Kind.LOCATION,
        "",
        "The backup region's bucket: the newest backups are copied there when missing.",
        _DR,
        example="s3://ai-feedback-backups-frankfurt/platform",
    ),
    Setting(
        "DR_BACKUP_REGION_ENDPOINT_URL",
        DR_BLOCK,
        "backup_region_endpoint_url",
        Kind.TEXT,
        "",
        "An S3-compatible endpoint for that bucket; empty for AWS S3.",
        _DR,
    ),
    Setting(
        "DR_DNS_ZONE_ID",
        DR_BLOCK,
        "dns_zone_id",
        Kind.TEXT,
        "",
        "The Route 53 hosted zone of the platform's record.",
        _DR,
        example="Z0123456789ABCDEFGHIJ",
    ),
    Setting(
        "DR_DNS_RECORD",
        DR_BLOCK,
        "dns_record_name",
        Kind.TEXT,
        "",
        "The record a regional failover points at the backup region.",
        _DR,
        example="api.ai-feedback.se",
    ),
    Setting(
        "DR_DNS_TYPE",
        DR_BLOCK,
        "dns_record_type",
        Kind.CHOICE,
        "CNAME",
        "The record's type: `CNAME`, `A` or `AAAA`.",
        _DR,
        choices=("CNAME", "A", "AAAA"),
    ),
    Setting(
        "DR_DNS_BACKUP_VALUE",
        DR_BLOCK,
        "dns_backup_value",
        Kind.TEXT,
        "",
        "What the record points at in the backup region.",
        _DR,
        example="api.eu-central-1.ai-feedback.se",
    ),
    Setting(
        "DR_DNS_TTL",
        DR_BLOCK,
        "dns_ttl_seconds",
        Kind.INT,
        "60",
        "The record's TTL in seconds.",
        _DR,
    ),
    Setting(
        "ROUTE53_ENDPOINT_URL",
        DR_BLOCK,
        "route53_endpoint_url",
        Kind.TEXT,
        "",
        "A Route 53-compatible endpoint; empty for AWS.",
        _DR,
    ),
    Setting(
        "DR_DRILL_GATEWAY_URL",
        DR_BLOCK,
        "drill_gateway_url",
        Kind.TEXT,
        "",
        "A scratch gateway that drills call (same admin token); unset: a drill skips the "
        "gateway calls and lists them.",
        _DR,
    ),
    Setting(
        "DR_AUTO_PROCEED_MINUTES",
        DR_BLOCK,
        "auto_proceed_minutes",
        Kind.INT,
        "0",
        "A DR run the watchdog started goes ahead after this many minutes without an "
        "answer; 0 (default) waits for a person.",
        _DR,
    ),
    Setting(
        "DR_STATUS_TIMEOUT_SECONDS",
        DR_BLOCK,
        "status_timeout_seconds",
        Kind.INT,
        "900",
        "How long a regional failover polls the gateway's DR status for healthy.",
        _DR,
    ),
    Setting(
        "DR_BUSINESS_EMAIL_COLUMN",
        DR_BLOCK,
        "business_email_column",
        Kind.NAME,
        "email",
        "The column of the platform's `businesses` table with each business's email "
        "address: whom `dr-pos-providers-down` tells of an outage.",
        _DR,
    ),
    Setting(
        "FEEDBACK_OPS_STATE_DIR",
        None,
        None,
        Kind.PROCESS,
        "./.state",
        "Local state: Prefect's SQLite database and server log, local backups by default.",
        _LOCAL,
    ),
    Setting(
        "FEEDBACK_OPS_PORT",
        None,
        None,
        Kind.PROCESS,
        "4200",
        "Port of the Prefect server and UI that `up` starts.",
        _LOCAL,
    ),
    Setting(
        "PREFECT_API_URL",
        None,
        None,
        Kind.PROCESS,
        "",
        "Use an existing Prefect server instead of starting one (then `up` only serves).",
        _LOCAL,
        example="http://prefect.internal:4200/api",
    ),
    Setting(
        "PG_BIN_DIR",
        None,
        None,
        Kind.PROCESS,
        "",
        "Folder of `pg_dump` and `pg_restore` to use, instead of those of the server's "
        "major version (`/usr/lib/postgresql/N/bin`) or the PATH.",
        _LOCAL,
        example="/usr/lib/postgresql/16/bin",
    ),
    Setting(
        "TEST_DATABASE_URL",
        None,
        None,
        Kind.PROCESS,
        "postgresql://postgres:postgres@127.0.0.1:5432/postgres",
        "Tests only: the server tests create throwaway databases in.",
        _LOCAL,
    ),
)

VARIABLES: tuple[str, ...] = tuple(s.variable for s in SETTINGS)


def for_block(block: str) -> tuple[Setting, ...]:
    """The rows that fill one block, in the order they apply."""
    return tuple(s for s in SETTINGS if s.block == block)


def _value_for_example(setting: Setting) -> str:
    if setting.example is not None:
        return setting.example
    if setting.default.startswith(("same as", "the provider", "https://<")) or "$" in (
        setting.default
    ):
        return ""
    return setting.default


def env_example() -> str:
    """The text of `.env.example`: every variable by section, with its description."""
    lines = [
        "# feedback-ops configuration. Copy to .env (git-ignored) and edit; variables set in",
        "# the environment win over this file. `feedback-ops up` and `run` write them into",
        "# Prefect blocks; a variable left unset keeps what an operator saved in the UI.",
        "# Made by `python -m feedback_ops.settings env-example` from the settings table.",
    ]
    section = None
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            lines += ["", f"# --- {section} ---"]
        described = setting.description.replace("`", "")
        if setting.default and setting.default != _value_for_example(setting):
            described += f" Default: {setting.default}."
        lines += [f"# {line}" for line in _wrap(described, 86)]
        prefix = "" if setting.active_in_example else "#"
        lines.append(f"{prefix}{setting.variable}={_value_for_example(setting)}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's configuration table: variable, default, what it fills, what it is."""
    rows = ["| variable | default | fills | what it is |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "empty"
        if setting.default.startswith(("same as", "the provider")):
            default = setting.default
        fills = "this process" if setting.block is None else f"`{setting.block}`"
        if setting.field:
            fills += f" `{setting.field}`"
        what = setting.description + (" Secret." if setting.secret else "")
        rows.append(f"| `{setting.variable}` | {default} | {fills} | {what} |")
    return "\n".join(rows) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def main(argv: list[str]) -> int:
    """`python -m feedback_ops.settings env-example|readme-table`."""
    renderers = {"env-example": env_example, "readme-table": readme_table}
    if len(argv) != 1 or argv[0] not in renderers:
        print(f"usage: python -m feedback_ops.settings {'|'.join(renderers)}", file=sys.stderr)
        return 2
    sys.stdout.write(renderers[argv[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
