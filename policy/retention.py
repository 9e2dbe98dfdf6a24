"""Grandfather-father-son retention of backups.

Each backup carries the class it was given when taken (by its Stockholm date: the
first of a month is monthly, a Sunday weekly, any other day daily). A backup is kept
while it is younger than its class allows: daily 35 days, weekly 13 weeks, monthly 7
years (Swedish accounting records, runbook appendix C). Whatever the ages, the newest
verified backup of each kind and the newest backup of each kind are kept, so a kind
never loses its last good restore point.
"""

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["BackupInfo", "RetentionDecision", "RetentionRules", "plan_retention"]

RetentionClass = Literal["daily", "weekly", "monthly"]


@dataclass(frozen=True)
class RetentionRules:
    """How long each class of backup is kept."""

    daily_days: int = 35
    weekly_weeks: int = 13
    monthly_years: int = 7

    def __post_init__(self) -> None:
        for name in ("daily_days", "weekly_weeks", "monthly_years"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def keep_until(self, created_at: datetime.datetime, cls: RetentionClass) -> datetime.datetime:
        """The moment a backup of this class stops being kept for its age."""
        if cls == "daily":
            return created_at + datetime.timedelta(days=self.daily_days)
        if cls == "weekly":
            return created_at + datetime.timedelta(weeks=self.weekly_weeks)
        try:
            return created_at.replace(year=created_at.year + self.monthly_years)
        except ValueError:  # 29 February
            return created_at.replace(year=created_at.year + self.monthly_years, day=28)


@dataclass(frozen=True)
class BackupInfo:
    """What retention needs to know about one backup."""

    backup_id: str
    kind: str
    created_at: datetime.datetime
    retention_class: RetentionClass
    verified: bool


@dataclass(frozen=True)
class RetentionDecision:
    """Keep or delete one backup, and why."""

    backup: BackupInfo
    keep: bool
    reason: str


def plan_retention(
    backups: Iterable[BackupInfo], now: datetime.datetime, rules: RetentionRules
) -> list[RetentionDecision]:
    """Decide for every backup whether it is kept, oldest first.

    Raises:
        ValueError: ``now`` or a backup's ``created_at`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    items: Sequence[BackupInfo] = sorted(backups, key=lambda b: (b.kind, b.created_at))
    newest = _newest(items, lambda b: True)
    newest_verified = _newest(items, lambda b: b.verified)
    decisions = []
    for backup in items:
        if backup.created_at.tzinfo is None:
            raise ValueError(f"backup {backup.backup_id} has a naive created_at")
        until = rules.keep_until(backup.created_at, backup.retention_class)
        if now < until:
            reason = f"{backup.retention_class}, kept until {until:%Y-%m-%d}"
            decisions.append(RetentionDecision(backup, True, reason))
        elif newest_verified.get(backup.kind) == backup.backup_id:
            reason = "the newest verified backup of its kind"
            decisions.append(RetentionDecision(backup, True, reason))
        elif newest.get(backup.kind) == backup.backup_id:
            decisions.append(RetentionDecision(backup, True, "the newest backup of its kind"))
        else:
            reason = f"{backup.retention_class}, expired {until:%Y-%m-%d}"
            decisions.append(RetentionDecision(backup, False, reason))
    return sorted(decisions, key=lambda d: d.backup.created_at)


def _newest(items: Sequence[BackupInfo], wanted: Callable[[BackupInfo], bool]) -> dict[str, str]:
    found: dict[str, str] = {}
    for backup in items:  # sorted by kind, then time: the last one wins
        if wanted(backup):
            found[backup.kind] = backup.backup_id
    return found
