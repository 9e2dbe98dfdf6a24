"""Disaster recovery's settings: the backup region, its bucket, the DNS record that moves,
the drill gateway, whether a triggered run may go on without a human, and where the
platform keeps the email address of each business a POS outage is told to.

Runbook, "Disaster Recovery" and "Failover Procedures": the primary region is
eu-west-1, the backup region eu-central-1. A regional failover copies the newest
backups into the backup region's bucket when they are missing there, and points the
platform's DNS record at the backup region with Route 53 `ChangeResourceRecordSets`.
Each of these is configured here once, ahead of the incident.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

from blocks.storage import BackupStorage
from blocks.storage.stores import ObjectStore, open_store, parse_location
from feedback_ops.errors import ConfigError

if TYPE_CHECKING:
    from types_boto3_route53 import Route53Client

PRIMARY_REGION = "eu-west-1"
BACKUP_REGION = "eu-central-1"
ROUTE53_REGION = "us-east-1"


class DisasterRecovery(Block):
    """Where the platform fails over to, and how far a DR run may go by itself.

    Without `backup_region_url` or the DNS fields, `dr-regional-failover` refuses in one
    line naming the missing variable before it changes anything. `auto_proceed_minutes`
    0 (the default) means a DR run started by the watchdog waits for a person however
    long it takes; N lets it go ahead after N unanswered minutes, and it says so.

    Example:
        Read the settings saved by `feedback-ops up` or `config sync`:
        ```python
        from blocks.disaster_recovery import DisasterRecovery

        dr = DisasterRecovery.load("BLOCK_NAME")
        print(dr.backup_region, dr.dns_record_name)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Disaster Recovery"
    _block_type_slug: ClassVar[str] = "feedback-ops-disaster-recovery"
    _description: ClassVar[str] = "The backup region, its bucket and DNS, and DR drills."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html"
    )

    primary_region: str = Field(default=PRIMARY_REGION, description="The primary region.")
    backup_region: str = Field(
        default=BACKUP_REGION, description="The region a regional failover activates."
    )
    backup_region_url: str = Field(
        default="",
        description="The backup region's backup bucket, s3://bucket/prefix (or file:///path).",
    )
    backup_region_endpoint_url: str = Field(
        default="", description="An S3-compatible endpoint for that bucket; empty for AWS."
    )
    dns_zone_id: str = Field(default="", description="The Route 53 hosted zone's id.")
    dns_record_name: str = Field(
        default="", description="The record that moves, e.g. api.ai-feedback.se."
    )
    dns_record_type: Literal["CNAME", "A", "AAAA"] = Field(
        default="CNAME", description="The record's type."
    )
    dns_backup_value: str = Field(
        default="", description="What the record points at in the backup region."
    )
    dns_ttl_seconds: int = Field(default=60, ge=1, le=86400, description="The record's TTL.")
    route53_endpoint_url: str = Field(
        default="", description="A Route 53-compatible endpoint; empty for AWS."
    )
    drill_gateway_url: str = Field(
        default="",
        description="A scratch gateway drills call; empty: a drill skips the gateway calls "
        "and lists them.",
    )
    auto_proceed_minutes: float = Field(
        default=0,
        ge=0,
        le=1440,
        description="A watchdog-started DR run goes ahead after this many unanswered "
        "minutes; 0 waits for a person.",
    )
    status_timeout_seconds: int = Field(
        default=900,
        ge=10,
        le=6 * 3600,
        description="How long a regional failover polls the gateway's DR status.",
    )
    business_email_column: str = Field(
        default="email",
        min_length=1,
        description="The column of the platform's businesses table holding each business's "
        "email address: whom dr-pos-providers-down tells of a POS outage.",
    )

    def require_region(self, region: str) -> None:
        """Refuse a target region this block does not configure.

        Raises:
            ConfigError: `region` is not the backup region, or the backup region's
                bucket or DNS record is not configured.
        """
        if region != self.backup_region:
            raise ConfigError(
                f"target region {region!r} is not configured: DR_BACKUP_REGION is "
                f"{self.backup_region!r}"
            )
        missing = [
            variable
            for variable, value in (
                ("DR_BACKUP_REGION_URL", self.backup_region_url),
                ("DR_DNS_ZONE_ID", self.dns_zone_id),
                ("DR_DNS_RECORD", self.dns_record_name),
                ("DR_DNS_BACKUP_VALUE", self.dns_backup_value),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"target region {region!r} is not configured: set {', '.join(missing)}"
            )

    def backup_region_store(self, storage: BackupStorage) -> ObjectStore:
        """The backup region's bucket, reached with the backup storage's credentials.

        The copy there is encrypted as the primary is (`BACKUP_SSE`), except that a KMS
        key id is left out: KMS keys live in one region, so `aws:kms` in the backup
        region uses that region's default key for S3.

        Raises:
            ConfigError: `DR_BACKUP_REGION_URL` is empty or not a backup location.
        """
        if not self.backup_region_url:
            raise ConfigError(
                f"the backup region {self.backup_region} has no bucket: set DR_BACKUP_REGION_URL"
            )
        location = parse_location(self.backup_region_url, variable="DR_BACKUP_REGION_URL")
        settings = dataclasses.replace(
            storage.s3_settings(),
            endpoint_url=self.backup_region_endpoint_url or None,
            region_name=self.backup_region,
            kms_key_id=None,
        )
        return open_store(location, settings)

    def route53_client(self) -> Route53Client:
        """A boto3 Route 53 client with timeouts and standard retries (throttling, 5xx).

        Credentials come from boto3's own chain (environment, shared files, instance
        role), as for every AWS call without keys in a block. Route 53 is a global
        service whose requests are signed for us-east-1, so no region need be set.
        """
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=10,
            read_timeout=30,
            retries={"max_attempts": 5, "mode": "standard"},
        )
        return boto3.client(
            "route53",
            endpoint_url=self.route53_endpoint_url or None,
            region_name=ROUTE53_REGION,
            config=config,
        )
