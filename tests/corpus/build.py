"""Build the labelled classification corpus from the hand-written texts.

The texts live in ``tests/corpus/src/*.txt``; this script wraps each in the
shape a real mail client would produce (plain, quoted-printable, base64,
Outlook HTML, multipart/alternative, windows-1252, ISO-8859-1, a mislabelled
charset, forwards, quoted replies, phone signatures) and writes
``eml/<name>.eml`` and ``labels.jsonl``. The .eml files are the corpus; this
script only makes them reproducible. Run: ``python tests/corpus/build.py``, or
``python tests/corpus/build.py tests/corpus/real`` for the real-text corpus
(``real/src/*.txt``, same syntax plus ``url:``; see ``real/AUTHORING.md``),
whose labels also carry each message's source URL and its part: ``tune`` or
``heldout``, decided once from a hash of the message's name.

Block syntax of a source file::

    === name                      (file name without .eml)
    from: Display Name <addr>
    to: addr                      (default: the network address)
    subject: ...
    format: plain|qp|b64|html|alt|cp1252|latin1|mislabel|mislabel-utf8|flowed|photo|raw
    wrap: iphone, android, outlook-sig, fwd-gmail, fwd-apple, fwd-outlook, quote-below, quote-above
    orig: Display Name <addr>     (the original sender of a forward)
    note: text above a forward    ("\\n" for a new line)
    quote: the quoted text        ("\\n" for a new line)
    header: Name: value           (repeatable)
    label: SOURCE KIND CATEGORY WARDS URGENCY   (WARDS: a,b | - for none | all)
    url: https://...              (real corpus: the published text it follows)
    ---
    the body (for format raw: the whole message, headers included)
"""

from __future__ import annotations

import base64
import hashlib
import json
import quopri
import re
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, parseaddr
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETWORK = "bin@bin-denbosch.nl"
FIELDS = ("source", "kind", "category", "wards", "urgency")
START = datetime(2026, 10, 5, 7, 12, tzinfo=UTC)
# The real-text corpus's held-out part: about a third, fixed by each name's hash. Never tune on it.
HELDOUT_PERCENT = 35


def part_of(name: str) -> str:
    """'tune' or 'heldout' for a real-corpus message, by its name alone (stable, decided once)."""
    bucket = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "tune"


@dataclass
class Entry:
    name: str
    headers: dict[str, str] = field(default_factory=dict)
    extra_headers: list[str] = field(default_factory=list)
    body: str = ""
    label: dict[str, object] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)


def all_wards() -> list[str]:
    config = tomllib.loads((HERE / "config.toml").read_text(encoding="utf-8"))
    return sorted(ward["slug"] for ward in config["wards"])


def parse_label(text: str, name: str) -> dict[str, object]:
    parts = text.split()
    if len(parts) != 5:
        raise SystemExit(f"{name}: label needs 5 fields, got {text!r}")
    source, kind, category, wards, urgency = parts
    slugs = all_wards()
    ward_list = slugs if wards == "all" else [] if wards == "-" else sorted(wards.split(","))
    for slug in ward_list:
        if slug not in slugs:
            raise SystemExit(f"{name}: unknown ward {slug!r}")
    return {
        "source": source,
        "kind": kind,
        "category": None if category == "-" else category,
        "wards": ward_list,
        "urgency": None if urgency == "-" else urgency,
    }


def read_entries(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    blocks = re.split(r"^=== ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    for block in blocks[1:]:
        head, _, body = block.partition("\n---\n")
        lines = head.splitlines()
        entry = Entry(name=lines[0].strip())
        for line in lines[1:]:
            if not line.strip() or line.startswith("#"):
                continue
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "header":
                entry.extra_headers.append(value)
            elif key == "label":
                entry.label = parse_label(value, entry.name)
            else:
                entry.headers[key] = expand_macros(value) if key in ("quote", "note") else value
        entry.body = expand_macros(body.rstrip()) + "\n"
        if not entry.label:
            raise SystemExit(f"{entry.name}: no label")
        entries.append(entry)
    return entries


# ------------------------------------------------------------ text wrappers

SIGNATURES = {
    "iphone": "\n\nVerstuurd vanaf mijn iPhone",
    "android": "\n\nVerzonden vanaf mijn Galaxy",
    "outlook-sig": "\n\nVerzonden vanuit Outlook voor Android",
}


def unescape(text: str) -> str:
    return text.replace("\\n", "\n")


def quoted(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in unescape(text).splitlines())


def expand_macros(text: str) -> str:
    """``{{NAME}}`` -> the shared text of ``src/macros/NAME.txt`` (disclaimers, footers)."""

    def replace(match: re.Match[str]) -> str:
        return (HERE / "src" / "macros" / f"{match.group(1)}.txt").read_text(encoding="utf-8").rstrip("\n")

    return re.sub(r"\{\{([A-Z0-9_]+)\}\}", replace, text)


def wrap_text(entry: Entry, body: str, date: datetime) -> str:
    wraps = [w.strip() for w in entry.get("wrap").split(",") if w.strip()]
    orig_name, orig_addr = parseaddr(entry.get("orig", NETWORK))
    orig = f"{orig_name} <{orig_addr}>" if orig_name else orig_addr
    earlier = date - timedelta(hours=2, minutes=17)
    note = unescape(entry.get("note"))
    subject = re.sub(r"^(fwd?|fw|doorst|wg):\s*", "", entry.get("subject"), flags=re.IGNORECASE)
    for wrap in wraps:
        if wrap == "fwd-gmail":
            body = (f"{note}\n\n" if note else "") + (
                "---------- Forwarded message ---------\n"
                f"Van: {orig}\nDate: {format_datetime(earlier)}\n"
                f"Subject: {subject}\nTo: {entry.get('from')}\n\n{body}"
            )
        elif wrap == "fwd-apple":
            body = (f"{note}\n\n" if note else "") + (
                "Begin doorgestuurd bericht:\n\n"
                f"Van: {orig}\nOnderwerp: {subject}\nDatum: {earlier:%d-%m-%Y om %H:%M:%S} CET\n"
                f"Aan: {parseaddr(entry.get('from'))[1]}\n\n{body}"
            )
        elif wrap == "fwd-outlook":
            body = (f"{note}\n\n" if note else "") + (
                "-----Oorspronkelijk bericht-----\n"
                f"Van: {orig}\nVerzonden: {earlier:%A %d %B %Y %H:%M}\n"
                f"Aan: {parseaddr(entry.get('from'))[1]}\nOnderwerp: {subject}\n\n{body}"
            )
        elif wrap == "quote-below":
            body = (
                f"{body}\nOp {earlier:%d-%m-%Y} om {earlier:%H:%M} schreef {orig}:\n\n"
                f"{quoted(entry.get('quote'))}\n"
            )
        elif wrap == "quote-outlook":
            body = (
                f"{body}\n________________________________\nVan: {orig}\n"
                f"Verzonden: {earlier:%d-%m-%Y %H:%M}\nAan: {parseaddr(entry.get('from'))[1]}\n"
                f"Onderwerp: {subject}\n\n{unescape(entry.get('quote'))}\n"
            )
        elif wrap == "quote-above":
            body = (
                f"On {earlier:%a, %d %b %Y} at {earlier:%H:%M}, {orig} wrote:\n"
                f"{quoted(entry.get('quote'))}\n\n{body}"
            )
        elif wrap in SIGNATURES:
            body = body.rstrip("\n") + SIGNATURES[wrap] + "\n"
        else:
            raise SystemExit(f"{entry.name}: unknown wrap {wrap!r}")
    return body


# ----------------------------------------------------------- MIME wrappers


def html_of(text: str) -> str:
    """An Outlook-like HTML rendering: one <p class=MsoNormal> per line."""
    escaped = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    paragraphs = "\n".join(
        f'<p class="MsoNormal">{line or "&nbsp;"}<o:p></o:p></p>' for line in escaped.splitlines()
    )
    return (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        "<style><!-- p.MsoNormal {margin:0cm; font-size:11.0pt; font-family:Calibri} --></style>"
        f'</head><body lang="NL" link="#0563C1"><div class="WordSection1">\n{paragraphs}\n'
        "</div></body></html>\n"
    )


def qp(data: bytes) -> str:
    return quopri.encodestring(data).decode("ascii")


def b64(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"


def leaf(ctype: str, charset: str, cte: str, payload: str, extra: str = "") -> str:
    return f"Content-Type: {ctype}; charset=\"{charset}\"{extra}\nContent-Transfer-Encoding: {cte}\n\n{payload}"


def mime_body(fmt: str, text: str, name: str) -> tuple[str, bytes | None]:
    """The MIME headers+body as text, or (for raw 8-bit bodies) bytes."""
    data = text.encode("utf-8")
    if fmt == "plain":
        return leaf("text/plain", "utf-8", "8bit", text), None
    if fmt == "qp":
        return leaf("text/plain", "utf-8", "quoted-printable", qp(data)), None
    if fmt == "b64":
        return leaf("text/plain", "utf-8", "base64", b64(data)), None
    if fmt == "flowed":
        flowed = "\n".join(_flow(line) for line in text.splitlines()) + "\n"
        return leaf("text/plain", "utf-8", "8bit", flowed, "; format=flowed"), None
    if fmt == "html":
        return leaf("text/html", "utf-8", "quoted-printable", qp(html_of(text).encode())), None
    if fmt == "alt":
        boundary = f"_000_{name[:20]}_alt_"
        return (
            f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
            f"--{boundary}\n{leaf('text/plain', 'utf-8', 'quoted-printable', qp(data))}\n"
            f"--{boundary}\n{leaf('text/html', 'utf-8', 'quoted-printable', qp(html_of(text).encode()))}\n"
            f"--{boundary}--\n"
        ), None
    if fmt == "photo":
        boundary = f"----=_Part_{name[:16]}"
        jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
        return (
            f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
            f"--{boundary}\n{leaf('text/plain', 'utf-8', 'quoted-printable', qp(data))}\n"
            f"--{boundary}\nContent-Type: image/jpeg; name=\"IMG_4031.jpg\"\n"
            "Content-Disposition: attachment; filename=\"IMG_4031.jpg\"\n"
            f"Content-Transfer-Encoding: base64\n\n{b64(jpeg)}\n--{boundary}--\n"
        ), None
    if fmt == "cp1252":
        return leaf("text/plain", "windows-1252", "quoted-printable", qp(text.encode("cp1252"))), None
    if fmt == "latin1":
        head = 'Content-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: 8bit\n\n'
        return head, text.encode("latin-1")
    if fmt == "mislabel":  # says ISO-8859-1, is UTF-8 (a webmail classic)
        head = 'Content-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: 8bit\n\n'
        return head, data
    if fmt == "mislabel-utf8":  # says UTF-8, is windows-1252 (an old desktop client)
        head = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n'
        return head, text.encode("cp1252")
    raise SystemExit(f"{name}: unknown format {fmt!r}")


def _flow(line: str, width: int = 72) -> str:
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + len(word) + 1 > width:
            out.append(current + " ")
            current = word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\n".join(out)


def header_value(value: str, charset: str) -> str:
    if value.isascii():
        return value
    return Header(value, charset).encode()


def address_header(value: str, charset: str) -> str:
    # "Wijkmanager De Muntel, Vliert en Orthen <x@y>": the name is all before the last "<" (as a client
    # reads what its user typed); parseaddr would split it at the comma.
    bracket = value.rfind("<")
    if bracket > 0 and value.rstrip().endswith(">"):
        name, addr = value[:bracket].strip().strip('"'), value[bracket + 1:].strip().rstrip(">")
    else:
        name, addr = parseaddr(value)
    if not name:
        return addr
    if name.isascii():
        quoted_name = f'"{name}"' if re.search(r"[,.;:@()'<>]", name) else name
        return f"{quoted_name} <{addr}>"
    return f"{Header(name, charset).encode()} <{addr}>"


def render(entry: Entry, index: int) -> bytes:
    date = START + timedelta(hours=3 * index, minutes=(index * 37) % 60)
    fmt = entry.get("format", "plain")
    if fmt == "raw":
        return entry.body.encode("utf-8")
    charset = {"cp1252": "windows-1252", "latin1": "iso-8859-1"}.get(fmt, "utf-8")
    sender = entry.get("from")
    domain = parseaddr(sender)[1].rsplit("@", 1)[-1] or "localhost"
    lines = [
        f"From: {address_header(sender, charset)}",
        f"To: {address_header(entry.get('to', NETWORK), charset)}",
        f"Subject: {header_value(entry.get('subject'), charset)}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{entry.name}.{index}@{domain}>",
        *entry.extra_headers,
        "MIME-Version: 1.0",
    ]
    text = wrap_text(entry, entry.body, date)
    mime, raw_body = mime_body(fmt, text, entry.name)
    head = ("\n".join(lines) + "\n" + mime).encode("utf-8")
    return head if raw_body is None else head + raw_body


def build(root: Path, sources: Path | None = None) -> int:
    """Write ``root/eml/*.eml`` and ``root/labels.jsonl`` from ``sources`` (default: ``root/src``, else
    the invented corpus's ``src``); the number of messages."""
    sources = sources or (root / "src" if (root / "src").is_dir() else HERE / "src")
    entries = [entry for path in sorted(sources.glob("*.txt")) for entry in read_entries(path)]
    real = any(entry.get("url") for entry in entries)
    if real and not all(entry.get("url") for entry in entries):
        raise SystemExit("real corpus: every message needs a url: line")
    names = [entry.name for entry in entries]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"duplicate names: {sorted(duplicates)}")
    out = root / "eml"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.eml"):
        if stale.stem not in names:
            stale.unlink()
    labels = []
    for index, entry in enumerate(entries):
        (out / f"{entry.name}.eml").write_bytes(render(entry, index))
        provenance = {"url": entry.get("url"), "part": part_of(entry.name)} if real else {}
        labels.append({"file": f"{entry.name}.eml", **entry.label, **provenance})
    with (root / "labels.jsonl").open("w", encoding="utf-8") as handle:
        for label in sorted(labels, key=lambda item: str(item["file"])):
            handle.write(json.dumps(label, ensure_ascii=False) + "\n")
    return len(entries)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    root = Path(args[0]) if args else HERE
    count = build(root)
    print(f"{count} messages written to {root / 'eml'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
