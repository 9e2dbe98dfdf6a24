"""Tasks on DNS: read the platform's record in Route 53 and point it at the backup region.

Runbook, "Scenario 3: Regional Infrastructure Failure": once the backup region is active
and holds the newest backups, the platform's record moves there. That is the one step
of a regional failover every customer notices, so it is planned exactly ahead of the
approval (`dns_change`, the change batch the operator sees), carried out as exactly that
batch, idempotent (a record already pointing there is left alone, so a half-finished
failover can be run again), and only reported done once Route 53 says every one of its
name servers answers with the new value (`INSYNC`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, Field

from blocks.disaster_recovery import DisasterRecovery
from feedback_ops.errors import ConfigError, OpsError, TransientError
from tasks import QUICK, step

if TYPE_CHECKING:
    from types_boto3_route53 import Route53Client
    from types_boto3_route53.literals import RRTypeType
    from types_boto3_route53.type_defs import ChangeBatchTypeDef, ResourceRecordSetOutputTypeDef

POLL_SECONDS = 2
"""How often `GetChange` is asked while a change is PENDING."""
SYNC_WAIT_SECONDS = 180
"""How long a change may stay PENDING: Route 53 promises its name servers within 60 s;
three times that stays well inside the step's limit (`QUICK`)."""

_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "PriorRequestNotComplete",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)
# Route 53's own explanation of these names the record's conflict, and never a secret.
_EXPLAINED_CODES = frozenset({"InvalidChangeBatch", "InvalidInput"})
# Refusals that only a change of settings or permissions can cure.
_CONFIG_CODES = frozenset(
    {
        "NoSuchHostedZone",
        "AccessDenied",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidChangeBatch",
        "InvalidInput",
    }
)
_HINTS = {
    "NoSuchHostedZone": " (check DR_DNS_ZONE_ID)",
    "AccessDenied": " (the credentials may not change records in this zone)",
    "InvalidClientTokenId": " (check the AWS credentials)",
    "SignatureDoesNotMatch": " (check the AWS credentials)",
    "ExpiredToken": " (the AWS session token has expired)",
}
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class DnsRecord(BaseModel):
    """A record as Route 53 holds it now."""

    name: str
    type: str
    values: list[str] = Field(default_factory=list)
    ttl: int | None = None
    alias_target: str | None = Field(
        default=None, description="The target of an alias record (which has no values)."
    )

    @property
    def text(self) -> str:
        """What the record points at, for people: `a, b` or `alias to x`."""
        if self.alias_target:
            return f"alias to {self.alias_target}"
        return ", ".join(self.values)


class DnsChange(BaseModel):
    """What `point-dns` did to the record."""

    zone_id: str
    record: str
    type: str
    before: str | None = Field(description="What the record pointed at before; None: absent.")
    after: str
    ttl: int
    change_id: str | None = Field(description="Route 53's change id; None: nothing changed.")
    status: Literal["INSYNC", "unchanged"]


def dns_change(dr: DisasterRecovery) -> dict[str, Any]:
    """The exact Route 53 change batch `point-dns` sends: an UPSERT of the record to the
    backup region's value. The approval form and a dry run show this; `point-dns` sends
    this and nothing else.

    Raises:
        ConfigError: the zone, record or value is not set, or the value does not fit
            the record's type.
    """
    zone, name, record_type = _target(dr)
    value = _checked_value(dr)
    return {
        "Comment": f"feedback-ops dr-regional-failover: {name} to {dr.backup_region}",
        "Changes": [
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": name,
                    "Type": record_type,
                    "TTL": dr.dns_ttl_seconds,
                    "ResourceRecords": [{"Value": value}],
                },
            }
        ],
    }


@step("read-dns-record", limit=QUICK)
def read_dns_record(dr: DisasterRecovery) -> DnsRecord | None:
    """The platform's record as Route 53 holds it now (None when there is none), so the
    plan can show what the failover will replace."""
    zone, name, record_type = _target(dr)
    with _route53_errors(zone, name, record_type, "read"):
        return _current(dr.route53_client(), zone, name, record_type)


@step("point-dns", limit=QUICK)
def point_dns(dr: DisasterRecovery, approved: Mapping[str, Any] | None = None) -> DnsChange:
    """Point the platform's record at the backup region and wait until Route 53 serves it.

    Sends exactly `dns_change(dr)`; with `approved` (the batch the operator approved) it
    refuses when the block now describes another change. A record already as planned
    (value and TTL) is left alone: no change, no change id.

    Raises:
        ConfigError: the DNS settings are incomplete, the change differs from the
            approved one, or Route 53 refused it (zone unknown, access denied).
        OpsError: Route 53 did not report the change INSYNC in time.
        TransientError: Route 53 throttled, failed (5xx) or could not be reached.
    """
    batch = dns_change(dr)
    zone, name, record_type = _target(dr)
    if approved is not None and dict(approved) != batch:
        raise ConfigError(
            f"the DNS change for {name} ({record_type}) differs from the approved plan: "
            "the disaster-recovery block was changed after the approval; start a new run"
        )
    value = batch["Changes"][0]["ResourceRecordSet"]["ResourceRecords"][0]["Value"]
    with _route53_errors(zone, name, record_type, "read"):
        client = dr.route53_client()
        current = _current(client, zone, name, record_type)
    before = current.text if current is not None else None
    result = DnsChange(
        zone_id=zone,
        record=name,
        type=record_type,
        before=before,
        after=value,
        ttl=dr.dns_ttl_seconds,
        change_id=None,
        status="unchanged",
    )
    if current is not None and _as_planned(current, record_type, value, dr.dns_ttl_seconds):
        return result
    with _route53_errors(zone, name, record_type, "change"):
        answer = client.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch=cast("ChangeBatchTypeDef", batch)
        )
    change_id = answer["ChangeInfo"]["Id"].rsplit("/", 1)[-1]
    # Asked even when the answer said INSYNC already: one request, and the status
    # reported is the one GetChange gives.
    _wait_insync(client, zone, name, record_type, change_id)
    return result.model_copy(update={"change_id": change_id, "status": "INSYNC"})


def _target(dr: DisasterRecovery) -> tuple[str, str, str]:
    """The zone id (without `/hostedzone/`), the record's name and its type."""
    missing = [
        variable
        for variable, value in (
            ("DR_DNS_ZONE_ID", dr.dns_zone_id),
            ("DR_DNS_RECORD", dr.dns_record_name),
            ("DR_DNS_BACKUP_VALUE", dr.dns_backup_value),
        )
        if not value.strip()
    ]
    if missing:
        raise ConfigError(f"the DNS failover is not configured: set {', '.join(missing)}")
    name = dr.dns_record_name.strip()
    if not _is_dns_name(name):
        raise ConfigError(f"DR_DNS_RECORD {name!r} is not a DNS name")
    return dr.dns_zone_id.strip().rsplit("/", 1)[-1], name, dr.dns_record_type


def _is_dns_name(text: str) -> bool:
    labels = text.lower().removesuffix(".").split(".")
    return len(text) <= 254 and all(_LABEL.match(label) for label in labels)


def _checked_value(dr: DisasterRecovery) -> str:
    value = dr.dns_backup_value.strip()
    if dr.dns_record_type == "CNAME":
        if not _is_dns_name(value):
            raise ConfigError(f"DR_DNS_BACKUP_VALUE {value!r} is not a DNS name for a CNAME")
        return value
    version = 4 if dr.dns_record_type == "A" else 6
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise ConfigError(
            f"DR_DNS_BACKUP_VALUE {value!r} is not an IPv{version} address, "
            f"as an {dr.dns_record_type} record needs"
        )
    return value


def _current(client: Route53Client, zone: str, name: str, record_type: str) -> DnsRecord | None:
    """The record set of that name and type, read where the zone's listing starts at it."""
    page = client.list_resource_record_sets(
        HostedZoneId=zone,
        StartRecordName=name,
        StartRecordType=cast("RRTypeType", record_type),
        MaxItems="1",
    )
    for found in page["ResourceRecordSets"]:
        if _same_name(found["Name"], name) and found["Type"] == record_type:
            return _record(found, zone, name, record_type)
    return None


def _record(
    found: ResourceRecordSetOutputTypeDef, zone: str, name: str, record_type: str
) -> DnsRecord:
    if "SetIdentifier" in found:
        # A plain UPSERT would sit beside the weighted/latency/failover records, or be
        # refused: that routing is not this flow's to rewrite.
        raise ConfigError(
            f"{name} ({record_type}) in zone {zone} uses a routing policy (set "
            f"{found['SetIdentifier']!r}); the DNS failover changes only a simple record"
        )
    alias = found.get("AliasTarget")
    return DnsRecord(
        name=name,
        type=record_type,
        values=[r["Value"] for r in found.get("ResourceRecords", [])],
        ttl=found.get("TTL"),
        alias_target=alias["DNSName"] if alias else None,
    )


def _as_planned(current: DnsRecord, record_type: str, value: str, ttl: int) -> bool:
    """Whether the record already is what the change would make it."""
    return (
        current.alias_target is None
        and [_comparable(v, record_type) for v in current.values]
        == [_comparable(value, record_type)]
        and current.ttl == ttl
    )


def _comparable(value: str, record_type: str) -> str:
    """A value as Route 53 compares it: names without case or final dot, addresses as
    their canonical text."""
    if record_type == "CNAME":
        return value.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value.strip()


def _same_name(listed: str, name: str) -> bool:
    """Route 53 lists names lower case, with a final dot, odd characters as `\\ooo`."""
    decoded = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), listed)
    return decoded.lower().rstrip(".") == name.lower().rstrip(".")


def _wait_insync(
    client: Route53Client, zone: str, name: str, record_type: str, change_id: str
) -> None:
    """Poll `GetChange` until INSYNC, at most `SYNC_WAIT_SECONDS`.

    A failure here is not retried: the change was accepted, and a second attempt would
    find the record already changed and could no longer tell whether it is served.
    """
    from botocore.exceptions import BotoCoreError, WaiterError

    check = f"check with `aws route53 get-change --id {change_id}`"
    waiter = client.get_waiter("resource_record_sets_changed")
    try:
        waiter.wait(
            Id=change_id,
            WaiterConfig={
                "Delay": POLL_SECONDS,
                "MaxAttempts": max(1, SYNC_WAIT_SECONDS // POLL_SECONDS),
            },
        )
    except WaiterError as exc:
        error = (exc.last_response or {}).get("Error", {})
        if error.get("Code"):
            reason = f"its status could not be read: {error['Code']}"
        else:
            reason = f"it is still PENDING after {SYNC_WAIT_SECONDS} s"
        raise OpsError(
            f"Route 53 accepted change {change_id} of {name} ({record_type}) in zone {zone}, "
            f"but {reason}; {check}"
        ) from None
    except BotoCoreError as exc:
        raise OpsError(
            f"Route 53 accepted change {change_id} of {name} ({record_type}) in zone {zone}, "
            f"but its status could not be read: {type(exc).__name__}; {check}"
        ) from None


@contextlib.contextmanager
def _route53_errors(zone: str, name: str, record_type: str, doing: str) -> Iterator[None]:
    """Turn boto errors into one line naming the zone, the record and AWS's error code;
    throttling, 5xx and lost connections become `TransientError`, so the step retries."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ParamValidationError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = f"Route 53 could not {doing} {name} ({record_type}) in zone {zone}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT_CODES or status >= 500:
            raise TransientError(f"{where}: {code or status}") from None
        detail = ""
        if code in _EXPLAINED_CODES and error.get("Message"):
            detail = f": {_one_line(str(error['Message']))}"
        message = f"{where}: {code or status}{detail}{_HINTS.get(code, '')}"
        raise (ConfigError if code in _CONFIG_CODES else OpsError)(message) from None
    except NoCredentialsError:
        raise ConfigError(
            f"{where}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except ParamValidationError as exc:
        raise ConfigError(f"{where}: {_one_line(str(exc))}") from None
    except BotoConnectionError as exc:
        # The endpoint's URL and the socket's reason: no credentials in either.
        raise TransientError(f"{where}: {_one_line(str(exc))}") from None
    except BotoCoreError as exc:
        raise TransientError(f"{where}: {type(exc).__name__}") from None


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


__all__ = [
    "DnsChange",
    "DnsRecord",
    "dns_change",
    "point_dns",
    "read_dns_record",
]
