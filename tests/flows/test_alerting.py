"""Alerts end to end: routing by Stockholm time, real channel receivers on loopback,
the ops catalog in a real PostgreSQL, escalation, acknowledge and resolve."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from pydantic import SecretStr, ValidationError
from support.net import free_port
from support.receivers import HttpRecorder, SmtpReceiver

from blocks.channels import AlertChannels, EmailAlerts, PagerDutyAlerts, SlackAlerts, SmsAlerts
from blocks.channels.contacts import Contact, EscalationContacts
from feedback_ops.errors import OpsError
from flows.alert_steps import AlertTargets, raise_alert
from flows.alerting import alert_acknowledge, alert_escalation
from tasks.notify import Alert

STOCKHOLM = ZoneInfo("Europe/Stockholm")
PEAK_THURSDAY = datetime(2027, 6, 24, 12, 0, tzinfo=STOCKHOLM)
BUSINESS_THURSDAY = datetime(2027, 6, 24, 10, 0, tzinfo=STOCKHOLM)
MIDSOMMARAFTON = datetime(2027, 6, 25, 12, 0, tzinfo=STOCKHOLM)
ROUTING_KEY = "R0UT1NGKEY0000000000000000000abc"
SLACK_SECRET = "T000/B000/hush-hush-token"
SMS_PASSWORD = "elks-api-pa55"
ON_CALL = {
    "DevOps": Contact(phone="+46700000001", email="devops@ai-feedback.se", slack="@devops-team"),
    "Engineering Lead": Contact(
        phone="+46700000002", email="engineering@ai-feedback.se", slack="@eng-lead"
    ),
    "CTO": Contact(phone="+46700000003", email="cto@ai-feedback.se"),
}


@pytest.fixture
def ops_block(platform_db: str, tmp_path: Path, save_blocks: Any) -> str:
    """An ops catalog of this test's own, in a fresh database."""
    return str(
        save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}")["ops_database_block"]
    )


@pytest.fixture(scope="module")
def channel_set(_http_recorder_server: HttpRecorder, _smtp_server: SmtpReceiver) -> str:
    """The name of an alert channels block of this module's own: all four channels and
    the contacts, configured against the module's receivers (each test empties them)."""
    http_recorder, smtp_receiver = _http_recorder_server, _smtp_server
    prefix = f"t{secrets.token_hex(4)}"
    slack = SlackAlerts(webhook_url=SecretStr(f"{http_recorder.url}/slack/{SLACK_SECRET}"))
    email = EmailAlerts(
        host=smtp_receiver.host,
        port=smtp_receiver.port,
        sender="alerts@ai-feedback.se",
        recipients=["devops@ai-feedback.se"],
        username=smtp_receiver.username,
        password=SecretStr(smtp_receiver.password),
        ca_file=smtp_receiver.ca_file,
    )
    pagerduty = PagerDutyAlerts(
        routing_key=SecretStr(ROUTING_KEY), events_url=f"{http_recorder.url}/v2/enqueue"
    )
    sms = SmsAlerts(
        provider="46elks",
        username="u0123456789",
        password=SecretStr(SMS_PASSWORD),
        sender="AIFeedback",
        recipients=["+46701234567"],
        api_url=f"{http_recorder.url}/a1/sms",
    )
    contacts = EscalationContacts(contacts=ON_CALL)
    for name, block in (("slack", slack), ("email", email), ("pagerduty", pagerduty),
                        ("sms", sms), ("contacts", contacts)):  # fmt: skip
        block.save(f"{prefix}-{name}", overwrite=True)
    AlertChannels(slack=slack, email=email, pagerduty=pagerduty, sms=sms, contacts=contacts).save(
        f"{prefix}-alert-channels"
    )
    return f"{prefix}-alert-channels"


@pytest.fixture
def channels(
    channel_set: str, http_recorder: HttpRecorder, smtp_receiver: SmtpReceiver
) -> HttpRecorder:
    """The HTTP receiver that the module's alert channels send to, emptied for this test
    like the SMTP receiver."""
    return http_recorder


@pytest.fixture
def targets(ops_block: str, channel_set: str) -> AlertTargets:
    """This test's ops catalog and alert channels."""
    return AlertTargets(ops_block, channel_set)


def db_alert(key: str = "DATABASE_CONNECTION_LOST:platform", severity: str = "critical") -> Alert:
    return Alert(
        name="database-connection-lost",
        severity=severity,  # type: ignore[arg-type]
        summary="Database connection lost",
        details={"connections": 0},
        dedup_key=key,
        runbook_section="https://runbook.example/ops#database-connection-lost",
    )


def ops_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_critical_at_peak_pages_sms_pagerduty_and_slack(
    channels: HttpRecorder,
    smtp_receiver: SmtpReceiver,
    ops_block: str,
    platform_db: str,
    targets: AlertTargets,
) -> None:
    outcome = raise_alert(db_alert(), PEAK_THURSDAY, targets=targets)

    assert outcome.status == "sent"
    assert [(o.channel, o.ok) for o in outcome.deliveries] == [
        ("sms", True),
        ("pagerduty", True),
        ("slack", True),
    ]
    [page] = channels.requests("/v2/enqueue")
    assert page.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "DATABASE_CONNECTION_LOST:platform",
        "payload": {
            "summary": "Database connection lost",
            "source": "feedback-ops/database-connection-lost",
            "severity": "critical",
            "timestamp": page.json["payload"]["timestamp"],
            "custom_details": page.json["payload"]["custom_details"],
        },
        "links": [
            {"href": "https://runbook.example/ops#database-connection-lost", "text": "Runbook"}
        ],
        "client": "feedback-ops",
    }
    assert datetime.fromisoformat(page.json["payload"]["timestamp"]) == PEAK_THURSDAY
    details = page.json["payload"]["custom_details"]
    assert details["connections"] == 0
    assert details["respond_by"] == "2027-06-24T12:02:00+02:00"  # peak: 2 minutes
    [sms] = channels.requests("/a1/sms")
    assert sms.form is not None
    assert sms.form["to"] == "+46701234567" and sms.form["from"] == "AIFeedback"
    assert sms.form["message"].startswith("[CRITICAL] Database connection lost")
    assert sms.basic_auth == ("u0123456789", SMS_PASSWORD)
    [slack] = channels.requests("/slack/")
    assert slack.path == f"/slack/{SLACK_SECRET}"
    assert "Database connection lost" in slack.json["text"]
    assert smtp_receiver.messages == []  # email is not a critical channel at peak

    rows = ops_rows(
        platform_db,
        "SELECT status, severity, period, holiday, respond_within_minutes, escalation, "
        "delivered FROM ops.alerts",
    )
    assert rows == [
        ("open", "critical", "peak", None, 2, ["DevOps", "Engineering Lead", "CTO"], True)
    ]
    deliveries = ops_rows(
        platform_db, "SELECT action, channel, status FROM ops.alert_deliveries ORDER BY id"
    )
    assert deliveries == [
        ("trigger", "sms", "sent"),
        ("trigger", "pagerduty", "sent"),
        ("trigger", "slack", "sent"),
    ]


def test_same_condition_does_not_page_twice(
    channels: HttpRecorder, ops_block: str, platform_db: str, targets: AlertTargets
) -> None:
    first = raise_alert(db_alert(), PEAK_THURSDAY, targets=targets)
    again = raise_alert(db_alert(), PEAK_THURSDAY + timedelta(minutes=1), targets=targets)

    assert (first.status, again.status) == ("sent", "deduplicated")
    assert again.alert_id == first.alert_id
    assert len(channels.requests("/v2/enqueue")) == 1
    assert len(channels.requests("/a1/sms")) == 1
    assert ops_rows(platform_db, "SELECT occurrences FROM ops.alerts") == [(2,)]


def test_medium_in_business_hours_goes_to_slack_and_email_over_starttls(
    channels: HttpRecorder, smtp_receiver: SmtpReceiver, ops_block: str, targets: AlertTargets
) -> None:
    alert = db_alert("SLOW_RESPONSE_TIMES:api", "medium")
    outcome = raise_alert(alert, BUSINESS_THURSDAY, targets=targets)

    assert [o.channel for o in outcome.deliveries] == ["slack", "email"]
    assert channels.requests("/v2/enqueue") == [] and channels.requests("/a1/sms") == []
    [mail] = smtp_receiver.messages
    assert mail.tls is True and mail.login == "alerts"
    assert mail.rcpt_tos == ("devops@ai-feedback.se",)
    assert mail.message["Subject"] == "[MEDIUM] Database connection lost"
    assert mail.message["X-Feedback-Ops-Dedup-Key"] == "SLOW_RESPONSE_TIMES:api"


def test_holiday_alert_is_queued_then_sent_on_the_next_business_day(
    channels: HttpRecorder,
    smtp_receiver: SmtpReceiver,
    ops_block: str,
    platform_db: str,
    targets: AlertTargets,
    channel_set: str,
) -> None:
    outcome = raise_alert(
        db_alert("WEBHOOK_DELIVERY_FAILURES:square", "high"),
        MIDSOMMARAFTON,
        targets=targets,
    )
    assert outcome.status == "queued"
    assert outcome.respond_by == datetime(2027, 6, 28, 9, 0, tzinfo=STOCKHOLM)
    assert channels.requests() == [] and smtp_receiver.messages == []
    assert ops_rows(platform_db, "SELECT status, holiday FROM ops.alerts") == [
        ("queued", "Midsommarafton")
    ]

    # Midsommardagen and the weekend pass in silence ...
    early = alert_escalation(
        ops_block,
        as_of=datetime(2027, 6, 28, 8, 59, tzinfo=STOCKHOLM),
        alert_channels_block=channel_set,
    )
    assert early.sent == [] and channels.requests() == []
    # ... and Monday 09:00 it goes out on the business-hours channels.
    monday = alert_escalation(
        ops_block,
        as_of=datetime(2027, 6, 28, 9, 0, tzinfo=STOCKHOLM),
        alert_channels_block=channel_set,
    )
    assert monday.sent == ["WEBHOOK_DELIVERY_FAILURES:square"]
    assert len(channels.requests("/slack/")) == 1 and len(smtp_receiver.messages) == 1
    assert ops_rows(platform_db, "SELECT status, delivered FROM ops.alerts") == [("open", True)]


def test_unacknowledged_alert_escalates_then_acknowledge_stops_it(
    channels: HttpRecorder,
    smtp_receiver: SmtpReceiver,
    ops_block: str,
    platform_db: str,
    targets: AlertTargets,
    channel_set: str,
) -> None:
    raise_alert(db_alert(), PEAK_THURSDAY, targets=targets)
    channels.reset()

    quiet = alert_escalation(
        ops_block, as_of=PEAK_THURSDAY + timedelta(minutes=4), alert_channels_block=channel_set
    )
    assert quiet.escalated == [] and channels.requests() == []

    late = alert_escalation(
        ops_block,
        as_of=PEAK_THURSDAY + timedelta(minutes=5, seconds=30),
        alert_channels_block=channel_set,
    )
    assert late.escalated == ["DATABASE_CONNECTION_LOST:platform"]
    [sms] = channels.requests("/a1/sms")
    assert sms.form is not None and sms.form["to"] == "+46700000002"  # the Engineering Lead
    assert "ESCALATED to Engineering Lead" in sms.form["message"]
    [mail] = smtp_receiver.messages
    assert mail.rcpt_tos == ("engineering@ai-feedback.se",)
    [slack] = channels.requests("/slack/")
    assert "@eng-lead" in slack.json["text"]
    assert ops_rows(platform_db, "SELECT escalation_level FROM ops.alerts") == [(1,)]

    result = alert_acknowledge(
        "DATABASE_CONNECTION_LOST:platform",
        by="Anna",
        ops_database_block=ops_block,
        alert_channels_block=channel_set,
    )
    assert result.told == ["pagerduty", "slack"]
    ack = channels.requests("/v2/enqueue")[-1]
    assert ack.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": "DATABASE_CONNECTION_LOST:platform",
    }
    assert ops_rows(platform_db, "SELECT status, acknowledged_by FROM ops.alerts") == [
        ("acknowledged", "Anna")
    ]
    channels.reset()
    later = alert_escalation(
        ops_block, as_of=PEAK_THURSDAY + timedelta(hours=2), alert_channels_block=channel_set
    )
    assert later.escalated == [] and channels.requests() == []


def test_resolve_closes_pagerduty_and_follows_up_on_slack(
    channels: HttpRecorder,
    ops_block: str,
    platform_db: str,
    targets: AlertTargets,
    channel_set: str,
) -> None:
    first = raise_alert(db_alert(), PEAK_THURSDAY, targets=targets)
    channels.reset()

    result = alert_acknowledge(
        "DATABASE_CONNECTION_LOST:platform",
        "resolve",
        by="Erik",
        ops_database_block=ops_block,
        alert_channels_block=channel_set,
    )

    assert result.told == ["pagerduty", "slack"]
    [resolve] = channels.requests("/v2/enqueue")
    assert resolve.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "DATABASE_CONNECTION_LOST:platform",
    }
    [follow_up] = channels.requests("/slack/")
    assert follow_up.json["text"].startswith("Resolved:")
    assert ops_rows(platform_db, "SELECT status, resolved_by FROM ops.alerts") == [
        ("resolved", "Erik")
    ]
    # The condition coming back is a new alert, paged again.
    again = raise_alert(db_alert(), PEAK_THURSDAY + timedelta(hours=1), targets=targets)
    assert again.status == "sent" and again.alert_id != first.alert_id


def test_failed_channels_fall_back_and_the_failure_is_reported(
    channels: HttpRecorder,
    smtp_receiver: SmtpReceiver,
    ops_block: str,
    platform_db: str,
    targets: AlertTargets,
) -> None:
    channels.fail("/slack/", 404, "no_service", times=10)
    smtp_receiver.reject("devops@ai-feedback.se", "550 5.1.1 mailbox unavailable")
    outcome = raise_alert(
        db_alert("CACHE_HIT_RATE_LOW:redis", "medium"),
        BUSINESS_THURSDAY,
        targets=targets,
    )

    assert [(o.channel, o.ok) for o in outcome.deliveries] == [
        ("slack", False),
        ("email", False),
        ("pagerduty", True),
    ]
    assert "no_service" in (outcome.deliveries[0].error or "")
    pages = channels.requests("/v2/enqueue")
    assert [p.json["dedup_key"] for p in pages] == [
        "CACHE_HIT_RATE_LOW:redis",
        "CACHE_HIT_RATE_LOW:redis:delivery",  # the broken channels, reported on the pager
    ]
    assert "slack" in pages[1].json["payload"]["custom_details"]["body"]
    statuses = ops_rows(platform_db, "SELECT channel, status FROM ops.alert_deliveries ORDER BY id")
    assert statuses == [("slack", "failed"), ("email", "failed"), ("pagerduty", "sent")]


def test_throttled_slack_is_retried_after_retry_after(
    channels: HttpRecorder, ops_block: str, targets: AlertTargets
) -> None:
    channels.fail("/slack/", 429, "rate_limited", headers={"Retry-After": "1"}, times=1)
    outcome = raise_alert(
        db_alert("SLOW_RESPONSE_TIMES:api", "medium"),
        BUSINESS_THURSDAY,
        targets=targets,
    )
    assert outcome.deliveries[0].channel == "slack" and outcome.deliveries[0].ok
    assert len(channels.requests("/slack/")) == 2


def test_unconfigured_channels_keep_the_alert_and_the_sweep_sends_it_later(
    http_recorder: HttpRecorder, ops_block: str, platform_db: str
) -> None:
    channel_set = f"t{secrets.token_hex(4)}-alert-channels"  # not saved: no channel at all
    targets = AlertTargets(ops_block, channel_set)
    with pytest.raises(OpsError) as caught:
        raise_alert(db_alert(), PEAK_THURSDAY, targets=targets)
    message = str(caught.value)
    assert "sms is not configured: set SMS_USERNAME, SMS_PASSWORD and SMS_TO" in message
    assert "slack is not configured: set SLACK_WEBHOOK_URL" in message
    assert ops_rows(platform_db, "SELECT status, delivered FROM ops.alerts") == [("open", False)]

    AlertChannels(
        slack=SlackAlerts(webhook_url=SecretStr(f"{http_recorder.url}/slack/{SLACK_SECRET}"))
    ).save(channel_set)
    sweep = alert_escalation(
        ops_block, as_of=PEAK_THURSDAY + timedelta(minutes=1), alert_channels_block=channel_set
    )
    assert sweep.sent == ["DATABASE_CONNECTION_LOST:platform"]
    alert_post, problem = http_recorder.requests("/slack/")
    assert "Database connection lost" in alert_post.json["text"]
    # SMS and PagerDuty are still unconfigured: said on the channel that works.
    assert "Delivery problem" in problem.json["text"]
    assert ops_rows(platform_db, "SELECT delivered FROM ops.alerts") == [(True,)]


def test_alert_is_sent_even_when_the_ops_catalog_is_down(
    channels: HttpRecorder,
    tmp_path: Path,
    save_blocks: Any,
    channel_set: str,
    targets: AlertTargets,
) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/ops"
    blocks = save_blocks(DATABASE_URL=down, BACKUP_URL=f"file://{tmp_path}")
    outcome = raise_alert(
        db_alert(), PEAK_THURSDAY, targets=AlertTargets(blocks["ops_database_block"], channel_set)
    )
    assert outcome.status == "sent" and outcome.recorded is False
    assert len(channels.requests("/v2/enqueue")) == 1


def test_unknown_severity_is_refused_with_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        db_alert(severity="urgent")
    assert "unknown severity 'urgent': expected one of critical, high, medium, low" in str(
        caught.value
    )


def test_no_secret_reaches_logs_or_artifacts(
    channels: HttpRecorder, smtp_receiver: SmtpReceiver, ops_block: str, targets: AlertTargets
) -> None:
    from prefect import flow

    @flow
    def page_someone() -> None:
        raise_alert(db_alert(), PEAK_THURSDAY, targets=targets)
        raise_alert(db_alert("x", "medium"), BUSINESS_THURSDAY, targets=targets)

    state = page_someone(return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = [a for a in client.read_artifacts() if a.flow_run_id == run_id]
    shown = [log.message for log in logs] + [json.dumps(a.data) for a in artifacts]
    assert len(artifacts) == 2 and "Database connection lost" in shown[-1]
    for secret in (SLACK_SECRET, ROUTING_KEY, SMS_PASSWORD, smtp_receiver.password):
        assert all(secret not in text for text in shown), secret
