"""Plus-address tags and subject markers on the network address.

``bin+<token>@`` approval reply, ``bin+c-<token>@`` confirmation,
``bin+u-<token>@`` List-Unsubscribe, ``bin+a-<tag>@`` reply to a member's copy
of an alert, ``bin+f-<alert id>-<token>@`` a coordinator's follow-up to an
alert, ``bin+bounce-<id>-<signature>@`` signed VERP return path. Subject
markers: ``[BIN-<token>]`` (approval), ``[BIN-c-<token>]`` (confirmation),
``[BIN-f-<alert id>-<token>]`` (follow-up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mail.message import ParsedMail

TAG_KINDS = {"": "approval", "c-": "confirm", "u-": "unsubscribe", "a-": "alert", "f-": "followup",
             "bounce-": "bounce"}
_SUBJECT_MARKER = re.compile(r"\[BIN-(?:(c|f)-)?((?:\d{1,18}-)?[A-Za-z2-7]{16})\]", re.IGNORECASE)
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w.-]+", re.UNICODE)
RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


@dataclass(frozen=True)
class Tag:
    kind: str  # approval | confirm | unsubscribe | alert | followup | bounce
    token: str
    where: str  # e.g. "To bin+abc...@" or "subject marker"


def parse_plus_address(address: str, network_address: str) -> tuple[str, str] | None:
    """(kind, token) for ``bin+<tag>@domain`` of our network address, else None."""
    address = address.strip().strip("<>").lower()
    local, _, domain = network_address.strip().lower().partition("@")
    their_local, at, their_domain = address.partition("@")
    if not at or their_domain != domain or not their_local.startswith(local + "+"):
        return None
    tag = their_local[len(local) + 1 :]
    for prefix in ("bounce-", "c-", "u-", "a-", "f-"):
        if tag.startswith(prefix) and len(tag) > len(prefix):
            return TAG_KINDS[prefix], tag[len(prefix) :]
    return (TAG_KINDS[""], tag) if tag else None


def find_tag(mail: ParsedMail, network_address: str) -> Tag | None:
    """The first tag in the recipient headers, else a subject marker."""
    for header in RECIPIENT_HEADERS:
        for value in mail.headers(header):
            for address in _ADDRESS.findall(value):
                parsed = parse_plus_address(address, network_address)
                if parsed is not None:
                    return Tag(parsed[0], parsed[1], f"{header} {address.lower()}")
    marker = _SUBJECT_MARKER.search(mail.subject or "")
    if marker is not None:
        kind = {"c": "confirm", "f": "followup"}.get((marker.group(1) or "").lower(), "approval")
        token = marker.group(2).lower()
        if (kind == "followup") != ("-" in token):
            return None  # an alert id goes with a follow-up token only
        return Tag(kind, token, f"subject marker {marker.group(0)}")
    return None
