"""The DNS failover's steps against Route 53 as moto's server speaks it on loopback: the
record read back with boto3, the INSYNC wait, idempotence, one-line refusals."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from blocks.disaster_recovery import DisasterRecovery
from feedback_ops.errors import ConfigError
from tasks.dns import dns_change, point_dns, read_dns_record

if TYPE_CHECKING:
    from types_boto3_route53 import Route53Client

PRIMARY = "api.eu-west-1.ai-feedback.se"
BACKUP = "api.eu-central-1.ai-feedback.se"
SECRET = "dns-test-secret-5f1e"


@pytest.fixture
def route53(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Route53Client:
    """A Route 53 client of the moto server; the steps' credentials carry a secret that
    must never appear in a message."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    client: Route53Client = boto3.client("route53", endpoint_url=s3_endpoint)
    return client


@pytest.fixture
def zone(route53: Route53Client) -> Iterator[tuple[str, str]]:
    """A hosted zone of its own (id, domain) holding the primary's CNAME, TTL 300."""
    domain = f"t{secrets.token_hex(4)}.ai-feedback.se"
    zone_id = route53.create_hosted_zone(Name=domain, CallerReference=secrets.token_hex(8))[
        "HostedZone"
    ]["Id"].rsplit("/", 1)[-1]
    _upsert(route53, zone_id, {"Name": f"api.{domain}", "TTL": 300, "Value": PRIMARY})
    yield zone_id, domain
    for found in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if found["Type"] not in ("NS", "SOA"):
            route53.change_resource_record_sets(
                HostedZoneId=zone_id,
                ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": found}]},
            )
    route53.delete_hosted_zone(Id=zone_id)


def _upsert(route53: Route53Client, zone_id: str, record: dict[str, Any]) -> None:
    record_set: Any = {
        "Name": record["Name"],
        "Type": record.get("Type", "CNAME"),
        "TTL": record["TTL"],
        "ResourceRecords": [{"Value": record["Value"]}],
        **{k: record[k] for k in ("SetIdentifier", "Weight") if k in record},
    }
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record_set}]},
    )


def settings(endpoint: str, zone: tuple[str, str], **fields: Any) -> DisasterRecovery:
    zone_id, domain = zone
    values: dict[str, Any] = {
        "backup_region_url": "s3://fo-frankfurt/platform",
        "dns_zone_id": zone_id,
        "dns_record_name": f"api.{domain}",
        "dns_backup_value": BACKUP,
        "dns_ttl_seconds": 60,
        "route53_endpoint_url": endpoint,
    }
    return DisasterRecovery(**{**values, **fields})


def served(route53: Route53Client, zone_id: str, name: str, kind: str = "CNAME") -> Any:
    """(values, TTL) of the record as boto3 reads it back; None when absent."""
    for found in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if found["Name"].rstrip(".") == name and found["Type"] == kind:
            return [r["Value"] for r in found["ResourceRecords"]], found["TTL"]
    return None


def test_the_change_is_one_exact_upsert() -> None:
    dr = DisasterRecovery(
        dns_zone_id="/hostedzone/Z0123456789ABCDEFGHIJ",
        dns_record_name="api.ai-feedback.se",
        dns_backup_value=BACKUP,
        dns_ttl_seconds=60,
    )
    assert dns_change(dr) == {
        "Comment": "feedback-ops dr-regional-failover: api.ai-feedback.se to eu-central-1",
        "Changes": [
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": "api.ai-feedback.se",
                    "Type": "CNAME",
                    "TTL": 60,
                    "ResourceRecords": [{"Value": BACKUP}],
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dns_zone_id": ""}, "the DNS failover is not configured: set DR_DNS_ZONE_ID"),
        (
            {"dns_record_name": "", "dns_backup_value": " "},
            "the DNS failover is not configured: set DR_DNS_RECORD, DR_DNS_BACKUP_VALUE",
        ),
        (
            {"dns_record_name": "api ai-feedback"},
            "DR_DNS_RECORD 'api ai-feedback' is not a DNS name",
        ),
        (
            {"dns_record_type": "A"},
            f"DR_DNS_BACKUP_VALUE '{BACKUP}' is not an IPv4 address, as an A record needs",
        ),
        (
            {"dns_record_type": "AAAA", "dns_backup_value": "192.0.2.10"},
            "DR_DNS_BACKUP_VALUE '192.0.2.10' is not an IPv6 address, as an AAAA record needs",
        ),
    ],
)
def test_incomplete_settings_are_refused_in_one_line(fields: dict[str, Any], message: str) -> None:
    base = {
        "dns_zone_id": "Z1",
        "dns_record_name": "api.ai-feedback.se",
        "dns_backup_value": BACKUP,
    }
    dr = DisasterRecovery(**{**base, **fields})
    with pytest.raises(ConfigError) as caught:
        dns_change(dr)
    assert str(caught.value) == message
    with pytest.raises(ConfigError):  # before any call to Route 53
        point_dns.fn(dr)


def test_point_dns_moves_the_record_and_waits_until_insync(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    dr = settings(s3_endpoint, zone)
    name = f"api.{domain}"

    before = read_dns_record.fn(dr)
    assert before is not None
    assert (before.values, before.ttl, before.text) == ([PRIMARY], 300, PRIMARY)

    change = point_dns.fn(dr, approved=dns_change(dr))

    assert (change.zone_id, change.record, change.type) == (zone_id, name, "CNAME")
    assert (change.before, change.after, change.ttl) == (PRIMARY, BACKUP, 60)
    assert change.status == "INSYNC" and change.change_id
    assert served(route53, zone_id, name) == ([BACKUP], 60)
    assert route53.get_change(Id=change.change_id)["ChangeInfo"]["Status"] == "INSYNC"


def test_a_second_run_changes_nothing(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    dr = settings(s3_endpoint, zone)
    first = point_dns.fn(dr)
    # Route 53 lists names with a final dot and may keep a value's case; still the same.
    again = point_dns.fn(dr.model_copy(update={"dns_backup_value": BACKUP.upper() + "."}))

    assert first.change_id and first.status == "INSYNC"
    assert again.change_id is None and again.status == "unchanged"
    assert (again.before, again.after) == (BACKUP, BACKUP.upper() + ".")
    assert served(route53, zone_id, f"api.{domain}") == ([BACKUP], 60)


def test_a_new_ttl_alone_is_a_change(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    point_dns.fn(settings(s3_endpoint, zone))
    change = point_dns.fn(settings(s3_endpoint, zone, dns_ttl_seconds=30))
    assert change.change_id and change.before == BACKUP
    assert served(route53, zone_id, f"api.{domain}") == ([BACKUP], 30)


def test_an_absent_record_is_created(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    dr = settings(s3_endpoint, zone, dns_record_name=f"status.{domain}")
    assert read_dns_record.fn(dr) is None
    change = point_dns.fn(dr)
    assert change.before is None and change.change_id
    assert served(route53, zone_id, f"status.{domain}") == ([BACKUP], 60)


def test_an_a_record_moves_to_an_address(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    name = f"edge.{domain}"
    _upsert(route53, zone_id, {"Name": name, "Type": "A", "TTL": 60, "Value": "198.51.100.7"})
    dr = settings(
        s3_endpoint, zone, dns_record_name=name, dns_record_type="A", dns_backup_value="192.0.2.10"
    )
    change = point_dns.fn(dr)
    assert (change.before, change.after) == ("198.51.100.7", "192.0.2.10")
    assert served(route53, zone_id, name, "A") == (["192.0.2.10"], 60)
    assert point_dns.fn(dr).change_id is None


def test_a_change_other_than_the_approved_one_is_refused(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    approved = dns_change(settings(s3_endpoint, zone))
    edited = settings(s3_endpoint, zone, dns_backup_value="api.elsewhere.ai-feedback.se")
    with pytest.raises(ConfigError) as caught:
        point_dns.fn(edited, approved=approved)
    assert str(caught.value) == (
        f"the DNS change for api.{domain} (CNAME) differs from the approved plan: the "
        "disaster-recovery block was changed after the approval; start a new run"
    )
    assert served(route53, zone_id, f"api.{domain}") == ([PRIMARY], 300)


def test_an_unknown_zone_is_one_line_naming_zone_record_and_code(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    _, domain = zone
    dr = settings(s3_endpoint, zone, dns_zone_id="/hostedzone/ZNOSUCHZONE0001")
    for step in (read_dns_record, point_dns):
        with pytest.raises(ConfigError) as caught:
            step.fn(dr)
        message = str(caught.value)
        assert message == (
            f"Route 53 could not read api.{domain} (CNAME) in zone ZNOSUCHZONE0001: "
            "NoSuchHostedZone (check DR_DNS_ZONE_ID)"
        )
        assert "\n" not in message and SECRET not in message


def test_a_record_with_a_routing_policy_is_left_alone(
    s3_endpoint: str, route53: Route53Client, zone: tuple[str, str]
) -> None:
    zone_id, domain = zone
    name = f"weighted.{domain}"
    _upsert(
        route53,
        zone_id,
        {"Name": name, "TTL": 60, "Value": PRIMARY, "SetIdentifier": "eu-west-1", "Weight": 100},
    )
    with pytest.raises(ConfigError) as caught:
        point_dns.fn(settings(s3_endpoint, zone, dns_record_name=name))
    assert str(caught.value) == (
        f"{name} (CNAME) in zone {zone_id} uses a routing policy (set 'eu-west-1'); the DNS "
        "failover changes only a simple record"
    )
