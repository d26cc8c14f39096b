"""The hostile corpus: messages built to break a mail relay, each with what must happen.

Cases are built in code (a 30 MB attachment does not belong in git) and are
deterministic. ``tests/hostile/README.md`` lists them with binrelay's answer;
``tests/hostile/test_hostile.py`` asserts it.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

NETWORK = "bin@bin-demo.nl"  # the address tests.flow configures
MEMBER = "jan@bewoner.nl"  # an active member of "centrum" in the tests
STRANGER = "onbekend@elders.nl"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    # What binrelay must do with it:
    #   "held"    stored, queued for a coordinator (flagged when not understood)
    #   "dropped" stored, never forwarded, never queued (auto-reply, loop)
    expect: str
    summary: str


def _headers(**fields: str) -> bytes:
    base = {
        "From": f"Jan <{MEMBER}>",
        "To": NETWORK,
        "Subject": "Melding",
        "Date": "Mon, 23 Nov 2026 10:00:00 +0100",
        "Message-ID": "<hostile@bewoner.nl>",
        "MIME-Version": "1.0",
    }
    for key, value in fields.items():
        name = key.replace("_", "-")
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return "".join(f"{k}: {v}\r\n" for k, v in base.items()).encode("utf-8", "surrogateescape")


def _plain(body: str, **fields: str) -> bytes:
    head = _headers(Content_Type="text/plain; charset=utf-8", **fields)
    return head + b"\r\n" + body.encode("utf-8")


def crlf_in_subject() -> bytes:
    # A folded header line that smuggles Bcc:/To: lines after an encoded CR/LF.
    subject = "=?utf-8?q?Inbraak=0D=0ABcc:_victim@example.com=0D=0AX-Evil:_1?="
    return _plain("Er is ingebroken aan de Kerkstraat.", Subject=subject)


def crlf_in_display_name() -> bytes:
    name = "=?utf-8?b?" + base64.b64encode(b"Jan\r\nBcc: all@example.com").decode() + "?="
    return _plain("Verdachte auto in de wijk.", From=f"{name} <{MEMBER}>")


def raw_newline_injection() -> bytes:
    # A bare CR inside a header value (not a fold): must never split a header.
    return _plain("Vernieling bushokje.", Subject="Vernieling\rTo: everyone@example.com")


def politie_display_name_foreign_address() -> bytes:
    return _plain(
        "Politie meldt: inbraakgolf, laat uw gegevens achter op deze site.",
        From='"Politie Oost-Brabant" <politie.oostbrabant@gmail.com>',
    )


def several_from_addresses() -> bytes:
    return _plain(
        "Twee afzenders in één bericht.",
        From=f"Politie <info@politie.nl>, Jan <{MEMBER}>",
    )


def attachment_30mb() -> bytes:
    payload = base64.encodebytes(b"\x00" * (30 * 1024 * 1024)).replace(b"\n", b"\r\n")
    head = _headers(Content_Type='multipart/mixed; boundary="b1"')
    return (
        head
        + b"\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nZie bijlage: camerabeelden.\r\n"
        + b"--b1\r\nContent-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\n"
        + b'Content-Disposition: attachment; filename="beelden.mp4"\r\n\r\n'
        + payload
        + b"--b1--\r\n"
    )


def nesting_200_deep() -> bytes:
    depth = 200
    parts = [b"Content-Type: text/plain; charset=utf-8\r\n\r\nDiep verstopte melding: brand!\r\n"]
    for level in range(depth):
        boundary = f"n{level}".encode()
        inner = parts[-1]
        parts.append(
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary
            + b"\r\n" + inner + b"--" + boundary + b"--\r\n"
        )
    head = _headers()
    return head + parts[-1]


def invalid_base64() -> bytes:
    head = _headers(Content_Type="text/plain; charset=utf-8", Content_Transfer_Encoding="base64")
    return head + b"\r\nSW5icmFhaw!!!!==== not base64 at all ***\r\n"


def invalid_quoted_printable() -> bytes:
    head = _headers(
        Content_Type="text/plain; charset=utf-8", Content_Transfer_Encoding="quoted-printable"
    )
    return head + b"\r\nInbraak =ZZ in de =\r\nschuur =E2=82 halve euro =\r\n"


def nul_bytes() -> bytes:
    head = _headers(Content_Type="text/plain; charset=utf-8", Subject="Inbraak\x00schuur")
    return head + b"\r\nEr is inge\x00broken in de schuur.\x00\x00\r\n"


def unknown_charset() -> bytes:
    head = _headers(Content_Type="text/plain; charset=x-klingon-42")
    return head + b"\r\nFietsendiefstal bij het station, caf\xe9 De Brug.\r\n"


def lying_charset() -> bytes:
    # Declared utf-8, actually windows-1252 with curly quotes and a euro sign.
    head = _headers(Content_Type="text/plain; charset=utf-8")
    return head + b"\r\n\x93Babbeltruc\x94 bij oudere bewoner, \x80 200 afgetroggeld.\r\n"


def one_megabyte_line() -> bytes:
    return _plain("Overlast " + "x" * (1024 * 1024) + " einde")


def five_thousand_recipients() -> bytes:
    recipients = ", ".join(f"r{i}@example.com" for i in range(5000))
    return _plain("Spam aan iedereen.", To=f"{NETWORK}, {recipients}")


def missing_date_and_message_id() -> bytes:
    return _plain("Vernieling aan de speeltuin.", Date=None, Message_ID=None)  # type: ignore[arg-type]


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("foto.bmp", b"\x00" * (100 * 1024 * 1024))
    encoded = base64.encodebytes(buffer.getvalue()).replace(b"\n", b"\r\n")
    head = _headers(Content_Type='multipart/mixed; boundary="z"')
    return (
        head
        + b"\r\n--z\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFoto's van de dader.\r\n"
        + b'--z\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="fotos.zip"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"--z--\r\n"
    )


def header_only_garbage() -> bytes:
    return b"\xff\xfe\x00garbage without any header structure\r\n\r\n\x00\x01\x02"


def auto_reply_out_of_office() -> bytes:
    return _plain(
        "Ik ben afwezig tot maandag.", Subject="Afwezig: Melding", Auto_Submitted="auto-replied"
    )


def loop_from_ourselves() -> bytes:
    return _plain("Ons eigen bericht kwam terug.", From=f"BIN <{NETWORK}>", X_Loop=NETWORK)


CASES: list[Case] = [
    Case("crlf_in_subject", crlf_in_subject, "held",
         "encoded CR/LF in Subject: decoded to one line; no header added to any outgoing mail"),
    Case("crlf_in_display_name", crlf_in_display_name, "held",
         "encoded CR/LF in the From display name: one line, never an outgoing header"),
    Case("raw_newline_injection", raw_newline_injection, "held",
         "bare CR inside a header value: folded into one line"),
    Case("politie_display_name_foreign_address", politie_display_name_foreign_address, "held",
         "display name 'Politie' on a gmail address: source unknown, held and flagged"),
    Case("several_from_addresses", several_from_addresses, "held",
         "two From addresses: not trusted as a partner; held for a coordinator"),
    Case("attachment_30mb", attachment_30mb, "held",
         "30 MB attachment: stored whole, parts beyond the size limit not decoded, flagged"),
    Case("nesting_200_deep", nesting_200_deep, "held",
         "multipart nesting 200 deep: parsed up to a depth limit, flagged, never a crash"),
    Case("invalid_base64", invalid_base64, "held", "invalid base64: decoded leniently, flagged"),
    Case("invalid_quoted_printable", invalid_quoted_printable, "held",
         "invalid quoted-printable: decoded leniently, flagged"),
    Case("nul_bytes", nul_bytes, "held", "NUL bytes in Subject and body: removed from the text"),
    Case("unknown_charset", unknown_charset, "held", "unknown charset: guessed (cp1252), flagged"),
    Case("lying_charset", lying_charset, "held",
         "declared utf-8 but windows-1252: decoded as cp1252"),
    Case("one_megabyte_line", one_megabyte_line, "held",
         "a 1 MB single line: parsed in linear time, text kept"),
    Case("five_thousand_recipients", five_thousand_recipients, "held",
         "5,000 addresses in To: none of them ever receives anything"),
    Case("missing_date_and_message_id", missing_date_and_message_id, "held",
         "no Date and no Message-ID: stored (dedup on the raw bytes), processed normally"),
    Case("zip_bomb", zip_bomb, "held",
         "a zip bomb attachment: listed by its compressed size, never unpacked"),
    Case("header_only_garbage", header_only_garbage, "held",
         "bytes that are not a message: stored, flagged 'no readable text', held"),
    Case("auto_reply_out_of_office", auto_reply_out_of_office, "dropped",
         "an out-of-office: never forwarded, never answered"),
    Case("loop_from_ourselves", loop_from_ourselves, "dropped",
         "our own message coming back: dropped and logged"),
]
