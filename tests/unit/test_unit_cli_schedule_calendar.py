"""`feedback-ops schedule` and `feedback-ops calendar`, run as the real console script."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

STOCKHOLM = ZoneInfo("Europe/Stockholm")
# The `feedback_ops` fixture of tests/unit/conftest.py.
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- schedule ------------------------------------------------------------------------


def test_schedule_json_across_the_spring_forward_day(feedback_ops: RunCli) -> None:
    done = feedback_ops("schedule", "--start", "2027-03-26", "--days", "7", "--json")

    assert done.returncode == 0, done.stderr
    everything = json.loads(done.stdout)
    assert isinstance(everything, list)
    assert all(set(r) == {"flow", "deployment", "at"} for r in everything)
    # The escalation sweep runs every minute: 7 days of it, listed run by run.
    sweeps = [r for r in everything if r["flow"] == "alert-escalation"]
    assert len(sweeps) == 7 * 24 * 60 - 60  # the spring-forward day has 23 hours
    runs = [r for r in everything if r["flow"] == "database-backup"]
    assert runs == [
        {"flow": "database-backup", "deployment": "daily-0200", "at": at}
        for at in (
            "2027-03-26T02:00:00+01:00",
            "2027-03-27T02:00:00+01:00",
            "2027-03-28T03:00:00+02:00",
            "2027-03-29T02:00:00+02:00",
            "2027-03-30T02:00:00+02:00",
            "2027-03-31T02:00:00+02:00",
            "2027-04-01T02:00:00+02:00",
        )
    ]
    for run in runs:
        at = datetime.fromisoformat(run["at"])
        assert at.astimezone(STOCKHOLM).isoformat() == run["at"]


def test_schedule_table(feedback_ops: RunCli) -> None:
    done = feedback_ops("schedule", "--start", "2027-03-26", "--days", "7")

    assert done.returncode == 0, done.stderr
    assert "Sun 2027-03-28 03:00 +0200" in done.stdout
    lines = [line for line in done.stdout.splitlines() if "daily-0200" in line]
    assert len(lines) == 7
    assert all("database-backup" in line for line in lines)
    # The every-minute sweep is one summary line, not ten thousand.
    [sweep] = [line for line in done.stdout.splitlines() if "alert-escalation" in line]
    assert sweep.split()[:2] == ["10020", "runs"]


def test_schedule_rejects_a_start_that_is_not_a_date(feedback_ops: RunCli) -> None:
    done = feedback_ops("schedule", "--start", "notadate")

    assert done.returncode == 2
    assert "--start" in one_line_error(done.stderr)
    assert done.stdout == ""


def test_schedule_rejects_a_span_under_one_day(feedback_ops: RunCli) -> None:
    done = feedback_ops("schedule", "--start", "2027-03-26", "--days", "0")

    assert done.returncode == 2
    assert "--days" in one_line_error(done.stderr)
    assert done.stdout == ""


# --- calendar ------------------------------------------------------------------------


def test_calendar_json(feedback_ops: RunCli) -> None:
    done = feedback_ops("calendar", "2027", "--json")

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"year", "holidays", "maintenance_windows"}
    assert document["year"] == 2027

    holidays = document["holidays"]
    assert all(set(h) == {"date", "name_sv", "name_en"} for h in holidays)
    assert [h["date"] for h in holidays] == sorted(h["date"] for h in holidays)
    for expected in (
        {"date": "2027-03-26", "name_sv": "Långfredagen", "name_en": "Good Friday"},
        {"date": "2027-03-28", "name_sv": "Påskdagen", "name_en": "Easter Sunday"},
        {"date": "2027-06-25", "name_sv": "Midsommarafton", "name_en": "Midsummer Eve"},
        {"date": "2027-12-24", "name_sv": "Julafton", "name_en": "Christmas Eve"},
        {"date": "2027-12-31", "name_sv": "Nyårsafton", "name_en": "New Year's Eve"},
    ):
        assert expected in holidays

    windows = document["maintenance_windows"]
    assert all(set(w) == {"kind", "start", "end"} for w in windows)
    assert {w["kind"] for w in windows} == {"weekly", "monthly"}
    for window in windows:
        start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
        assert start.utcoffset() is not None and end.utcoffset() is not None
        assert start.astimezone(STOCKHOLM).isoformat() == window["start"]
        assert start < end
    starts = {w["start"][:10] for w in windows}
    assert "2027-03-28" not in starts  # Påskdagen: no planned maintenance
    assert {
        "kind": "monthly",
        "start": "2027-03-07T04:00:00+01:00",
        "end": "2027-03-07T10:00:00+01:00",
    } in windows
    assert {
        "kind": "weekly",
        "start": "2027-07-11T06:00:00+02:00",
        "end": "2027-07-11T08:00:00+02:00",
    } in windows


def test_calendar_table(feedback_ops: RunCli) -> None:
    done = feedback_ops("calendar", "2027")

    assert done.returncode == 0, done.stderr
    assert "Midsommarafton" in done.stdout
    assert "Midsummer Eve" in done.stdout
    assert "2027-06-25" in done.stdout


@pytest.mark.parametrize("year", ["1800", "2150"])
def test_calendar_rejects_a_year_out_of_range(feedback_ops: RunCli, year: str) -> None:
    done = feedback_ops("calendar", year, "--json")

    assert done.returncode == 2
    assert year in one_line_error(done.stderr)
    assert done.stdout == ""
