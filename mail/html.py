"""HTML to readable plain text, in linear time, tuned for mail clients' HTML."""

from __future__ import annotations

import html as html_module
import re
import urllib.parse

# HTML larger than this is cut before conversion to text.
MAX_HTML_CHARS = 2_000_000

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
