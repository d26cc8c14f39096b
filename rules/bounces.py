"""Bounce recognition: is this a delivery failure or delay, and for which recipient?

The recipients come from the most reliable place the message offers:

1. an RFC 3464 report (a message/delivery-status part, or the same fields
   pasted into the text, or Amazon SES's JSON): Final-Recipient and
   Original-Recipient of every recipient whose Action is failed. Delayed
   recipients make a delay notice; a report whose every status is 2.x.x is a
   success notice, never a bounce;
2. X-Failed-Recipients (Exim);
3. the notice's own words, in the forms MTAs write them: "<addr>:" paragraphs
   (Postfix, qmail), addresses listed under a heading (Exim, sendmail,
   Exchange, Notes, OpenSMTPD, ...), "label: addr" lines (LSMTP's Error-for,
   PMDF's Recipient address, IMail's "Unknown user: addr"), "addr: 550 ..."
   and "554 <addr>... " lines, and sentences such as "could not be delivered
   to addr" or "Your message to addr couldn't be delivered";
4. the To of the returned original, only when it names exactly one address.

Whether a message without a report is a notice at all is decided by signals:
the subject, the sender (MAILER-DAEMON, postmaster, the null sender) and the
body's phrasing. No single soft signal is proof (a resident may write
"onbestelbaar pakket"), so two must agree, and a notice not sent by a mail
system must also name the failed recipient in its words. A challenge-response
message (``rules.automatic.challenge_reason``) is an auto-reply, and a person
forwarding or answering a notice wrote human mail: neither is a bounce.
``detect_bounce`` never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from email.message import Message

from flufl.bounce import all_failures

from mail.headers import addresses, content_type, decode_header_value, raw_header, valid_address
from mail.message import ParsedMail
from rules.automatic import challenge_reason, own_address

# Only the start of the text is searched: the notice comes first, the
# returned original (which may quote anything) after it.
_SCAN_CHARS = 30_000
_ADDRESS = r"[^\s<>()\[\]\"',;:]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]"
# An address as notices write it: bare, <bracketed>, "quoted" or 'quoted'.
_QUOTED = rf"[\"'<]?({_ADDRESS})[\"'>]?"
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([45]\d\d)[ -]")

_SUBJECT = re.compile(
    r"undeliver|returned mail|returning message|returned to sender|delivery status|"
    r"delivery (?:has )?fail|delivery failure|failure delivery|failure notice|failed delivery|mail delivery|"
    r"delivery (?:notification|report|problem|warning)|could not (?:send|be delivered)|"
    r"not (?:yet )?(?:been )?delivered|non[- ]?delivery|delivery delayed|delayed mail|"
    r"mail (?:system )?error|mail failed|mail failure|bounce notification|message status|"
    r"onbestelbaar|niet bezorgd|niet afgeleverd|kan niet worden bezorgd|bezorging mislukt|"
    r"vertraagd|unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|verzögert|non remis|non distribu|"
    r"[ée]chec de (?:la )?(?:remise|distribution)|non recapitabile|no (?:se puede )?entregado|"
    r"não entregue|niedostarcz|не доставлено|доставки|送信できません|配信できません|届きませんでした|"
    r"エラー|宛先不明|退信|无法投递|未能送达",
    re.IGNORECASE,
)
_BODY = re.compile(
    r"this is the mail system at host|delivery has failed to these recipients|"
    r"(?:wasn't|was not|couldn't be|could not be|cannot be|can't be|not been|has not yet been) delivered|"
    r"address not found|could not be delivered to one or more|undeliverable|"
    r"following (?:address(?:\(es\)|es)?|recipients?) (?:failed|had|have|did not|could not|was|were)|"
    r"permanent (?:fatal )?errors?|this is the qmail-send program|i'm sorry to have to inform you|"
    r"delivery to the following recipients? (?:failed|has been delayed)|mail delivery (?:software|system)|"
    r"remote server returned|diagnostic information for administrators|transcript of session follows|"
    r"unsent message follows|had (?:permanent fatal|delivery) (?:errors|problems)|"
    r"did not reach (?:the following|some or all)|could not be reached|"
    r"error (?:has )?occurred while (?:attempting|trying) to deliver|error delivering your (?:mail|message)|"
    r"unable to deliver|delivery status notification|failure reasons|rejected by (?:a |the )?remote|"
    r"(?:user|mailbox|recipient) (?:unknown|not found|is full|full)|unknown user|no such user|"
    r"not a valid (?:user|recipient|mailbox)|over quota|quota exceeded|not listed in|"
    r"i wasn't able to deliver|returned mail|error-for|could not deliver|successfully delivered|"
    r"mail delivery (?:status )?report|"
    r"will (?:continue|keep) (?:to )?(?:try|attempt)|warning message only|delivery attempts will continue|"
    r"bezorging is mislukt|kan niet worden bezorgd|is niet bezorgd|niet worden afgeleverd|"
    r"diagnostische gegevens voor beheerders|de externe server heeft|"
    r"konnte nicht zugestellt werden|nicht zugestellt|verzögert|weiter versucht|n'a pas pu être (?:remis|distribu)|"
    r"non è stato possibile (?:consegnare|recapitare)|no (?:pudo|ha podido) ser entregado|"
    r"não pôde ser entregue|nie został dostarczony|не может быть доставлено|не доставлено|"
    r"送信できませんでした|配信できませんでした|届きませんでした|宛先不明|无法投递|未能送达",
    re.IGNORECASE,
)
# A notice that a delivery succeeded: as a report whose every status is 2.x.x, never a bounce.
_SUCCESS = re.compile(
    r"successfully delivered|delivery (?:was |has been )?successful|delivery report that you requested|"
    r"\bis deliverable\b|relayed to non-dsn|delivered to (?:the )?(?:mailbox|recipient)",
    re.IGNORECASE,
)
_FAILURE_WORDS = re.compile(
    r"could(?: not|n't) be delivered|not (?:been )?delivered|undeliver|delivery (?:has )?failed|\bfailed\b|"
    r"permanent|rejected|unknown|no such|(?:^|\s)[45]\d\d[ -]\S",
    re.IGNORECASE | re.MULTILINE,
)
# A notice that the server is still trying ...
_DELAY = re.compile(
    r"\bdelay(?:ed)?\b|will (?:continue|keep) (?:to )?(?:try|attempt|retry)|will be retried|will retry|"
    r"still (?:being )?(?:trying|retried|undelivered)|(?:has )?not yet (?:been )?(?:delivered|received)|"
    r"not (?:yet )?been delivered[^.\n]{0,60}\byet\b|(?:is|are) being (?:re-?)?tried|"
    r"warning (?:message )?only|just a warning|advisory[- ]only|only a (?:notification about a delay|"
    r"temporary failure)|delivery attempts will continue|retry for \d+|has been postponed|"
    r"could not send message for past|temporar(?:y|ily) (?:problem|failure|error|deferred|unable|rejected)|"
    r"n't been delivered yet|not (?:been )?delivered yet|(?:continue|keep) (?:trying|retrying|attempting)|"
    r"will (?:try|attempt) (?:again|to (?:re)?deliver|delivery)|delivery will continue|"
    r"(?:next|another|further) (?:delivery )?(?:attempt|retry)|retr(?:y|ying|ied) (?:until|every|again|in \d)|"
    r"will be (?:re-?)?attempted|transient (?:failure|error)|(?:still|remains?|kept) (?:in|on) the (?:mail )?queue|"
    r"no action is required|you do not need to (?:resend|re-send|take any action)|no need to resend|"
    r"(?:delivery|mail|transmission) warning|warning message|"
    r"wordt opnieuw geprobeerd|vertraagd|vertraging|nog niet bezorgd|verz[öo]ger|noch nicht zugestellt|"
    r"retard[ée]e?|diff[ée]r[ée]e|retrasad|demorad|遅延|延迟",
    re.IGNORECASE,
)
# ... unless it says it stopped.
_GIVEN_UP = re.compile(
    r"permanent (?:fatal )?(?:error|failure)|permanently (?:failed|rejected|undeliverable)|"
    r"fatal (?:delivery )?errors?|giv(?:en|ing) up|gave up|not going to try again|stopped trying|"
    r"will not be retried|no further attempts|\bexpired\b|in the queue too long|"
    r"has been removed from the (?:mail )?queue",
    re.IGNORECASE,
)
_DAEMON_LOCAL = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|post[-_.]?master|mdaemon|mail[-_.]?delivery[-_.]?(?:sub)?system|"
    r"mailadm(?:in)?)$",
    re.IGNORECASE,
)
# Never a failed recipient, even when the notice names them (its own sender is left out as well).
_NEVER_RECIPIENT = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon)$", re.IGNORECASE)
_DAEMON_NAMES = re.compile(
    r"mail delivery (?:sub)?system|mail delivery service|mail administrator|postmaster|mailer.daemon|"
    r"system administrator",
    re.IGNORECASE,
)
_EXCHANGE_SENDER = re.compile(r"^microsoftexchange[0-9a-f]{32}@", re.IGNORECASE)
# A person answering or forwarding a notice (a subject prefix of theirs).
_PERSONAL_SUBJECT = re.compile(r"^\s*(?:re|fwd?|fw|aw|wg|tr|rv|sv|doorst|antw)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)

# Where the returned original begins: a marker line, or its header block.
_MARKER_WORDS = re.compile(
    r"(?:original|unsent|returned|undelivered|bounced) (?:message|mail|e-?mail)|forwarded message|"
    r"copy of (?:the|your|this)|message (?:headers?|text) follow|header of the original|"
    r"lines of (?:the|your) (?:original )?message|summary of the undelivered|original mail info|"
    r"bounced e-?mail",
    re.IGNORECASE,
)
_MARKER_SHAPE = re.compile(
    r"^\s*(?:[-=*|_#~]{2,}.*|.*\b(?:follows?|following|below|attached|included)\b.*|.*:\s*)$",
    re.IGNORECASE,
)
_HEADER_BLOCK = re.compile(
    r"^(?:Received|Return-Path|Message-ID|DKIM-Signature|Delivered-To|Authentication-Results):",
    re.IGNORECASE,
)
_QUOTED_LINE = re.compile(r"^[ \t]*>(?!>>).*$", re.MULTILINE)

# Recipient forms in a notice's words; the first group of each is the address.
_SENTENCES = [
    # "wasn't delivered to x", "could not be delivered to: x", "undeliverable to x",
    # "Unable to deliver message to <x>", DragonFly's "error delivering your mail to <x>"
    re.compile(
        r"(?:(?:n't|not|never)(?: be| been| yet been)? (?:delivered|deliverable|sent)|undeliverable|"
        r"unable to deliver (?:the |this |your )?(?:message|mail|e-?mail)|"
        r"(?:error|problem|failure) (?:while )?delivering (?:your |the )?(?:message|mail|e-?mail))"
        rf"\s+to:?\s+{_QUOTED}",
        re.IGNORECASE,
    ),
    # Office 365 (en, nl) and Yahoo: "Your message to x couldn't be delivered."
    re.compile(rf"(?:message|mail|bericht) (?:to|aan|voor|naar)\s+{_QUOTED}\s+"
               r"(?:couldn't|could not|can't|cannot|was not|wasn't|kan niet|is niet)", re.IGNORECASE),
    re.compile(rf"niet (?:bezorgd|afgeleverd) (?:bij|aan)\s+{_QUOTED}", re.IGNORECASE),
    # Domino: "User x (addr) not listed in Domino Directory"
    re.compile(rf"\buser [^\n()]{{0,60}}\({_QUOTED}\) not listed", re.IGNORECASE),
    # IIS "(Originally addressed to x)", SurfControl "Addressed To: x", Demon "addressed to 'x'"
    re.compile(rf"addressed to:?\s+{_QUOTED}", re.IGNORECASE),
    # Old Exchange's X.400 form: "...;dda:SMTP=x@y;"
    re.compile(rf"\bSMTP=({_ADDRESS})", re.IGNORECASE),
    # "Local mailbox x is unavailable", "user x unknown", "recipient x does not exist"
    re.compile(rf"\b(?:mailbox|user|recipient|address|account)\s+{_QUOTED}\s+(?:is|was|does|has|not|unknown)\b",
               re.IGNORECASE),
    re.compile(rf"you sent (?:mail|a message|an e-?mail) to\s+{_QUOTED}", re.IGNORECASE),
    re.compile(rf"(?:permanent|fatal) errors?:\s*{_QUOTED}", re.IGNORECASE),
    # A session transcript shows the command that failed: "Sent <<< RCPT TO:<x>"
    re.compile(rf"\bRCPT TO:\s*{_QUOTED}", re.IGNORECASE),
]
# Lines that start with the address, after bullets: qmail/Postfix "<x>:", OpenSMTPD "x: 550 ...",
# Exchange "x on <date>", Exim's indented list, Notes, Mimecast "-- x", ActiveHunter ">>> x", PH "---- x".
_LEADING = re.compile(rf"^[ \t]*(?:[*>•·+-]+[ \t]*|\d{{1,3}}[.)][ \t]+)?{_QUOTED}", re.MULTILINE)
# Sendmail v5 and friends: "554 <x>... Remote protocol error"
_SMTP_LINE = re.compile(rf"^[ \t]*5\d\d[ -](?:\d\.\d{{1,3}}\.\d{{1,3}}[ -])?{_QUOTED}\.\.\.", re.MULTILINE)
# "label: x" at the end of a line (LSMTP "Error-for:", PMDF "Recipient address:", IMail
# "Unknown user: x", "Failed Recipient: x"), except the header fields of a quoted original.
_HEADER_LABELS = (
    r"(?:from|to|cc|bcc|reply-to|sender|subject|return-path|delivered-to|envelope-to|envelope-from|errors-to|"
    r"x-[\w-]+|list-[\w-]+|mail from|original sender|message-id|in-reply-to|references|resent-[\w-]+|"
    r"sent by|date|received|return-receipt-to|disposition-notification-to|reporting-mta|remote-mta|contact)"
)
_LABELLED = re.compile(
    rf"^(?![ \t>*-]*{_HEADER_LABELS}\s*:)[ \t>*-]*[^\n:<>@]{{3,80}}:[ \t]*{_QUOTED}[ \t.,;]*$",
    re.IGNORECASE | re.MULTILINE,
)
# The same labels followed by more words on the line.
_LABEL_THEN_MORE = re.compile(
    r"^[ \t>*-]*(?:failed recipient|intended recipient|recipient(?: address)?|error-for|target (?:mail )?address|"
    rf"delivery failed|unknown user|invalid user|failed address|bad address|rcpt to)\s*:\s*{_QUOTED}",
    re.IGNORECASE | re.MULTILINE,
)
# Exim's "A message sent by <x> could not be delivered": x is the sender.
_SENT_BY = re.compile(rf"sent by\s+{_QUOTED}", re.IGNORECASE)
_ALIAS = re.compile(
    rf"\((?:expanded from|(?:ultimately )?generated from|alias(?:ed)? (?:from|of))[: ]\s*{_QUOTED}\)",
    re.IGNORECASE,
)
# "...the following recipients could not be delivered ...:" then indented names without "@".
_BARE_LISTING = re.compile(
    r"(?:recipients?|address(?:es)?|users?)\b[^\n]{0,200}:[ \t]*\n((?:[ \t]+[A-Za-z0-9._-]{2,64}[ \t]*\n?)+)",
    re.IGNORECASE,
)
_FAILURE_WORD = re.compile(r"fail|unknown|undeliver|not delivered|rejected|returned|bounce", re.IGNORECASE)
# Original-Recipient is xtext (RFC 3461): "+2B" stands for "+".
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
# Addresses notices name to be written to, not as failed: only when nothing else is named.
_ROLE_LOCAL = re.compile(r"^(?:post[-_.]?master|hostmaster|abuse)$", re.IGNORECASE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
# Amazon SES notifications arrive as JSON.
_SES_TYPE = re.compile(r'"notificationType"\s*:\s*"(Bounce|Delivery)"')
_SES_BOUNCE_TYPE = re.compile(r'"bounceType"\s*:\s*"(\w+)"')
_SES_RECIPIENT = re.compile(rf'"emailAddress"\s*:\s*"({_ADDRESS})"')
_SES_STATUS = re.compile(r'"status"\s*:\s*"(\d\.\d{1,3}\.\d{1,3})"')
_SES_DIAGNOSTIC = re.compile(r'"diagnosticCode"\s*:\s*"([^"]*)"')

_ANY_ADDRESS = re.compile(_ADDRESS)
_VERP_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to",
                 "x-original-recipient", "original-recipient", "cc")
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


@dataclass
class Bounce:
    recipients: list[str]  # failed recipients, lowercased; the address we sent to first
    permanent: bool  # a hard failure: the server gave up (Action failed, 5.x.x, or words saying so)
    status: str | None  # e.g. "5.1.1"
    diagnostic: str | None
    verp_id: str | None  # <id> of a bounce sent to bin+bounce-<id>@domain


@dataclass
class _Recipient:
    addresses: list[str]  # Original-Recipient (when it differs) then Final-Recipient
    action: str
    status: str | None
    diagnostic: str | None


@dataclass
class _Notice:
    """What a notice without a report says, and who sent it."""

    mail: ParsedMail
    network: str
    text: str  # the notice's own text, up to the returned original
    words: str  # the same without quoted lines: what the sender says itself


def detect_bounce(mail: ParsedMail, network_address: str) -> Bounce | None:
    """A ``Bounce`` if ``mail`` is a delivery failure or delay notice, else None."""
    if not _from_mail_system(mail) and challenge_reason(mail) is not None:
        return None  # a challenge-response system holding our mail: an auto-reply
    verp_id = _verp_id(mail, network_address)
    notice = _notice(mail, network_address)
    report = _dsn_recipients(mail.message)
    if report:
        return _from_report(report, verp_id, notice.text)
    hard = bool(mail.header("X-Failed-Recipients")) or _is_exchange_ndr(mail)
    if not hard and _looks_personal(mail):
        return None
    pasted = [r for block in _text_blocks(notice.text) if (r := _recipient(block)) is not None]
    if pasted:
        return _from_report(pasted, verp_id, notice.text)
    ses = _from_ses(mail.text[:_SCAN_CHARS], verp_id)
    if ses is not None:
        return ses
    found = _from_text(notice, verp_id, hard)
    if found is not None and found.recipients:
        return found
    mailman = _from_mailman(mail, verp_id)
    if mailman is None or found is None:
        return found or mailman
    return replace(found, recipients=mailman.recipients)  # our judgement, their reading of who failed


# ---------------------------------------------------------------- signals


def _from_daemon(mail: ParsedMail) -> bool:
    return_path = mail.header("Return-Path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return True
    raw_from = mail.header("From")
    if raw_from is not None and (not mail.from_addresses or raw_from.strip().endswith("<>")):
        return True  # "From: <>", "From: MAILER-DAEMON <>": the null sender
    for name, address in mail.from_addresses:
        local = address.split("@", 1)[0]
        if _DAEMON_LOCAL.match(local) or _EXCHANGE_SENDER.match(address) or _DAEMON_NAMES.search(name):
            return True
    return False


def _from_mail_system(mail: ParsedMail) -> bool:
    """Sent by MAILER-DAEMON, postmaster or a mail system's name (the null sender alone is not enough)."""
    return any(_DAEMON_LOCAL.match(address.split("@", 1)[0]) or _DAEMON_NAMES.search(name)
               for name, address in mail.from_addresses)


def _is_exchange_ndr(mail: ParsedMail) -> bool:
    value = mail.header("X-MS-Exchange-Message-Is-Ndr")
    return value is not None and value.strip().lower() not in ("false", "no", "0")


def _looks_personal(mail: ParsedMail) -> bool:
    """A person answering or forwarding (Re:, Fwd:) rather than a mail system reporting."""
    return bool(_PERSONAL_SUBJECT.match(mail.subject)) and not _from_daemon(mail)


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
    found = _ANY_ADDRESS.search(_XTEXT.sub(_unhex, value.split(";", 1)[-1]))
    address = _clean(found.group(0)) if found else ""
    return address if _mailable(address) else None


def _unhex(found: re.Match[str]) -> str:
    return chr(int(found.group(1), 16))


def _after_type(value: str | None) -> str | None:
    if not value:
        return None
    text = value.split(";", 1)[-1].strip()
    return text or None


def _recipient(block: dict[str, str]) -> _Recipient | None:
    """A recipient's fields; a block with neither Action nor Status describes no delivery."""
    found = _unique(
        a for a in (_typed_address(block.get("original-recipient")), _typed_address(block.get("final-recipient")))
        if a is not None
    )
    if not found or not ("action" in block or "status" in block):
        return None
    status_found = _STATUS.search(block.get("status", ""))
    return _Recipient(
        addresses=found,
        action=block.get("action", "").strip().lower(),
        status=status_found.group(1) if status_found else None,
        diagnostic=_one_line(_after_type(block.get("diagnostic-code")) or "") or None,
    )


def _from_report(report: list[_Recipient], verp_id: str | None, text: str) -> Bounce:
    """Failed recipients make a bounce, delayed ones a delay, the rest a success notice (no failure)."""
    statuses = [r.status for r in report if r.status]
    succeeded = bool(statuses) and all(status.startswith("2") for status in statuses)
    failed = [] if succeeded else [r for r in report if _has_failed(r)]
    delayed = [] if succeeded else [r for r in report if _is_delayed(r)]
    chosen = failed or delayed
    if not chosen:
        first_status = statuses[0] if statuses else None
        return Bounce(recipients=[], permanent=False, status=first_status, diagnostic=None, verp_id=verp_id)
    first = chosen[0]
    return Bounce(
        # The text may say what the report does not: Postfix's "(expanded from <alias>)".
        recipients=_with_aliases(_unique(address for r in chosen for address in r.addresses), text),
        permanent=bool(failed),
        status=first.status,
        diagnostic=first.diagnostic,
        verp_id=verp_id,
    )


def _has_failed(recipient: _Recipient) -> bool:
    # "failed" with a 4.x.x status is a server that gave up retrying: the message came back.
    if recipient.action:
        return recipient.action.startswith(("fail", "expired"))
    return _class(recipient.status) == "5"


def _is_delayed(recipient: _Recipient) -> bool:
    if recipient.action:
        return recipient.action.startswith("delay")
    return _class(recipient.status) == "4"


def _class(status: str | None) -> str | None:
    return status[0] if status else None


def _from_ses(text: str, verp_id: str | None) -> Bounce | None:
    """Amazon SES's JSON notification: bounceType Permanent is a bounce, the others a delay."""
    kind = _SES_TYPE.search(text)
    if kind is None:
        return None
    if kind.group(1) == "Delivery":
        return Bounce(recipients=[], permanent=False, status=None, diagnostic=None, verp_id=verp_id)
    bounce_type = _SES_BOUNCE_TYPE.search(text)
    status = _SES_STATUS.search(text)
    diagnostic = _SES_DIAGNOSTIC.search(text)
    return Bounce(
        recipients=_unique(a.lower() for a in _SES_RECIPIENT.findall(text)),
        permanent=bounce_type is not None and bounce_type.group(1).lower() == "permanent",
        status=status.group(1) if status else None,
        diagnostic=_after_type(diagnostic.group(1)) if diagnostic else None,
        verp_id=verp_id,
    )


def _from_mailman(mail: ParsedMail, verp_id: str | None) -> Bounce | None:
    """GNU Mailman's detectors (flufl.bounce) as the last resort, for notices from a mail system only.

    They know MTAs our own forms do not; asking them only about mail a mail
    system sent (or that says it is a failure) keeps a person's message from
    being read as one.
    """
    if not (_from_daemon(mail) or _SUBJECT.search(mail.subject)) or _looks_personal(mail):
        return None
    try:
        temporary, permanent = all_failures(mail.message)
    except Exception:  # noqa: BLE001 -- a third-party heuristic must never stop the pipeline on odd mail
        return None
    failed = permanent or temporary
    recipients = _unique(_as_text(address).lower() for address in failed)
    recipients = [address for address in recipients if _mailable(address)]
    if not recipients:
        return None
    return Bounce(recipients=recipients, permanent=bool(permanent), status=None, diagnostic=None, verp_id=verp_id)


def _as_text(address: bytes | str) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else address


# ---------------------------------------------------------------- free text


def _notice(mail: ParsedMail, network_address: str) -> _Notice:
    text = _up_to_original(mail.text[:_SCAN_CHARS])
    return _Notice(mail=mail, network=network_address, text=text, words=_QUOTED_LINE.sub("", text))


def _up_to_original(text: str) -> str:
    """The text before the returned original (a marker line or its header block)."""
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if offset and (_HEADER_BLOCK.match(line)
                       or (_MARKER_WORDS.search(stripped) and _MARKER_SHAPE.match(stripped))):
            return text[:offset]
        offset += len(line)
    return text


def _from_text(notice: _Notice, verp_id: str | None, hard: bool) -> Bounce | None:
    mail = notice.mail
    daemon = _from_daemon(mail)
    subject = bool(_SUBJECT.search(mail.subject))
    if not (hard or subject or daemon or verp_id is not None):
        return None  # nothing says mail system: a notice's words alone make no bounce (and need no search)
    body = bool(_BODY.search(notice.words))
    soft = sum((subject, daemon, body))
    if not (hard or soft >= 2 or (verp_id is not None and soft >= 1)):
        return None
    named = _named_recipients(notice)
    if not (hard or body or named):
        # Subject and sender alone, with nothing failed named anywhere: more
        # likely a person at postmaster@ than a delivery notice.
        return None
    if not (hard or daemon or named or verp_id):
        # Not from a mail system, not sent to our return path, naming no failed recipient: a person's words.
        return None
    if _is_success(notice.words):
        status = _first(_STATUS, notice.text)
        return Bounce(recipients=[], permanent=False, status=status, diagnostic=None, verp_id=verp_id)
    recipients = (_failed_header(mail) or named or _subject_recipient(notice) or _bare_mailboxes(notice)
                  or _original_recipient(mail, notice.network))
    line = _line_about(notice.text, recipients)
    status = _first(_STATUS, line or "") or _first(_STATUS, notice.text)
    return Bounce(
        recipients=[r for r in recipients if _may_be_recipient(r, notice)],
        permanent=not _is_delay(mail.subject, notice.words),
        status=status,
        diagnostic=_diagnostic(line, notice.text),
        verp_id=verp_id,
    )


def _is_success(words: str) -> bool:
    """A delivery report in words: success phrases or only 2.x.x codes, and no failure anywhere."""
    if _FAILURE_WORDS.search(words):
        return False
    statuses = _STATUS.findall(words)
    return bool(statuses and all(status.startswith("2") for status in statuses)) or bool(_SUCCESS.search(words))


def _is_delay(subject: str, words: str) -> bool:
    """Still trying (a warning), unless the notice also says it gave up."""
    return bool(_DELAY.search(subject) or _DELAY.search(words)) and not _GIVEN_UP.search(words)


def _failed_header(mail: ParsedMail) -> list[str]:
    failed = mail.header("X-Failed-Recipients")
    if not failed:
        return []
    found = _unique(_clean(a) for a in _ANY_ADDRESS.findall(failed))
    return _with_aliases(found, _up_to_original(mail.text[:_SCAN_CHARS]))


def _named_recipients(notice: _Notice) -> list[str]:
    """Failed addresses in the notice's own words, in the order it names them, aliases first."""
    text = notice.text
    senders = {_clean(found.group(1)) for found in _SENT_BY.finditer(text)}
    found: list[tuple[int, str]] = []
    for pattern in (*_SENTENCES, _LEADING, _SMTP_LINE, _LABELLED, _LABEL_THEN_MORE):
        found.extend((match.start(1), _clean(match.group(1))) for match in pattern.finditer(text))
    ordered = _unique(address for _position, address in sorted(found) if address not in senders)
    named = [address for address in ordered if _may_be_recipient(address, notice)]
    people = [address for address in named if not _ROLE_LOCAL.match(address.split("@", 1)[0])]
    return _with_aliases(people or named, text)


def _with_aliases(addresses_found: list[str], text: str) -> list[str]:
    """Each address preceded by the one it was expanded from ("(expanded from <x>)")."""
    result: list[str] = []
    for address in addresses_found:
        result.extend(_aliases_of(address, text))
        result.append(address)
    return _unique(result)


def _aliases_of(address: str, text: str) -> list[str]:
    aliases: list[str] = []
    for found in re.finditer(re.escape(address), text, re.IGNORECASE):
        end = _BLANK_LINE.search(text, found.end())
        window = text[found.end(): end.start() if end else found.end() + 300]
        aliases.extend(_clean(alias.group(1)) for alias in _ALIAS.finditer(window))
    return [alias for alias in aliases if alias != address]


def _may_be_recipient(address: str, notice: _Notice) -> bool:
    """Not us, not the notice's own sender, not a mail daemon."""
    if not _mailable(address) or own_address(address, notice.network):
        return False
    if _NEVER_RECIPIENT.match(address.split("@", 1)[0]):
        return False
    return address not in {sender for _name, sender in notice.mail.from_addresses}


def _subject_recipient(notice: _Notice) -> list[str]:
    """"Undeliverable: x", "Delivery Report (failure) for x": the one address of a notice's subject."""
    subject = notice.mail.subject
    if _looks_personal(notice.mail) or not (_SUBJECT.search(subject) or _FAILURE_WORD.search(subject)):
        return []
    found = [a for a in _unique(_clean(a) for a in _ANY_ADDRESS.findall(subject)) if _may_be_recipient(a, notice)]
    return found if len(found) == 1 else []


def _bare_mailboxes(notice: _Notice) -> list[str]:
    """Mailbox names listed without a domain (AOL's screen names): at the reporting system's domain."""
    if not _from_daemon(notice.mail) or not notice.mail.from_addresses:
        return []
    domain = notice.mail.from_addresses[0][1].rsplit("@", 1)[-1]
    found: list[str] = []
    for listing in _BARE_LISTING.finditer(notice.text):
        found.extend(f"{name.lower()}@{domain}" for name in listing.group(1).split())
    return [a for a in _unique(found) if _may_be_recipient(a, notice)]


def _original_recipient(mail: ParsedMail, network_address: str) -> list[str]:
    """The returned original's To, only when it names exactly one address (not ours)."""
    for to in _original_tos(mail):
        found = [a for _name, a in addresses([to]) if _mailable(a) and not own_address(a, network_address)]
        if found:
            return found if len(found) == 1 else []
    return []


def _original_tos(mail: ParsedMail) -> Iterator[str]:
    """To headers of returned originals: a headers part, an attached message, or pasted text."""
    for _index, part in _report_parts(mail.message):
        ctype, _ = content_type(part)
        if ctype == "text/rfc822-headers":
            blocks = _text_blocks(_payload_text(part))
            if blocks and blocks[0].get("to"):
                yield blocks[0]["to"]
    for part in _embedded_messages(mail.message):
        to = raw_header(part, "to")
        if to:
            yield decode_header_value(to)
    text = mail.text[:_SCAN_CHARS]
    rest = text[len(_up_to_original(text)):]
    for block in _text_blocks(rest)[:3]:
        if block.get("to") and ("from" in block or "subject" in block):
            yield block["to"]


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


def _line_about(text: str, recipients: list[str]) -> str | None:
    """The paragraph that names the first failed recipient, on one line."""
    for address in recipients:
        found = re.search(re.escape(address), text, re.IGNORECASE)
        if found:
            start = text.rfind("\n", 0, found.start()) + 1
            return _paragraph(text, start)
    return None


def _paragraph(text: str, start: int) -> str:
    """The text from ``start`` up to the next blank line, on one line (max 500)."""
    end = _BLANK_LINE.search(text, start)
    return _one_line(text[start : end.start() if end else start + 500])


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


def _mailable(address: str) -> bool:
    """An address the Internet can deliver to: "jeroen@host1" (a bare host name) is none."""
    return valid_address(address) and "." in address.rsplit("@", 1)[-1]


def _clean(address: str) -> str:
    return address.strip().rstrip(".").lower()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1) if found else None


def _unique(addresses_found: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for address in addresses_found:
        if address not in seen:
            seen.append(address)
    return seen
