"""Who sent a message, decided once and strictly, and how sure we are of it.

Every path that acts on a sender (approval replies, follow-ups, member
commands, the source of a report, flood limits, two-way replies) uses the one
``SenderIdentity`` this module computes for a message:

- the address is the single addr-spec of the message's single From header,
  parsed by the RFC 5322 grammar; two From headers, two addresses, an address
  the parser had to guess (``kees@example.org <evil@example.com>``), a display
  name or comment that names another address, a Sender header naming someone
  else, or headers larger than the scan limit: no address, and the reason why;
- how sure: ``authenticated`` when the receiving server's Authentication-Results
  say the From domain passed DMARC (or, without a DMARC result, aligned DKIM or
  SPF), ``failed`` when they say it failed, ``unauthenticated`` otherwise.
  Only results added by the configured authserv-ids count (RFC 8601 section 5:
  the receiving server removes forged ones bearing its own id); others are
  ignored. Of several trusted results, a failure wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import ObsoleteHeaderDefect
from email.headerregistry import HeaderRegistry
from enum import StrEnum

from mail.headers import decode_header_value, raw_to_text, single_line, valid_address
from mail.message import ParsedMail

# A From header longer than this is no honest sender's.
MAX_FROM_CHARS = 2_000
_REGISTRY = HeaderRegistry()
_ADDRESS_LIKE = re.compile(r"[^\s<>()\"\[\],;:]+@[^\s<>()\"\[\],;:]+")


class Assurance(StrEnum):
    AUTHENTICATED = "authenticated"  # the receiving server verified the From domain
    UNAUTHENTICATED = "unauthenticated"  # no trusted verdict either way
    FAILED = "failed"  # the receiving server says the From domain failed, or the headers contradict it


@dataclass(frozen=True)
class Trust:
    """Whose Authentication-Results count: the operator's receiving server(s)."""

    authserv_ids: tuple[str, ...] = ()  # lower case; empty: the network's domain and its subdomains
    network_domain: str = ""
    max_header_bytes: int = 256 * 1024

    def trusts(self, authserv_id: str) -> bool:
        authserv_id = authserv_id.lower().rstrip(".")
        if self.authserv_ids:
            return authserv_id in self.authserv_ids
        domain = self.network_domain.lower()
        return bool(domain) and (authserv_id == domain or authserv_id.endswith("." + domain))


@dataclass(frozen=True)
class SenderIdentity:
    address: str | None  # lower case; None when the From header does not name exactly one sender
    assurance: Assurance
    reasons: tuple[str, ...]  # why, for the explanation and the coordinator (no personal data)

    @property
    def usable(self) -> bool:
        """An address that may be taken for who it says: never after a failed verdict."""
        return self.address is not None and self.assurance != Assurance.FAILED

    @property
    def verified(self) -> bool:
        """Authenticated by the receiving server: a change may be made at once, without a confirmation."""
        return self.address is not None and self.assurance == Assurance.AUTHENTICATED

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1] if self.address else ""


def identify(mail: ParsedMail, trust: Trust) -> SenderIdentity:
    """The sender of ``mail``; never raises."""
    if mail.header_bytes > trust.max_header_bytes:
        return SenderIdentity(None, Assurance.UNAUTHENTICATED,
                              (f"the headers are larger than the scan limit of {trust.max_header_bytes} bytes",))
    address, problem = from_address(mail)
    if address is None:
        return SenderIdentity(None, Assurance.UNAUTHENTICATED, (problem,))
    other = _other_sender(mail, address)
    if other:
        return SenderIdentity(address, Assurance.FAILED, (other,))
    assurance, reasons = verdict(mail, address.rsplit("@", 1)[1], trust)
    return SenderIdentity(address, assurance, reasons)


def from_address(mail: ParsedMail) -> tuple[str | None, str]:
    """(the one addr-spec of the one From header, "") or (None, why not)."""
    values = mail.raw_headers.get("from", [])
    if len(values) != 1:
        return None, "no From header" if not values else f"{len(values)} From headers"
    return single_address(values[0], "From")


def single_address(raw_value: str, name: str) -> tuple[str | None, str]:
    value = single_line(raw_to_text(raw_value))
    if len(value) > MAX_FROM_CHARS:
        return None, f"the {name} header is too long"
    try:
        header = _REGISTRY(name.lower(), value)
        addresses = list(getattr(header, "addresses", ()))
    except Exception:  # noqa: BLE001 - the stdlib parser has odd corners (':;0' raises AttributeError)
        return None, f"the {name} header cannot be parsed"
    if len(addresses) != 1:
        return None, f"the {name} header names {len(addresses)} addresses"
    if any(not isinstance(defect, ObsoleteHeaderDefect) for defect in header.defects
           if type(defect).__name__ != "NonASCIILocalPartDefect"):
        return None, f"the {name} header is not a valid address (the address would be a guess)"
    address = addresses[0].addr_spec.strip().lower()
    if not valid_address(address):
        return None, f"the {name} address is not a plain address"
    named = {found.lower().rstrip(".") for found in _ADDRESS_LIKE.findall(decode_header_value(value))}
    if named - {address}:
        return None, f"the {name} header's name or comment shows another address"
    return address, ""


def _other_sender(mail: ParsedMail, address: str) -> str:
    """A Sender header naming someone else than From (RFC 5322 3.6.2), as a reason; else ""."""
    values = mail.raw_headers.get("sender", [])
    if not values:
        return ""
    sender, _problem = single_address(values[0], "Sender") if len(values) == 1 else (None, "")
    return "" if sender == address else "the Sender header names another address than From"


# ---------------------------------------------------------------- Authentication-Results (RFC 8601)


@dataclass(frozen=True)
class _Result:
    authserv_id: str
    method: str
    result: str
    about: str  # the domain the result is about (header.from, header.d, smtp.mailfrom), "" when not said


def verdict(mail: ParsedMail, from_domain: str, trust: Trust) -> tuple[Assurance, tuple[str, ...]]:
    """DMARC first; without a DMARC result, aligned DKIM or SPF. Only trusted servers count; a failure wins."""
    results = [result for value in mail.headers("Authentication-Results") for result in parse_results(value)]
    trusted = [r for r in results if trust.trusts(r.authserv_id)]
    ignored = sorted({r.authserv_id for r in results} - {r.authserv_id for r in trusted})
    notes = tuple(f"Authentication-Results from {server} ignored (not a trusted server)" for server in ignored)
    aligned = [r for r in trusted if not r.about or _aligned(r.about, from_domain)]

    def said(method: str, result: str) -> _Result | None:
        return next((r for r in aligned if r.method == method and r.result == result), None)

    def because(found: _Result) -> tuple[str, ...]:
        return (f"{found.method}={found.result} for {from_domain} ({found.authserv_id})", *notes)

    if found := said("dmarc", "fail"):
        return Assurance.FAILED, because(found)
    if found := said("dmarc", "pass"):
        return Assurance.AUTHENTICATED, because(found)
    dkim = said("dkim", "pass")
    # Without DMARC a broken signature proves nothing (lists alter mail); an SPF failure does, unless signed.
    if (found := said("spf", "fail")) and dkim is None:
        return Assurance.FAILED, because(found)
    if found := dkim or said("spf", "pass"):
        return Assurance.AUTHENTICATED, because(found)
    return Assurance.UNAUTHENTICATED, ("no verdict on the sender from a trusted server", *notes)


def _aligned(about: str, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other."""
    about, from_domain = about.lower().rstrip("."), from_domain.lower().rstrip(".")
    return about == from_domain or about.endswith("." + from_domain) or from_domain.endswith("." + about)


_COMMENT = re.compile(r"\([^()]*\)")
_PROPERTY = re.compile(r"\b(header\.from|header\.d|header\.i|smtp\.mailfrom|policy\.from)\s*=\s*\"?([^\s;\"]+)",
                       re.IGNORECASE)
_METHOD = re.compile(r"^\s*([a-z][a-z0-9_-]*)(?:/\d+)?\s*=\s*([a-z]+)", re.IGNORECASE)


def parse_results(value: str) -> list[_Result]:
    """The method results of one Authentication-Results header value (comments removed)."""
    text = value
    for _ in range(5):  # nested comments, a few levels deep
        text = _COMMENT.sub(" ", text)
    parts = _split_quoted(text, ";")
    if not parts:
        return []
    authserv_id = (parts[0].split() or [""])[0].lower()
    results = []
    for part in parts[1:]:
        method = _METHOD.match(part)
        if method is None:
            continue
        about = ""
        for name, found in _PROPERTY.findall(part):
            if name.lower() in ("header.from", "header.d", "policy.from") or not about:
                about = found.rsplit("@", 1)[-1].lower()
        results.append(_Result(authserv_id, method.group(1).lower(), method.group(2).lower(), about))
    return results


def _split_quoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]
