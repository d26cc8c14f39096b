"""Automatic mail: auto-replies and our own mail coming back.

An auto-reply is recognised by its headers (RFC 3834 and the field's other
ones), by the tags responders put in the subject, and by two kinds of answer
that carry no such header: challenge-response systems (Boxbe, Bluebottle,
TMDA...) that hold our message until we prove we are human, and mailing-list
robots that refuse our post. A challenge often comes dressed as a delivery
report, so ``rules.bounces`` asks ``challenge_reason`` before anything else.
"""

from __future__ import annotations

import re

from mail.message import ParsedMail

_PRECEDENCE_AUTO = frozenset({"auto_reply", "bulk", "junk"})
# What a mailing list or a newsletter puts on its posts (RFC 2369, RFC 2919; X-Mailing-List of old lists).
_LIST_HEADERS = ("List-Id", "List-Post", "List-Unsubscribe", "X-Mailing-List")
# Only the start of the text is read: a responder speaks first, a quoted original follows.
_SCAN_CHARS = 4_000

# Subject tags of responders. A bare "Auto:" is also Dutch for "car" (a resident's
# "Auto: ruit ingeslagen"), so Lotus Notes' "AUTO: ... is out of the office" needs both.
_SUBJECT_PREFIX = re.compile(
    r"^(?:auto(?:matic|matische?)?[- ]?(?:reply|response|antwoord|antwort|answer)|autoreply|autoresponse|"
    r"out of (?:the )?office(?: auto-?reply)?|abwesenheitsnotiz|afwezigheidsbericht|autosvar|"
    r"automatyczna odpowied\w*|r[ée]ponse automatique|risposta automatica|respuesta autom[áa]tica)\s*:",
    re.IGNORECASE,
)
_SUBJECT_TAG = re.compile(
    r"[\[(]\s*(?:auto(?:matic|matische?)?[- ]?(?:reply|response|responder|antwoord|antwort|answer)|"
    r"autoreply|autoresponse|automatyczna odpowied\w*|r[ée]ponse automatique|out of (?:the )?office)\s*[\])]",
    re.IGNORECASE,
)
_NOTES_AWAY = re.compile(
    r"^auto\s*:.*\b(?:out of (?:the )?office|away|on (?:vacation|holiday|leave)|afwezig|abwesend|absent)\b",
    re.IGNORECASE,
)
_CHALLENGE_HEADERS = ("X-Bluebottle-Request", "X-Boxbe-Notice", "X-TMDA-Fingerprint", "X-Spamarrest-Noauth")
# Words a challenge addresses to the sender as a person; a server's "confirm this
# mail server" or "request whitelisting" refusal is a bounce and does not match.
_CHALLENGE = re.compile(
    r"\b(?:boxbe|bluebottle|spam ?arrest|mailblocks|choicemail|tmda)\b|\bguest ?list\b|\bwait ?list(?:ed)?\b|"
    r"(?:add(?:ed)?|put) (?:you|your (?:e-?mail )?address|your name) (?:to|on) (?:my|the|their|his|her|"
    r"the recipient's) (?:guest|allowed|approved|safe|white|trusted|sender)[ -]?(?:list|senders)|"
    r"(?:verify|prove|confirm) (?:that )?you(?:'re| are) (?:a )?(?:human|real person|person|not a (?:robot|spammer))|"
    r"not (?:yet )?(?:been )?pre-?approved|challenge[- ]response|"
    r"this (?:account|mailbox|address) is protected by",
    re.IGNORECASE,
)
# Every alternative of _CHALLENGE holds one of these: a text with none of them needs no search.
_CHALLENGE_HINTS = ("boxbe", "bluebottle", "spam", "mailblocks", "choicemail", "tmda", "guest", "wait", "you",
                    "approved", "challenge", "protected")
# A list server refusing our post, or holding it: its own notice, not a member's words.
_LIST_ROBOT = re.compile(
    r"(?:are|is) not (?:a )?(?:member|subscriber) of (?:this|the|our) (?:mailing )?list|"
    r"only (?:list )?members (?:may|can) post|"
    r"non-?member (?:submission|post)|awaits? moderator approval|is being held until the list moderator",
    re.IGNORECASE,
)
# A mailbox's own answer that it is gone (a person would say so in their own words, and sign it).
_ABANDONED = re.compile(
    r"^[^>\n]*this (?:e-?mail )?(?:address|mailbox|account) is no longer (?:in use|active|monitored|"
    r"being monitored|checked|read|valid)",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTED_LINE = re.compile(r"^[ \t]*>.*$", re.MULTILINE)


def auto_reply_reason(mail: ParsedMail) -> str | None:
    """Why this is an automatic message (headers, subject tag or a responder's own words), or None:
    what decides whether binrelay may answer it, where any doubt means no.

    ``Precedence: list`` is NOT an auto-reply: mailing lists carry human
    messages (a municipality newsletter, a neighbourhood list) that a
    coordinator should see. ``bulk`` and ``junk`` are what vacation programs
    set on their replies (RFC 3834 section 3.1.8 asks responders to honour
    them), so they count here; whether such a message is set aside unread is
    ``set_aside_reason``'s stricter question. The rules engine adds its own
    list of subject starts.
    """
    return _clear_reason(mail) or _precedence_reason(mail)


def set_aside_reason(mail: ParsedMail, *, known_sender: bool) -> str | None:
    """Why binrelay sets this message aside unread as an auto-reply, or None (it is read as a report).

    A clear sign (RFC 3834's ``Auto-Submitted``, a responder's header or subject
    tag, a challenge, a list robot) always is one. ``Precedence: bulk`` or
    ``junk`` alone is not enough from a member or partner (their newsletter), nor
    on a mailing list's post or a newsletter (``List-Id``, ``List-Post``,
    ``List-Unsubscribe``, ``X-Mailing-List``): lists and mass mailers set it on
    people's words, and a report dropped unread is lost, while a vacation notice
    held for a coordinator costs one glance.
    """
    clear = _clear_reason(mail)
    if clear or known_sender or _is_list_post(mail):
        return clear
    return _precedence_reason(mail)


def _clear_reason(mail: ParsedMail) -> str | None:
    return _header_reason(mail) or challenge_reason(mail) or _subject_reason(mail.subject) or _robot_reason(mail)


def _precedence_reason(mail: ParsedMail) -> str | None:
    value = mail.header("Precedence")
    if value is not None and value.strip().lower() in _PRECEDENCE_AUTO:
        return f"header Precedence: {value}"
    return None


def _is_list_post(mail: ParsedMail) -> bool:
    return any(mail.header(name) is not None for name in _LIST_HEADERS)


def challenge_reason(mail: ParsedMail) -> str | None:
    """Why this is a challenge-response message (prove you are a person), or None."""
    for name in _CHALLENGE_HEADERS:
        value = mail.header(name)
        if value is not None:
            return f"challenge-response: header {name}"
    start = mail.text[:_SCAN_CHARS].lower()
    if not any(hint in start for hint in _CHALLENGE_HINTS):
        return None
    found = _CHALLENGE.search(_own_words(mail))
    if found:
        return f"challenge-response: '{_one_line(found.group(0))[:80]}'"
    return None


def _header_reason(mail: ParsedMail) -> str | None:
    value = mail.header("Auto-Submitted")
    if value is not None:
        keyword = value.split(";", 1)[0].strip().lower()
        if keyword and keyword != "no":
            return f"header Auto-Submitted: {value}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        value = mail.header(name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return f"header {name}: {value}"
    value = mail.header("X-Auto-Response-Suppress")
    if value is not None:
        tokens = {token.strip().lower() for token in value.split(",")}
        if tokens & {"all", "oof", "autoreply"}:
            return f"header X-Auto-Response-Suppress: {value}"
    value = mail.header("X-Autogenerated")
    if value is not None and value.strip().lower() == "reply":
        return f"header X-Autogenerated: {value}"
    value = mail.header("X-MS-Exchange-Generated-Message-Source")
    if value is not None and ("mailbox rules agent" in value.lower() or "oof" in value.lower()):
        return f"header X-MS-Exchange-Generated-Message-Source: {value}"
    value = mail.header("X-POST-MessageClass")
    if value is not None and "autoresponder" in value.lower():
        return f"header X-POST-MessageClass: {value}"
    return None


def _subject_reason(subject: str) -> str | None:
    subject = subject.strip()
    for pattern in (_SUBJECT_PREFIX, _SUBJECT_TAG, _NOTES_AWAY):
        found = pattern.search(subject)
        if found:
            return f"subject '{_one_line(found.group(0))[:60]}'"
    return None


def _robot_reason(mail: ParsedMail) -> str | None:
    """A list robot's refusal, or a mailbox answering that it is no longer used."""
    words = _own_words(mail)
    for pattern in (_LIST_ROBOT, _ABANDONED):
        found = pattern.search(words)
        if found:
            return f"automatic notice: '{_one_line(found.group(0))[:80]}'"
    return None


def _own_words(mail: ParsedMail) -> str:
    """The start of the text without quoted lines: what the sender itself says."""
    return _QUOTED_LINE.sub("", mail.text[:_SCAN_CHARS])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def own_address(address: str, network_address: str) -> bool:
    """The network address itself or one of its plus-addresses (bin+...@)."""
    address = address.lower()
    network = network_address.strip().lower()
    if address == network or "@" not in network or "@" not in address:
        return address == network
    local, domain = network.rsplit("@", 1)
    their_local, their_domain = address.rsplit("@", 1)
    return their_domain == domain and their_local.startswith(local + "+")


def loop_reason(mail: ParsedMail, network_address: str) -> str | None:
    """Why this message is our own mail coming back, or None."""
    network = network_address.strip().lower()
    if not network:
        return None
    for name in ("X-Loop", "X-MS-Exchange-Inbox-Rules-Loop"):
        for value in mail.headers(name):
            if network in value.lower():
                return f"header {name}: {value}"
    for _name, address in mail.from_addresses:
        if own_address(address, network):
            return f"sent from the network address itself ({address})"
    return None


def answer_refusal(mail: ParsedMail, address: str, network_address: str) -> str | None:
    """Why ``address`` must not be answered about ``mail``, or None when it may.

    Never an address that is not one, never the network itself or one of its
    plus-addresses, never an automatic message or our own mail coming back:
    so a responder and binrelay can never answer each other in a loop.
    """
    if "@" not in address:
        return "no address"
    if own_address(address, network_address):
        return "the network's own address"
    return auto_reply_reason(mail) or loop_reason(mail, network_address)
