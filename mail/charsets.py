"""Charsets: bytes to text whatever the label says, never failing.

Mail in the field is often mislabelled (UTF-8 sent as ISO-8859-1, windows-1252
sent as UTF-8): ``decode_bytes`` trusts the bytes before the label and always
returns text, with a note of what did not fit.
"""

from __future__ import annotations

import codecs

_ASCII_LIKE = frozenset({"us-ascii", "ascii", "646", "ansi_x3.4-1968", "iso646-us"})
# Labels that in practice mean "Western European single byte": decoded as
# windows-1252, the superset every mail client actually produces (WHATWG does
# the same), so 0x80-0x9F become quotes and euro signs instead of controls.
_LATIN1_LIKE = frozenset(
    {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "windows-1252",
     "cp1252", "x-cp1252"}
)
_UNKNOWN_LABELS = frozenset({"", "x-unknown", "unknown", "unknown-8bit", "x-user-defined", "none"})


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
        # Deferred: charset-normalizer loads its tables on import, and only exotic labels need it.
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
