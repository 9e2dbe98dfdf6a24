"""The escalation contacts block: how to reach each role of the escalation matrix."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, HttpUrl


class Contact(BaseModel):
    """One role's phone, email and Slack handle (any may be missing)."""

    phone: str | None = Field(default=None, description="Mobile number, E.164 (+46…).")
    email: str | None = Field(default=None, description="Email address.")
    slack: str | None = Field(default=None, description="Slack handle to mention, e.g. @eng-lead.")


class EscalationContacts(Block):
    """Who the runbook's escalation roles are: DevOps, Engineering Lead, CTO, …

    Roles are the names used in the escalation matrix ("DevOps", "Engineering Lead",
    "CTO", "On-call Engineer", "Team Lead"); steps that are not people ("Document",
    "Ticket Creation", "Next Business Day") need no contact.

    Example:
        Look up who the Engineering Lead is:
        ```python
        from blocks.channels.contacts import EscalationContacts

        contacts = EscalationContacts.load("BLOCK_NAME")
        print(contacts.contacts.get("Engineering Lead"))
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Escalation Contacts"
    _block_type_slug: ClassVar[str] = "feedback-ops-escalation-contacts"
    _description: ClassVar[str] = "Phone, email and Slack handle of each escalation role."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.pagerduty.com/docs/events-api-v2/overview/"
    )

    contacts: dict[str, Contact] = Field(
        default_factory=dict, description="Contact details by escalation role."
    )

    def for_role(self, role: str) -> Contact | None:
        """The contact of a role, matching the name without regard to case."""
        wanted = role.casefold().removesuffix(" (next day)")
        for name, contact in self.contacts.items():
            if name.casefold() == wanted:
                return contact
        return None
