"""Rewrite a stored message so that given words (an erased address) appear nowhere in it, in any encoding.

An address can stand in a header (plain or RFC 2047 encoded), in a text part
(plain, quoted-printable or base64) or inside an attachment. ``redact`` walks
the message: headers and text parts are decoded, the words replaced and the
part encoded again; an attachment whose decoded bytes hold a word is replaced
by a short text part saying it was removed. When the result still holds a
word (a message too broken to walk), a minimal message of the redacted header
and text is returned instead. Pure code: bytes in, bytes out; never raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

from mail.headers import decode_header_value
from mail.message import parse_mail

REMOVED_ATTACHMENT = "[bijlage verwijderd: persoonsgegevens / attachment removed: personal data]"


def contains(raw: bytes, words: Sequence[str]) -> bool:
    """Whether any word appears in ``raw`` as stored or in its decoded headers and text."""
    lowered = raw.lower()
    if any(word.lower().encode("utf-8") in lowered for word in words):
        return True
    mail = parse_mail(raw)
    decoded = "\n".join([mail.subject, mail.text, *(f"{k}: {v}" for k in mail.raw_headers for v in mail.headers(k))])
    return any(word.lower() in decoded.lower() for word in words)


def redact(raw: bytes, words: Sequence[str], replacement: str) -> bytes:
    pattern = re.compile("|".join(re.escape(word) for word in words if word), re.IGNORECASE)
    try:
        message = message_from_bytes(raw, policy=policy.compat32)
        _redact_tree(message, pattern, replacement)
        result = message.as_bytes(policy=policy.compat32)
    except Exception:  # noqa: BLE001 - a message too broken to walk: the minimal form below
        result = b""
    if result and not contains(result, words):
        return result
    return _minimal(raw, pattern, replacement)


def _redact_tree(message: Message, pattern: re.Pattern[str], replacement: str) -> None:
    _redact_headers(message, pattern, replacement)
    if message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message):
                _redact_tree(part, pattern, replacement)
        return
    maintype = message.get_content_maintype()
    data = message.get_payload(decode=True)
    if not isinstance(data, bytes):
        return
    if maintype == "text":
        charset = message.get_content_charset() or "utf-8"
        try:
            text = data.decode(charset, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        if pattern.search(text):
            _set_text(message, pattern.sub(replacement, text))
    elif _bytes_hold(data, pattern):
        _set_text(message, REMOVED_ATTACHMENT)
        for name in ("Content-Disposition", "Content-ID"):
            del message[name]


def _bytes_hold(data: bytes, pattern: re.Pattern[str]) -> bool:
    return bool(pattern.search(data.decode("latin-1")))


def _set_text(message: Message, text: str) -> None:
    for name in ("Content-Transfer-Encoding", "Content-Type"):
        del message[name]
    message.set_payload(text.encode("utf-8"))
    message["Content-Type"] = 'text/plain; charset="utf-8"'
    message["Content-Transfer-Encoding"] = "8bit"


def _redact_headers(message: Message, pattern: re.Pattern[str], replacement: str) -> None:
    for name, value in list(message.items()):
        text = decode_header_value(str(value))
        if pattern.search(text) or pattern.search(str(value)):
            message.replace_header(name, pattern.sub(replacement, text))


def _minimal(raw: bytes, pattern: re.Pattern[str], replacement: str) -> bytes:
    """The header and readable text of ``raw``, redacted, as a plain message: nothing else survives."""
    mail = parse_mail(raw)
    out = EmailMessage(policy=policy.SMTP)
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        value = mail.header(name)
        if value is not None:
            out[name] = pattern.sub(replacement, value)
    out.set_content(pattern.sub(replacement, mail.text or ""))
    return out.as_bytes()
