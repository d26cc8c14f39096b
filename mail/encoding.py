"""Transfer encodings (base64, quoted-printable, uuencode), decoded leniently.

Broken encodings are common in hostile and in merely old mail: each decoder
returns what it could read and records a defect instead of raising.
"""

from __future__ import annotations

import binascii
import re
from email.message import Message


def b64_lenient(data: bytes) -> tuple[bytes, bool]:
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


_BAD_QP = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n|[ \t]*$)")


def raw_payload(part: Message) -> bytes:
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


def transfer_decode(data: bytes, cte: str, defects: list[str], where: str) -> bytes:
    if cte == "base64":
        decoded, valid = b64_lenient(data)
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


def estimated_size(data: bytes, cte: str) -> int:
    """Decoded size without decoding (for attachments of oversized messages)."""
    if cte == "base64":
        significant = len(data) - sum(data.count(c) for c in (b"\r", b"\n", b" ", b"\t"))
        return max(0, significant * 3 // 4 - data.rstrip().endswith(b"=") - data.rstrip().endswith(b"=="))
    return len(data)
