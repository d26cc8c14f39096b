"""Header values, addresses, message ids, dates and MIME parameters, decoded leniently.

Header objects of ``email.policy.default`` run the full RFC 5322 grammar on
every access, which costs more than the parse itself; these small functions
read raw values from the parsed tree instead, and never raise.
"""

from __future__ import annotations

import binascii
import email.utils
import re
import urllib.parse
from datetime import UTC, datetime
from email.message import Message

from mail.charsets import decode_bytes
from mail.encoding import b64_lenient

# Address headers are capped before parsing (the address parser is pure Python).
MAX_ADDRESS_HEADER_CHARS = 20_000

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\r\n\t\x0b\x0c]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")


def single_line(value: str) -> str:
    return _CONTROL.sub(" ", _FOLD.sub("", value)).replace("\x00", "").strip()


def raw_to_text(value: str) -> str:
    """A header value as read from bytes: 8-bit bytes arrive as surrogates."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return data.decode("utf-8", errors="binrelay-cp1252")




def _decode_word(charset: str, encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "surrogateescape") if not text.isascii() else text.encode()
    if encoding in "bB":
        return b64_lenient(data)[0]
    return binascii.a2b_qp(data, header=True)


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words leniently.

    Adjacent words are joined (the whitespace between them is dropped) and
    decoded together when they share a charset, so a multibyte character split
    across two words (a common encoder bug) still comes out whole. Words inside
    quotes or addresses are decoded too: that is what every client shows.
    """
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    position = 0

    def flush() -> None:
        if pending:
            charset = pending_charset.split("*", 1)[0]  # RFC 2231 language suffix
            out.append(decode_bytes(b"".join(pending), charset or None)[0])
            pending.clear()

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        if not (pending and _BETWEEN_WORDS.fullmatch(gap)):
            flush()
            out.append(gap)
        charset = match.group(1)
        if pending and charset.lower() != pending_charset.lower():
            flush()
        pending_charset = charset
        pending.append(_decode_word(charset, match.group(2), match.group(3)))
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)


def decode_header_value(value: str) -> str:
    """A raw header value decoded (8-bit bytes, RFC 2047) and put on one line."""
    try:
        text = raw_to_text(value)
        if "=?" in text:
            text = _decode_words(_FOLD.sub("", text))
        return single_line(text)
    except Exception:  # noqa: BLE001 - a header must never stop parsing
        return single_line(value.encode("utf-8", "replace").decode("utf-8"))


_MSGID = re.compile(r"<([^<>\s]+)>")
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+$")


def message_id(value: str | None) -> str | None:
    if value is None:
        return None
    found = _MSGID.search(value)
    if found:
        return found.group(1)
    cleaned = value.strip().strip("<>").strip()
    return cleaned.split()[0] if cleaned else None


def message_ids(values: list[str]) -> list[str]:
    ids: list[str] = []
    for value in values:
        found = _MSGID.findall(value)
        ids.extend(found if found else value.split())
    return ids


def valid_address(address: str) -> bool:
    """An addr-spec we can match and mail: local@domain, no spaces or brackets."""
    if not _ADDR_SPEC.match(address):
        return False
    domain = address.rsplit("@", 1)[1]
    return not (domain.startswith(".") or domain.endswith(".") or ".." in domain)


def addresses(raw_values: list[str]) -> list[tuple[str, str]]:
    """(decoded display name, lowercased addr-spec) for every address given."""
    texts = [single_line(raw_to_text(value))[:MAX_ADDRESS_HEADER_CHARS] for value in raw_values]
    try:
        pairs = email.utils.getaddresses(texts)
    except Exception:  # noqa: BLE001 - the old address parser has odd corners
        return []
    result = []
    for name, address in pairs:
        address = address.strip().lower()
        if not address:
            continue
        result.append((decode_header_value(name) if name else "", address))
    return result


def parse_date(value: str | None, defects: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(single_line(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"invalid Date header: {single_line(value)[:80]!r}")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means "UTC, local zone unknown".
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')


def raw_header(part: Message, name: str) -> str | None:
    """The first raw value of header ``name`` of ``part`` (no header objects)."""
    for key, value in part.raw_items():
        if key.lower() == name:
            return raw_to_text(_FOLD.sub("", value))
    return None


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """A Content-Type/-Disposition value -> (lowercased main value, params).

    Handles quoting, RFC 2231 continuations (name*0*=...) and charsets, and
    RFC 2047 words in parameters (which Outlook and others still send).
    """
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    continued: dict[str, dict[int, tuple[str, bool]]] = {}
    for match in _PARAM.finditer(";" + rest):
        name = match.group(1).lower()
        raw = match.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:])
        encoded = name.endswith("*")
        name = name.rstrip("*")
        base, star, number = name.partition("*")
        if star and number.isdigit():
            continued.setdefault(base, {})[int(number)] = (raw, encoded)
        elif encoded:
            params[base] = _rfc2231(raw, first=True)
        else:
            params.setdefault(base, raw)
    for base, pieces in continued.items():
        if base in params:
            continue
        joined = []
        for index in sorted(pieces):
            raw, encoded = pieces[index]
            joined.append(_rfc2231(raw, first=index == 0) if encoded else raw)
        params[base] = "".join(joined)
    return head.strip().lower(), params


def _rfc2231(value: str, *, first: bool) -> str:
    charset = "utf-8"
    if first and value.count("'") >= 2:
        charset, _language, value = value.split("'", 2)
    data = urllib.parse.unquote_to_bytes(value)
    return decode_bytes(data, charset or "utf-8")[0]


def content_type(part: Message) -> tuple[str, dict[str, str]]:
    raw = raw_header(part, "content-type")
    if raw is None:
        return part.get_default_type(), {}
    main, params = parse_params(raw)
    if main.count("/") != 1 or " " in main:
        return "text/plain", params  # RFC 2045 5.2: invalid types mean text/plain
    return main, params


def filename_of(params: dict[str, str], disposition_params: dict[str, str]) -> str | None:
    name = disposition_params.get("filename") or params.get("name")
    if not name:
        return None
    name = decode_header_value(name)
    return name or None
