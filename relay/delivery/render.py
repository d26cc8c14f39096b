"""The per-member alert message, rendered at send time.

Each member gets a private copy: ``To`` is that member alone, ``From`` is the
network (never the original sender), replies go to ``bin+a-<tag>@`` and bounces
to ``bin+bounce-<delivery id>-<signature>@`` (signed VERP, ``relay.delivery.verp``). Nothing of the original message's
headers is copied. The text is rendered once per (ward, language) and only the
member's own lines (To, Message-ID, List-Unsubscribe) are filled in per copy,
so a fan-out to thousands costs string joins, not thousands of template runs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from urllib.parse import quote

from relay.config import Config
from relay.delivery import compose
from relay.delivery.verp import return_path
from relay.service.templating import Templates
from relay.service.texts import category_label
from relay.service.tokens import Signer
from rules.loader import RuleSet
from storage.models import Alert, Member

UNSUBSCRIBE_SLOT = "\x00UNSUBSCRIBE\x00"
PREFERENCE_COMMANDS = ("ALLEEN SPOED", "CATEGORIEEN …", "DAGELIJKS", "ALLES")
URGENT_LABEL = {"nl": "SPOED", "en": "URGENT"}
RESIDENT_PREFIX = {"nl": "een buurtbewoner uit ", "en": "a resident of "}
COORDINATOR_PREFIX = {"nl": "een coördinator uit ", "en": "a coordinator in "}


@dataclass(frozen=True)
class AttachmentData:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class RenderedAlert:
    envelope_from: str  # bin+bounce-<delivery id>@domain
    recipient: str
    raw: bytes


@dataclass(frozen=True)
class _Prepared:
    """Everything of one (ward, language) copy except the member's own lines."""

    head: str  # From .. Subject, Date, list headers, MIME headers (CRLF-terminated)
    body_before: bytes  # the encoded body up to the unsubscribe address
    body_after: bytes


def reply_address(config: Config, alert: Alert) -> str:
    return compose.plus_address(config.network.address, f"a-{alert.tag}")


def unsubscribe_address(config: Config, member: Member) -> str:
    return compose.plus_address(config.network.address, f"u-{compose.header_safe(member.unsubscribe_token, 64)}")


def copy_message_id(config: Config, alert: Alert, member_id: int | None) -> str:
    """``<alert-<tag>.<member id>@domain>``: the alert's tag stays derivable from a reply's In-Reply-To."""
    return f"<alert-{alert.tag}.{member_id or 0}@{config.network.domain}>"


def source_label_in(alert: Alert, language: str) -> str:
    """The stored (Dutch) source label in the member's language."""
    label = alert.source_label
    for prefixes in (RESIDENT_PREFIX, COORDINATOR_PREFIX):
        if label.startswith(prefixes["nl"]):
            return prefixes.get(language, prefixes["nl"]) + label[len(prefixes["nl"]):]
    return label


class AlertRenderer:
    """Renders one alert for many members; build one per alert per delivery pass."""

    def __init__(self, config: Config, templates: Templates, rules: RuleSet, signer: Signer, alert: Alert,
                 attachments: list[AttachmentData] | None = None, *, now: datetime) -> None:
        self._config = config
        self._rules = rules
        self._signer = signer
        self._templates = templates
        self._alert = alert
        self._attachments = attachments or []
        self._now = now
        self._prepared: dict[tuple[str, str], _Prepared] = {}
        self._boundary = f"=_binrelay_{alert.tag}"

    def render(self, member: Member, delivery_id: int) -> RenderedAlert:
        language = member.language if member.language in ("nl", "en") else self._config.network.language
        prepared = self._prepared.get((member.ward, language))
        if prepared is None:
            prepared = self._prepare(member.ward, language)
            self._prepared[(member.ward, language)] = prepared
        member_lines = (
            f"To: {compose.header_safe(member.email, limit=320)}\r\n"
            f"Message-ID: {copy_message_id(self._config, self._alert, member.id)}\r\n"
            f"List-Unsubscribe: <mailto:{unsubscribe_address(self._config, member)}?subject=AFMELDEN>\r\n"
            f"{self._thread_lines(member)}"
        )
        unsubscribe = unsubscribe_address(self._config, member).encode("ascii")
        raw = b"".join((
            prepared.head.encode("ascii"), member_lines.encode("utf-8"), b"\r\n",
            prepared.body_before, unsubscribe, prepared.body_after,
        ))
        return RenderedAlert(return_path(self._config, self._signer, delivery_id), member.email, raw)

    def _thread_lines(self, member: Member) -> str:
        """A follow-up answers the member's own copy of the original alert."""
        tag = self._alert.thread_tag
        if not tag:
            return ""
        original = f"<alert-{tag}.{member.id}@{self._config.network.domain}>"
        return f"In-Reply-To: {original}\r\nReferences: {original}\r\n"

    # -- once per (ward, language) -----------------------------------------

    def _prepare(self, ward_slug: str, language: str) -> _Prepared:
        config, alert = self._config, self._alert
        ward = config.ward(ward_slug)
        ward_name = ward.name if ward else ward_slug
        rendered = self._templates.render(
            "alert", language,
            ward=ward_name,
            category=category_label(self._rules, alert.category, language),
            urgent=alert.urgency == "urgent",
            urgent_label=URGENT_LABEL.get(language, "SPOED"),
            subject=compose.header_safe(alert.subject or ""),
            source=source_label_in(alert, language),
            text=(alert.body or "").strip("\n"),
            attachments=[a.filename for a in self._attachments],
            network_address=config.network.address,
            unsubscribe_address=UNSUBSCRIBE_SLOT,
            preference_commands=PREFERENCE_COMMANDS,
        )
        head = self._head(ward_slug, ward_name, rendered.subject)
        text = rendered.body.replace("\r\n", "\n")
        before, _, after = text.partition(UNSUBSCRIBE_SLOT)
        if self._attachments:
            head += f'Content-Type: multipart/mixed; boundary="{self._boundary}"\r\n'
            part_head = f"--{self._boundary}\r\n{_TEXT_HEADERS}\r\n"
            return _Prepared(head, part_head.encode("ascii") + _qp(before, tail=False),
                             _qp(after) + self._attachment_parts())
        head += _TEXT_HEADERS
        return _Prepared(head, _qp(before, tail=False), _qp(after))

    def _head(self, ward_slug: str, ward_name: str, subject: str) -> str:
        config, alert = self._config, self._alert
        domain = config.network.domain
        display = compose.header_safe(f"{config.network.name} {ward_name}")
        list_name = compose.header_safe(f"{config.network.name} {ward_name}")
        headers = [
            ("From", formataddr((display, config.network.address))),
            ("Reply-To", reply_address(config, alert)),
            ("Subject", _encoded(compose.header_safe(subject, limit=300))),
            ("Date", format_datetime(self._now)),
            ("List-Id", f"{_encoded(list_name)} <{ward_slug}.{config.network.local_part}.{domain}>"),
            ("List-Post", f"<mailto:{config.network.address}>"),
            ("List-Help", f"<mailto:{config.network.address}?subject=HELP>"),
            ("Precedence", "list"),
            ("X-Loop", config.network.address),
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "OOF, AutoReply"),
            ("X-BIN-Alert", alert.tag),
            ("MIME-Version", "1.0"),
        ]
        return "".join(f"{name}: {value}\r\n" for name, value in headers)

    def _attachment_parts(self) -> bytes:
        parts = []
        for attachment in self._attachments:
            filename = compose.header_safe(attachment.filename or "bijlage", limit=120)
            content_type = compose.header_safe(attachment.content_type or "application/octet-stream", limit=120)
            if "/" not in content_type or '"' in content_type or ";" in content_type:
                content_type = "application/octet-stream"
            encoded = base64.encodebytes(attachment.data).replace(b"\n", b"\r\n")
            parts.append(
                f"\r\n--{self._boundary}\r\nContent-Type: {content_type}; name={_param(filename)}\r\n"
                f"Content-Disposition: attachment; {_filename_param(filename)}\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n".encode("ascii") + encoded
            )
        parts.append(f"\r\n--{self._boundary}--\r\n".encode("ascii"))
        return b"".join(parts)


_TEXT_HEADERS = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'


def _encoded(value: str) -> str:
    """An RFC 2047 encoded header value when needed, folded into encoded-words of legal length.

    ``value`` is one line already (``header_safe``); the only line breaks out
    are folds (CRLF + space) inside this one header.
    """
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _param(value: str) -> str:
    if value.isascii():
        return '"' + value.replace("\\", "_").replace('"', "_") + '"'
    return '"' + _encoded(value).replace("\r\n ", " ") + '"'


def _filename_param(value: str) -> str:
    """``filename="..."``, or RFC 2231's ``filename*=utf-8''...`` for a non-ASCII name."""
    if value.isascii():
        return f"filename={_param(value)}"
    return "filename*=utf-8''" + quote(value, safe="")


def _qp(text: str, *, tail: bool = True) -> bytes:
    """Quoted-printable with CRLF line ends; ``tail=False`` keeps a partial last line open.

    The unsubscribe address (ASCII, no '=') goes between two encoded halves, so
    the halves must not end in a soft line break that would split it oddly; an
    open last line is left unencoded-long only by the address length.
    """
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not tail and encoded.endswith(b"=\r\n"):
        encoded = encoded[:-3]
    if tail and not encoded.endswith(b"\r\n"):
        encoded += b"\r\n"
    return encoded
