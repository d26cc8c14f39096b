"""Follow-ups: a closing message or an update, threaded to a sent alert, for everyone who received it.

Each member who got the alert gets the follow-up threaded to their own copy
(In-Reply-To/References point at that copy's Message-ID). Nothing here talks
SMTP: the rows go to the outbox like any alert's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from relay.service.runtime import Runtime
from relay.service.tokens import new_token
from storage import audit
from storage.models import Alert
from storage.outbox import enqueue_alert_copies, recipients_of_alert

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
