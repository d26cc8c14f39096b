"""Raw bytes -> ParsedMail: every message is parsed and decoded once, here.

``parse_mail`` never raises: whatever the bytes, it returns a ``ParsedMail``
whose ``defects`` list what was wrong. Everything above this layer (rules,
approvals, delivery) reads the decoded fields and never touches transfer
encodings or charsets again.

Speed matters (ingest parses every message), so this module deliberately avoids
the ``email.policy.default`` header objects and ``get_content()``: they run the
full RFC 5322 grammar for every access, which costs more than the parse itself.
Header values are read raw from the parsed tree and decoded by ``mail.headers``;
the tree is walked exactly once.
"""

from __future__ import annotations

import email
import email.errors
import email.parser
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message

from mail.charsets import decode_bytes
from mail.encoding import estimated_size, raw_payload, transfer_decode
from mail.headers import (
    addresses,
    content_type,
    decode_header_value,
    filename_of,
    message_id,
    message_ids,
    parse_date,
    parse_params,
    raw_header,
    valid_address,
)
from mail.html import html_to_text

# Multipart levels below this are not descended into (a defect is recorded).
MAX_DEPTH = 50
# More boundary declarations than this and the body is not parsed at all: the
# stdlib parser is quadratic in nesting depth and recursive, so a hostile
# message could otherwise cost seconds or blow the stack.
MAX_BOUNDARIES = 200
# Messages with more delimiter-like lines than this are parsed with plain
# string headers (still an EmailMessage tree, policy compat32) ...
FAST_PARSE_DELIMITERS = 2_000
# ... and with more than this their body is not parsed at all.
MAX_DELIMITERS = 50_000
# Leaf parts examined per message; the rest are counted but not decoded.
MAX_PARTS = 1000
# The readable text is capped: nobody reads more, and rules scan all of it.
MAX_TEXT_CHARS = 1_000_000


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int  # decoded bytes (estimated from the encoded length when too_large)
    disposition: str  # "attachment" | "inline"
    part_index: int  # position among walk() leaf parts (see ``leaf_parts``)


@dataclass
class ParsedMail:
    raw_size: int
    header_bytes: int  # the size of the header block
    message_id: str | None
    subject: str
    from_addresses: list[tuple[str, str]]
    sender: str | None
    reply_to: list[str]
    to: list[str]
    cc: list[str]
    date: datetime | None
    in_reply_to: str | None
    references: list[str]
    text: str
    html: str | None
    attachments: list[Attachment]
    defects: list[str]
    too_large: bool
    message: EmailMessage
    # Raw header values by lowercased name, in order (not decoded).
    raw_headers: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str | None:
        """The first ``name`` header, decoded and on one line; None if absent."""
        values = self.raw_headers.get(name.lower())
        if not values:
            return None
        return decode_header_value(values[0])

    def headers(self, name: str) -> list[str]:
        """Every ``name`` header, decoded and on one line, in order."""
        return [decode_header_value(value) for value in self.raw_headers.get(name.lower(), [])]


@dataclass
class _Block:
    kind: str  # "plain" | "html"
    text: str


@dataclass
class _Walk:
    """State of the single walk over the tree."""

    too_large: bool
    defects: list[str]
    attachments: list[Attachment] = field(default_factory=list)
    html: str | None = None
    leaf_index: int = 0
    examined: int = 0
    depth_defect: bool = False


def leaf_parts(message: Message) -> Iterator[tuple[int, Message]]:
    """(part_index, part) for every leaf part, in ``Message.walk()`` order.

    Iterative, so it also works on trees too deep for ``walk()``; delivery uses
    it to re-extract an ``Attachment`` by its ``part_index``.
    """
    stack: list[Message] = [message]
    index = 0
    while stack:
        part = stack.pop()
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(child for child in reversed(children) if isinstance(child, Message))
            continue
        yield index, part
        index += 1


def attachment_bytes(message: Message, part_index: int) -> bytes | None:
    """The decoded content of leaf part ``part_index``, or None if there is none."""
    for index, part in leaf_parts(message):
        if index == part_index:
            cte = (raw_header(part, "content-transfer-encoding") or "").strip().lower()
            return transfer_decode(raw_payload(part), cte, [], "attachment")
    return None


def _count_leaves(part: Message) -> int:
    return sum(1 for _ in leaf_parts(part))


def _defect_name(defect: object) -> str:
    name = type(defect).__name__.removesuffix("Defect")
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
    return words


def _visit(part: Message, depth: int, state: _Walk) -> list[_Block]:
    """Blocks of readable text under ``part``; collects attachments on the way."""
    for defect in getattr(part, "defects", ()):
        state.defects.append(f"MIME structure: {_defect_name(defect)}")
    ctype, params = content_type(part)
    if part.is_multipart():
        payload = part.get_payload()
        if not isinstance(payload, list):
            return []
        children = [child for child in payload if isinstance(child, Message)]
        if depth >= MAX_DEPTH:
            if not state.depth_defect:
                state.defects.append(f"multipart nesting deeper than {MAX_DEPTH} levels; not read")
                state.depth_defect = True
            state.leaf_index += _count_leaves(part)
            return []
        return _visit_container(part, ctype, children, depth, state)
    return _visit_leaf(part, ctype, params, state)


def _visit_container(
    part: Message, ctype: str, children: list[Message], depth: int, state: _Walk
) -> list[_Block]:
    # The parser reads every message/* type except delivery-status as one
    # embedded message (a forward); its text is part of what the user reads.
    if ctype.startswith("message/") and ctype != "message/delivery-status" and len(children) == 1:
        inner = children[0]
        return [_Block("plain", _forward_header(inner)), *_visit(inner, depth + 1, state)]
    results = [_visit(child, depth + 1, state) for child in children]
    if ctype == "message/delivery-status":
        return []  # machine-readable: bounce.py reads it from the tree
    if ctype == "multipart/alternative":
        return _choose_alternative(results)
    return [block for blocks in results for block in blocks]


def _choose_alternative(results: list[list[_Block]]) -> list[_Block]:
    """text/plain unless it is empty; then the richest (last) non-empty one."""
    for blocks in results:
        if any(block.kind == "plain" and block.text.strip() for block in blocks):
            return blocks
    for blocks in reversed(results):
        if any(block.text.strip() for block in blocks):
            return blocks
    return []


def _forward_header(inner: Message) -> str:
    lines = ["---------- Forwarded message ----------"]
    for name, label in (("from", "From"), ("date", "Date"), ("subject", "Subject"), ("to", "To")):
        value = raw_header(inner, name)
        if value is not None:
            lines.append(f"{label}: {decode_header_value(value)}")
    return "\n".join(lines) + "\n"


def _visit_leaf(part: Message, ctype: str, params: dict[str, str], state: _Walk) -> list[_Block]:
    index = state.leaf_index
    state.leaf_index += 1
    state.examined += 1
    if state.examined > MAX_PARTS:
        if state.examined == MAX_PARTS + 1:
            state.defects.append(f"more than {MAX_PARTS} parts; the rest were not read")
        return []
    disposition_raw = raw_header(part, "content-disposition")
    disposition, disposition_params = parse_params(disposition_raw) if disposition_raw else ("", {})
    filename = filename_of(params, disposition_params)
    cte = (raw_header(part, "content-transfer-encoding") or "").strip().lower()
    is_text = ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")
    body_part = is_text and disposition != "attachment" and not (filename and disposition == "inline")
    if not body_part:
        if disposition not in ("attachment", "inline"):
            disposition = "inline" if raw_header(part, "content-id") else "attachment"
        data = raw_payload(part)
        if state.too_large:
            size = estimated_size(data, cte)
        elif cte == "base64":
            size = estimated_size(data, cte)  # exact for valid base64, no copy
        else:
            size = len(transfer_decode(data, cte, [], ""))
        state.attachments.append(Attachment(filename, ctype, size, disposition, index))
        return []
    where = f"part {index} ({ctype})"
    data = transfer_decode(raw_payload(part), cte, state.defects, where)
    text, defect = decode_bytes(data, params.get("charset"))
    if defect:
        state.defects.append(f"{where}: {defect}")
    if "\x00" in text:
        text = text.replace("\x00", "")
        state.defects.append(f"{where}: NUL bytes removed")
    if ctype == "text/html":
        if state.html is None:
            state.html = text
        return [_Block("html", text)]
    if params.get("format", "").lower() == "flowed":
        text = unflow(text, delsp=params.get("delsp", "").lower() == "yes")
    return [_Block("plain", text)]


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join RFC 3676 format=flowed soft line breaks back into paragraphs.

    Thunderbird and Apple Mail wrap lines at ~72 characters with a trailing
    space; unflowed, a sentence is one line again, as the sender wrote it.
    """
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:].removeprefix(" ")  # quote marker space / space-stuffing
        if pending is not None and depth != pending_depth:
            out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
            pending = None
        content = line if pending is None else pending + line
        if line.endswith(" ") and line != "-- ":
            pending, pending_depth = (content[:-1] if delsp else content), depth
            continue
        out.append(">" * depth + (" " if depth else "") + content)
        pending = None
    if pending is not None:
        out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
    return "\n".join(out)


def _render(blocks: list[_Block]) -> str:
    pieces = []
    for block in blocks:
        text = html_to_text(block.text) if block.kind == "html" else block.text
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if text.strip():
            pieces.append(text.strip("\n"))
    return "\n\n".join(pieces)


_PARSER: email.parser.BytesParser[Message] = email.parser.BytesParser(policy=email.policy.default)
_FAST_PARSER: email.parser.BytesParser[Message] = email.parser.BytesParser(
    EmailMessage, policy=email.policy.compat32
)


def header_map(message: Message) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        headers.setdefault(name.lower(), []).append(value)
    return headers


def _boundary_count(raw: bytes) -> int:
    return raw.count(b"boundary") + raw.count(b"Boundary") + raw.count(b"BOUNDARY")


def _header_end(raw: bytes) -> int:
    ends = [pos for pos in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if pos >= 0]
    return min(ends) + 2 if ends else len(raw)


def _limited_bytes(raw: bytes, max_bytes: int) -> bytes:
    """The first ``max_bytes`` (at least all headers), cut at a line end."""
    cut = max(max_bytes, _header_end(raw) + 2)
    if cut >= len(raw):
        return raw
    newline = raw.rfind(b"\n", 0, cut)
    return raw[: newline + 1] if newline > 0 else raw[:cut]


def _as_email_message(message: Message) -> EmailMessage:
    # Both parsers build EmailMessage; this only narrows the type.
    return message if isinstance(message, EmailMessage) else EmailMessage(policy=email.policy.default)


def _parse_tree(data: bytes, defects: list[str]) -> tuple[EmailMessage, bool]:
    """(tree, body_parsed): a full parse when sane, headers only otherwise."""
    delimiters = data.count(b"\n--")
    if _boundary_count(data) > MAX_BOUNDARIES:
        defects.append(f"more than {MAX_BOUNDARIES} multipart boundaries; body not parsed")
    elif delimiters > MAX_DELIMITERS:
        defects.append(f"more than {MAX_DELIMITERS} part delimiters; body not parsed")
    else:
        parser = _PARSER
        if delimiters > FAST_PARSE_DELIMITERS:
            # The default policy parses every part's Content-Type with the full
            # grammar (about 0.25 ms each); thousands of parts would take
            # seconds, so such a message is read with plain string headers.
            defects.append(f"more than {FAST_PARSE_DELIMITERS} parts; tree parsed with policy compat32")
            parser = _FAST_PARSER
        try:
            return _as_email_message(parser.parsebytes(data)), True
        except RecursionError:
            defects.append("multipart nesting too deep for the parser; body not parsed")
        except Exception as exc:  # noqa: BLE001
            defects.append(f"unparseable MIME structure ({type(exc).__name__}); body not parsed")
    try:
        return _as_email_message(_PARSER.parsebytes(data, headersonly=True)), False
    except Exception as exc:  # noqa: BLE001
        defects.append(f"unparseable headers ({type(exc).__name__})")
        return EmailMessage(policy=email.policy.default), False


def parse_mail(raw: bytes, max_bytes: int | None = None) -> ParsedMail:
    """Parse and decode ``raw`` once. Never raises, whatever the bytes."""
    try:
        data = bytes(raw) if not isinstance(raw, str) else raw.encode("utf-8", "surrogateescape")
    except Exception:  # noqa: BLE001
        data = b""
    try:
        return _parse(data, max_bytes)
    except Exception as exc:  # noqa: BLE001 - the promise is "never raises"
        return _emergency(data, max_bytes, exc)


def _parse(raw: bytes, max_bytes: int | None) -> ParsedMail:
    defects: list[str] = []
    too_large = max_bytes is not None and len(raw) > max_bytes
    data = raw
    if too_large:
        assert max_bytes is not None
        defects.append(f"too_large: {len(raw)} bytes is over the limit of {max_bytes}; "
                       "only the beginning was read")
        data = _limited_bytes(raw, max_bytes)
    message, body_parsed = _parse_tree(data, defects)
    headers = header_map(message)
    state = _Walk(too_large=too_large, defects=defects)
    if body_parsed:
        text = _render(_visit(message, 0, state))
    else:
        text = _fallback_text(message)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        defects.append(f"text truncated to {MAX_TEXT_CHARS} characters")
    return _assemble(raw, message, headers, text, state, too_large)


def _fallback_text(message: Message) -> str:
    body = raw_payload(message)[:65536] if not message.is_multipart() else b""
    return decode_bytes(body, None)[0].replace("\x00", "").replace("\r\n", "\n")


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _assemble(
    raw: bytes,
    message: EmailMessage,
    headers: dict[str, list[str]],
    text: str,
    state: _Walk,
    too_large: bool,
) -> ParsedMail:
    defects = state.defects
    from_addresses = addresses(headers.get("from", []))
    valid = [address for _name, address in from_addresses if valid_address(address)]
    sender = valid[0] if len(from_addresses) == 1 and len(valid) == 1 else None
    subject_raw = _first(headers, "subject")
    in_reply_to = message_ids(headers.get("in-reply-to", []))
    return ParsedMail(
        raw_size=len(raw),
        header_bytes=_header_end(raw),
        message_id=message_id(_first(headers, "message-id")),
        subject=decode_header_value(subject_raw) if subject_raw is not None else "",
        from_addresses=from_addresses,
        sender=sender,
        reply_to=[address for _n, address in addresses(headers.get("reply-to", []))],
        to=[address for _n, address in addresses(headers.get("to", []))],
        cc=[address for _n, address in addresses(headers.get("cc", []))],
        date=parse_date(_first(headers, "date"), defects),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=message_ids(headers.get("references", [])),
        text=text,
        html=state.html,
        attachments=state.attachments,
        defects=defects,
        too_large=too_large,
        message=message,
        raw_headers=headers,
    )


def _emergency(raw: bytes, max_bytes: int | None, exc: Exception) -> ParsedMail:
    """The last resort when something unforeseen failed: an empty, flagged mail."""
    too_large = max_bytes is not None and len(raw) > max_bytes
    defects = [f"message could not be parsed ({type(exc).__name__}: {str(exc)[:200]})"]
    try:
        message, _ = _parse_tree(raw[:1_000_000], defects)
        headers = header_map(message)
    except Exception:  # noqa: BLE001
        message, headers = EmailMessage(policy=email.policy.default), {}
    subject_raw = _first(headers, "subject")
    try:
        subject = decode_header_value(subject_raw) if subject_raw else ""
    except Exception:  # noqa: BLE001
        subject = ""
    return ParsedMail(
        raw_size=len(raw), header_bytes=_header_end(raw), message_id=None, subject=subject, from_addresses=[],
        sender=None,
        reply_to=[], to=[], cc=[], date=None, in_reply_to=None, references=[], text="",
        html=None, attachments=[], defects=defects, too_large=too_large, message=message,
        raw_headers=headers,
    )
