"""What later steps need of a parsed message, kept so they never parse it again.

Routing parses a message once (``mail.message.parse_mail``); the approval
request, the alert's scrub and attachments and a partner's contact details
need only its From names and addresses and its attachments' descriptions.
``MailFacts`` is that, as plain JSON for the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail.message import Attachment, ParsedMail


@dataclass(frozen=True)
class MailFacts:
    from_addresses: list[tuple[str, str]]  # (display name, address), as the From header gave them
    attachments: list[Attachment]

    @classmethod
    def of(cls, mail: ParsedMail) -> MailFacts:
        return cls(list(mail.from_addresses), list(mail.attachments))

    def as_json(self) -> dict[str, Any]:
        return {
            "from": [[name, address] for name, address in self.from_addresses],
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size,
                 "disposition": a.disposition, "part_index": a.part_index}
                for a in self.attachments
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MailFacts:
        return cls(
            [(str(name), str(address)) for name, address in data.get("from", [])],
            [Attachment(a.get("filename"), str(a.get("content_type", "application/octet-stream")),
                        int(a.get("size", 0)), str(a.get("disposition", "attachment")), int(a.get("part_index", 0)))
             for a in data.get("attachments", [])],
        )


NO_FACTS = MailFacts([], [])
