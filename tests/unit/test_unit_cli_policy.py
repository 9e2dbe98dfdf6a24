"""`feedback-ops policy`: an operator checks routing without reading code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_policy_json_on_midsommarafton(feedback_ops: RunCli) -> None:
    done = feedback_ops("policy", "--at", "2027-06-25T12:00", "--severity", "high", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "at": "2027-06-25T12:00:00+02:00",
        "period": "peak",
        "holiday": "Midsommarafton",
        "severity": "high",
        "respond_within_minutes": None,
        "respond_by": "2027-06-28T09:00:00+02:00",
        "next_business_day": True,
        "channels": ["slack", "email"],
        "queued": True,
        "escalation": ["Document", "Team Lead"],
        "reason": "high at 12:00 on Midsommarafton (Midsummer Eve), a holiday when only "
        "critical alerts are answered: respond on the next business day, by Monday "
        "2027-06-28 09:00",
    }


def test_policy_json_critical_at_peak(feedback_ops: RunCli) -> None:
    done = feedback_ops(
        "policy", "--at", "2027-06-24T12:00+02:00", "--severity", "CRITICAL", "--json"
    )
    document = json.loads(done.stdout)
    assert document["channels"] == ["sms", "pagerduty", "slack"]
    assert document["respond_within_minutes"] == 2
    assert document["escalation"] == ["DevOps", "Engineering Lead", "CTO"]
    assert document["holiday"] is None


def test_policy_table(feedback_ops: RunCli) -> None:
    done = feedback_ops("policy", "--at", "2027-06-24T21:59", "--severity", "medium")
    assert done.returncode == 0
    assert "respond within 2 hours" in done.stdout
    assert "extended" in done.stdout and "slack, email" in done.stdout


def test_policy_bad_input_is_one_line_exit_2(feedback_ops: RunCli) -> None:
    done = feedback_ops("policy", "--severity", "urgent")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "feedback-ops: unknown severity 'urgent': expected one of critical, high, medium, low"
    )
    done = feedback_ops("policy", "--at", "midsommar", "--severity", "low")
    assert done.returncode == 2
    assert done.stderr.strip() == ("feedback-ops: --at 'midsommar' is not an ISO date or date-time")
