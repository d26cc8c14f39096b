"""Raw bytes -> ParsedMail: every message is parsed and decoded once, here.

``parse_mail`` never raises: whatever the bytes, it returns a ``ParsedMail``
whose ``defects`` list what was wrong. Everything downstream (rules, approvals,
delivery) reads the decoded fields and never touches transfer encodings or
charsets again.

Speed matters (ingest parses every message), so this module deliberately avoids
the ``email.policy.default`` header objects and ``get_content()``: they run the
full RFC 5322 grammar for every access, which costs more than the parse itself.
Header values are read raw from the parsed tree and decoded by the small,
lenient functions below; the tree is walked exactly once.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.parser
import email.policy
import email.utils
import html as html_module
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message

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
# HTML larger than this is cut before conversion to text.
MAX_HTML_CHARS = 2_000_000
# Address headers are capped before parsing (the address parser is pure Python).
MAX_ADDRESS_HEADER_CHARS = 20_000

_ASCII_LIKE = frozenset({"us-ascii", "ascii", "646", "ansi_x3.4-1968", "iso646-us"})
# Labels that in practice mean "Western European single byte": decoded as
# windows-1252, the superset every mail client actually produces (WHATWG does
# the same), so 0x80-0x9F become quotes and euro signs instead of controls.
_LATIN1_LIKE = frozenset(
    {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "windows-1252",
     "cp1252", "x-cp1252"}
)
_UNKNOWN_LABELS = frozenset({"", "x-unknown", "unknown", "unknown-8bit", "x-user-defined", "none"})


# ---------------------------------------------------------------- data types


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


# ---------------------------------------------------------------- charsets


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not valid UTF-8 are read as windows-1252.

    Mislabelled mail is mostly UTF-8 with a few cp1252 bytes (or the reverse),
    so deciding per invalid byte keeps both halves readable.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    chunk = error.object[error.start : error.end]
    return bytes(chunk).decode("cp1252", errors="replace"), error.end


codecs.register_error("binrelay-cp1252", _cp1252_fallback)


def normalise_charset(label: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None if unknown/absent."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    if name in _UNKNOWN_LABELS:
        return None
    if name in _ASCII_LIKE:
        return "us-ascii"
    if name in _LATIN1_LIKE:
        return "cp1252"
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def _decode_cp1252(data: bytes) -> str:
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # Five byte values are undefined in cp1252; latin-1 maps every byte.
        return data.decode("latin-1")


def _guess(data: bytes) -> str | None:
    """charset-normalizer's best reading, for labels that did not fit the bytes."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:200_000]).best()
    except Exception:  # noqa: BLE001 - a guesser must never break parsing
        return None
    if best is None or best.encoding is None:
        return None
    try:
        return data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Decode ``data`` labelled ``declared``; returns (text, defect or None).

    Order: pure ASCII needs nothing; then UTF-8 whatever the label (text in
    any legacy charset is practically never valid UTF-8, while UTF-8 under a
    Latin or ASCII label is the commonest mislabel); then the declared charset
    strictly (Latin labels as cp1252); then a guess for exotic labels; finally
    UTF-8 with per-byte cp1252 fallback, which cannot fail.
    """
    if data.isascii():
        return data.decode("ascii"), None
    codec = normalise_charset(declared)
    label = (declared or "").strip()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if codec == "utf-8" or not label:
            return text, None
        if codec is None:
            return text, f"unknown charset {label!r}; decoded as utf-8"
        return text, f"charset {label!r} does not fit the bytes; decoded as utf-8"
    if codec is not None and codec not in ("us-ascii", "cp1252", "utf-8"):
        try:
            return data.decode(codec), None
        except (UnicodeDecodeError, LookupError):
            pass
    if codec == "cp1252":
        return _decode_cp1252(data), None
    if codec not in (None, "us-ascii", "utf-8"):
        guessed = _guess(data)
        if guessed is not None:
            return guessed, f"charset {label!r} does not fit the bytes; decoded by guessing"
    text = data.decode("utf-8", errors="binrelay-cp1252")
    if not label:
        return text, "no charset declared for 8-bit text; decoded as windows-1252"
    if codec is None:
        return text, f"unknown charset {label!r}; decoded as windows-1252"
    return text, f"charset {label!r} does not fit the bytes; decoded as windows-1252"


# ---------------------------------------------------------------- headers

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\r\n\t\x0b\x0c]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")


def _single_line(value: str) -> str:
    return _CONTROL.sub(" ", _FOLD.sub("", value)).replace("\x00", "").strip()


def _raw_to_text(value: str) -> str:
    """A header value as read from bytes: 8-bit bytes arrive as surrogates."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return data.decode("utf-8", errors="binrelay-cp1252")


def _b64_lenient(data: bytes) -> tuple[bytes, bool]:
    """Base64 decoded strictly if possible, else best-effort; (bytes, was_valid)."""
    compact = b"".join(data.split())
    try:
        return binascii.a2b_base64(compact, strict_mode=True), True
    except (binascii.Error, ValueError):
        pass
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", compact)
    cleaned = cleaned[: len(cleaned) - (len(cleaned) % 4 == 1)]
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned), False
    except (binascii.Error, ValueError):
        return b"", False


def _decode_word(charset: str, encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "surrogateescape") if not text.isascii() else text.encode()
    if encoding in "bB":
        return _b64_lenient(data)[0]
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
        text = _raw_to_text(value)
        if "=?" in text:
            text = _decode_words(_FOLD.sub("", text))
        return _single_line(text)
    except Exception:  # noqa: BLE001 - a header must never stop parsing
        return _single_line(value.encode("utf-8", "replace").decode("utf-8"))


_MSGID = re.compile(r"<([^<>\s]+)>")
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+$")


def _message_id(value: str | None) -> str | None:
    if value is None:
        return None
    found = _MSGID.search(value)
    if found:
        return found.group(1)
    cleaned = value.strip().strip("<>").strip()
    return cleaned.split()[0] if cleaned else None


def _message_ids(values: list[str]) -> list[str]:
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


def _addresses(raw_values: list[str]) -> list[tuple[str, str]]:
    """(decoded display name, lowercased addr-spec) for every address given."""
    texts = [_single_line(_raw_to_text(value))[:MAX_ADDRESS_HEADER_CHARS] for value in raw_values]
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


def _date(value: str | None, defects: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_single_line(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"invalid Date header: {_single_line(value)[:80]!r}")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means "UTC, local zone unknown".
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


# ---------------------------------------------------------------- MIME params

_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')


def raw_header(part: Message, name: str) -> str | None:
    """The first raw value of header ``name`` of ``part`` (no header objects)."""
    for key, value in part.raw_items():
        if key.lower() == name:
            return _raw_to_text(_FOLD.sub("", value))
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


def _filename(params: dict[str, str], disposition_params: dict[str, str]) -> str | None:
    name = disposition_params.get("filename") or params.get("name")
    if not name:
        return None
    name = decode_header_value(name)
    return name or None


# ---------------------------------------------------------------- payloads

_BAD_QP = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n|[ \t]*$)")


def _raw_payload(part: Message) -> bytes:
    """The undecoded body bytes of a leaf part.

    ``get_payload()`` without decode re-decodes 8-bit bodies through the
    charset header (a header-object parse each time); the stored payload string
    is exactly the raw bytes with surrogate escapes, so we undo that directly.
    """
    payload = getattr(part, "_payload", None)
    if payload is None:
        payload = part.get_payload()
    if isinstance(payload, bytes):
        return payload
    if not isinstance(payload, str):
        return b""
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return payload.encode("utf-8", "surrogateescape")


def _transfer_decode(data: bytes, cte: str, defects: list[str], where: str) -> bytes:
    if cte == "base64":
        decoded, valid = _b64_lenient(data)
        if not valid:
            defects.append(f"{where}: invalid base64, decoded best-effort")
        return decoded
    if cte == "quoted-printable":
        if _BAD_QP.search(data):
            defects.append(f"{where}: invalid quoted-printable, decoded best-effort")
        return binascii.a2b_qp(data)
    if cte in ("", "7bit", "8bit", "binary"):
        return data
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        return _uudecode(data, defects, where)
    defects.append(f"{where}: unknown transfer encoding {cte!r}, read as is")
    return data


def _uudecode(data: bytes, defects: list[str], where: str) -> bytes:
    out = []
    for line in data.splitlines():
        if line.startswith((b"begin ", b"end")) or not line.strip():
            continue
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            defects.append(f"{where}: invalid uuencode line")
            break
    return b"".join(out)


def _estimated_size(data: bytes, cte: str) -> int:
    """Decoded size without decoding (for attachments of oversized messages)."""
    if cte == "base64":
        significant = len(data) - sum(data.count(c) for c in (b"\r", b"\n", b" ", b"\t"))
        return max(0, significant * 3 // 4 - data.rstrip().endswith(b"=") - data.rstrip().endswith(b"=="))
    return len(data)


# ---------------------------------------------------------------- HTML to text

_BLOCK = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr", "pre",
     "blockquote", "hr", "address", "section", "article", "header", "footer", "center", "dl",
     "dt", "dd", "form", "fieldset", "figure", "main", "nav", "aside", "li", "title"}
)
# Elements whose content is never shown.
_SKIP = frozenset({"head", "title", "noscript", "template", "o:smarttagtype"})
# Raw-text elements: their content is not HTML, so the tokenizer jumps over it.
_RAW_TEXT = frozenset({"script", "style", "xml"})
_SPACES = re.compile(r"[ \t\r\n\f\u200b]+")


class _TextRenderer:
    """A small HTML -> plain text renderer tuned for mail.

    Block elements break lines, <br> is a line break, links keep their target
    as text (``label (url)``), <blockquote> lines are prefixed with "> " (so
    reply parsers see quoting), table cells are separated by a space, and
    Outlook's MsoNormal paragraphs are single lines, as Outlook shows them.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip = 0
        self.pre = 0
        self.quote = 0
        self.links: list[tuple[str | None, int]] = []

    # -- output helpers
    def _prefix(self) -> str:
        # Capped: 10 levels of quoting read the same as 10 000, and cost less.
        return "> " * min(self.quote, 10)

    def _text(self, data: str) -> None:
        self.current.append(data)

    def _newline(self) -> None:
        line = "".join(self.current)
        if not self.pre:
            line = _SPACES.sub(" ", line).strip()
        self.lines.append(self._prefix() + line if (line or self.quote) else line)
        self.current = []

    def _block(self, blank: bool = False) -> None:
        pending = "".join(self.current)
        if pending.strip():
            self._newline()
        elif "\xa0" in pending:
            # A block holding only &nbsp; is a deliberate empty line (Outlook).
            self.current = []
            self.lines.append(self._prefix())
        else:
            self.current = []  # whitespace between blocks means nothing
        if blank and self.lines and self.lines[-1].strip("> "):
            self.lines.append(self._prefix())

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _RAW_TEXT:
            return
        if tag == "body":
            self.skip = 0  # an unclosed <head> ends here
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self._newline()
        elif tag == "p":
            outlook = any(k == "class" and v and "msonormal" in v.lower() for k, v in attrs)
            self._block(blank=not outlook)
        elif tag == "blockquote":
            self._block()
            self.quote += 1
        elif tag == "li":
            self._block()
            self._text("- ")
        elif tag in ("td", "th"):
            self._text(" ")
        elif tag == "pre":
            self._block()
            self.pre += 1
        elif tag == "hr":
            self._block()
            self.lines.append("-" * 20)
        elif tag in _BLOCK:
            self._block()
        elif tag == "a":
            href = dict(attrs).get("href")
            self.links.append((href, len(self.current)))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._text(f" {alt} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            self._close_link(href, start)
        elif tag == "blockquote":
            self._block()
            self.quote = max(0, self.quote - 1)
        elif tag == "pre":
            self._block()
            self.pre = max(0, self.pre - 1)
        elif tag in _BLOCK:
            self._block()

    def _close_link(self, href: str | None, start: int) -> None:
        if not href:
            return
        target = href.strip()
        if target.lower().startswith("mailto:"):
            target = target[7:].split("?", 1)[0]
        elif not target.lower().startswith(("http://", "https://", "www.")):
            return  # anchors, javascript:, cid: add nothing readable
        label = "".join(self.current[start:])  # only the link's own text: stays linear
        if target.rstrip("/") in label or urllib.parse.unquote(target).rstrip("/") in label:
            return
        self._text(f" ({target})")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            for index, piece in enumerate(data.split("\n")):
                if index:
                    self._newline()
                self._text(piece)
        else:
            self._text(data)

    def result(self) -> str:
        self._block()
        text = "\n".join(line.rstrip() for line in self.lines)
        text = text.replace("\xa0", " ")
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


_TAG_NAME = re.compile(r"\s*(/?)\s*([A-Za-z][A-Za-z0-9:._-]*)")
_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_ATTRIBUTE_TAGS = frozenset({"p", "a", "img"})


def _attributes(source: str) -> list[tuple[str, str | None]]:
    attrs: list[tuple[str, str | None]] = []
    for match in _ATTRIBUTE.finditer(source):
        value = match.group(2)
        if value is not None:
            value = html_module.unescape(value.strip("\"'"))
        attrs.append((match.group(1).lower(), value))
    return attrs


def _unescape(text: str) -> str:
    return html_module.unescape(text) if "&" in text else text


def _tokenize(html: str, renderer: _TextRenderer) -> None:
    """Feed ``html`` to ``renderer`` as tags and text, in linear time.

    The stdlib HTMLParser is quadratic (seconds for 60 KB of "<a <a <a") on
    malformed input, which any sender can produce; mail rendering needs only
    tags, text and entities, so this scanner finds each '<' and '>' once.
    """
    lower = html.lower()
    length = len(html)
    position = 0
    next_close = -1
    while position < length:
        start = html.find("<", position)
        if start < 0:
            renderer.handle_data(_unescape(html[position:]))
            return
        if start > position:
            renderer.handle_data(_unescape(html[position:start]))
        if html.startswith("<!--", start):
            end = html.find("-->", start + 4)
            if end < 0:
                return  # an unclosed comment runs to the end, as in browsers
            position = end + 3
            continue
        if next_close < start:
            next_close = html.find(">", start)
        if next_close < 0:
            renderer.handle_data(_unescape(html[start:]))
            return
        source = html[start + 1 : next_close]
        name = _TAG_NAME.match(source)
        if name is None:
            if source[:1] in ("!", "?"):
                position = next_close + 1  # <!DOCTYPE>, <![if ...]>, <?xml?>
            else:
                renderer.handle_data("<")  # a bare "<" in text
                position = start + 1
            continue
        position = next_close + 1
        tag = name.group(2).lower()
        if name.group(1):
            renderer.handle_endtag(tag)
            continue
        attrs = _attributes(source[name.end() :]) if tag in _ATTRIBUTE_TAGS else []
        renderer.handle_starttag(tag, attrs)
        if source.rstrip().endswith("/") and tag not in ("br", "hr", "img"):
            renderer.handle_endtag(tag)
        if tag in _RAW_TEXT:
            end = lower.find("</" + tag, position)
            if end < 0:
                return
            position = end


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body, in linear time; never raises."""
    renderer = _TextRenderer()
    try:
        _tokenize(html[:MAX_HTML_CHARS], renderer)
        return renderer.result()
    except Exception:  # noqa: BLE001 - fall back to stripping tags
        stripped = re.sub(r"<[^<>]*>", " ", html[:MAX_HTML_CHARS])
        return html_module.unescape(_SPACES.sub(" ", stripped)).strip()


# ---------------------------------------------------------------- the walk


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
            return _transfer_decode(_raw_payload(part), cte, [], "attachment")
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
    filename = _filename(params, disposition_params)
    cte = (raw_header(part, "content-transfer-encoding") or "").strip().lower()
    is_text = ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")
    body_part = is_text and disposition != "attachment" and not (filename and disposition == "inline")
    if not body_part:
        if disposition not in ("attachment", "inline"):
            disposition = "inline" if raw_header(part, "content-id") else "attachment"
        data = _raw_payload(part)
        if state.too_large:
            size = _estimated_size(data, cte)
        elif cte == "base64":
            size = _estimated_size(data, cte)  # exact for valid base64, no copy
        else:
            size = len(_transfer_decode(data, cte, [], ""))
        state.attachments.append(Attachment(filename, ctype, size, disposition, index))
        return []
    where = f"part {index} ({ctype})"
    data = _transfer_decode(_raw_payload(part), cte, state.defects, where)
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


# ---------------------------------------------------------------- parse_mail

_PARSER: email.parser.BytesParser[Message] = email.parser.BytesParser(policy=email.policy.default)
_FAST_PARSER: email.parser.BytesParser[Message] = email.parser.BytesParser(
    EmailMessage, policy=email.policy.compat32
)


def _header_map(message: Message) -> dict[str, list[str]]:
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
    headers = _header_map(message)
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
    body = _raw_payload(message)[:65536] if not message.is_multipart() else b""
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
    from_addresses = _addresses(headers.get("from", []))
    valid = [address for _name, address in from_addresses if valid_address(address)]
    sender = valid[0] if len(from_addresses) == 1 and len(valid) == 1 else None
    subject_raw = _first(headers, "subject")
    in_reply_to = _message_ids(headers.get("in-reply-to", []))
    return ParsedMail(
        raw_size=len(raw),
        message_id=_message_id(_first(headers, "message-id")),
        subject=decode_header_value(subject_raw) if subject_raw is not None else "",
        from_addresses=from_addresses,
        sender=sender,
        reply_to=[address for _n, address in _addresses(headers.get("reply-to", []))],
        to=[address for _n, address in _addresses(headers.get("to", []))],
        cc=[address for _n, address in _addresses(headers.get("cc", []))],
        date=_date(_first(headers, "date"), defects),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_message_ids(headers.get("references", [])),
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
        headers = _header_map(message)
    except Exception:  # noqa: BLE001
        message, headers = EmailMessage(policy=email.policy.default), {}
    subject_raw = _first(headers, "subject")
    try:
        subject = decode_header_value(subject_raw) if subject_raw else ""
    except Exception:  # noqa: BLE001
        subject = ""
    return ParsedMail(
        raw_size=len(raw), message_id=None, subject=subject, from_addresses=[], sender=None,
        reply_to=[], to=[], cc=[], date=None, in_reply_to=None, references=[], text="",
        html=None, attachments=[], defects=defects, too_large=too_large, message=message,
        raw_headers=headers,
    )


# ---------------------------------------------------------------- auto-replies and loops

_PRECEDENCE_AUTO = frozenset({"auto_reply", "bulk", "junk"})


def auto_reply_reason(mail: ParsedMail) -> str | None:
    """Why the headers say this is an automatic message, or None.

    ``Precedence: list`` is NOT an auto-reply: mailing lists carry human
    messages (a municipality newsletter, a neighbourhood list) that a
    coordinator should see. ``bulk`` and ``junk`` are what vacation programs
    set on their replies (RFC 3834 section 3.1.8 asks responders to honour
    them), so they count. Subject cues are left to the rules engine.
    """
    try:
        return _auto_reply_reason(mail)
    except Exception:  # noqa: BLE001
        return None


def _auto_reply_reason(mail: ParsedMail) -> str | None:
    value = mail.header("Auto-Submitted")
    if value is not None:
        keyword = value.split(";", 1)[0].strip().lower()
        if keyword and keyword != "no":
            return f"header Auto-Submitted: {value}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        value = mail.header(name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return f"header {name}: {value}"
    value = mail.header("Precedence")
    if value is not None and value.strip().lower() in _PRECEDENCE_AUTO:
        return f"header Precedence: {value}"
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


def _own_address(address: str, network_address: str) -> bool:
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
    try:
        network = network_address.strip().lower()
        if not network:
            return None
        for name in ("X-Loop", "X-MS-Exchange-Inbox-Rules-Loop"):
            for value in mail.headers(name):
                if network in value.lower():
                    return f"header {name}: {value}"
        for _name, address in mail.from_addresses:
            if _own_address(address, network):
                return f"sent from the network address itself ({address})"
    except Exception:  # noqa: BLE001
        return None
    return None
