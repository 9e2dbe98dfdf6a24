"""Telling the businesses an outage touches, by email through the alert channel: one
message per business, to its own address only, in Swedish and English.

A business an email did not reach is counted and listed, and the others are still
tried; after FAILURES_IN_A_ROW failures that are not a refused address (the mail server
itself is down) the rest are counted as not tried. A drill emails no business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from blocks.channels import HOW_TO_CONFIGURE, AlertChannels, ChannelError, Message
from blocks.postgres.businesses import BusinessToTell
from flows.dr_steps import DrRecord, PlannedStep
from policy import STOCKHOLM, Channel, Severity
from policy.disaster_recovery import Mode
from tasks.notify import send_on_channel

FAILURES_IN_A_ROW = 5
"""Emails that failed one after the other (not a refused address) before the rest are
left untried: the mail server is down, and each attempt would wait its retries."""


@dataclass
class Tally:
    """Who was told by email, who was not and why."""

    told: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(business id, why) of each business an email did not reach."""
    to_tell: int = 0
    """How many the plan emails (a dry run or a drill: would email)."""


def email_step(mode: Mode, channels: AlertChannels, count: int) -> PlannedStep:
    """The planned emails, or why there are none."""
    server = f"{channels.email.host}:{channels.email.port}" if channels.email is not None else "-"
    skipped = None
    if mode is Mode.DRILL:
        skipped = f"a drill emails no business: it would have told {count}"
    elif not channels.configured(Channel.EMAIL):
        skipped = (
            f"the email channel is not configured: set {HOW_TO_CONFIGURE[Channel.EMAIL]}; "
            f"{count} businesses would not be told"
        )
    elif count == 0:
        skipped = "no affected business has an email address"
    return PlannedStep(
        title="tell the affected businesses",
        call=f"email through the alert channel's SMTP server {server} to {count} "
        "businesses, one message each to its own address",
        skipped=skipped,
    )


def tell_businesses(
    record: DrRecord,
    details: dict[str, Any],
    mode: Mode,
    channels: AlertChannels,
    incident: datetime,
    tally: Tally,
) -> str:
    """One email per business, to its own address only; returns the note for the
    artifact. A business an email did not reach is counted and listed, and the run
    goes on: the recovery itself is done."""
    title = "tell the affected businesses"
    to_tell = [BusinessToTell(b["business_id"], b["email"], tuple(b["providers"]))
               for b in details["to_tell"]]  # fmt: skip
    without = len(details["without_email"])
    no_address = f"; {without} without an email address" if without else ""
    if mode is Mode.DRILL:
        record.skipped(title, f"a drill emails no business: it would have told {len(to_tell)}")
        return f"would have told {len(to_tell)} businesses by email (a drill){no_address}"
    if not channels.configured(Channel.EMAIL):
        why = f"the email channel is not configured: set {HOW_TO_CONFIGURE[Channel.EMAIL]}"
        record.skipped(title, why)
        tally.failed += [(b.business_id, why) for b in to_tell]
        return f"told no business: {why}{no_address}"
    if not to_tell:
        record.skipped(title, "no affected business has an email address")
        return f"told no business{no_address}"
    with record.step(title):
        _send_each(to_tell, channels, incident, tally)
    listed = "; ".join(f"business {b}: {why}" for b, why in tally.failed[:10])
    failed = f"; not reached: {len(tally.failed)} ({listed})" if tally.failed else ""
    return f"told {len(tally.told)} of {len(to_tell)} businesses by email{failed}{no_address}"


def _send_each(
    businesses: list[BusinessToTell], channels: AlertChannels, incident: datetime, tally: Tally
) -> None:
    in_a_row, last = 0, ""
    for business in businesses:
        if in_a_row >= FAILURES_IN_A_ROW:
            tally.failed.append((business.business_id, f"not tried after: {last}"))
            continue
        address = business.email or ""
        try:
            send_on_channel(Channel.EMAIL, _notice(business, incident), channels, [address])
        except Exception as exc:  # one business not reached must not stop the others
            last = str(exc).splitlines()[0] if str(exc) else repr(exc)
            tally.failed.append((business.business_id, last))
            refused = isinstance(exc, ChannelError) and bool(exc.failed_recipients)
            in_a_row = 0 if refused else in_a_row + 1
        else:
            tally.told.append(business.business_id)
            in_a_row = 0


def _notice(business: BusinessToTell, incident: datetime) -> Message:
    """The email a business gets, in Swedish and English, short."""
    names = [p.capitalize() for p in business.providers]
    sv = " och ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    en = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    since = f"{incident.astimezone(STOCKHOLM):%Y-%m-%d %H:%M}"
    body = (
        f"Hej!\n\nDet är en störning hos {sv} sedan {since}. Vi har kopplat om er "
        "anslutning till leverantörens reservsystem, så kundfeedback samlas in igen. "
        "Feedback från störningen kan komma fram senare. Ni behöver inte göra något.\n\n"
        f"Hello,\n\nThere has been an outage at {en} since {since} (Swedish time). We "
        "have switched your connection to the provider's backup systems, so customer "
        "feedback is being collected again. Feedback from the outage may arrive late. "
        "There is nothing you need to do.\n\nAI Feedback"
    )
    return Message(
        title="Störning i kassakopplingen / POS connection disruption",
        body=body,
        severity=Severity.HIGH,
        dedup_key=f"pos-outage:{incident.astimezone(UTC):%Y%m%dT%H%M%SZ}:{business.business_id}",
        timestamp=incident,
        source="AI Feedback",
    )
