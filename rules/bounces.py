"""Bounce recognition: is this a delivery failure, and for which recipient?

Two ways in. A standard RFC 3464 report (multipart/report with a
message/delivery-status part) is read field by field. Everything else (older
Exchange NDRs, Gmail's text notices, Postfix/qmail/Exim plain text, Dutch
"Onbestelbaar" mail) is recognised by signals: the subject, the sender
(MAILER-DAEMON, postmaster, the null Return-Path) and the body's phrasing.
No single soft signal is proof (a resident may write "onbestelbaar pakket"),
so at least two must agree, or one hard one (a DSN, X-Failed-Recipients,
Exchange's NDR header). ``detect_bounce`` never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message

from mail.headers import content_type, decode_header_value, raw_header, valid_address
from mail.message import ParsedMail

# Only the start of the text is searched: the notice comes first, the
# returned original (which may quote anything) after it.
_SCAN_CHARS = 30_000
_ADDRESS = r"[^\s<>()\[\]\"',;:]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]"
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([45]\d\d)[ -]")

_SUBJECT = re.compile(
    r"undeliver|undelivered mail|returned mail|delivery status notification|"
    r"delivery (?:has )?fail|mail delivery failed|failure notice|delivery failure|"
    r"delivery notification|could not send message|delivery delayed|"
    r"onbestelbaar|niet bezorgd|niet afgeleverd|kan niet worden bezorgd|bezorging mislukt|"
    r"vertraagd|unzustellbar|non remis|non recapitabile",
    re.IGNORECASE,
)
_BODY = re.compile(
    r"this is the mail system at host|delivery has failed to these recipients|"
    r"your message wasn't delivered|your message was not delivered|address not found|"
    r"message could not be delivered|could not be delivered to one or more|"
    r"couldn't be delivered|the following address\(es\) failed|permanent fatal errors?|"
    r"this is the qmail-send program|i'm sorry to have to inform you|"
    r"delivery to the following recipients? failed|was not delivered to|"
    r"mail delivery software|undeliverable|remote server returned|"
    r"diagnostic information for administrators|"
    r"bezorging is mislukt|kan niet worden bezorgd|is niet bezorgd|niet worden afgeleverd|"
    r"diagnostische gegevens voor beheerders|de externe server heeft",
    re.IGNORECASE,
)
_DELAY = re.compile(
    r"\bdelay|will (?:continue to )?retry|still trying|could not send message for past|"
    r"warning message only|vertraagd|vertraging|wordt opnieuw geprobeerd|nog niet bezorgd",
    re.IGNORECASE,
)
_DAEMON_LOCALS = frozenset(
    {"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mailer_daemon", "mdaemon"}
)
_DAEMON_NAMES = re.compile(r"mail delivery (?:sub)?system|postmaster|mailer.daemon", re.IGNORECASE)
_EXCHANGE_SENDER = re.compile(r"^microsoftexchange[0-9a-f]{32}@", re.IGNORECASE)

# Where the failed recipient is named, most specific first. Each pattern's
# first group is the address.
_RECIPIENT_PATTERNS = [
    # Gmail (en, nl): "wasn't delivered to x@y because ..."
    re.compile(rf"(?:wasn't|was not|couldn't be|could not be) delivered to\s+<?({_ADDRESS})>?",
               re.IGNORECASE),
    re.compile(rf"niet (?:bezorgd|afgeleverd) (?:bij|aan)\s+<?({_ADDRESS})>?", re.IGNORECASE),
    # Office 365 (en, nl): "Your message to x@y couldn't be delivered."
    re.compile(rf"(?:message to|bericht aan|bericht voor|bericht naar)\s+<?({_ADDRESS})>?\s+"
               r"(?:couldn't|could not|can't|cannot|kan niet|is niet)", re.IGNORECASE),
    # Postfix and qmail: "<x@y>: host ... said: 550 ..." at the start of a line.
    re.compile(rf"^[ \t]*<({_ADDRESS})>:", re.MULTILINE),
]
# After these headings the first address is the failed one.
_HEADINGS = re.compile(
    r"delivery has failed to these recipients or groups|"
    r"bezorging is mislukt voor (?:deze|de volgende) ontvangers of groepen|"
    r"the following address\(es\) failed|following recipients? failed|"
    r"could not be delivered to the following recipients|"
    r"delivery to the following recipients? failed|"
    r"the following message to .{0,80}was undeliverable",
    re.IGNORECASE,
)
_ANY_ADDRESS = re.compile(_ADDRESS)
_VERP_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to",
                 "x-original-recipient", "original-recipient", "cc")
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


@dataclass
class Bounce:
    recipients: list[str]  # failed recipients, lowercased
    permanent: bool  # 5.x.x / hard
    status: str | None  # e.g. "5.1.1"
    diagnostic: str | None
    verp_id: str | None  # <id> of a bounce sent to bin+bounce-<id>@domain


@dataclass
class _Recipient:
    address: str
    action: str
    status: str | None
    diagnostic: str | None


def detect_bounce(mail: ParsedMail, network_address: str) -> Bounce | None:
    """A ``Bounce`` if ``mail`` is a delivery failure or delay notice, else None."""
    verp_id = _verp_id(mail, network_address)
    report = _dsn_recipients(mail.message)
    if report:
        bounce = _from_report(report, verp_id)
        if bounce is not None or any(r.action in ("delivered", "relayed", "expanded") for r in report):
            return bounce  # a success notice is no bounce
    hard = bool(mail.header("X-Failed-Recipients")) or _is_exchange_ndr(mail) or bool(report)
    scan = mail.text[:_SCAN_CHARS]
    body = bool(_BODY.search(scan))
    soft = sum((bool(_SUBJECT.search(mail.subject)), _from_daemon(mail), body))
    if not (hard or soft >= 2 or (verp_id is not None and soft >= 1)):
        return None
    bounce = _from_text(mail, scan, network_address, verp_id)
    if not (hard or body or bounce.recipients):
        # Subject and sender alone, with nothing failed named anywhere: more
        # likely a person at postmaster@ than a delivery notice.
        return None
    return bounce


# ---------------------------------------------------------------- signals


def _from_daemon(mail: ParsedMail) -> bool:
    return_path = mail.header("Return-Path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return True
    for name, address in mail.from_addresses:
        local = address.split("@", 1)[0]
        if local in _DAEMON_LOCALS or _EXCHANGE_SENDER.match(address) or _DAEMON_NAMES.search(name):
            return True
    return False


def _is_exchange_ndr(mail: ParsedMail) -> bool:
    value = mail.header("X-MS-Exchange-Message-Is-Ndr")
    return value is not None and value.strip().lower() not in ("false", "no", "0")


def _verp_id(mail: ParsedMail, network_address: str) -> str | None:
    network = network_address.strip().lower()
    if "@" not in network:
        return None
    local, domain = network.rsplit("@", 1)
    pattern = re.compile(
        rf"(?<![\w.+-]){re.escape(local)}\+bounce-([A-Za-z0-9._=-]+)@{re.escape(domain)}\b",
        re.IGNORECASE,
    )
    for name in _VERP_HEADERS:
        for value in mail.headers(name):
            found = pattern.search(value)
            if found:
                return found.group(1)
    return None


# ---------------------------------------------------------------- RFC 3464


def _dsn_recipients(message: Message) -> list[_Recipient]:
    """Per-recipient fields of a delivery-status part (top level or in a report)."""
    for _index, part in _report_parts(message):
        ctype, _params = content_type(part)
        if ctype in _DSN_TYPES:
            blocks = _status_blocks(part)
            return [recipient for block in blocks if (recipient := _recipient(block)) is not None]
    return []


def _report_parts(message: Message) -> list[tuple[int, Message]]:
    """Parts worth inspecting: a report's children, without walking big trees."""
    ctype, _ = content_type(message)
    if ctype not in ("multipart/report", "multipart/mixed") and ctype not in _DSN_TYPES:
        return []
    if ctype in _DSN_TYPES:
        return [(0, message)]
    payload = message.get_payload()
    if not isinstance(payload, list):
        return []
    return [(index, part) for index, part in enumerate(payload[:10]) if isinstance(part, Message)]


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part, whatever the parser made of it.

    The stdlib parses message/delivery-status into one Message per block; a
    message/global-delivery-status becomes one message whose body holds the
    remaining blocks as text.
    """
    payload = part.get_payload()
    if isinstance(payload, str):
        return _text_blocks(payload)
    blocks: list[dict[str, str]] = []
    for child in payload if isinstance(payload, list) else []:
        if not isinstance(child, Message):
            continue
        blocks.append({name.lower(): decode_header_value(value) for name, value in child.raw_items()})
        rest = child.get_payload()
        if isinstance(rest, str) and rest.strip():
            blocks.extend(_text_blocks(rest))
    return blocks


def _text_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last is not None:
                fields[last] += " " + line.strip()
            elif ":" in line:
                name, value = line.split(":", 1)
                last = name.strip().lower()
                fields.setdefault(last, value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def _typed_address(value: str | None) -> str | None:
    """"rfc822; x@y" -> "x@y" (lowercased), or None."""
    if not value:
        return None
    address = value.split(";", 1)[-1].strip().strip("<>").strip().lower()
    return address if valid_address(address) else None


def _after_type(value: str | None) -> str | None:
    if not value:
        return None
    text = value.split(";", 1)[-1].strip()
    return text or None


def _recipient(block: dict[str, str]) -> _Recipient | None:
    address = _typed_address(block.get("original-recipient")) or _typed_address(
        block.get("final-recipient")
    )
    if address is None:
        return None
    status_found = _STATUS.search(block.get("status", ""))
    return _Recipient(
        address=address,
        action=block.get("action", "").strip().lower(),
        status=status_found.group(1) if status_found else None,
        diagnostic=_one_line(_after_type(block.get("diagnostic-code")) or "") or None,
    )


def _from_report(report: list[_Recipient], verp_id: str | None) -> Bounce | None:
    failed = [r for r in report if r.action == "failed" or (not r.action and _class(r.status) == "5")]
    delayed = [r for r in report if r.action == "delayed" or (not r.action and _class(r.status) == "4")]
    chosen = failed or delayed
    if not chosen:
        return None
    first = chosen[0]
    permanent = bool(failed) and _class(first.status) in ("5", None)
    return Bounce(
        recipients=_unique(r.address for r in chosen),
        permanent=permanent,
        status=first.status,
        diagnostic=first.diagnostic,
        verp_id=verp_id,
    )


def _class(status: str | None) -> str | None:
    return status[0] if status else None


# ---------------------------------------------------------------- free text


def _from_text(mail: ParsedMail, scan: str, network_address: str, verp_id: str | None) -> Bounce:
    recipients, line = _text_recipients(scan)
    if not recipients:
        recipients = _header_recipients(mail)
    own = network_address.strip().lower()
    recipients = [r for r in recipients if r != own and r.split("@", 1)[0] not in _DAEMON_LOCALS]
    context = line or scan
    status = _first(_STATUS, context) or _first(_STATUS, scan)
    diagnostic = _diagnostic(line, scan)
    if status is not None:
        permanent = status.startswith("5")
    else:
        reply = _first(_SMTP_REPLY, diagnostic or "")
        delayed = bool(_DELAY.search(mail.subject) or _DELAY.search(scan[:3000]))
        permanent = reply.startswith("5") if reply else not delayed
    return Bounce(
        recipients=recipients,
        permanent=permanent,
        status=status,
        diagnostic=diagnostic,
        verp_id=verp_id,
    )


def _text_recipients(scan: str) -> tuple[list[str], str | None]:
    """(failed addresses, the text describing the failure) from the notice's words."""
    for pattern in _RECIPIENT_PATTERNS:
        found = pattern.search(scan)
        if found:
            return [found.group(1).lower()], _paragraph(scan, found.start())
    heading = _HEADINGS.search(scan)
    if heading:
        address = _ANY_ADDRESS.search(scan, heading.end(), heading.end() + 600)
        if address:
            line_start = scan.rfind("\n", 0, address.start()) + 1
            return [address.group(0).lower().rstrip(".")], _paragraph(scan, line_start)
    return [], None


def _paragraph(text: str, start: int) -> str:
    """The text from ``start`` up to the next blank line, on one line (max 500)."""
    end = re.compile(r"\n[ \t]*\n").search(text, start)
    return _one_line(text[start : end.start() if end else start + 500])


def _header_recipients(mail: ParsedMail) -> list[str]:
    """X-Failed-Recipients, else the To of the returned original (one per member)."""
    failed = mail.header("X-Failed-Recipients")
    if failed:
        return _unique(a.lower() for a in _ANY_ADDRESS.findall(failed))
    for _index, part in _report_parts(mail.message):
        ctype, _ = content_type(part)
        if ctype == "text/rfc822-headers":
            blocks = _text_blocks(_payload_text(part))
            if blocks and blocks[0].get("to"):
                return _unique(a.lower() for a in _ANY_ADDRESS.findall(blocks[0]["to"]))
    for part in _embedded_messages(mail.message):
        to = raw_header(part, "to")
        if to:
            return _unique(a.lower() for a in _ANY_ADDRESS.findall(decode_header_value(to)))
    return []


def _embedded_messages(message: Message) -> list[Message]:
    found = []
    for _index, part in _report_parts(message):
        ctype, _ = content_type(part)
        if ctype == "message/rfc822" and part.is_multipart():
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.append(inner[0])
    return found


def _payload_text(part: Message) -> str:
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


_CODE_LINE = re.compile(r"^.*(?:\b[245]\.\d{1,3}\.\d{1,3}\b|\b[45]\d\d[ -]).*$", re.MULTILINE)


def _diagnostic(paragraph: str | None, scan: str) -> str | None:
    """The server's own words if quoted, else the text around the failure."""
    for pattern in (r"remote server returned '([^']+)'", r"de externe server heeft '([^']+)'",
                    r"the response (?:from the remote server )?was:\s*(.+)"):
        found = re.search(pattern, scan, re.IGNORECASE)
        if found:
            return _one_line(found.group(1))
    if paragraph and (_STATUS.search(paragraph) or _SMTP_REPLY.search(paragraph)):
        return paragraph
    found = _CODE_LINE.search(scan)
    if found:
        return _one_line(found.group(0))
    return paragraph


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1) if found else None


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for address in addresses:
        if address not in seen:
            seen.append(address)
    return seen
