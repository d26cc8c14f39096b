"""Deterministic generator of realistic, varied test messages.

``message()`` builds one message with exactly the encoding asked for;
``varied_messages()`` builds a reproducible mix of the shapes real mailboxes
receive (charsets, transfer encodings, HTML-only Outlook mail, alternatives,
attachments, forwards), with Dutch neighbourhood-watch content of ~4 KB on
average. The bytes are written by hand rather than by ``EmailMessage`` so the
tests see the encodings real clients produce, including 8-bit cp1252 bodies.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import random
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime

DEFAULT_SENDER = "Jan de Vries <jan.devries@example.net>"

_STREETS = ["Marathonloop", "Olympiaplein", "Kruisstraat", "Orthenseweg", "Hintham",
            "Graafseweg", "Vughterweg", "Pettelaarseweg", "Zuid-Willemsvaart", "De Gruyterfabriek"]
_WARDS = ["Maaspoort", "Rietvelden", "Graafsepoort", "Hintham", "De Muntel", "Het Zand",
          "Empel", "Rosmalen-Noord", "Binnenstad", "Vughterpoort"]
_FIRST = ["Anna", "Kees", "Sanne", "Mohamed", "Fleur", "Pieter", "Noël", "Zoë", "Rüya", "Daan"]
_LAST = ["de Vries", "Jansen", "Bakker", "van den Berg", "El Amrani", "Visser", "Smit",
         "Meijer", "Brouwer", "Hoekstra"]
_SUBJECTS = [
    "Inbraak in woning {street}",
    "Verdachte persoon bij de auto’s in {ward}",
    "Fietsendiefstal bij het station – wie heeft iets gezien?",
    "Overlast jongeren {street} (€ schade)",
    "Één verdachte auto in {ward}, kenteken bekend",
    "Poging tot inbraak: politie zoekt getuigen",
    "Babbeltruc bij oudere bewoners {ward}",
    "Uitnodiging buurtoverleg {ward} – café ‘De Brug’",
    "Vernieling bushokje {street}",
    "Vermiste man (78) – heeft u hem gezien?",
]
_PARAGRAPHS = [
    ("Vannacht rond 03:15 uur is er ingebroken in een woning aan de {street}. De daders "
    "hebben een raam aan de achterzijde geforceerd en zijn er met sieraden en een laptop "
    "vandoor gegaan. Heeft u iets verdachts gezien of gehoord? Neem dan contact op met de "
    "politie via 0900-8844."),
    ("Een buurtbewoner zag een man in een donkere jas die bij meerdere auto’s door de ramen "
    "keek. Hij droeg een zwarte rugzak en liep richting het park. Eén van de bewoners heeft "
    "een foto gemaakt; die is bij de wijkagent bekend."),
    ("Bij het station in {ward} zijn deze week drie fietsen gestolen, waaronder een "
    "elektrische fiets ter waarde van € 2.400. Zet uw fiets altijd op twee sloten en "
    "registreer het framenummer."),
    ("Er is de laatste weken veel overlast van een groep jongeren bij het speelveld aan de "
    "{street}. Er wordt vuurwerk afgestoken en er ligt veel afval. De gemeente is op de "
    "hoogte en de handhavers komen vaker langs."),
    ("Let op: er gaan oplichters langs de deur die zich voordoen als medewerker van de "
    "energiemaatschappij. Laat nooit onbekenden binnen en vraag altijd om een legitimatie. "
    "Twijfelt u? Bel dan 112 als het gevaarlijk is, anders 0900-8844."),
    ("Op de {street} staat al dagen een grijze bestelbus met buitenlands kenteken waarin "
    "’s avonds mensen zitten. Bewoners vinden dat vreemd. Wie herkent dit voertuig?"),
    ("De wijkagent van {ward} houdt volgende week dinsdag om 19:30 uur een inloopavond in "
    "het buurthuis. U bent van harte welkom voor vragen over veiligheid in de wijk, "
    "café ‘De Brug’ zorgt voor koffie en thee."),
    ("In de nacht van zaterdag op zondag is het bushokje aan de {street} vernield. De "
    "politie heeft een verdachte aangehouden; getuigen kunnen zich nog steeds melden."),
    ("Sinds gisteravond wordt een 78-jarige man vermist. Hij is ongeveer 1,80 meter lang, "
    "heeft grijs haar en draagt een blauwe jas. Hij is voor het laatst gezien bij de "
    "supermarkt in {ward}. Ziet u hem? Bel direct 112."),
    ("Bedankt voor alle reacties op het vorige bericht. Dankzij de oplettendheid van "
    "bewoners is de eigenaar van de gestolen scooter gevonden. Blijf alert en meld "
    "verdachte situaties altijd bij de politie."),
]
_SIGNATURES = [
    "Met vriendelijke groet,\n\n{name}\nBuurtbewoner {street}",
    "Groeten,\n{name}\n\nVerzonden vanaf mijn iPhone",
    ("Met vriendelijke groet,\n\n{name}\nWijkagent {ward}\nPolitie Oost-Brabant\n"
    "Bereikbaar via 0900-8844\n\nDit bericht kan vertrouwelijke informatie bevatten."),
]


# Characters latin-1 lacks, replaced as a latin-1 client would type them.
_TO_LATIN1 = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "€": "EUR", "–": "-"})


def _encode_header(value: str, charset: str = "utf-8") -> str:
    """ASCII values as is; others as RFC 2047 words (what clients send)."""
    if value.isascii():
        return value
    return Header(value, charset).encode()


def _encode_address(address: str) -> str:
    if "<" not in address:
        return address
    name, rest = address.split("<", 1)
    name = name.strip().strip('"')
    if name.isascii():
        return f'"{name}" <{rest}' if name else f"<{rest}"
    return f"{_encode_header(name)} <{rest}"


def _body_bytes(body: str, charset: str, cte: str) -> bytes:
    data = body.replace("\r\n", "\n").encode(charset).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    return data


def _headers(
    subject: str,
    sender: str,
    to: str,
    message_id: str | None,
    date: datetime,
    extra: Mapping[str, str] | None,
) -> list[str]:
    lines = [
        f"From: {_encode_address(sender)}",
        f"To: {to}",
        f"Subject: {_encode_header(subject)}",
        f"Date: {format_datetime(date)}",
    ]
    if message_id is not None:
        lines.append(f"Message-ID: <{message_id.strip('<>')}>")
    lines.append("MIME-Version: 1.0")
    for name, value in (extra or {}).items():
        lines.append(f"{name}: {value}")
    return lines


def _leaf(content_type: str, body: str, charset: str, cte: str) -> bytes:
    head = f"Content-Type: {content_type}; charset=\"{charset}\"\r\n"
    head += f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    return head.encode() + _body_bytes(body, charset, cte)


def _multipart(subtype: str, parts: list[bytes], boundary: str) -> bytes:
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    out.append(b"This is a multi-part message in MIME format.\r\n")
    for part in parts:
        out.append(f"\r\n--{boundary}\r\n".encode() + part)
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)


def outlook_html(body: str) -> str:
    """An Outlook-like HTML rendering of ``body`` (MsoNormal paragraphs)."""
    paragraphs = []
    for line in body.split("\n"):
        escaped = (line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                   .replace("€", "&euro;").replace("é", "&eacute;"))
        paragraphs.append(
            f"<p class=MsoNormal>{escaped or '<o:p>&nbsp;</o:p>'}<o:p></o:p></p>"
        )
    return (
        "<html xmlns:o=\"urn:schemas-microsoft-com:office:office\"><head>"
        "<meta http-equiv=Content-Type content=\"text/html; charset=utf-8\">"
        "<style><!-- p.MsoNormal {margin:0cm; font-size:11.0pt; font-family:\"Calibri\"} "
        "--></style><!--[if gte mso 9]><xml><o:shapedefaults v:ext=\"edit\" spidmax=\"1026\" />"
        "</xml><![endif]--></head><body lang=NL link=\"#0563C1\"><div class=WordSection1>"
        + "\n".join(paragraphs)
        + "</div></body></html>"
    )


def message(
    subject: str,
    body: str,
    *,
    sender: str = DEFAULT_SENDER,
    to: str = "bin@example.org",
    charset: str = "utf-8",
    cte: str = "quoted-printable",
    html: bool = False,
    message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
) -> bytes:
    """One single-part message: text/plain, or text/html (Outlook-like) if ``html``.

    ``cte`` is "7bit", "8bit", "quoted-printable" or "base64"; ``charset`` the
    codec used for the body (and named in its Content-Type).
    """
    when = date or datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    digest = hashlib.sha1((subject + body).encode("utf-8", "replace")).hexdigest()[:16]
    ident = message_id if message_id is not None else f"{digest}@example.net"
    lines = _headers(subject, sender, to, ident, when, headers)
    content = outlook_html(body) if html else body
    kind = "text/html" if html else "text/plain"
    return ("\r\n".join(lines) + "\r\n").encode() + _leaf(kind, content, charset, cte)


# ---------------------------------------------------------------- varied mix


def _content(rng: random.Random) -> tuple[str, str, str]:
    street, ward = rng.choice(_STREETS), rng.choice(_WARDS)
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    subject = rng.choice(_SUBJECTS).format(street=street, ward=ward)
    count = rng.randint(5, 16)
    paragraphs = [rng.choice(_PARAGRAPHS).format(street=street, ward=ward) for _ in range(count)]
    greeting = rng.choice(["Beste buurtbewoners,", "Hallo allemaal,", "Beste BINCO,"])
    signature = rng.choice(_SIGNATURES).format(name=name, street=street, ward=ward)
    body = greeting + "\n\n" + "\n\n".join(paragraphs) + "\n\n" + signature + "\n"
    return subject, body, name


def _sender(rng: random.Random, name: str) -> str:
    domain = rng.choice(["example.net", "politie.nl", "s-hertogenbosch.nl", "ziggo.example",
                         "kpnmail.example", "hotmail.example"])
    plain = unicodedata.normalize("NFKD", name.lower()).encode("ascii", "ignore").decode()
    local = plain.replace(" ", ".") or "bewoner"
    return f"{name} <{local}@{domain}>"


def _attachment(rng: random.Random) -> bytes:
    data = bytes(rng.getrandbits(8) for _ in range(rng.randint(300, 1500)))
    name = rng.choice(["foto_verdachte.jpg", "kenteken.png", "flyer buurtavond.pdf"])
    kind = {"jpg": "image/jpeg", "png": "image/png", "pdf": "application/pdf"}[name[-3:]]
    return (
        f'Content-Type: {kind}; name="{name}"\r\nContent-Transfer-Encoding: base64\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
    ).encode() + base64.encodebytes(data).replace(b"\n", b"\r\n")


def _shape(kind: str, rng: random.Random, subject: str, body: str, boundary: str) -> bytes:
    """The MIME body (with its Content-Type header) for one shape."""
    if kind == "plain-utf8":
        return _leaf("text/plain", body, "utf-8", "8bit")
    if kind == "qp-utf8":
        return _leaf("text/plain", body, "utf-8", "quoted-printable")
    if kind == "cp1252-8bit":
        return _leaf("text/plain", body, "windows-1252", "8bit")
    if kind == "latin1-base64":
        return _leaf("text/plain", body.translate(_TO_LATIN1), "iso-8859-1", "base64")
    if kind == "html-only":
        return _leaf("text/html", outlook_html(body), "utf-8", "quoted-printable")
    if kind == "alternative":
        return _multipart("alternative", [
            _leaf("text/plain", body, "utf-8", "quoted-printable"),
            _leaf("text/html", outlook_html(body), "utf-8", "quoted-printable"),
        ], boundary)
    if kind == "attachment":
        return _multipart("mixed", [
            _leaf("text/plain", body, "utf-8", "quoted-printable"), _attachment(rng)
        ], boundary)
    # A forward: a short note plus the original as message/rfc822.
    original = message(subject, body, sender="Politie Oost-Brabant <noreply@politie.nl>",
                       message_id=f"orig.{rng.getrandbits(48):x}@politie.nl")
    note = _leaf("text/plain", "Ter info, doorgestuurd van de wijkagent.\n", "utf-8", "7bit")
    rfc822 = b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + original
    return _multipart("mixed", [note, rfc822], boundary)


SHAPES = ("plain-utf8", "qp-utf8", "cp1252-8bit", "latin1-base64", "html-only",
          "alternative", "attachment", "forward")


def varied_messages(n: int, seed: int = 0, *, to: str = "bin@example.org") -> list[bytes]:
    """``n`` reproducible messages cycling through every shape in ``SHAPES``.

    Each has a unique Message-ID except every 25th, which has none (as some
    broken clients send); dates advance a few minutes per message.
    """
    rng = random.Random(seed)
    start = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    messages = []
    for index in range(n):
        kind = SHAPES[index % len(SHAPES)] if index < len(SHAPES) else rng.choice(SHAPES)
        subject, body, name = _content(rng)
        message_id = None if index % 25 == 24 else f"{seed}.{index}.{rng.getrandbits(32):x}@mailgen.example"
        when = start + timedelta(minutes=7 * index)
        shown = "Fwd: " + subject if kind == "forward" else subject
        lines = _headers(shown, _sender(rng, name), to, message_id, when, None)
        boundary = f"----=_Part_{seed}_{index}_{rng.getrandbits(32):x}"
        messages.append(("\r\n".join(lines) + "\r\n").encode() + _shape(kind, rng, subject, body, boundary))
    return messages
