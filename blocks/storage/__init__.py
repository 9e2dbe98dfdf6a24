"""Backup storage: the block (primary location, replicas, S3 encryption) and the stores
it opens.

`stores` holds the object stores (a local folder, an S3 bucket), `manifest` the JSON
document beside every backup, `verify` the read-back checks every copy must pass.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr, field_validator

from blocks.storage.stores import ObjectStore, S3Settings, open_store, parse_location
from feedback_ops.errors import ConfigError


class BackupStorage(Block):
    """Where backups are written: a primary location and replicas in other regions.

    Locations are `file:///absolute/path` or `s3://bucket/prefix`. S3 objects are
    written with server-side encryption (`AES256`, or `aws:kms` with a key id).

    Example:
        Open the primary store saved by `feedback-ops up`:
        ```python
        from blocks.storage import BackupStorage

        storage = BackupStorage.load("BLOCK_NAME")
        primary = storage.primary()
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Backup Storage"
    _block_type_slug: ClassVar[str] = "feedback-ops-backup-storage"
    _description: ClassVar[str] = "Backup locations (local folder or S3) and their replicas."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/serv-side-encryption.html"
    )

    url: str = Field(description="Primary location: file:///path or s3://bucket/prefix.")
    replica_urls: list[str] = Field(
        default_factory=list, description="Replica locations, each checked like the primary."
    )
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO); empty for AWS S3."
    )
    region_name: str | None = Field(default=None, description="AWS region, e.g. eu-north-1.")
    sse: Literal["AES256", "aws:kms"] = Field(
        default="AES256", description="Server-side encryption asked of S3."
    )
    kms_key_id: str | None = Field(default=None, description="KMS key for aws:kms.")
    aws_access_key_id: str | None = Field(default=None, description="Access key id.")
    aws_secret_access_key: SecretStr | None = Field(default=None, description="Secret key.")
    aws_session_token: SecretStr | None = Field(default=None, description="Session token.")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_location(value, variable="url")
        return value

    @field_validator("replica_urls")
    @classmethod
    def _valid_replicas(cls, value: list[str]) -> list[str]:
        for url in value:
            parse_location(url, variable="replica_urls")
        return value

    def s3_settings(self) -> S3Settings:
        """Connection and encryption settings for the S3 locations."""
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise ConfigError("BACKUP_SSE is aws:kms but BACKUP_KMS_KEY_ID is not set")
        return S3Settings(
            endpoint_url=self.endpoint_url or None,
            region_name=self.region_name or None,
            access_key_id=self.aws_access_key_id or None,
            secret_access_key=_reveal(self.aws_secret_access_key),
            session_token=_reveal(self.aws_session_token),
            sse=self.sse,
            kms_key_id=self.kms_key_id or None,
        )

    def primary(self) -> ObjectStore:
        """The store backups are written to first."""
        return open_store(parse_location(self.url), self.s3_settings())

    def replicas(self) -> list[ObjectStore]:
        """The stores every backup is copied to after the primary is verified."""
        settings = self.s3_settings()
        return [
            open_store(parse_location(url, variable="BACKUP_REPLICA_URLS"), settings)
            for url in self.replica_urls
        ]


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
