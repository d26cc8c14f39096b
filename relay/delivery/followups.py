"""Follow-ups: a closing message or an update, threaded to a sent alert, for everyone who received it.

Each member who got the alert gets the follow-up threaded to their own copy
(In-Reply-To/References point at that copy's Message-ID). Nothing here talks
SMTP: the rows go to the outbox like any alert's.

The right to close an alert is a capability: every coordinator who may close
it (its wards' and the network-wide ones) gets a coordinator's copy whose
reply address carries a token signed for that alert and that coordinator,
``bin+f-<alert id>-<token>@``. A member's copy carries no authority: its
reply address only links a member's answer to the alert.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from relay.config import Config
from relay.delivery import compose
from relay.service.runtime import Runtime
from relay.service.tokens import Signer, new_token
from storage import audit
from storage.models import Alert
from storage.outbox import enqueue_alert_copies, enqueue_notice, recipients_of_alert

FOLLOWUP = "followup"


def closers_of(config: Config, wards: list[str]) -> list[str]:
    """Who may close an alert: its wards' coordinators and the network-wide ones."""
    found = [*config.network.coordinators, *(a for slug in wards for a in config.coordinators_of(slug))]
    return list(dict.fromkeys(found))


def followup_tag(signer: Signer, alert_id: int, coordinator: str) -> str:
    """The plus-address tag of one coordinator's right to close one alert."""
    return f"f-{alert_id}-{signer.sign(FOLLOWUP, alert_id, coordinator.lower())}"


def followup_right(signer: Signer, token: str, coordinator: str) -> int | None:
    """The alert id a ``f-`` token (``<alert id>-<signature>``) gives ``coordinator`` the right to close."""
    alert_id, _, signature = token.partition("-")
    if not alert_id.isdigit() or not signature:
        return None
    return int(alert_id) if signer.verify(signature, FOLLOWUP, int(alert_id), coordinator.lower()) else None


def send_coordinator_copies(rt: Runtime, session: Session, alert: Alert, now: datetime) -> list[str]:
    """A copy of a sent alert for each coordinator who may close it, with their own follow-up address."""
    config = rt.config
    language = config.network.language
    ward_names = ", ".join(w.name if (w := config.ward(s)) else s for s in alert.wards) or "-"
    sent = []
    for coordinator in closers_of(config, list(alert.wards or [])):
        tag = followup_tag(rt.signer, alert.id, coordinator)
        rendered = rt.templates.render(
            "alert_coordinator_copy", language, subject=compose.header_safe(alert.subject or ""), wards=ward_names,
            source=alert.source_label, text=(alert.body or "").strip("\n"), marker=f"[BIN-{tag}]",
        )
        reply_to = compose.plus_address(config.network.address, tag)
        raw = compose.notice(config, to=coordinator, subject=rendered.subject, body=rendered.body, now=now,
                             reply_to=reply_to, extra_headers={"X-BIN-Alert": alert.tag})
        enqueue_notice(session, recipient=coordinator, raw=raw, purpose="alert_coordinator_copy", now=now)
        sent.append(coordinator)
    return sent


SUBJECT_PREFIX = {
    "resolved": {"nl": "Afgerond", "en": "Resolved"},
    "update": {"nl": "Update", "en": "Update"},
}


def publish_followup(rt: Runtime, session: Session, alert: Alert, text: str, *, decided_by: str,
                     now: datetime, label: str = "resolved") -> Alert:
    """A new alert threaded to ``alert``, for every member who received it."""
    prefix = SUBJECT_PREFIX[label].get(rt.config.network.language, SUBJECT_PREFIX[label]["nl"])
    follow_up = Alert(
        queue_item_id=None,
        wards=list(alert.wards or []),
        source=alert.source,
        source_label=alert.source_label,
        original_sender=alert.original_sender,
        category=alert.category,
        urgency="normal",
        subject=f"{prefix}: {alert.subject}",
        body=text,
        attachments=[],
        tag=new_token(),
        thread_tag=alert.tag,
        created_at=now,
    )
    follow_up.message_id_header = f"<alert-{follow_up.tag}@{rt.config.network.domain}>"
    session.add(follow_up)
    session.flush()
    recipients = recipients_of_alert(session, alert.id)
    enqueue_alert_copies(session, follow_up.id, recipients, now)
    follow_up.fanned_out_at = now
    audit.record(session, at=now, actor=decided_by, action="alert_closed", alert_id=alert.id,
                 follow_up_id=follow_up.id, members=len(recipients))
    return follow_up
